// Rooms without a cluster: a tiny HTTP server plays the master's matchmaker (and its
// gate) and the scripted front (test/scripted.js) plays the front. The requests the SDK
// makes, the seat in the Join and again in the rejoin after a reconnect, the server's
// error codes, unreadable answers as `matchmake_failed`, a rejected seat's reason code,
// and a disposed room's `left`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { decode } from '@msgpack/msgpack';

import { CentrumError, Client, Matchmaker } from '../src/index.js';
import { ScriptedFront, state, welcome } from './scripted.js';
import { within } from './util.js';

const ROOM = 'match.k3x9q2m7p4za.back-1';
const SEAT = 'seat-token-1';
const RESERVATION = { room: ROOM, type: 'match', front: 'ws://front-of-the-seat', seat: SEAT, expires_in_ms: 10_000 };
const LISTING = [{ id: ROOM, type: 'match', clients: 1, max: 2, metadata: { mode: 'duel' }, locked: false }];

/** The fake master: what it was asked, and what it answers next. */
const asked = [];
let answer = () => ({ status: 200, body: RESERVATION });
let master;
let origin;

before(async () => {
  master = createServer((req, res) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => (text += chunk));
    req.on('end', () => {
      asked.push({ method: req.method, url: req.url, type: req.headers['content-type'], body: text === '' ? undefined : JSON.parse(text) });
      const { status, body, headers = {}, raw } = answer(req);
      res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
      res.end(raw ?? JSON.stringify(body));
    });
  });
  await new Promise((resolve) => master.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${master.address().port}`;
});
after(() => {
  master.closeAllConnections();
  return new Promise((resolve) => master.close(resolve));
});

/** What the fake master was asked since the last call. */
function requests() {
  return asked.splice(0);
}

test('the matchmaker posts JSON to the three reservation paths and reads the seat', async () => {
  requests();
  answer = () => ({ status: 200, body: RESERVATION });
  const matchmaker = new Matchmaker(`${origin}/`);
  assert.equal(matchmaker.master, origin, 'without the trailing slash');
  const seat = { room: ROOM, type: 'match', front: 'ws://front-of-the-seat', seat: SEAT, expiresInMs: 10_000 };
  assert.deepEqual(await matchmaker.joinOrCreate('match', { options: { mode: 'duel' }, filter: { mode: 'duel' } }), seat);
  assert.deepEqual(await matchmaker.joinOrCreate('match'), seat);
  assert.deepEqual(await matchmaker.create('match', { options: 3 }), seat);
  assert.deepEqual(await matchmaker.joinById(ROOM), seat);
  const json = 'application/json';
  assert.deepEqual(requests(), [
    { method: 'POST', url: '/v1/rooms/match/join-or-create', type: json, body: { options: { mode: 'duel' }, filter: { mode: 'duel' } } },
    { method: 'POST', url: '/v1/rooms/match/join-or-create', type: json, body: { options: null } },
    { method: 'POST', url: '/v1/rooms/match/create', type: json, body: { options: 3 } },
    { method: 'POST', url: `/v1/rooms/${ROOM}/join`, type: json, body: {} },
  ]);
  // Path segments are escaped: a type cannot reach another route.
  await matchmaker.create('a/b?c');
  assert.equal(requests()[0].url, '/v1/rooms/a%2Fb%3Fc/create');
});

test('the listing, of one type or of all', async () => {
  requests();
  answer = () => ({ status: 200, body: LISTING });
  assert.deepEqual(await Client.getAvailableRooms(origin, 'match'), LISTING);
  assert.deepEqual(await new Matchmaker(origin).rooms(), LISTING);
  assert.deepEqual(requests().map((r) => [r.method, r.url, r.body]), [['GET', '/v1/rooms?type=match', undefined], ['GET', '/v1/rooms', undefined]]);
  answer = () => ({ status: 200, body: [{ id: ROOM }] });
  await assert.rejects(Client.getAvailableRooms(origin, 'match'), (err) => err.code === 'matchmake_failed' && /room 0/.test(err.message));
  answer = () => ({ status: 200, body: { rooms: [] } });
  await assert.rejects(Client.getAvailableRooms(origin), (err) => err.code === 'matchmake_failed');
});

test('the server\'s refusals keep their code, message and status; a 429 its Retry-After', async () => {
  const refusals = [
    [404, 'unknown_type', 'no back offers room type "nope"'],
    [409, 'room_full', 'room match.x.back-1 is full (2 of 2)'],
    [503, 'no_capacity', 'every back offering "match" is at max_rooms'],
    [400, 'bad_options', 'the game refused the options: expected a map'],
  ];
  for (const [status, error, message] of refusals) {
    answer = () => ({ status, body: { error, message } });
    const err = await new Matchmaker(origin).joinById(ROOM).then(() => null, (e) => e);
    assert.ok(err instanceof CentrumError, String(err));
    assert.deepEqual([err.code, err.message, err.status, err.fatal, err.retryAfterMs], [error, message, status, false, undefined]);
  }
  answer = () => ({ status: 429, body: { error: 'rate_limited', message: 'too many rooms created from 127.0.0.1' }, headers: { 'Retry-After': '3' } });
  const limited = await new Matchmaker(origin).create('match').then(() => null, (e) => e);
  assert.deepEqual([limited.code, limited.status, limited.retryAfterMs], ['rate_limited', 429, 3000]);
});

test('what the SDK cannot read, and a master it cannot reach, are matchmake_failed', async () => {
  const broken = [
    () => ({ status: 200, raw: '<html>not json</html>' }),
    () => ({ status: 502, raw: 'Bad Gateway' }),
    () => ({ status: 500, body: { oops: true } }),
    () => ({ status: 200, body: { room: ROOM, front: 'ws://f' } }),
  ];
  for (const reply of broken) {
    answer = reply;
    await assert.rejects(new Matchmaker(origin).joinOrCreate('match'), (err) => err instanceof CentrumError && err.code === 'matchmake_failed', String(reply));
  }
  await assert.rejects(new Matchmaker('http://127.0.0.1:9').joinOrCreate('match'), (err) => err.code === 'matchmake_failed' && /cannot reach/.test(err.message));
  // A master that never answers: the request's timeout.
  const silent = createServer(() => {});
  await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve));
  try {
    const err = await within('the timeout', new Matchmaker(`http://127.0.0.1:${silent.address().port}`, { timeoutMs: 200 }).rooms().then(() => null, (e) => e), 5_000);
    assert.equal(err?.code, 'matchmake_failed');
    assert.match(err.message, /no answer within 200 ms/);
  } finally {
    silent.closeAllConnections();
    await new Promise((resolve) => silent.close(resolve));
  }
});

test('Client.joinOrCreate dials the seat\'s front, joins with the seat, and rejoins with it after a reconnect', async () => {
  requests();
  answer = () => ({ status: 200, body: RESERVATION });
  const front = new ScriptedFront();
  const seating = Client.joinOrCreate(origin, 'match', { options: { mode: 'duel' }, data: { name: 'ana' }, WebSocket: front.WebSocket });
  const socket = await within('the client opens a socket', front.nextSocket());
  assert.equal(socket.url, 'ws://front-of-the-seat');
  assert.deepEqual(await within('Hello', socket.nextFrame()), [0, [2, '', null]]);
  socket.deliver(welcome('front-1-7', 'token-1'));
  const [type, [room, data, seat]] = await within('Join', socket.nextFrame());
  assert.deepEqual([type, room, decode(data), seat], [1, ROOM, { name: 'ana' }, SEAT]);
  socket.deliver(state(ROOM, 10, 0));
  const { client, channel } = await within('seated', seating);
  assert.equal(channel.name, ROOM);
  assert.equal(channel.state, 'joined');
  assert.deepEqual(requests().map((r) => [r.url, r.body]), [['/v1/rooms/match/join-or-create', { options: { mode: 'duel' } }]]);

  // The connection drops: the client dials the same front and presents the seat again.
  socket.drop();
  const again = await within('the client dials again', front.nextSocket());
  assert.equal(again.url, 'ws://front-of-the-seat');
  assert.deepEqual(await within('Hello', again.nextFrame()), [0, [2, '', 'token-1']]);
  again.deliver(welcome('front-1-7', 'token-2', true));
  const [, rejoin] = await within('the room is joined again', again.nextFrame());
  assert.deepEqual([rejoin[0], decode(rejoin[1]), rejoin[2]], [ROOM, { name: 'ana' }, SEAT]);
  again.deliver(state(ROOM, 30, 0));
  assert.equal(channel.state, 'joined');

  // The room is disposed: `left` with that reason, like any other.
  const left = new Promise((resolve) => channel.on('left', resolve));
  again.deliver([4, [ROOM, 'disposed']]);
  assert.deepEqual(await within('left', left), { reason: 'disposed' });
  assert.equal(channel.state, 'out');
  assert.equal(client.channel(ROOM), undefined);
  await client.close();
});

test('a refused seat rejects `rejected` with the reason and its code, and closes the new client', async () => {
  answer = () => ({ status: 200, body: RESERVATION });
  const front = new ScriptedFront();
  const seating = Client.joinById(origin, ROOM, { WebSocket: front.WebSocket });
  const socket = await within('socket', front.nextSocket());
  await within('Hello', socket.nextFrame());
  socket.deliver(welcome('front-1-8', 'token-1'));
  const [, [, data, seat]] = await within('Join', socket.nextFrame());
  assert.deepEqual([data.length, seat], [0, SEAT], 'no join data: empty bin');
  socket.deliver([3, [ROOM, 'seat_expired: the seat expired 2 s ago']]);
  const err = await within('refused', seating.then(() => null, (e) => e));
  assert.ok(err instanceof CentrumError);
  assert.deepEqual([err.code, err.reason, err.message], ['rejected', 'seat_expired', 'seat_expired: the seat expired 2 s ago']);
  assert.equal(socket.readyState, 3, 'the client it opened is closed');
});

test('instance methods reserve through the gate\'s master and join on the same connection', async () => {
  requests();
  const front = new ScriptedFront();
  answer = (req) => (req.url.startsWith('/gate') ? { status: 200, body: { url: 'ws://gated', front: 'front-1', channel: 'arena' } } : { status: 200, body: RESERVATION });
  const connecting = Client.connect({ gate: origin, channel: 'arena' }, { WebSocket: front.WebSocket, reconnect: false });
  const socket = await within('socket', front.nextSocket());
  assert.equal(socket.url, 'ws://gated');
  await within('Hello', socket.nextFrame());
  socket.deliver(welcome('front-1-9', 'token-1'));
  const client = await within('welcome', connecting);
  for (const [call, path, body] of [
    [() => client.create('match', { options: 1, data: 'x' }), '/v1/rooms/match/create', { options: 1 }],
    [() => client.joinById(ROOM, { data: 'x' }), `/v1/rooms/${ROOM}/join`, {}],
    [() => client.joinOrCreate('match', { filter: { mode: 'duel' }, data: 'x' }), '/v1/rooms/match/join-or-create', { options: null, filter: { mode: 'duel' } }],
  ]) {
    requests();
    const joining = call();
    const [, [room, data, seat]] = await within('Join', socket.nextFrame());
    assert.deepEqual([room, decode(data), seat], [ROOM, 'x', SEAT]);
    socket.deliver(state(ROOM, 10, 0));
    const channel = await within('joined', joining);
    assert.equal(channel.state, 'joined');
    assert.deepEqual(requests().map((r) => [r.url, r.body]), [[path, body]]);
    const leaving = channel.leave();
    await within('Leave', socket.nextFrame());
    socket.deliver([4, [ROOM, 'left']]);
    await within('left', leaving);
  }
  answer = () => ({ status: 200, body: LISTING });
  assert.deepEqual(await client.getAvailableRooms('match'), LISTING);
  // A refusal of the matchmaker sends nothing to the front.
  answer = () => ({ status: 409, body: { error: 'room_locked', message: 'the room is locked' } });
  await assert.rejects(client.joinById(ROOM), (err) => err.code === 'room_locked');
  await client.close();

  // A client made with a bare URL knows no master.
  const direct = new ScriptedFront();
  const connectingDirect = Client.connect({ url: 'ws://direct' }, { WebSocket: direct.WebSocket, reconnect: false });
  const directSocket = await within('socket', direct.nextSocket());
  await within('Hello', directSocket.nextFrame());
  directSocket.deliver(welcome('front-1-10', 'token-1'));
  const bare = await within('welcome', connectingDirect);
  await assert.rejects(bare.joinOrCreate('match'), TypeError);
  await assert.rejects(bare.getAvailableRooms(), TypeError);
  await bare.close();
});
