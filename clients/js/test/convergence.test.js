// Convergence, the property the Rust side proves in protocol/src/tests.rs
// (`mirror_converges`), here against a real cluster: a mirror built from a full state
// plus every patch after it equals, value for value, a full state taken at the same
// tick. Random operations (joins, leaves, inputs, dropped connections; seeded, so a
// failure replays) run on both built-in games while an observer keeps a mirror and a
// snapshot of it per tick; at random points a fresh client joins, and its first State,
// at tick T, must equal the observer's mirror at T.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { Client, serialAfter } from '../src/index.js';
import { startCluster } from './cluster.js';
import { prng, whenever, within } from './util.js';

const CHANNELS = ['arena', 'bench'];
const SEEDS = [1, 2, 3];
const STEPS = 60;
/** Snapshots kept per channel: 10 s of ticks at 20 Hz. */
const RING = 200;

let cluster;
before(async () => {
  cluster = await startCluster();
});
after(() => cluster?.stop());

/** The mirror as plain data: id -> [kind, fields]. */
function snapshot(channel) {
  const out = {};
  for (const [id, entity] of channel.mirror.entities) out[id] = [entity.kind, { ...entity.fields }];
  return out;
}

/** Keeps a snapshot of `channel` at every tick it reaches, the latest RING of them. */
function record(channel) {
  const ticks = new Map();
  const keep = () => {
    ticks.set(channel.tick, snapshot(channel));
    if (ticks.size > RING) ticks.delete(ticks.keys().next().value);
  };
  keep();
  channel.on('state', keep);
  channel.on('patch', keep);
  return ticks;
}

/** The observer's mirror at tick `t`: the snapshot of the latest tick not after it. */
function at(ticks, t) {
  let best;
  for (const tick of ticks.keys()) {
    if (!serialAfter(tick, t) && (best === undefined || serialAfter(tick, best))) best = tick;
  }
  return best === undefined ? undefined : ticks.get(best);
}

for (const seed of SEEDS) {
  test(`a mirror from a State and every Patch equals a fresh State (seed ${seed})`, async () => {
    const random = prng(seed);
    const pick = (list) => list[Math.floor(random() * list.length)];
    const observer = await within('observer connects', Client.connect({ url: cluster.frontUrls[0] }));
    const watched = {};
    for (const name of CHANNELS) {
      const channel = await within(`observer joins ${name}`, observer.join(name, { name: `observer-${seed}` }));
      watched[name] = { channel, ticks: record(channel) };
    }
    /** @type {{ client: Client, channel: import('../src/index.js').Channel }[]} */
    const players = [];
    let checks = 0;
    try {
      for (let step = 0; step < STEPS; step++) {
        const roll = random();
        if (roll < 0.15 || players.length === 0) {
          const url = pick(cluster.frontUrls);
          const name = pick(CHANNELS);
          const client = await within('a player connects', Client.connect({ url }, { reconnect: false }));
          players.push({ client, channel: await within(`a player joins ${name}`, client.join(name, { name: `p${seed}-${step}` })) });
        } else if (roll < 0.22) {
          const [gone] = players.splice(Math.floor(random() * players.length), 1);
          // Half leave politely, half just drop the connection.
          if (random() < 0.5) await within('a player leaves', gone.channel.leave());
          await gone.client.close();
        } else if (roll < 0.9) {
          const { channel } = pick(players);
          const scale = channel.name === 'bench' ? 0.01 : 1;
          channel.sendInput({ dx: (random() * 2 - 1) * scale, dy: (random() * 2 - 1) * scale });
        } else {
          const name = pick(CHANNELS);
          const { channel: seen, ticks } = watched[name];
          const fresh = await within('a fresh client connects', Client.connect({ url: pick(cluster.frontUrls) }, { reconnect: false }));
          const joined = await within(`a fresh client joins ${name}`, fresh.join(name, { name: `check-${seed}-${step}` }));
          const full = snapshot(joined);
          const t = joined.tick;
          await whenever(`the observer reaches tick ${t}`, seen, 'patch', () => !serialAfter(t, seen.tick));
          assert.deepEqual(at(ticks, t), full, `seed ${seed}, step ${step}: ${name} at tick ${t}`);
          checks++;
          await fresh.close();
        }
        // Spread the operations over several ticks.
        await new Promise((resolve) => setTimeout(resolve, random() * 40));
      }
      assert.ok(checks >= 2, `seed ${seed} made only ${checks} checks`);
    } finally {
      await Promise.all([observer, ...players.map((p) => p.client)].map((c) => c.close()));
    }
  });
}
