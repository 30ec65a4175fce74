// A front that falls silent: the connection stays open but carries nothing (a paused
// proxy between client and front). The client pings, hears nothing, drops the
// connection, reconnects and resumes as the same player with its ack.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { Client } from '../src/index.js';
import { startCluster } from './cluster.js';
import { pausableProxy } from './proxy.js';
import { player, whenever, within } from './util.js';

let cluster;
let proxy;
before(async () => {
  cluster = await startCluster();
  proxy = await pausableProxy(Number(new URL(cluster.frontUrls[0]).port));
});
after(() => {
  proxy?.close();
  return cluster?.stop();
});

test('a client whose front falls silent reconnects and resumes within ping + silence timeout', async () => {
  const options = { pingAfterMs: 300, silenceTimeoutMs: 700 };
  const client = await within('connect', Client.connect({ url: proxy.url }, options));
  const arena = await within('join', client.join('arena', { name: 'hush' }));
  const first = arena.sendInput({ dx: 0, dy: 0 });
  await whenever('the first input is acked', arena, 'patch', () => arena.ack === first);
  const id = player(arena, 'hush').id;
  // Quiet for longer than the ping interval: the probes are answered, nothing happens.
  const errors = [];
  client.on('error', (err) => errors.push(err.code));
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  assert.equal(client.state, 'open');
  assert.deepEqual(errors, []);

  const reconnecting = new Promise((resolve) => client.once('reconnecting', () => resolve(performance.now())));
  const reconnected = new Promise((resolve) => client.once('reconnected', resolve));
  const session = client.session;
  const pausedAt = performance.now();
  proxy.pause();
  const detectedMs = (await within('the silence is noticed', reconnecting, 5_000)) - pausedAt;
  // At most ping + silence after the last thing heard, which was before the pause; the
  // margin is for timers that run late on a loaded machine (CI runs the browser tests
  // beside this one), still far below the front's own 15 s client timeout.
  assert.ok(detectedMs <= 1_000 + 1_000, `noticed after ${Math.round(detectedMs)} ms`);
  assert.deepEqual(errors, ['silent']);
  const { resumed } = await within('reconnected', reconnected, 10_000);
  assert.equal(resumed, true);
  assert.equal(client.session, session);
  await whenever('joined again', arena, 'state', () => arena.state === 'joined', 10_000);
  assert.equal(player(arena, 'hush')?.id, id, 'the same player');
  assert.equal(arena.ack, first, 'the acked input is not lost');
  const next = arena.sendInput({ dx: 1, dy: 0 });
  await whenever('a new input is acked', arena, 'patch', () => arena.ack === next);
  await client.close();
});
