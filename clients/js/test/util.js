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

/** The player id the arena's `you` message names, to a listener added now. */
export function yourPlayer(channel, ms = 10_000) {
  return within('the arena says which player is ours', new Promise((resolve) => {
    const off = channel.on('message', (data) => {
      if (data?.you) {
        off();
        resolve(data.you.player);
      }
    });
  }), ms);
}

/**
 * Steers player `id` of an arena channel to the nearest coin, aiming again at every patch,
 * until the game announces that this player scored. Resolves with that message and what
 * the mirror showed when it arrived: `{ data, info, score, tick }`.
 */
export function collectCoin(channel, id, ms = 30_000) {
  return within(`player ${id} collects a coin`, new Promise((resolve) => {
    let aim = null;
    const steer = () => {
      const me = channel.mirror.entities.get(id);
      if (!me || channel.state !== 'joined') return;
      let best = null;
      for (const e of channel.mirror.entities.values()) {
        if (e.kind !== 'coin') continue;
        const d = Math.hypot(e.fields.x - me.fields.x, e.fields.y - me.fields.y);
        if (!best || d < best.d) best = { d, dx: e.fields.x - me.fields.x, dy: e.fields.y - me.fields.y };
      }
      // Within reach already: the next tick scores.
      if (!best || best.d < 0.1) return;
      const next = { dx: Math.round((100 * best.dx) / best.d) / 100, dy: Math.round((100 * best.dy) / best.d) / 100 };
      if (aim && Math.hypot(next.dx - aim.dx, next.dy - aim.dy) < 0.05) return;
      channel.sendInput(next);
      aim = next;
    };
    const offPatch = channel.on('patch', steer);
    const offMessage = channel.on('message', (data, info) => {
      if (data?.scored?.player !== id) return;
      offPatch();
      offMessage();
      const score = channel.mirror.entities.get(id)?.fields.score;
      channel.sendInput({ dx: 0, dy: 0 });
      resolve({ data, info, score, tick: channel.tick });
    });
    steer();
  }), ms);
}
