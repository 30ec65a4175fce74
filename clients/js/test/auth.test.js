// Authentication against a cluster that requires HS256 tokens: a token function is asked
// again for the reconnect, and the same subject resumes its player; a bad token is
// refused with `unauthorized`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { Client, CentrumError } from '../src/index.js';
import { signHs256, startCluster } from './cluster.js';
import { player, whenever, within } from './util.js';

const SECRET = 'a-js-test-secret-long-enough-for-hs256';
const exp = () => Math.floor(Date.now() / 1000) + 600;

let cluster;
before(async () => {
  cluster = await startCluster({ jwtSecret: SECRET });
});
after(() => cluster?.stop());

test('the token function is called again on reconnect, and the same subject resumes its player', async () => {
  const asked = [];
  const token = async () => {
    asked.push(Date.now());
    return signHs256(SECRET, { sub: 'kim', exp: exp() });
  };
  const client = await within('connect', Client.connect({ gate: cluster.masterHttp, channel: 'arena' }, { token }));
  assert.equal(asked.length, 1);
  const arena = await within('join', client.join('arena', { name: 'ignored' }));
  await whenever('kim plays under the token subject', arena, 'state', () => player(arena, 'kim'));
  const id = player(arena, 'kim').id;
  const reconnected = new Promise((resolve) => client.on('reconnected', resolve));
  await cluster.kill(client.front);
  const { resumed } = await within('reconnected', reconnected, 20_000);
  assert.ok(asked.length >= 2, `asked ${asked.length} times`);
  assert.equal(resumed, true);
  await whenever('joined again', arena, 'state', () => arena.state === 'joined', 20_000);
  assert.equal(player(arena, 'kim')?.id, id, 'the same player');
  await client.close();
  await within('the killed front is back', cluster.ready(), 30_000);
});

test('a bad token is refused with unauthorized, a failing token function with token_failed', async () => {
  const url = cluster.frontUrls[0];
  const expired = signHs256(SECRET, { sub: 'kim', exp: Math.floor(Date.now() / 1000) - 3600 });
  for (const [token, prefix] of [[expired, 'expired: '], ['', 'missing: '], [signHs256('another-secret-of-the-same-length!!!!', { sub: 'kim', exp: exp() }), 'signature: ']]) {
    const err = await Client.connect({ url }, { token, reconnect: false }).then(() => null, (e) => e);
    assert.ok(err instanceof CentrumError, String(err));
    assert.equal(err.code, 'unauthorized');
    assert.ok(err.message.startsWith(prefix), err.message);
  }
  const err = await Client.connect({ url }, { token: () => { throw new Error('no auth server'); } }).then(() => null, (e) => e);
  assert.equal(err?.code, 'token_failed');
});
