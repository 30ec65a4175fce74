// Rooms against a real cluster whose back offers rooms of type `match` (the arena, two
// clients at most) and `brief` (disposed one second after it empties), with seats that
// lapse after SEAT_TTL_MS: joinOrCreate fills a room and then opens another, a filter on
// the rooms' metadata, create and the listing, joinById and its refusals, the seats a back refuses, a room client that
// resumes after its connection breaks (its seat expired by then), and a disposed room
// leaving the listing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { CentrumError, Client, Matchmaker } from '../src/index.js';
import { startCluster } from './cluster.js';
import { pausableProxy } from './proxy.js';
import { player, whenever, within } from './util.js';

const ROOMS = [
  { type: 'match', app: 'arena', max_clients: 2 },
  { type: 'brief', app: 'arena', max_clients: 4, empty_dispose_s: 1 },
];
const ROOM_ID = /^match\.[a-z2-7]{12}\.back-1$/;
/** Long enough for a join on a busy machine, short enough to wait out in a test. */
const SEAT_TTL_MS = 2_000;

let cluster;
let master;
/** Every client a test made, closed after it whatever happened. */
const clients = [];

before(async () => {
  cluster = await startCluster({ rooms: ROOMS, matchmaker: { seat_ttl_ms: SEAT_TTL_MS } });
  master = cluster.masterHttp;
});
after(() => cluster?.stop());

/** Keeps `client` to close after the test; returns it. */
function keep(client) {
  clients.push(client);
  return client;
}

async function closeAll() {
  await Promise.all(clients.splice(0).map((c) => c.close()));
}

/** The listing's entry for `id`. */
async function listed(id, type = 'match') {
  return (await within('the listing', Client.getAvailableRooms(master, type))).find((room) => room.id === id);
}

/**
 * The listing's entry for `id` once `check` holds for it (undefined: not listed). Backs
 * report their rooms' members periodically, so the listing catches up within a report.
 */
async function listedAs(what, id, check, type = 'match') {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const entry = await listed(id, type);
    if (check(entry)) return entry;
    if (Date.now() > deadline) assert.fail(`the listing never showed ${what}: ${JSON.stringify(entry)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Resolves with what `promise` rejected with; fails if it resolved. */
async function refusal(what, promise) {
  const err = await within(what, promise.then(() => null, (e) => e));
  assert.ok(err instanceof CentrumError, `${what}: expected a CentrumError, got ${err}`);
  return err;
}

// First: the cluster has no rooms yet, so joinOrCreate's choice is known.
test('joinOrCreate twice fills one room of two, and a third client gets a new room', async (t) => {
  t.after(closeAll);
  const ana = await within('ana: joinOrCreate', Client.joinOrCreate(master, 'match', { data: { name: 'ana' } }));
  keep(ana.client);
  const room = ana.channel.name;
  assert.match(room, ROOM_ID);
  assert.equal(ana.channel.state, 'joined');
  assert.ok(player(ana.channel, 'ana'), 'the room plays the arena');

  // Bob is connected already (through the gate, for the static arena) and joins on that connection.
  const bobClient = keep(await within('bob connects', Client.connect({ gate: master, channel: 'arena' })));
  const bob = await within('bob: joinOrCreate', bobClient.joinOrCreate('match', { data: { name: 'bob' } }));
  assert.equal(bob.name, room, 'the open room');
  await whenever('ana sees bob', ana.channel, 'added', () => player(ana.channel, 'bob'));
  assert.ok(player(bob, 'ana'));

  const cy = await within('cy: joinOrCreate', Client.joinOrCreate(master, 'match', { data: { name: 'cy' } }));
  keep(cy.client);
  assert.match(cy.channel.name, ROOM_ID);
  assert.notEqual(cy.channel.name, room, 'the full room is not offered');
  assert.equal(player(cy.channel, 'ana'), undefined);

  assert.deepEqual(await listedAs('ana and bob', room, (r) => r?.clients === 2), { id: room, type: 'match', clients: 2, max: 2, metadata: { label: '' }, locked: false });
  await listedAs('cy', cy.channel.name, (r) => r?.clients === 1);
  const all = await within('all types', Client.getAvailableRooms(master));
  assert.ok(all.some((r) => r.id === room) && all.every((r) => r.type === 'match' || r.type === 'brief'));
});

test('joinOrCreate with a filter joins only a room whose metadata matches; options the game refuses are bad_options', async (t) => {
  t.after(closeAll);
  // The arena lists the label of its creation options as its metadata.
  const duel = { options: { label: 'duel' }, filter: { label: 'duel' } };
  const kay = await within('kay: joinOrCreate a duel', Client.joinOrCreate(master, 'match', { ...duel, data: { name: 'kay' } }));
  keep(kay.client);
  await listedAs('a new room labelled duel', kay.channel.name, (r) => r?.clients === 1 && r.metadata?.label === 'duel');
  const lee = await within('lee: joinOrCreate a duel', Client.joinOrCreate(master, 'match', { ...duel, data: { name: 'lee' } }));
  keep(lee.client);
  assert.equal(lee.channel.name, kay.channel.name, 'the room labelled duel');
  const bad = await refusal('options that are not the arena\'s', Client.create(master, 'match', { options: 5 }));
  assert.deepEqual([bad.code, bad.status], ['bad_options', 400]);
});

test('create always makes a room, the listing shows it, joinById joins it until it is full', async (t) => {
  t.after(closeAll);
  const dee = await within('dee: create', Client.create(master, 'match', { data: { name: 'dee' } }));
  keep(dee.client);
  // The same client creates a second room and plays in both.
  const second = await within('dee: create again', dee.client.create('match', { data: { name: 'dee-2' } }));
  assert.notEqual(second.name, dee.channel.name);
  await listedAs('dee', dee.channel.name, (r) => r?.clients === 1);
  await listedAs('dee', second.name, (r) => r?.clients === 1);

  const eve = await within('eve: joinById', Client.joinById(master, dee.channel.name, { data: { name: 'eve' } }));
  keep(eve.client);
  assert.equal(eve.channel.name, dee.channel.name);
  assert.ok(player(eve.channel, 'dee'), 'eve sees dee');
  await listedAs('dee and eve', dee.channel.name, (r) => r?.clients === 2);

  const full = await refusal('joinById of a full room', Client.joinById(master, dee.channel.name, { data: { name: 'fay' } }));
  assert.deepEqual([full.code, full.status], ['room_full', 409]);
  const gone = await refusal('joinById of no room', Client.joinById(master, 'match.aaaaaaaaaaaa.back-1'));
  assert.deepEqual([gone.code, gone.status], ['no_such_room', 404]);
  const unknown = await refusal('a type nobody offers', Client.create(master, 'nope'));
  assert.deepEqual([unknown.code, unknown.status], ['unknown_type', 404]);
});

test('a back refuses a join without the room\'s seat, a forged one, another room\'s, and a used one', async (t) => {
  t.after(closeAll);
  const matchmaker = new Matchmaker(master);
  const seat = await within('reserve a seat', matchmaker.create('match'));
  const other = await within('reserve a seat in another room', matchmaker.create('match'));
  assert.notEqual(seat.room, other.room);
  const client = keep(await within('connect', Client.connect({ url: seat.front })));
  const refused = async (what, options) => {
    const err = await refusal(what, client.join(seat.room, { name: 'gil' }, options));
    assert.equal(err.code, 'rejected');
    return err.reason;
  };
  assert.equal(await refused('no seat'), 'seat_required');
  assert.equal(await refused('a forged seat', { seat: forge(seat.seat) }), 'seat_invalid');
  assert.equal(await refused('another room\'s seat', { seat: other.seat }), 'seat_invalid');
  const room = await within('the real seat', client.join(seat.room, { name: 'gil' }, { seat: seat.seat }));
  assert.ok(player(room, 'gil'));
  const thief = keep(await within('connect', Client.connect({ url: cluster.frontUrls[1] })));
  const used = await refusal('a used seat', thief.join(seat.room, { name: 'hal' }, { seat: seat.seat }));
  assert.deepEqual([used.code, used.reason], ['rejected', 'seat_used']);
});

test('a room client whose connection breaks resumes with its expired seat; an expired seat alone is refused', async (t) => {
  const proxy = await pausableProxy(Number(new URL(cluster.frontUrls[0]).port));
  t.after(() => proxy.close());
  t.after(closeAll);
  const client = keep(await within('connect', Client.connect({ url: proxy.url, master })));
  const room = await within('create', client.create('match', { data: { name: 'ivy' } }));
  // The room's other seat, reserved and never used.
  const spare = await within('reserve the other seat', new Matchmaker(master).joinById(room.name));
  assert.equal(spare.expiresInMs, SEAT_TTL_MS);
  const first = room.sendInput({ dx: 0, dy: 0 });
  await whenever('the input is acked', room, 'patch', () => room.ack === first);
  const id = player(room, 'ivy').id;
  // Time is what this test is about: both seats lapse.
  await new Promise((resolve) => setTimeout(resolve, SEAT_TTL_MS + 250));

  const reconnected = new Promise((resolve) => client.once('reconnected', resolve));
  proxy.cut();
  const { resumed } = await within('reconnected', reconnected, 10_000);
  assert.equal(resumed, true);
  // The seat is used and expired: the resume claim alone gets the client back in.
  await whenever('joined again', room, 'state', () => room.state === 'joined', 10_000);
  assert.equal(player(room, 'ivy')?.id, id, 'the same player');
  assert.equal(room.ack, first, 'the same ack');

  const late = keep(await within('connect', Client.connect({ url: cluster.frontUrls[1] })));
  const expired = await refusal('an expired seat', late.join(room.name, { name: 'kit' }, { seat: spare.seat }));
  assert.deepEqual([expired.code, expired.reason], ['rejected', 'seat_expired']);
  await listedAs('ivy alone: the lapsed seat no longer counts', room.name, (r) => r?.clients === 1);
});

test('an emptied room is disposed: it leaves the listing and takes no more joins', async (t) => {
  t.after(closeAll);
  const { client, channel } = await within('create', Client.create(master, 'brief', { data: { name: 'jo' } }));
  keep(client);
  await listedAs('jo', channel.name, (r) => r?.clients === 1, 'brief');
  await within('leave', channel.leave());
  await listedAs('the room gone', channel.name, (r) => r === undefined, 'brief');
  const err = await refusal('joinById of the disposed room', client.joinById(channel.name));
  assert.equal(err.code, 'no_such_room');
});

/** `token` with one character in its middle changed. */
function forge(token) {
  const chars = [...token];
  let i = Math.floor(chars.length / 2);
  while (i < chars.length - 1 && !/[A-Za-z0-9]/.test(chars[i])) i++;
  chars[i] = chars[i] === 'A' ? 'B' : 'A';
  return chars.join('');
}
