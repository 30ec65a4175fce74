// The arena demo: joins the arena through the SDK, steers the player from the keyboard,
// the mouse or a finger, and draws every player and coin. Positions arrive once per tick;
// the page draws them INTERPOLATION_MS in the past, between the two samples around that
// moment, so motion is smooth at any frame rate. The game's messages say which player is
// this tab's (`you`) and who scored (`scored`, shown as a toast). A lobby lists the rooms
// of type `match` (the arena in rooms made on demand) and joins one through the master's
// matchmaker; the page then plays that room instead of the channel before it.
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
/** The room type the lobby lists and makes (the embedded config offers it on back-1). */
const ROOM_TYPE = 'match';
/** How often the lobby asks the master for its rooms. */
const LOBBY_EVERY_MS = 1000;

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
  room: document.querySelector('[data-testid=room]'),
  lobby: document.querySelector('[data-testid=lobby]'),
  rooms: document.querySelector('[data-testid=rooms]'),
  roomsNote: document.querySelector('[data-testid=rooms-note]'),
  quickPlay: document.querySelector('[data-testid=quick-play]'),
  newRoom: document.querySelector('[data-testid=new-room]'),
  toArena: document.querySelector('[data-testid=to-arena]'),
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
let client = null;
/** The channel this tab plays: the static one, or a room. */
let channel = null;
/** Whether `channel` is a room (made by the matchmaker) rather than the static channel. */
let inRoom = false;
/** Unsubscribes the listeners on `channel`. */
let unlisten = [];
/** A join in progress from the lobby: its buttons wait. */
let entering = false;
/** This tab's player's entity id, from the game's `you` message; null until it arrives. */
let myId = null;
let toastTimer = null;
let lastPatchAt = 0;
let tickPeriod = 50; // ms, measured from patch arrivals

// ---- connection ----------------------------------------------------------------------

async function start() {
  setState('connecting');
  const room = params.get('room');
  try {
    if (!client) {
      const connecting = await Client.connect({ gate: location.origin, channel: channelName });
      client = connecting;
      watch(connecting);
    }
    if (room) await enter(() => client.joinById(room, { data: { name: myName } }), true);
    else await enter(() => client.join(channelName, { name: myName }), false);
  } catch (err) {
    setState('error');
    showMessage(`Cannot join ${room ?? channelName}: ${err.message}`);
    // A room that is gone stays gone: play the channel instead.
    if (room && ['no_such_room', 'room_full', 'room_locked', 'unknown_type', 'rejected'].includes(err.code)) setRoomParam(null);
    // The cluster may still be starting: try again a little later.
    setTimeout(start, 2000);
    return;
  }
  pingEvery(client, 1000);
  refreshRooms();
}

/**
 * Joins a channel with `join` (the static one, or a room through the matchmaker) and plays
 * it; then leaves the one played before, so a refused join leaves the tab where it was.
 */
async function enter(join, room) {
  const next = await join();
  // Right after the join: the SDK holds what followed the join's State until now, so the
  // `you` message that came with it is not missed.
  const previous = channel;
  play(next, room);
  if (previous && previous !== next && previous.state !== 'out') {
    previous.leave().catch(() => {
      // Not connected: the reconnect's rejoin brings it back, and the next switch leaves it.
    });
  }
}

/** Draws and steers `next` from now on. */
function play(next, room) {
  for (const off of unlisten) off();
  channel = next;
  inRoom = room;
  tracks.clear();
  wanted = { dx: 0, dy: 0 };
  sent = { dx: 0, dy: 0 };
  setMe(null);
  unlisten = [
    next.on('message', onGameMessage),
    next.on('unavailable', () => { setState('waiting'); showMessage('The game server is restarting…'); }),
    next.on('state', () => { hideMessage(); setState('playing'); sync(true); }),
    next.on('patch', () => sync(false)),
    next.on('left', ({ reason }) => onLeft(next, reason)),
  ];
  ui.room.textContent = room ? `room ${shortRoom(next.name)}` : next.name;
  ui.room.title = next.name;
  if (room) ui.room.dataset.room = next.name;
  else delete ui.room.dataset.room;
  ui.toArena.hidden = !room;
  setRoomParam(room ? next.name : null);
  hideMessage();
  setState('playing');
  sync(true);
  showRooms(lastRooms);
}

/** The channel played ended without the tab leaving it: a room back to the arena. */
function onLeft(left, reason) {
  if (left !== channel || client.state === 'closed') return;
  channel = null;
  if (inRoom) {
    showToast(reason === 'disposed' ? 'The room closed' : `Out of the room: ${reason}`);
    lobbyJoin(() => client.join(channelName, { name: myName }), false);
  } else {
    setState('out');
    showMessage(`Out of ${left.name}: ${reason}`);
  }
}

/** The client's events, once: they outlive every channel it plays. */
function watch(client) {
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

// ---- lobby ---------------------------------------------------------------------------

/** The latest listing, to redraw when the tab changes rooms. */
let lastRooms = [];
/** Room id -> its list item, kept across refreshes so a button is not replaced under a click. */
const roomItems = new Map();

/** Asks the master for the rooms every LOBBY_EVERY_MS, one request at a time. */
async function refreshRooms() {
  try {
    lastRooms = await Client.getAvailableRooms(location.origin, ROOM_TYPE);
    showRooms(lastRooms);
  } catch (err) {
    ui.roomsNote.textContent = `No rooms here: ${err.message}`;
    ui.roomsNote.hidden = false;
  }
  setTimeout(refreshRooms, LOBBY_EVERY_MS);
}

function showRooms(rooms) {
  const busy = !client || entering;
  ui.quickPlay.disabled = busy;
  ui.newRoom.disabled = busy;
  ui.toArena.disabled = busy;
  const here = inRoom ? channel?.name : undefined;
  const seen = new Set();
  for (const room of rooms) {
    seen.add(room.id);
    let item = roomItems.get(room.id);
    if (!item) {
      item = document.createElement('li');
      item.dataset.room = room.id;
      item.title = room.id;
      const name = document.createElement('span');
      name.className = 'name';
      const count = document.createElement('span');
      count.className = 'count';
      const join = document.createElement('button');
      join.type = 'button';
      join.dataset.testid = 'join-room';
      join.addEventListener('click', () => lobbyJoin(() => client.joinById(room.id, { data: { name: myName } }), true));
      item.append(name, count, join);
      roomItems.set(room.id, item);
    }
    const [name, count, join] = item.children;
    // The arena lists the label of its creation options.
    const label = typeof room.metadata?.label === 'string' ? room.metadata.label : '';
    name.textContent = label ? `${shortRoom(room.id)} ${label}` : shortRoom(room.id);
    count.textContent = `${room.clients}/${room.max}${room.locked ? ' · locked' : ''}`;
    item.dataset.clients = String(room.clients);
    item.dataset.max = String(room.max);
    item.dataset.locked = String(room.locked);
    item.classList.toggle('here', room.id === here);
    join.textContent = room.id === here ? 'Here' : 'Join';
    join.disabled = busy || room.id === here || room.locked || room.clients >= room.max;
  }
  for (const [id, item] of roomItems) {
    if (!seen.has(id)) {
      item.remove();
      roomItems.delete(id);
    }
  }
  // In the listing's order; moving an item that is in place already does nothing.
  rooms.forEach((room, i) => {
    const item = roomItems.get(room.id);
    if (ui.rooms.children[i] !== item) ui.rooms.insertBefore(item, ui.rooms.children[i] ?? null);
  });
  ui.roomsNote.textContent = 'No rooms yet.';
  ui.roomsNote.hidden = rooms.length > 0;
}

/** A lobby button: joins with `join`, tells what went wrong, and keeps the lobby current. */
async function lobbyJoin(join, room) {
  if (!client || entering) return;
  entering = true;
  showRooms(lastRooms);
  try {
    await enter(join, room);
  } catch (err) {
    showToast(`Cannot join: ${err.message}`);
  } finally {
    entering = false;
    showRooms(lastRooms);
  }
}

ui.quickPlay.addEventListener('click', () => lobbyJoin(() => client.joinOrCreate(ROOM_TYPE, { data: { name: myName } }), true));
ui.newRoom.addEventListener('click', () => lobbyJoin(() => client.create(ROOM_TYPE, { data: { name: myName } }), true));
ui.toArena.addEventListener('click', () => lobbyJoin(() => client.join(channelName, { name: myName }), false));

/** `match.k3x9q2m7p4za.back-1` -> `k3x9q2`: enough to tell rooms apart on the page. */
function shortRoom(id) {
  const parts = id.split('.');
  return parts.length >= 3 ? parts[1].slice(0, 6) : id;
}

/** Keeps the room in the address (`?room=`), so a reload or a shared link joins it again. */
function setRoomParam(room) {
  const url = new URL(location.href);
  if (room) url.searchParams.set('room', room);
  else url.searchParams.delete('room');
  if (room) params.set('room', room);
  else params.delete('room');
  history.replaceState(null, '', url);
}

// ---- ping ----------------------------------------------------------------------------

let pinging = false;

function pingEvery(client, ms) {
  if (pinging) return;
  pinging = true;
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
