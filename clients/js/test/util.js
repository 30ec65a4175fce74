// Small helpers for the cluster tests: every wait has a deadline and says what it waited for.

/** `promise`, or a failure naming `what` after `ms`. */
export function within(what, promise, ms = 10_000) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves once `check()` is truthy, re-checking after each `event` of `emitter`. */
export function whenever(what, emitter, event, check, ms = 10_000) {
  return within(what, new Promise((resolve) => {
    if (check()) return resolve();
    const off = emitter.on(event, () => {
      if (check()) {
        off();
        resolve();
      }
    });
  }), ms);
}

/** The player named `name` in a channel's mirror. */
export function player(channel, name) {
  return [...channel.mirror.entities.values()].find((e) => e.kind === 'player' && e.fields.name === name);
}

/** A small seeded PRNG (mulberry32), so a failing sequence can be replayed from its seed. */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
