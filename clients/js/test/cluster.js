// Starts a real centrum cluster for a test: `centrum up` on a config of free 127.0.0.1
// ports, one process per node (the master supervises them), with two fronts and one back
// serving `arena` (the demo game) and `bench` (bench-arena), or the channels given. Ready
// means every node is live in /status and a client can join the first channel through
// each front. The back offers the room types given in `rooms` (none by default), and the
// master's matchmaker takes the settings in `matchmaker`. The binary is CENTRUM_BIN, or target/debug/centrum of this repository, or
// the one given (a game's own binary, such as the tag example's).
import { spawn, spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Client } from '../src/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = process.env.CENTRUM_BIN ?? path.join(here, '../../../target/debug/centrum');
const READY_WITHIN_MS = 30_000;

/** Every cluster still running, stopped if the test process exits early. */
const running = new Set();
process.on('exit', () => {
  for (const child of running) killGroup(child);
});

const DEFAULT_CHANNELS = [{ name: 'arena', app: 'arena' }, { name: 'bench', app: 'bench-arena' }];

/** An HS256 JWT of `claims`, signed with `secret`. */
export function signHs256(secret, claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

/**
 * @param {{ adminToken?: string, bin?: string, channels?: { name: string, app: string }[],
 *   jwtSecret?: string, rooms?: Record<string, string | number>[],
 *   matchmaker?: Record<string, number> }} [options] with `jwtSecret`, the cluster
 *   requires HS256 tokens signed with it (no channel is anonymous); its probes present one.
 *   `rooms`: the back's room types, each as its keys (`{ type: 'match', app: 'arena',
 *   max_clients: 2 }`); `matchmaker`: the `[matchmaker]` section (`{ seat_ttl_ms: 2000 }`)
 * @returns {Promise<Cluster>}
 */
export async function startCluster({ adminToken, bin = BIN, channels = DEFAULT_CHANNELS, jwtSecret, rooms = [], matchmaker } = {}) {
  if (!existsSync(bin)) throw new Error(`no centrum binary at ${bin}: build it first (cargo build), or set CENTRUM_BIN`);
  const [http, nodes, front1, front2, back] = await freePorts(5);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'centrum-js-'));
  const config = path.join(dir, 'cluster.toml');
  writeFileSync(config, `
[master]
http = "127.0.0.1:${http}"
nodes = "127.0.0.1:${nodes}"
${adminToken ? `admin_token = "${adminToken}"` : ''}

[[fronts]]
id = "front-1"
listen = "127.0.0.1:${front1}"

[[fronts]]
id = "front-2"
listen = "127.0.0.1:${front2}"

[[backs]]
id = "back-1"
listen = "127.0.0.1:${back}"
tick_hz = 20
channels = [${channels.map((c) => `{ name = "${c.name}", app = "${c.app}" }`).join(', ')}]
${rooms.length ? `rooms = [${rooms.map(inlineTable).join(', ')}]` : ''}

[limits]
# Quick enough for the listings and the dashboard to follow within a test; the master
# counts a node live for 3 heartbeats, and 1.5 s rides out a debug build starved for a
# moment by the browser and the other suite on 2 cores (600 ms did not, once).
heartbeat_ms = 500
${matchmaker ? `\n[matchmaker]\n${Object.entries(matchmaker).map(([key, value]) => `${key} = ${JSON.stringify(value)}`).join('\n')}\n` : ''}${jwtSecret ? `\n[auth]\nalgorithm = "HS256"\nsecret = "${jwtSecret}"\n` : ''}`);
  const check = spawnSync(bin, ['check', config], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`centrum check refused the test config:\n${check.stderr}`);

  // The back keeps its channels under the fresh temporary directory (centrum-data/).
  const child = spawn(bin, ['up', config], { cwd: dir, detached: true, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' } });
  running.add(child);
  let log = '';
  child.stderr.on('data', (chunk) => {
    log = (log + chunk).slice(-20_000);
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(`${code ?? signal}`)));

  const masterHttp = `http://127.0.0.1:${http}`;
  const headers = adminToken ? { Authorization: `Bearer ${adminToken}` } : {};
  const cluster = {
    masterHttp,
    frontUrls: [`ws://127.0.0.1:${front1}`, `ws://127.0.0.1:${front2}`],
    nodeIds: ['back-1', 'front-1', 'front-2'],
    /** The master's /status, parsed. */
    async status() {
      const response = await fetch(`${masterHttp}/status`, { headers, signal: AbortSignal.timeout(5_000) });
      if (!response.ok) throw new Error(`/status answered ${response.status}`);
      return response.json();
    },
    /** SIGKILLs node `id` (the master will start it again). */
    async kill(id) {
      const node = (await cluster.status()).nodes.find((n) => n.id === id);
      if (!node) throw new Error(`${id} is not live`);
      process.kill(node.pid, 'SIGKILL');
      return node.pid;
    },
    /** Stops every process of the cluster and removes its files. */
    async stop() {
      killGroup(child, 'SIGTERM');
      const stopped = await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve(null), 5_000))]);
      if (stopped === null) killGroup(child);
      running.delete(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };

  /** Waits until every node is live and each front takes joins (after start, or a kill). */
  cluster.ready = async () => {
    await until('every node live in /status', async () => {
      const status = await cluster.status();
      return cluster.nodeIds.every((id) => status.nodes.some((n) => n.id === id));
    }, exited, () => log);
    const probe = channels[0].name;
    for (const url of cluster.frontUrls) {
      await until(`a client joins ${probe} through ${url}`, async () => {
        const token = jwtSecret ? signHs256(jwtSecret, { sub: 'probe', exp: Math.floor(Date.now() / 1000) + 600 }) : '';
        const client = await Client.connect({ url }, { reconnect: false, token });
        try {
          await client.join(probe, { name: 'probe' });
          return true;
        } finally {
          await client.close();
        }
      }, exited, () => log);
    }
  };
  try {
    await cluster.ready();
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

/** Polls `check` until it returns true; fails at the deadline or when the cluster exits. */
async function until(what, check, exited, log) {
  const deadline = Date.now() + READY_WITHIN_MS;
  let last = 'not yet';
  let gone = null;
  exited.then((code) => (gone = code));
  for (let wait = 20; ; wait = Math.min(wait * 2, 250)) {
    if (gone !== null) throw new Error(`centrum up exited (${gone}) before ${what}:\n${log()}`);
    try {
      if (await check()) return;
    } catch (err) {
      last = err.message;
    }
    if (Date.now() > deadline) throw new Error(`cluster not ready within ${READY_WITHIN_MS} ms: ${what} (${last})\n${log()}`);
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

/** `{ a: 'x', b: 2 }` as the TOML inline table `{ a = "x", b = 2 }`. */
function inlineTable(object) {
  return `{ ${Object.entries(object).map(([key, value]) => `${key} = ${JSON.stringify(value)}`).join(', ')} }`;
}

function killGroup(child, signal = 'SIGKILL') {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

/** `n` distinct ports that were free a moment ago. */
async function freePorts(n) {
  const servers = await Promise.all(Array.from({ length: n }, () => new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  })));
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

/**
 * @typedef {{ masterHttp: string, frontUrls: string[], nodeIds: string[], status(): Promise<any>, kill(id: string): Promise<number>, ready(): Promise<void>, stop(): Promise<void> }} Cluster
 */
