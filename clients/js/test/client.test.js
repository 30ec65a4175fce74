// The SDK against a real cluster: the gate, joins, two clients seeing each other, acks,
// ping, refusals and misuse.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { CentrumError, Client } from '../src/index.js';
import { startCluster } from './cluster.js';
import { player, whenever, within } from './util.js';

let cluster;
before(async () => {
  cluster = await startCluster();
});
after(() => cluster?.stop());

test('two clients, one through the gate and one direct, see each other move', async () => {
  const ana = await within('ana connects through the gate', Client.connect({ gate: cluster.masterHttp, channel: 'arena' }));
  const bob = await within('bob connects directly', Client.connect({ url: cluster.frontUrls[1] }));
  assert.match(ana.session, /^front-\d-\d+$/);
  assert.equal(bob.front, 'front-2');
  const anaArena = await within('ana joins', ana.join('arena', { name: 'ana' }));
  const bobArena = await within('bob joins', bob.join('arena', { name: 'bob' }));
  assert.equal(anaArena.state, 'joined');
  assert.ok(player(bobArena, 'bob'), 'a join State holds the joiner');
  await whenever('ana sees bob', anaArena, 'added', () => player(anaArena, 'bob'));

  const from = player(anaArena, 'bob').fields.x;
  const direction = from < 32 ? 1 : -1;
  const seq = bobArena.sendInput({ dx: direction, dy: 0 });
  assert.equal(seq, 1);
  await whenever('bob\'s input is acked', bobArena, 'patch', () => bobArena.ack === seq);
  await whenever('ana sees bob move 1 unit', anaArena, 'changed', () => direction * (player(anaArena, 'bob').fields.x - from) >= 1);
  bobArena.sendInput({ dx: 0, dy: 0 });

  const rtt = await within('ping', ana.ping());
  assert.ok(Number.isFinite(rtt) && rtt >= 0, `${rtt}`);

  const left = new Promise((resolve) => bobArena.on('left', resolve));
  await within('bob leaves', bobArena.leave());
  assert.deepEqual(await left, { reason: 'left' });
  await whenever('ana sees bob go', anaArena, 'removed', () => !player(anaArena, 'bob'));
  assert.throws(() => bobArena.sendInput({ dx: 1, dy: 0 }), (err) => err.code === 'not_joined');
  await Promise.all([ana.close(), bob.close()]);
  assert.throws(() => anaArena.sendInput({ dx: 1, dy: 0 }), (err) => err.code === 'not_joined');
  await assert.rejects(ana.ping(), (err) => err.code === 'not_connected');
});

test('refusals and misuse are CentrumErrors that say what went wrong', async () => {
  const client = await within('connect', Client.connect({ url: cluster.frontUrls[0] }));
  await assert.rejects(client.join('arena', 42), (err) => {
    assert.ok(err instanceof CentrumError);
    assert.equal(err.code, 'rejected');
    // The game's reason, whose wording is the game's: it names the join data.
    assert.match(err.message, /join data/);
    return true;
  });
  await assert.rejects(client.join('nowhere'), (err) => err.code === 'rejected' && /unknown channel/.test(err.message));
  const arena = await within('join', client.join('arena', { name: 'cy' }));
  await assert.rejects(client.join('arena'), (err) => err.code === 'already_joined');
  const refused = new Promise((resolve) => client.once('error', resolve));
  arena.sendInput('not a direction');
  const err = await within('input_refused', refused);
  assert.equal(err.code, 'input_refused');
  assert.equal(err.fatal, false);
  await client.close();

  await assert.rejects(Client.connect({ gate: cluster.masterHttp, channel: 'nowhere' }), (e) => e.code === 'gate_failed' && /unknown channel/.test(e.message));
  await assert.rejects(Client.connect({ url: 'ws://127.0.0.1:9' }), (e) => e.code === 'connect_failed');
  await assert.rejects(Client.connect({}), TypeError);
});
