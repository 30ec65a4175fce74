// The game's messages on a real cluster: the arena tells a joining client which player is
// its own, after the State of the join, and tells everyone who scored, after the patch
// that shows the score (PROTOCOL.md §6 Message, §13).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { decode } from '@msgpack/msgpack';

import { Client } from '../src/index.js';
import { startCluster } from './cluster.js';
import { collectCoin, player, whenever, within, yourPlayer } from './util.js';

let cluster;
before(async () => {
  cluster = await startCluster();
});
after(() => cluster?.stop());

test('a client that joins arena is told its own player, after the State of the join', async () => {
  const client = await within('connect', Client.connect({ url: cluster.frontUrls[0] }));
  assert.equal(client.resumed, false, 'a fresh connection is a new session');
  // One listener from before the State, one added after the join resolved.
  const joining = client.join('arena', { name: 'mia' });
  const events = [];
  const channel = client.channel('arena');
  channel.on('state', ({ tick }) => events.push({ event: 'state', tick }));
  channel.on('message', (data, info) => {
    const named = data?.you ? channel.mirror.entities.get(data.you.player) : undefined;
    events.push({ event: 'message', data, tick: info.tick, bytes: info.bytes, mirrorTick: channel.tick, named: named && { kind: named.kind, name: named.fields.name } });
  });
  const arena = await within('join', joining);
  const id = await yourPlayer(arena);

  assert.equal(id, player(arena, 'mia')?.id, 'the id is that of the player named as joined');
  const [first, second] = events;
  assert.equal(first.event, 'state', JSON.stringify(events));
  assert.equal(second.event, 'message', 'the message came after the State');
  assert.deepEqual(second.data, { you: { player: id } });
  assert.deepEqual(second.named, { kind: 'player', name: 'mia' }, 'the mirror held the player when the message came');
  assert.equal(second.tick, first.tick, 'sent during the tick of the join');
  assert.equal(second.mirrorTick, first.tick);
  assert.deepEqual(decode(second.bytes), second.data, '`bytes` are the message\'s MessagePack');
  await client.close();
});

test('everyone in arena hears who scored, after the patch that shows the score', async () => {
  const scorer = await within('scorer connects', Client.connect({ url: cluster.frontUrls[0] }));
  const watcher = await within('watcher connects', Client.connect({ url: cluster.frontUrls[1] }));
  const arena = await within('scorer joins', scorer.join('arena', { name: 'kit' }));
  const id = await yourPlayer(arena);
  const seen = await within('watcher joins', watcher.join('arena', { name: 'lou' }));
  const heard = [];
  seen.on('message', (data, info) => {
    if (data?.scored?.player === id) heard.push({ data, tick: info.tick, mirrorTick: seen.tick, score: seen.mirror.entities.get(id)?.fields.score });
  });

  const scored = await collectCoin(arena, id);
  assert.deepEqual(scored.data, { scored: { player: id, score: 1 } });
  assert.equal(scored.score, 1, 'the scorer\'s mirror shows the score');
  assert.equal(scored.tick, scored.info.tick, 'and is at the message\'s tick');
  await whenever('the watcher hears it', seen, 'message', () => heard.length > 0);
  assert.deepEqual(heard[0], { data: scored.data, tick: scored.info.tick, mirrorTick: scored.info.tick, score: 1 });
  assert.equal(player(seen, 'kit')?.id, id);
  await Promise.all([scorer.close(), watcher.close()]);
});
