// The arena demo: joins the arena through the SDK, steers the player from the keyboard,
// the mouse or a finger, and draws every player and coin. Positions arrive once per tick;
// the page draws them INTERPOLATION_MS in the past, between the two samples around that
// moment, so motion is smooth at any frame rate. The game's messages say which player is
// this tab's (`you`) and who scored (`scored`, shown as a toast).
import { Client } from '/assets/centrum.js';

/** The arena's field, in world units (PROTOCOL.md §13). */
const FIELD = { width: 64, height: 36 };
/** How far in the past the page draws: two ticks at 20 Hz, so a sample is always ahead. */
const INTERPOLATION_MS = 100;
/** The server applies one input per tick; sending faster only fills its queue. */
const SEND_EVERY_MS = 50;
/** Samples kept per entity: a second at 20 Hz. */
const SAMPLES = 20;
/** A pointer this close to the player (world units) means "stay". */
const ARRIVED = 0.4;
/** How long a toast stays up. */
const TOAST_MS = 2500;

const ui = {
  canvas: document.querySelector('[data-testid=field]'),
  me: document.querySelector('[data-testid=me]'),
  state: document.querySelector('[data-testid=state]'),
  ping: document.querySelector('[data-testid=ping]'),
  tick: document.querySelector('[data-testid=tick]'),
  players: document.querySelector('[data-testid=players]'),
  scores: document.querySelector('[data-testid=scores]'),
  message: document.querySelector('[data-testid=message]'),
  toast: document.querySelector('[data-testid=toast]'),
};
const draw = ui.canvas.getContext('2d');

const params = new URLSearchParams(location.search);
const channelName = params.get('channel') || 'arena';
// Per tab (sessionStorage, not localStorage), so two tabs are two players. The name is
// what the others see; names need not be unique, so the page knows its own player by the
// entity id the game's `you` message gives it.
const myName = params.get('name') || sessionStorage.getItem('centrum-name') || randomName();
sessionStorage.setItem('centrum-name', myName);
ui.me.textContent = myName;

/** Entity id -> { kind, name, hue, score, samples: [{ t, x, y }] }, oldest sample first. */
const tracks = new Map();
let channel = null;
/** This tab's player's entity id, from the game's `you` message; null until it arrives. */
let myId = null;
let toastTimer = null;
let lastPatchAt = 0;
let tickPeriod = 50; // ms, measured from patch arrivals

// ---- connection ----------------------------------------------------------------------

async function start() {
  setState('connecting');
  let client;
  try {
    client = await Client.connect({ gate: location.origin, channel: channelName });
    channel = await client.join(channelName, { name: myName });
  } catch (err) {
    setState('error');
    showMessage(`Cannot join ${channelName}: ${err.message}`);
    // The cluster may still be starting: try again, a little later each time.
    setTimeout(start, 2000);
    return;
  }
  // Right after the join: the SDK holds what followed the join's State until now, so the
  // `you` message that came with it is not missed.
  channel.on('message', onGameMessage);
  hideMessage();
  setState('playing');
  client.on('reconnecting', () => setState('reconnecting'));
  client.on('reconnected', ({ resumed }) => {
    // A new session joined afresh: a new player, whose `you` follows its State. A resumed
    // one keeps its player (the game sees no join, so no `you` comes), or, when the back
    // had let it go, gets a new player and a `you` as well.
    if (!resumed) setMe(null);
    hideMessage();
    setState('playing');
  });
  client.on('error', (err) => { if (err.fatal) showMessage(err.message); });
  client.on('closed', () => { setState('closed'); showMessage('Disconnected. Reload to play again.'); });
  channel.on('unavailable', () => { setState('waiting'); showMessage('The game server is restarting…'); });
  channel.on('state', () => { hideMessage(); setState('playing'); sync(true); });
  channel.on('patch', () => sync(false));
  sync(true);
  pingEvery(client, 1000);
}

/** The arena's messages (PROTOCOL.md §13): `{ you: { player } }`, `{ scored: { player, score } }`. */
function onGameMessage(data) {
  if (data?.you) {
    setMe(data.you.player);
  } else if (data?.scored) {
    // The patch of the message's tick came first, so the scorer's track is up to date.
    const { player, score } = data.scored;
    const who = player === myId ? 'You' : tracks.get(player)?.name ?? `player ${player}`;
    showToast(`${who} scored! ${score} ${score === 1 ? 'coin' : 'coins'}`);
  }
}

/** Which entity is this tab's player; shown on the HUD for anyone (or any test) reading it. */
function setMe(id) {
  myId = id;
  if (id === null) delete ui.me.dataset.player;
  else ui.me.dataset.player = String(id);
  showScores();
}

function pingEvery(client, ms) {
  setInterval(async () => {
    try {
      const rtt = await client.ping();
      ui.ping.textContent = `${Math.round(rtt)} ms`;
    } catch {
      ui.ping.textContent = '–';
    }
  }, ms);
}

// ---- state -> tracks -----------------------------------------------------------------

/** Copies the mirror into the tracks; `full` after a full state, which may jump. */
function sync(full) {
  const now = performance.now();
  if (!full && lastPatchAt) {
    tickPeriod = 0.9 * tickPeriod + 0.1 * Math.min(500, now - lastPatchAt);
  }
  lastPatchAt = now;
  const seen = new Set();
  for (const entity of channel.mirror.entities.values()) {
    seen.add(entity.id);
    const { x, y, name, hue, score } = entity.fields;
    let track = tracks.get(entity.id);
    if (!track || full) {
      track = { kind: entity.kind, samples: [{ t: now, x, y }] };
      tracks.set(entity.id, track);
    }
    Object.assign(track, { name, hue, score });
    const last = track.samples[track.samples.length - 1];
    if (last.x !== x || last.y !== y) {
      // After a pause the previous sample is old: anchor the move one tick back, or the
      // page would stretch one tick's motion over the whole pause.
      if (now - last.t > 1.5 * tickPeriod) {
        track.samples.push({ t: now - tickPeriod, x: last.x, y: last.y });
      }
      track.samples.push({ t: now, x, y });
      if (track.samples.length > SAMPLES) track.samples.splice(0, track.samples.length - SAMPLES);
    }
  }
  for (const id of tracks.keys()) if (!seen.has(id)) tracks.delete(id);
  ui.tick.textContent = String(channel.tick);
  showScores();
}

/** Where a track is drawn at time `t`: between the samples around it. */
function positionAt(track, t) {
  const s = track.samples;
  if (t <= s[0].t) return s[0];
  for (let i = s.length - 1; i > 0; i--) {
    if (s[i - 1].t <= t) {
      const a = s[i - 1], b = s[i];
      if (t >= b.t) return b;
      const k = (t - a.t) / (b.t - a.t);
      return { x: a.x + (b.x - a.x) * k, y: a.y + (b.y - a.y) * k };
    }
  }
  return s[s.length - 1];
}

function players() {
  return [...tracks.values()].filter((t) => t.kind === 'player');
}

function myTrack() {
  const track = myId === null ? undefined : tracks.get(myId);
  return track?.kind === 'player' ? track : undefined;
}

function showScores() {
  const list = [...tracks].filter(([, t]) => t.kind === 'player')
    .sort(([, a], [, b]) => b.score - a.score || a.name.localeCompare(b.name));
  ui.players.textContent = String(list.length);
  ui.scores.replaceChildren(...list.map(([id, p]) => {
    const item = document.createElement('li');
    const last = p.samples[p.samples.length - 1];
    item.textContent = `${p.name} — ${p.score}`;
    // The entity and its latest server position, for anyone (or any test) reading the page.
    item.dataset.id = String(id);
    item.dataset.name = p.name;
    item.dataset.x = last.x.toFixed(2);
    item.dataset.y = last.y.toFixed(2);
    if (id === myId) item.className = 'me';
    return item;
  }));
}

// ---- drawing -------------------------------------------------------------------------

function frame() {
  resizeCanvas();
  const scale = ui.canvas.width / FIELD.width;
  draw.clearRect(0, 0, ui.canvas.width, ui.canvas.height);
  drawGrid(scale);
  const t = performance.now() - INTERPOLATION_MS;
  for (const track of tracks.values()) {
    if (track.kind !== 'coin') continue;
    const p = positionAt(track, t);
    draw.fillStyle = '#f5c542';
    draw.beginPath();
    draw.arc(p.x * scale, p.y * scale, 0.45 * scale, 0, 2 * Math.PI);
    draw.fill();
  }
  const me = myTrack();
  for (const track of players()) {
    const p = positionAt(track, t);
    draw.fillStyle = `hsl(${track.hue} 75% 58%)`;
    draw.beginPath();
    draw.arc(p.x * scale, p.y * scale, 0.9 * scale, 0, 2 * Math.PI);
    draw.fill();
    if (track === me) {
      draw.strokeStyle = '#ffffff';
      draw.lineWidth = Math.max(2, 0.15 * scale);
      draw.stroke();
    }
    draw.fillStyle = '#e6e9ef';
    draw.font = `${Math.max(11, 0.75 * scale)}px system-ui, sans-serif`;
    draw.textAlign = 'center';
    draw.fillText(`${track.name} · ${track.score}`, p.x * scale, (p.y - 1.3) * scale);
  }
  steerTowardPointer(me, t);
  requestAnimationFrame(frame);
}

function drawGrid(scale) {
  draw.strokeStyle = '#232a3a';
  draw.lineWidth = 1;
  draw.beginPath();
  for (let x = 4; x < FIELD.width; x += 4) {
    draw.moveTo(x * scale, 0);
    draw.lineTo(x * scale, ui.canvas.height);
  }
  for (let y = 4; y < FIELD.height; y += 4) {
    draw.moveTo(0, y * scale);
    draw.lineTo(ui.canvas.width, y * scale);
  }
  draw.stroke();
}

/** Keeps the canvas's pixels matched to its displayed size, for sharp drawing. */
function resizeCanvas() {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.round(ui.canvas.clientWidth * ratio);
  const height = Math.round(width * FIELD.height / FIELD.width);
  if (width > 0 && (ui.canvas.width !== width || ui.canvas.height !== height)) {
    ui.canvas.width = width;
    ui.canvas.height = height;
  }
}

// ---- steering ------------------------------------------------------------------------

const keys = new Set();
const KEY_DIRECTIONS = {
  ArrowLeft: [-1, 0], KeyA: [-1, 0], ArrowRight: [1, 0], KeyD: [1, 0],
  ArrowUp: [0, -1], KeyW: [0, -1], ArrowDown: [0, 1], KeyS: [0, 1],
};
/** The pointer held on the field, in world units, or null. */
let pointer = null;
let wanted = { dx: 0, dy: 0 };
let sent = { dx: 0, dy: 0 };
let lastSentAt = 0;
let flushTimer = null;

addEventListener('keydown', (e) => {
  if (!(e.code in KEY_DIRECTIONS)) return;
  e.preventDefault();
  keys.add(e.code);
  steerFromKeys();
});
addEventListener('keyup', (e) => {
  if (keys.delete(e.code)) steerFromKeys();
});
addEventListener('blur', () => { keys.clear(); pointer = null; steer(0, 0); });

function steerFromKeys() {
  let dx = 0, dy = 0;
  for (const code of keys) {
    dx += KEY_DIRECTIONS[code][0];
    dy += KEY_DIRECTIONS[code][1];
  }
  const length = Math.hypot(dx, dy);
  steer(length ? dx / length : 0, length ? dy / length : 0);
}

ui.canvas.addEventListener('pointerdown', (e) => {
  ui.canvas.setPointerCapture(e.pointerId);
  pointer = toWorld(e);
});
ui.canvas.addEventListener('pointermove', (e) => { if (pointer) pointer = toWorld(e); });
for (const type of ['pointerup', 'pointercancel']) {
  ui.canvas.addEventListener(type, () => { pointer = null; steer(0, 0); });
}

function toWorld(e) {
  const box = ui.canvas.getBoundingClientRect();
  return {
    x: ((e.clientX - box.left) / box.width) * FIELD.width,
    y: ((e.clientY - box.top) / box.height) * FIELD.height,
  };
}

/** While the pointer is held, heads for it from where the player is drawn. */
function steerTowardPointer(me, t) {
  if (!pointer || !me) return;
  const at = positionAt(me, t);
  const dx = pointer.x - at.x, dy = pointer.y - at.y;
  const length = Math.hypot(dx, dy);
  if (length < ARRIVED) steer(0, 0);
  else steer(dx / length, dy / length);
}

/** Sends the direction when it changed, at most once per tick period. */
function steer(dx, dy) {
  wanted = { dx: round(dx), dy: round(dy) };
  flush();
}

function flush() {
  if (!channel || (wanted.dx === sent.dx && wanted.dy === sent.dy)) return;
  const wait = lastSentAt + SEND_EVERY_MS - performance.now();
  if (wait > 0) {
    flushTimer ??= setTimeout(() => { flushTimer = null; flush(); }, wait);
    return;
  }
  try {
    channel.sendInput(wanted);
    sent = wanted;
    lastSentAt = performance.now();
  } catch {
    // Not connected right now: the wanted direction goes out on the next change.
  }
}

// ---- helpers -------------------------------------------------------------------------

function round(v) { return Math.round(v * 100) / 100; }

function setState(text) { ui.state.textContent = text; }

function showMessage(text) { ui.message.textContent = text; ui.message.hidden = false; }

function hideMessage() { ui.message.hidden = true; }

function showToast(text) {
  ui.toast.textContent = text;
  ui.toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { ui.toast.hidden = true; }, TOAST_MS);
}

function randomName() {
  const animals = ['otter', 'lynx', 'heron', 'ibex', 'puffin', 'gecko', 'marten', 'wren'];
  const animal = animals[Math.floor(Math.random() * animals.length)];
  return `${animal}-${Math.floor(100 + Math.random() * 900)}`;
}

requestAnimationFrame(frame);
start();
