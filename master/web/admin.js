// The admin dashboard: polls the master's /status once a second and fills the page
// (header summary, node and channel tables, clients per front) and draws the last
// HISTORY samples of each chart on a <canvas>. No framework and no build step: the master
// serves this file as it is. Every /status key is optional here (missing reads as 0), so
// the page works against older masters.
//
// Selectors for end-to-end tests (every value cell also carries `data-value`, its raw
// number, where the text is formatted):
//   body[data-connection]                 "connecting" | "ok" | "lost" | "unauthorized"
//   [data-testid=connection]              "connecting" | "live" | "connection lost" | "not authorized"
//   [data-testid=connection-lost]         the banner, visible only while the master does not answer
//   [data-testid=last-refresh]            time of the last good /status (`datetime` attribute: ISO)
//   [data-testid=master-address] [data-testid=master-nodes-address] [data-testid=master-uptime]
//   [data-testid=nodes-live] [data-testid=nodes-configured]
//   [data-testid=channels-live] [data-testid=channels-configured]
//   [data-testid=total-clients]           the number only, e.g. "2"
//   [data-testid=heartbeat-note]          the heartbeat period and when a node counts as late
//   [data-testid=nodes] tr[data-node=ID]  one row per live or down node; tr[data-status] "live" | "down",
//                                         tr[data-late] while its heartbeat is older than 2 × heartbeat_ms;
//       [data-field=id|role|pid|status|listen|heartbeat|clients|links|inputs_per_s|bytes_per_s|uptime]
//       (status: "live" | "down")
//       tr[data-supervision]              under `centrum up`: "running" | "restarting" | "failed" | "stopped"
//                                         (a down node's status cell then says "restarting" or "failed")
//   [data-testid=failed-nodes]            the card listing failed nodes, hidden while there is none;
//       li[data-node=ID] [data-field=last_exit|failures|stderr_tail]  and  button[data-action=restart]
//   [data-testid=channels] tr[data-channel=NAME]  tr[data-live] "true" | "false";
//       [data-field=name|app|back|state|clients|entities|tick|tick_hz|tick_avg|tick_max|
//                   overruns|inputs_per_s|patch_bytes_per_s]   (state: "live" | "down")
//   [data-testid=clients-per-front] li[data-front=ID] [data-field=clients]   ("down" when down)
//   [data-testid=chart-clients|chart-inputs|chart-patch-bytes|chart-tick-time|chart-slow-clients]
//       canvas[data-samples]              samples held (at most HISTORY)
//       canvas[data-series]               the series keys, space-separated (e.g. "total front:front-1")
//       .legend li[data-series=KEY] [data-field=value]   the current value (data-value: raw)
//   [data-testid=logout]                  the log-out button (a plain form POST to /admin/logout)

/** How often the page asks for /status. */
const POLL_MS = 1000;
/** A /status that takes longer than this counts as no answer. */
const REQUEST_TIMEOUT_MS = 2500;
/** Samples each chart keeps: two minutes at one a second. */
const HISTORY = 120;
/** The time a chart spans, newest at the right edge. */
const WINDOW_MS = HISTORY * POLL_MS;
/** Samples further apart than this (missed polls, the master away) are not joined by a line. */
const GAP_MS = 3 * POLL_MS;
/** A 401 right after a 401-triggered reload means /admin and /status disagree about the
 *  credential; reloading again would loop, so the page says so instead. */
const RELOAD_GUARD_MS = 10_000;
const RELOAD_KEY = 'centrum-admin-401-reload-at';

/** Series colours, handed out by name in order of first appearance, so a channel or a
 *  front keeps its colour in every chart. Red is left out: it means overruns and faults. */
const PALETTE = ['#2563eb', '#ea7a0c', '#16a34a', '#9333ea', '#0891b2', '#a16207', '#db2777', '#4f46e5', '#65a30d', '#78716c'];
const TOTAL_COLOR = '#1f2937';
const FAULT_COLOR = '#dc2626';

const ui = {
  connection: byTestId('connection'),
  banner: byTestId('connection-lost'),
  lastRefresh: byTestId('last-refresh'),
  masterAddress: byTestId('master-address'),
  masterNodesAddress: byTestId('master-nodes-address'),
  masterUptime: byTestId('master-uptime'),
  nodesLive: byTestId('nodes-live'),
  nodesConfigured: byTestId('nodes-configured'),
  channelsLive: byTestId('channels-live'),
  channelsConfigured: byTestId('channels-configured'),
  totalClients: byTestId('total-clients'),
  heartbeatNote: byTestId('heartbeat-note'),
  nodes: byTestId('nodes').tBodies[0],
  channels: byTestId('channels').tBodies[0],
  fronts: byTestId('clients-per-front'),
  failedCard: byTestId('failed-nodes'),
  failed: byTestId('failed-nodes').querySelector('ul'),
};

function byTestId(id) {
  return document.querySelector(`[data-testid="${id}"]`);
}

// ---- reading /status -----------------------------------------------------------------

/** A finite number, or 0 for anything missing or malformed. */
function num(value) {
  const n = Number(value);
  return Number.isFinite(n) ? n : 0;
}

function text(value) {
  return typeof value === 'string' ? value : value == null ? '' : String(value);
}

function list(value) {
  return Array.isArray(value) ? value : [];
}

function record(value) {
  return value && typeof value === 'object' && !Array.isArray(value) ? value : {};
}

/** /status with every field present and typed, whatever the master left out. */
function normalize(raw) {
  const status = record(raw);
  const master = record(status.master);
  const configured = record(status.configured);
  const nodes = list(status.nodes).map((node) => {
    node = record(node);
    return {
      id: text(node.id),
      role: text(node.role),
      pid: num(node.pid),
      listen: text(node.listen),
      clientUrl: text(node.client_url),
      registeredSAgo: num(node.registered_s_ago),
      heartbeatMsAgo: num(node.last_heartbeat_ms_ago),
      clients: num(node.clients),
      links: num(node.links),
      metrics: record(node.metrics),
      rates: record(node.rates),
    };
  });
  const fronts = nodes.filter((node) => node.role === 'front');
  return {
    master: { http: text(master.http), nodes: text(master.nodes), uptimeS: num(master.uptime_s) },
    heartbeatMs: num(status.heartbeat_ms) || 1000,
    nodes,
    down: list(status.down).map(text),
    channels: list(status.channels).map((channel) => {
      channel = record(channel);
      return {
        name: text(channel.name),
        app: text(channel.app),
        back: text(channel.back),
        live: channel.live === true,
        clients: num(channel.clients),
        entities: num(channel.entities),
        tick: num(channel.tick),
        tickHz: num(channel.tick_hz),
        tickUsAvg: num(channel.tick_us_avg),
        tickUsMax: num(channel.tick_us_max),
        overruns: num(channel.overruns),
        inputsPerS: num(channel.inputs_per_s),
        patchBytesPerS: num(channel.patch_bytes_per_s),
      };
    }),
    clients: 'clients' in status ? num(status.clients) : fronts.reduce((sum, f) => sum + f.clients, 0),
    supervised: list(status.supervised).map((entry) => {
      entry = record(entry);
      return {
        id: text(entry.id),
        state: text(entry.state),
        pid: num(entry.pid),
        adopted: entry.adopted === true,
        restarts: num(entry.restarts),
        failures: num(entry.failures),
        lastExit: text(entry.last_exit),
        stderrTail: text(entry.stderr_tail),
        retryInMs: entry.retry_in_ms == null ? null : num(entry.retry_in_ms),
      };
    }),
    configured: { fronts: list(configured.fronts).map(text), backs: list(configured.backs).map(text) },
  };
}

/** A counter's rate per second, as the master computed it between two heartbeats. */
function rate(node, name) {
  return num(node.rates[name]);
}

/** Slow-client events per second on a front: resyncs plus disconnects. */
function slowClientRate(front) {
  return rate(front, 'centrum_front_slow_client_resyncs_total')
    + rate(front, 'centrum_front_slow_client_disconnects_total');
}

// ---- formatting ----------------------------------------------------------------------

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const clock = new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });

function formatCount(n) {
  return integer.format(n);
}

/** Rates: one decimal below 10, where it carries information; none above. */
function formatRate(n) {
  if (n === 0) return '0';
  return Math.abs(n) < 10 ? n.toFixed(1) : integer.format(n);
}

/** Decimal units (kB = 1000 B), as network rates are usually read. */
function formatBytes(n) {
  const units = [['GB', 1e9], ['MB', 1e6], ['kB', 1e3]];
  for (const [unit, size] of units) {
    if (Math.abs(n) >= size) return `${(n / size).toFixed(n / size < 10 ? 2 : 1)} ${unit}`;
  }
  return `${Math.round(n)} B`;
}

function formatMs(us) {
  return (us / 1000).toFixed(2);
}

function formatDuration(seconds) {
  const s = Math.floor(seconds);
  if (s < 60) return `${s} s`;
  const pad = (n) => String(n).padStart(2, '0');
  if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${pad(Math.floor(s / 60) % 60)} min`;
  return `${Math.floor(s / 86_400)} d ${Math.floor(s / 3600) % 24} h`;
}

/** Natural order, so front-2 sorts before front-10. */
function byName(a, b) {
  return a.localeCompare(b, 'en', { numeric: true });
}

const colors = new Map();
function colorFor(name) {
  if (!colors.has(name)) colors.set(name, PALETTE[colors.size % PALETTE.length]);
  return colors.get(name);
}

// ---- DOM helpers ---------------------------------------------------------------------

/** Sets or removes a data attribute; touches the DOM only when it changes. */
function setData(element, key, value) {
  if (value == null || value === false) {
    if (key in element.dataset) delete element.dataset[key];
  } else if (element.dataset[key] !== String(value)) {
    element.dataset[key] = String(value);
  }
}

function setText(element, value) {
  if (element.textContent !== value) element.textContent = value;
}

/** One table cell: `text` shown, `value` the raw number for readers and tests, `tone`
 *  one of ok / warn / bad / muted for the stylesheet. */
function setCell(td, { text: shown, value, tone, title }) {
  setText(td, shown);
  setData(td, 'value', value);
  setData(td, 'tone', tone);
  if (title) td.title = title;
  else td.removeAttribute('title');
}

/**
 * Reconciles keyed rows (or list items) with `items`: existing elements are updated in
 * place, so a test's locator or a hovered row is not swapped under it every second.
 * `create(key)` builds a new element, `update(element, item)` fills it.
 */
function syncKeyed(parent, items, keyAttr, create, update) {
  const existing = new Map([...parent.children].map((el) => [el.dataset[keyAttr], el]));
  items.forEach((item, index) => {
    let element = existing.get(item.key);
    if (element) existing.delete(item.key);
    else {
      element = create();
      element.dataset[keyAttr] = item.key;
    }
    update(element, item);
    if (parent.children[index] !== element) parent.insertBefore(element, parent.children[index] ?? null);
  });
  for (const stale of existing.values()) stale.remove();
}

/** A <tr> with one <td data-field> per column; numeric columns align right. */
function rowFactory(columns) {
  return () => {
    const tr = document.createElement('tr');
    for (const { field, numeric } of columns) {
      const td = tr.insertCell();
      td.dataset.field = field;
      if (numeric) td.className = 'num';
    }
    return tr;
  };
}

/** Fills every cell of `tr` from `cells` by field; a field it leaves out gets `otherwise`. */
function fillRow(tr, cells, otherwise = { text: '' }) {
  for (const td of tr.cells) setCell(td, cells[td.dataset.field] ?? otherwise);
}

// ---- header --------------------------------------------------------------------------

function showSummary(status) {
  const { master, nodes, down, channels, configured } = status;
  setText(ui.masterAddress, master.http || '–');
  setText(ui.masterNodesAddress, master.nodes || '–');
  setText(ui.masterUptime, formatDuration(master.uptimeS));
  const configuredNodes = configured.fronts.length + configured.backs.length || nodes.length + down.length;
  setText(ui.nodesLive, formatCount(nodes.length));
  setText(ui.nodesConfigured, formatCount(configuredNodes));
  setData(ui.nodesLive, 'tone', nodes.length < configuredNodes ? 'bad' : 'ok');
  const liveChannels = channels.filter((c) => c.live).length;
  setText(ui.channelsLive, formatCount(liveChannels));
  setText(ui.channelsConfigured, formatCount(channels.length));
  setData(ui.channelsLive, 'tone', liveChannels < channels.length ? 'bad' : 'ok');
  setText(ui.totalClients, formatCount(status.clients));
  setData(ui.totalClients, 'value', status.clients);
  setText(ui.heartbeatNote, `heartbeat every ${formatCount(status.heartbeatMs)} ms; late after ${formatCount(2 * status.heartbeatMs)} ms`);
}

// ---- nodes ---------------------------------------------------------------------------

const NODE_COLUMNS = [
  { field: 'id' }, { field: 'role' }, { field: 'pid', numeric: true }, { field: 'status' },
  { field: 'listen' }, { field: 'heartbeat', numeric: true }, { field: 'clients', numeric: true },
  { field: 'links', numeric: true }, { field: 'inputs_per_s', numeric: true },
  { field: 'bytes_per_s', numeric: true }, { field: 'uptime', numeric: true },
];
const ROLE_ORDER = { front: 0, back: 1 };
const NONE = { text: '–', tone: 'muted' };

/** Live nodes and configured-but-down ones, fronts first, then backs, by name. */
function nodeRows(status) {
  const roleOf = (id) =>
    status.configured.fronts.includes(id) ? 'front' : status.configured.backs.includes(id) ? 'back' : '';
  const live = new Set(status.nodes.map((n) => n.id));
  const rows = [
    ...status.nodes.map((node) => ({ key: node.id, live: true, node })),
    ...status.down.filter((id) => !live.has(id)).map((id) => ({ key: id, live: false, node: { id, role: roleOf(id) } })),
  ];
  const rank = (row) => ROLE_ORDER[row.node.role] ?? 2;
  return rows.sort((a, b) => rank(a) - rank(b) || byName(a.key, b.key));
}

/** What `centrum up` says of a node that is not registered: "restarting", "failed", or
 *  plain "down" (not supervised here, or no `up`). */
function downStatus(entry) {
  if (!entry || (entry.state !== 'restarting' && entry.state !== 'failed')) return { text: 'down', tone: 'bad' };
  const retry = entry.retryInMs == null ? '' : `; next start in ${formatDuration(entry.retryInMs / 1000)}`;
  const exit = entry.lastExit ? `last exit: ${entry.lastExit}; ` : '';
  return { text: entry.state, tone: 'bad', title: `${exit}${formatCount(entry.failures)} quick exits in a row${retry}` };
}

function showNodes(status) {
  const lateAfterMs = 2 * status.heartbeatMs;
  const rows = nodeRows(status);
  const supervised = new Map(status.supervised.map((entry) => [entry.id, entry]));
  syncKeyed(ui.nodes, rows, 'node', rowFactory(NODE_COLUMNS), (tr, { live, node }) => {
    const role = node.role || '?';
    const entry = supervised.get(node.id);
    setData(tr, 'status', live ? 'live' : 'down');
    setData(tr, 'supervision', entry ? entry.state : null);
    const common = {
      id: { text: node.id, title: live ? node.clientUrl || node.listen : 'configured, not registered' },
      role: { text: role },
    };
    if (!live) {
      fillRow(tr, { ...common, status: downStatus(entry) }, NONE);
      setData(tr, 'late', null);
      return;
    }
    const late = node.heartbeatMsAgo > lateAfterMs;
    setData(tr, 'late', late);
    // Fronts report what they send to clients; backs, the patches they encode.
    const bytesCounter = role === 'back' ? 'centrum_back_patch_bytes_total' : 'centrum_front_bytes_out_total';
    const inputs = rate(node, `centrum_${role}_inputs_total`);
    const bytes = rate(node, bytesCounter);
    fillRow(tr, {
      ...common,
      pid: { text: node.pid ? String(node.pid) : '–', value: node.pid },
      status: {
        text: 'live',
        tone: 'ok',
        title: entry
          ? `supervised by centrum up${entry.adopted ? ' (taken over from an earlier up)' : ''}; ${formatCount(entry.restarts)} restarts`
          : undefined,
      },
      listen: { text: node.listen || '–' },
      heartbeat: {
        text: `${formatCount(node.heartbeatMsAgo)} ms`,
        value: node.heartbeatMsAgo,
        tone: late ? 'bad' : undefined,
        title: late ? `no heartbeat for over ${formatCount(lateAfterMs)} ms` : undefined,
      },
      clients: { text: formatCount(node.clients), value: node.clients },
      links: { text: formatCount(node.links), value: node.links },
      inputs_per_s: { text: formatRate(inputs), value: inputs },
      bytes_per_s: { text: formatBytes(bytes), value: bytes },
      uptime: { text: formatDuration(node.registeredSAgo), value: node.registeredSAgo },
    });
  });
  emptyNote('nodes', rows.length === 0);
  showFailed(status);
}

/** The failed nodes: how each last exited, the end of its output, and a restart button
 *  (POST /nodes/ID/restart, authorized by the same cookie as /status). */
function showFailed(status) {
  const failed = status.supervised.filter((entry) => entry.state === 'failed').map((entry) => ({ key: entry.id, entry }));
  ui.failedCard.hidden = failed.length === 0;
  syncKeyed(ui.failed, failed, 'node', failedItem, (li, { entry }) => {
    setText(li.querySelector('[data-field=id]'), entry.id);
    setText(li.querySelector('[data-field=last_exit]'), entry.lastExit || 'unknown');
    const failures = li.querySelector('[data-field=failures]');
    setText(failures, formatCount(entry.failures));
    setData(failures, 'value', entry.failures);
    setText(li.querySelector('[data-field=stderr_tail]'), entry.stderrTail || '(no output)');
  });
}

function failedItem() {
  const li = document.createElement('li');
  li.innerHTML =
    '<p><strong data-field="id"></strong> exited <span data-field="failures"></span> times in a row; ' +
    'last: <span data-field="last_exit"></span> <button type="button" data-action="restart">restart now</button> ' +
    '<span data-field="restart_result"></span></p><pre data-field="stderr_tail"></pre>';
  li.querySelector('[data-action=restart]').addEventListener('click', async (event) => {
    const button = event.currentTarget;
    const result = li.querySelector('[data-field=restart_result]');
    button.disabled = true;
    setText(result, 'restarting…');
    try {
      const response = await fetch(`/nodes/${encodeURIComponent(li.dataset.node)}/restart`, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { accept: 'application/json' },
      });
      const body = await response.json().catch(() => ({}));
      setText(result, response.ok ? `restarted: pid ${num(body.pid)}` : `not restarted: ${text(body.error) || response.status}`);
    } catch (err) {
      setText(result, `not restarted: ${describe(err)}`);
    } finally {
      button.disabled = false;
    }
  });
  return li;
}

function emptyNote(name, empty) {
  document.querySelector(`[data-empty-for="${name}"]`).hidden = !empty;
}

// ---- channels ------------------------------------------------------------------------

const CHANNEL_COLUMNS = [
  { field: 'name' }, { field: 'app' }, { field: 'back' }, { field: 'state' },
  ...['clients', 'entities', 'tick', 'tick_hz', 'tick_avg', 'tick_max', 'overruns', 'inputs_per_s', 'patch_bytes_per_s']
    .map((field) => ({ field, numeric: true })),
];

function showChannels(status) {
  const rows = status.channels
    .map((channel) => ({ key: channel.name, channel }))
    .sort((a, b) => byName(a.key, b.key));
  syncKeyed(ui.channels, rows, 'channel', rowFactory(CHANNEL_COLUMNS), (tr, { channel: c }) => {
    setData(tr, 'live', String(c.live));
    const named = { name: { text: c.name }, app: { text: c.app || '–' }, back: { text: c.back || '–' } };
    if (!c.live) {
      fillRow(tr, { ...named, state: { text: 'down', tone: 'bad', title: `${c.back} is not live` } }, NONE);
      return;
    }
    // A tick has 1/tick_hz to run; the longest one is worth a look past half of that.
    const budgetUs = c.tickHz > 0 ? 1e6 / c.tickHz : Infinity;
    const maxTone = c.tickUsMax > budgetUs ? 'bad' : c.tickUsMax > budgetUs / 2 ? 'warn' : undefined;
    fillRow(tr, {
      ...named,
      state: { text: 'live', tone: 'ok' },
      clients: { text: formatCount(c.clients), value: c.clients },
      entities: { text: formatCount(c.entities), value: c.entities },
      tick: { text: String(c.tick), value: c.tick },
      tick_hz: { text: `${formatCount(c.tickHz)} Hz`, value: c.tickHz },
      tick_avg: { text: formatMs(c.tickUsAvg), value: c.tickUsAvg, title: `${formatCount(c.tickUsAvg)} µs` },
      tick_max: {
        text: formatMs(c.tickUsMax),
        value: c.tickUsMax,
        tone: maxTone,
        title: `${formatCount(c.tickUsMax)} µs of a ${formatMs(budgetUs)} ms budget`,
      },
      overruns: { text: formatCount(c.overruns), value: c.overruns, tone: c.overruns > 0 ? 'bad' : undefined },
      inputs_per_s: { text: formatRate(c.inputsPerS), value: c.inputsPerS },
      patch_bytes_per_s: { text: formatBytes(c.patchBytesPerS), value: c.patchBytesPerS },
    });
  });
  emptyNote('channels', rows.length === 0);
}

// ---- clients per front ---------------------------------------------------------------

function showFronts(status) {
  const live = new Map(status.nodes.filter((n) => n.role === 'front').map((n) => [n.id, n]));
  const names = [...new Set([...status.configured.fronts, ...live.keys()])].sort(byName);
  const most = Math.max(1, ...[...live.values()].map((f) => f.clients));
  const items = names.map((name) => ({ key: name, front: live.get(name) }));
  syncKeyed(ui.fronts, items, 'front', createFrontItem, (li, { key, front }) => {
    setText(li.querySelector('.name'), key);
    const value = li.querySelector('[data-field=clients]');
    const bar = li.querySelector('.fill');
    setData(li, 'status', front ? 'live' : 'down');
    if (front) {
      setText(value, formatCount(front.clients));
      setData(value, 'value', front.clients);
      bar.style.width = `${(100 * front.clients) / most}%`;
      bar.style.background = colorFor(key);
    } else {
      setText(value, 'down');
      setData(value, 'value', null);
      bar.style.width = '0';
    }
  });
  emptyNote('clients-per-front', items.length === 0);
}

function createFrontItem() {
  const li = document.createElement('li');
  li.innerHTML = '<span class="name"></span><span class="track"><span class="fill"></span></span><span class="count" data-field="clients"></span>';
  return li;
}

// ---- charts --------------------------------------------------------------------------

/**
 * A line chart over the last WINDOW_MS, drawn on its figure's canvas. Each sample holds a
 * value per series key; a key missing from a sample (a node down, a channel gone) breaks
 * that line there, and a series leaves the legend once no held sample has it.
 */
class Chart {
  /**
   * @param {HTMLElement} figure  the <figure> holding a <canvas> and a <ul class=legend>
   * @param {object} options
   *   unit: the y axis title; axisLabel(value, step, top): a y tick; valueLabel(value):
   *   a legend value; integer: ticks on whole numbers only; minTop: the y range when
   *   every value is 0; references(): horizontal lines [{ value, label }], drawn when
   *   they fall in range; markLabel: the legend text of marked events.
   */
  constructor(figure, options) {
    this.figure = figure;
    this.canvas = figure.querySelector('canvas');
    this.legend = figure.querySelector('.legend');
    this.context = this.canvas.getContext('2d');
    this.options = { integer: false, minTop: 1, references: () => [], ...options };
    /** Oldest first, at most HISTORY: { t, values: Map(key -> number), marks: [{ key, count }] }. */
    this.samples = [];
    /** key -> { label, color, dash, width, area }, in order of first appearance. */
    this.series = new Map();
    /** The sample under the pointer, whose values the legend shows instead of the latest. */
    this.hovered = null;
    new ResizeObserver(() => this.draw()).observe(this.canvas);
    this.canvas.addEventListener('pointermove', (event) => this.hover(event));
    this.canvas.addEventListener('pointerleave', () => { this.hovered = null; this.draw(); });
  }

  /** Adds a sample: `points` [{ key, value, label, color, dash?, width?, area? }], `marks`
   *  events to flag at this sample ([{ key, count }]). */
  push(t, points, marks = []) {
    const values = new Map();
    for (const { key, value, ...style } of points) {
      values.set(key, value);
      this.series.set(key, style);
    }
    this.samples.push({ t, values, marks });
    if (this.samples.length > HISTORY) this.samples.shift();
    for (const key of this.series.keys()) {
      if (!this.samples.some((s) => s.values.has(key))) this.series.delete(key);
    }
    setData(this.canvas, 'samples', this.samples.length);
    setData(this.canvas, 'series', [...this.series.keys()].join(' '));
  }

  hover(event) {
    const { left, width } = this.layout ?? {};
    if (width === undefined) return;
    const x = event.offsetX;
    const t = this.now - WINDOW_MS + ((x - left) / width) * WINDOW_MS;
    let nearest = null;
    for (const sample of this.samples) {
      if (!nearest || Math.abs(sample.t - t) < Math.abs(nearest.t - t)) nearest = sample;
    }
    this.hovered = nearest && Math.abs(nearest.t - t) <= POLL_MS ? nearest : null;
    this.draw(this.now);
  }

  /** Redraws for the window ending at `now` (wall clock, so the chart keeps moving while
   *  the master is away and the gap shows). */
  draw(now = this.now ?? Date.now()) {
    this.now = now;
    const { canvas, context: g, options } = this;
    const cssWidth = canvas.clientWidth;
    const cssHeight = canvas.clientHeight;
    if (!cssWidth || !cssHeight) return;
    const ratio = window.devicePixelRatio || 1;
    const pixelWidth = Math.round(cssWidth * ratio);
    const pixelHeight = Math.round(cssHeight * ratio);
    if (canvas.width !== pixelWidth || canvas.height !== pixelHeight) {
      canvas.width = pixelWidth;
      canvas.height = pixelHeight;
    }
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, cssWidth, cssHeight);
    g.font = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';

    const from = now - WINDOW_MS;
    // One sample before the window too, so a line enters from the left edge.
    const visible = this.samples.filter((s) => s.t >= from - GAP_MS);
    let highest = 0;
    for (const sample of visible) for (const v of sample.values.values()) highest = Math.max(highest, v);
    const { top, step } = niceScale(highest, options);

    const labels = [];
    for (let i = 0; i * step <= top + step / 2; i++) labels.push([i * step, options.axisLabel(i * step, step, top)]);
    const labelWidth = Math.max(...labels.map(([, label]) => g.measureText(label).width));
    const plot = { left: Math.ceil(labelWidth) + 10, top: 18, right: cssWidth - 12, bottom: cssHeight - 22 };
    plot.width = plot.right - plot.left;
    plot.height = plot.bottom - plot.top;
    this.layout = plot;
    const xOf = (t) => plot.left + ((t - from) / WINDOW_MS) * plot.width;
    const yOf = (v) => plot.bottom - (v / top) * plot.height;

    // Axes: the unit, horizontal grid lines with their values, time ticks every 30 s.
    g.fillStyle = '#6b7280';
    g.textBaseline = 'alphabetic';
    g.textAlign = 'left';
    g.fillText(options.unit, 2, 10);
    g.textBaseline = 'middle';
    g.textAlign = 'right';
    for (const [v, label] of labels) {
      const y = Math.round(yOf(v)) + 0.5;
      g.strokeStyle = v === 0 ? '#9ca3af' : '#e5e7eb';
      g.lineWidth = 1;
      g.setLineDash([]);
      g.beginPath();
      g.moveTo(plot.left, y);
      g.lineTo(plot.right, y);
      g.stroke();
      g.fillText(label, plot.left - 6, y);
    }
    g.textBaseline = 'top';
    for (let agoS = WINDOW_MS / 1000; agoS >= 0; agoS -= 30) {
      const x = xOf(now - agoS * 1000);
      g.textAlign = agoS === WINDOW_MS / 1000 ? 'left' : agoS === 0 ? 'right' : 'center';
      g.fillText(agoS === 0 ? 'now' : `−${agoS} s`, x, plot.bottom + 6);
      g.strokeStyle = '#f1f2f4';
      g.beginPath();
      g.moveTo(Math.round(x) + 0.5, plot.top);
      g.lineTo(Math.round(x) + 0.5, plot.bottom);
      g.stroke();
    }

    g.save();
    g.beginPath();
    g.rect(plot.left, plot.top - 4, plot.width + 4, plot.height + 8);
    g.clip();

    const latest = this.samples[this.samples.length - 1];
    for (const reference of options.references()) {
      if (reference.value > top) continue;
      const y = Math.round(yOf(reference.value)) + 0.5;
      g.strokeStyle = FAULT_COLOR;
      g.setLineDash([2, 3]);
      g.beginPath();
      g.moveTo(plot.left, y);
      g.lineTo(plot.right, y);
      g.stroke();
      g.fillStyle = FAULT_COLOR;
      g.textAlign = 'left';
      g.textBaseline = 'bottom';
      g.fillText(reference.label, plot.left + 4, y - 2);
    }

    // Marked events (overruns): a red line down the plot and a triangle on top.
    for (const sample of visible) {
      if (!sample.marks.length) continue;
      const x = Math.round(xOf(sample.t)) + 0.5;
      g.strokeStyle = 'rgba(220, 38, 38, 0.35)';
      g.setLineDash([]);
      g.beginPath();
      g.moveTo(x, plot.top);
      g.lineTo(x, plot.bottom);
      g.stroke();
      g.fillStyle = FAULT_COLOR;
      g.beginPath();
      g.moveTo(x - 5, plot.top - 4);
      g.lineTo(x + 5, plot.top - 4);
      g.lineTo(x, plot.top + 4);
      g.closePath();
      g.fill();
    }

    for (const [key, style] of this.series) {
      g.strokeStyle = style.color;
      g.fillStyle = style.color;
      g.lineWidth = style.width ?? 1.75;
      g.lineJoin = 'round';
      g.setLineDash(style.dash ? [5, 4] : []);
      for (const run of runs(visible, key)) {
        if (run.length === 1) {
          // A lone sample (a node just came back) has no line: show it as a dot.
          g.beginPath();
          g.arc(xOf(run[0].t), yOf(run[0].v), 2, 0, 2 * Math.PI);
          g.fill();
          continue;
        }
        g.beginPath();
        run.forEach((p, i) => (i ? g.lineTo : g.moveTo).call(g, xOf(p.t), yOf(p.v)));
        g.stroke();
        if (style.area) {
          // A total is shaded down to zero, so the per-node lines read as its parts.
          g.lineTo(xOf(run[run.length - 1].t), plot.bottom);
          g.lineTo(xOf(run[0].t), plot.bottom);
          g.closePath();
          g.globalAlpha = 0.07;
          g.fill();
          g.globalAlpha = 1;
        }
      }
      // The latest value of a live series, as a dot at the right end of its line.
      if (latest?.values.has(key)) {
        g.beginPath();
        g.arc(xOf(latest.t), yOf(latest.values.get(key)), 2.5, 0, 2 * Math.PI);
        g.fill();
      }
    }

    if (this.hovered) {
      const x = Math.round(xOf(this.hovered.t)) + 0.5;
      g.strokeStyle = '#6b7280';
      g.lineWidth = 1;
      g.setLineDash([3, 3]);
      g.beginPath();
      g.moveTo(x, plot.top);
      g.lineTo(x, plot.bottom);
      g.stroke();
      // The legend shows this sample's values; the label says when it was taken.
      const when = clock.format(this.hovered.t);
      const boxWidth = g.measureText(when).width + 8;
      const boxLeft = Math.min(Math.max(x - boxWidth / 2, plot.left), plot.right - boxWidth);
      g.fillStyle = 'rgba(255, 255, 255, 0.9)';
      g.fillRect(boxLeft, plot.bottom - 17, boxWidth, 15);
      g.fillStyle = '#374151';
      g.textAlign = 'left';
      g.textBaseline = 'middle';
      g.fillText(when, boxLeft + 4, plot.bottom - 9.5);
    }
    g.restore();

    if (!this.samples.length || !this.series.size) {
      g.fillStyle = '#9ca3af';
      g.textAlign = 'center';
      g.textBaseline = 'middle';
      g.fillText(this.samples.length ? 'nothing to draw yet' : 'waiting for data…', plot.left + plot.width / 2, plot.top + plot.height / 2);
    }
    this.showLegend(visible);
  }

  /** One legend entry per series with its current (or hovered) value, plus marked events. */
  showLegend(visible) {
    const shown = this.hovered ?? this.samples[this.samples.length - 1];
    const entries = [...this.series].map(([key, style]) => {
      const value = shown?.values.get(key);
      return {
        key,
        style,
        text: value === undefined ? '–' : this.options.valueLabel(value),
        value,
      };
    });
    if (this.options.markLabel) {
      const count = visible.reduce((sum, s) => sum + s.marks.reduce((n, m) => n + m.count, 0), 0);
      entries.push({ key: 'marks', style: { label: this.options.markLabel, color: FAULT_COLOR, mark: true }, text: `${formatCount(count)} in ${WINDOW_MS / 60_000} min`, value: count });
    }
    syncKeyed(this.legend, entries, 'series', createLegendItem, (li, { style, text: shown, value }) => {
      const swatch = li.querySelector('.swatch');
      swatch.style.setProperty('--color', style.color);
      setData(swatch, 'style', style.mark ? 'mark' : style.dash ? 'dashed' : style.width > 2 ? 'bold' : null);
      setText(li.querySelector('.label'), style.label);
      const valueCell = li.querySelector('[data-field=value]');
      setText(valueCell, shown);
      setData(valueCell, 'value', value);
      setData(li, 'gone', value === undefined);
    });
    setData(this.figure, 'hovering', this.hovered ? 'true' : null);
  }
}

function createLegendItem() {
  const li = document.createElement('li');
  li.innerHTML = '<span class="swatch"></span><span class="label"></span><b data-field="value"></b>';
  return li;
}

/** The unbroken stretches of `key` in `samples`: [{ t, v }] runs split at gaps. */
function runs(samples, key) {
  const out = [];
  let run = null;
  let previousT = -Infinity;
  for (const sample of samples) {
    const v = sample.values.get(key);
    if (v === undefined) {
      run = null;
      continue;
    }
    if (!run || sample.t - previousT > GAP_MS) out.push((run = []));
    run.push({ t: sample.t, v });
    previousT = sample.t;
  }
  return out;
}

/** A y range from 0 to a round number above `highest`, with 3 to 5 round steps. */
function niceScale(highest, { integer: wholeSteps, minTop }) {
  const wanted = highest > 0 ? highest * 1.08 : minTop;
  const rough = wanted / 4;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const steps = wholeSteps ? [1, 2, 5, 10] : [1, 2, 2.5, 5, 10];
  let step = steps.find((s) => s * magnitude >= rough) * magnitude;
  if (wholeSteps) step = Math.max(1, step);
  return { top: Math.ceil(wanted / step - 1e-9) * step, step };
}

/** Decimals needed to print every multiple of `step` exactly. */
function decimalsFor(step) {
  let decimals = 0;
  while (decimals < 6 && Math.abs(Math.round(step * 10 ** decimals) - step * 10 ** decimals) > 1e-6) decimals++;
  return decimals;
}

const plainAxis = (value, step) => value.toFixed(decimalsFor(step));

function bytesAxis(value, step, top) {
  const [unit, size] = top >= 1e9 ? ['GB', 1e9] : top >= 1e6 ? ['MB', 1e6] : top >= 1e3 ? ['kB', 1e3] : ['B', 1];
  return value === 0 ? '0' : `${(value / size).toFixed(decimalsFor(step / size))} ${unit}`;
}

const charts = {
  clients: new Chart(byTestId('chart-clients'), {
    unit: 'clients',
    integer: true,
    axisLabel: plainAxis,
    valueLabel: formatCount,
  }),
  inputs: new Chart(byTestId('chart-inputs'), {
    unit: 'inputs/s',
    axisLabel: plainAxis,
    valueLabel: (v) => `${formatRate(v)}/s`,
  }),
  patchBytes: new Chart(byTestId('chart-patch-bytes'), {
    unit: 'bytes/s',
    minTop: 1000,
    axisLabel: bytesAxis,
    valueLabel: (v) => `${formatBytes(v)}/s`,
  }),
  tickTime: new Chart(byTestId('chart-tick-time'), {
    unit: 'ms',
    minTop: 0.1,
    axisLabel: plainAxis,
    valueLabel: (v) => `${v.toFixed(2)} ms`,
    markLabel: 'overruns',
    // The tick budget (1/tick_hz): drawn only when the ticks come near it.
    references: () => [...new Set(tickBudgetsMs)].map((ms) => ({ value: ms, label: `tick budget ${ms.toFixed(1)} ms` })),
  }),
  slowClients: new Chart(byTestId('chart-slow-clients'), {
    unit: 'events/s',
    // Events come in ones: a quiet front reads 0 to 4, not 0.00 to 1.00.
    minTop: 4,
    axisLabel: plainAxis,
    valueLabel: (v) => `${formatRate(v)}/s`,
  }),
};

/** Each channel's overrun count at the previous sample, to mark the ticks where it grew. */
const previousOverruns = new Map();
/** The live channels' tick periods, in ms. */
let tickBudgetsMs = [];

function sampleCharts(status, t) {
  const fronts = status.nodes.filter((n) => n.role === 'front').sort((a, b) => byName(a.id, b.id));
  const channels = status.channels.filter((c) => c.live).sort((a, b) => byName(a.name, b.name));

  charts.clients.push(t, [
    { key: 'total', label: 'total', color: TOTAL_COLOR, width: 2.5, area: true, value: status.clients },
    ...fronts.map((f) => ({ key: `front:${f.id}`, label: f.id, color: colorFor(f.id), value: f.clients })),
  ]);
  charts.inputs.push(t, channels.map((c) => ({ key: c.name, label: c.name, color: colorFor(c.name), value: c.inputsPerS })));
  charts.patchBytes.push(t, channels.map((c) => ({ key: c.name, label: c.name, color: colorFor(c.name), value: c.patchBytesPerS })));

  const marks = [];
  for (const c of channels) {
    const before = previousOverruns.get(c.name);
    // A count that went down is a restarted back: a new baseline, not an event.
    if (before !== undefined && c.overruns > before) marks.push({ key: c.name, count: c.overruns - before });
  }
  previousOverruns.clear();
  for (const c of channels) previousOverruns.set(c.name, c.overruns);
  charts.tickTime.push(t, channels.flatMap((c) => [
    { key: `${c.name}:avg`, label: `${c.name} avg`, color: colorFor(c.name), value: c.tickUsAvg / 1000 },
    { key: `${c.name}:max`, label: `${c.name} max`, color: colorFor(c.name), dash: true, width: 1.25, value: c.tickUsMax / 1000 },
  ]), marks);
  tickBudgetsMs = channels.filter((c) => c.tickHz > 0).map((c) => 1000 / c.tickHz);

  charts.slowClients.push(t, fronts.map((f) => ({ key: `front:${f.id}`, label: f.id, color: colorFor(f.id), value: slowClientRate(f) })));
}

function drawCharts(now) {
  for (const chart of Object.values(charts)) chart.draw(now);
}

// ---- connection state ----------------------------------------------------------------

let lastGoodAt = null;
/** Set once a 401 reload came straight back here: stop reloading, say so. */
let reloadsStopped = false;

/** `state`: ok | lost | unauthorized. `reason`, a sentence without its full stop, says why. */
function setConnection(state, reason = '') {
  document.body.dataset.connection = state;
  const label = { ok: 'live', lost: 'connection lost', unauthorized: 'not authorized' }[state];
  setText(ui.connection, label);
  document.title = state === 'ok' ? 'centrum admin' : `centrum admin (${label})`;
  if (lastGoodAt) {
    setText(ui.lastRefresh, clock.format(lastGoodAt));
    ui.lastRefresh.dateTime = lastGoodAt.toISOString();
  }
  ui.banner.hidden = state === 'ok';
  if (state === 'lost') {
    const since = lastGoodAt ? ` The figures below are from ${clock.format(lastGoodAt)}, ${formatDuration((Date.now() - lastGoodAt) / 1000)} ago.` : '';
    setText(ui.banner, `${reason}.${since} Retrying every second.`);
  } else if (state === 'unauthorized') {
    ui.banner.replaceChildren(
      'The master refuses this browser\u2019s admin credential. ',
      Object.assign(document.createElement('a'), { href: '/admin', textContent: 'Log in again' }),
      '.',
    );
  }
}

/** /status said 401: the cookie is missing or stale. /admin then serves the login form. */
function onUnauthorized() {
  const lastReload = Number(sessionStorage.getItem(RELOAD_KEY)) || 0;
  if (!reloadsStopped && Date.now() - lastReload > RELOAD_GUARD_MS) {
    sessionStorage.setItem(RELOAD_KEY, String(Date.now()));
    location.replace('/admin');
    return;
  }
  reloadsStopped = true;
  setConnection('unauthorized');
}

async function poll() {
  const started = Date.now();
  try {
    const response = await fetch('/status', {
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { accept: 'application/json' },
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    if (response.status === 401) {
      onUnauthorized();
    } else if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(`The master answered HTTP ${response.status}${body.error ? ` (${body.error})` : ''}`);
    } else {
      const status = normalize(await response.json());
      lastGoodAt = new Date();
      showSummary(status);
      showNodes(status);
      showChannels(status);
      showFronts(status);
      sampleCharts(status, lastGoodAt.getTime());
      setConnection('ok');
    }
  } catch (err) {
    setConnection('lost', describe(err));
  }
  drawCharts(Date.now());
  // Spaced from the start of this poll, never overlapping a slow one.
  setTimeout(poll, Math.max(0, POLL_MS - (Date.now() - started)));
}

/** Why a poll failed, as a sentence for the banner. */
function describe(err) {
  if (err?.name === 'TimeoutError' || err?.name === 'AbortError') return `The master did not answer within ${REQUEST_TIMEOUT_MS / 1000} s`;
  // fetch rejects with a TypeError when there is no HTTP answer at all.
  if (err instanceof TypeError) return 'The master does not answer';
  if (err instanceof SyntaxError) return 'The master\u2019s answer is not JSON';
  return err?.message || String(err);
}

poll();
