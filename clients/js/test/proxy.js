// A TCP proxy for tests that can be paused: it forwards bytes both ways, and `pause()`
// stops every connection open at that moment from carrying anything (neither side is
// read, so the sockets stay open and the bytes wait in the kernel) — a stopped process
// or a black-holed path, as a peer sees it. Connections made later flow normally.
// `cut()` resets the connections open at that moment instead.
import net from 'node:net';

/**
 * @param {number} targetPort the port on 127.0.0.1 to forward to
 * @returns {Promise<{ port: number, url: string, pause(): void, resume(): void, cut(): void, close(): void }>}
 */
export async function pausableProxy(targetPort) {
  const pairs = new Set();
  const server = net.createServer((downstream) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    const pair = { downstream, upstream, paused: false };
    pairs.add(pair);
    downstream.pipe(upstream);
    upstream.pipe(downstream);
    const end = () => {
      pairs.delete(pair);
      downstream.destroy();
      upstream.destroy();
    };
    downstream.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    port,
    url: `ws://127.0.0.1:${port}`,
    pause() {
      for (const pair of pairs) {
        pair.paused = true;
        pair.downstream.unpipe(pair.upstream);
        pair.upstream.unpipe(pair.downstream);
        pair.downstream.pause();
        pair.upstream.pause();
      }
    },
    resume() {
      for (const pair of pairs) {
        if (!pair.paused) continue;
        pair.paused = false;
        pair.downstream.pipe(pair.upstream);
        pair.upstream.pipe(pair.downstream);
      }
    },
    /** Resets every connection open now, as a network that drops them does. */
    cut() {
      for (const { downstream, upstream } of pairs) {
        downstream.resetAndDestroy();
        upstream.resetAndDestroy();
      }
    },
    close() {
      server.close();
      for (const { downstream, upstream } of pairs) {
        downstream.destroy();
        upstream.destroy();
      }
    },
  };
}
