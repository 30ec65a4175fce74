// Reconnecting: the front under a client is killed; the client dials the gate again, lands
// on a live front, resumes its session and carries on as the same player with the same
// Channel object.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { Client } from '../src/index.js';
import { startCluster } from './cluster.js';
import { player, whenever, within } from './util.js';

let cluster;
before(async () => {
  cluster = await startCluster();
});
after(() => cluster?.stop());

test('a client whose front dies reconnects through the gate and resumes as the same player', async () => {
  const client = await within('connect', Client.connect({ gate: cluster.masterHttp, channel: 'arena' }));
  // The watcher stays on the other front, so it sees the whole story.
  const other = cluster.frontUrls[client.front === 'front-1' ? 1 : 0];
  const watcher = await within('watcher connects', Client.connect({ url: other }));
  const arena = await within('join', client.join('arena', { name: 'phoenix' }));
  const seen = await within('watcher joins', watcher.join('arena', { name: 'watcher' }));
  const first = arena.sendInput({ dx: 0, dy: 0 });
  await whenever('the first input is acked', arena, 'patch', () => arena.ack === first);
  await whenever('the watcher sees phoenix', seen, 'added', () => player(seen, 'phoenix'));
  const id = player(arena, 'phoenix').id;
  const removed = [];
  seen.on('removed', (entity) => removed.push(entity.id));
  const events = [];
  client.on('reconnecting', (e) => events.push(['reconnecting', e.attempt]));
  const reconnected = new Promise((resolve) => client.on('reconnected', resolve));
  const oldSession = client.session;
  const oldFront = client.front;
  assert.notEqual(watcher.front, oldFront);
  await cluster.kill(oldFront);
  assert.equal(client.resumed, false, 'the first connection presented no token');
  const { resumed } = await within('reconnected', reconnected, 20_000);
  assert.equal(resumed, true, 'the Welcome says the session resumed');
  assert.equal(client.resumed, true);
  assert.ok(events.length >= 1 && events[0][0] === 'reconnecting', JSON.stringify(events));
  assert.equal(client.session, oldSession);
  assert.notEqual(client.front, oldFront);

  // The same Channel object, joined again, with a mirror rebuilt from the new State: the
  // same player, with the ack of the input before the drop.
  await whenever('joined again', arena, 'state', () => arena.state === 'joined', 20_000);
  assert.equal(player(arena, 'phoenix')?.id, id, 'the same player');
  assert.equal(arena.ack, first, 'the ack survives');
  assert.ok(player(arena, 'watcher'), 'and sees the others');
  const x = player(seen, 'phoenix').fields.x;
  const direction = x < 32 ? 1 : -1;
  const seq = arena.sendInput({ dx: direction, dy: 0 });
  await whenever('the input is acked', arena, 'patch', () => arena.ack === seq);
  await whenever('the watcher sees it move', seen, 'changed', () => direction * (player(seen, 'phoenix').fields.x - x) >= 1);
  assert.deepEqual(removed, [], 'the watcher never saw phoenix leave');
  await Promise.all([client.close(), watcher.close()]);
});

test('without reconnect, a dropped connection ends the client with a closed event', async () => {
  await within('the killed front is back', cluster.ready(), 30_000);
  const client = await within('connect', Client.connect({ url: cluster.frontUrls[0] }, { reconnect: false }));
  const arena = await within('join', client.join('arena', { name: 'mayfly' }));
  const closed = new Promise((resolve) => client.on('closed', resolve));
  const left = new Promise((resolve) => arena.on('left', resolve));
  await cluster.kill(client.front);
  const { reason } = await within('closed', closed, 20_000);
  assert.match(reason, /closed/);
  await within('left', left);
  assert.equal(client.state, 'closed');
  assert.throws(() => arena.sendInput({ dx: 1, dy: 0 }), (err) => err.code === 'not_joined');
});
