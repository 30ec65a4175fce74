// A scripted front for tests of the client alone: a WebSocket class to pass as
// `options.WebSocket`, whose sockets record what the client sends and deliver what the
// test scripts, with no network and no cluster. `deliver` hands over several messages in
// one go, as Node's ws does with the messages of one read.
import { decode, encode } from '@msgpack/msgpack';

export class ScriptedFront {
  /** Every socket the client opened, oldest first. */
  sockets = [];
  #waiting = [];

  constructor() {
    const front = this;
    this.WebSocket = class extends ScriptedSocket {
      constructor(url) {
        super(url);
        front.sockets.push(this);
        front.#waiting.shift()?.(this);
      }
    };
  }

  /** The next socket the client opens (or one it opened that nobody took yet). */
  nextSocket() {
    const taken = this.sockets.filter((s) => s.taken).length;
    const socket = this.sockets[taken];
    const take = (s) => {
      s.taken = true;
      return s;
    };
    if (socket) return Promise.resolve(take(socket));
    return new Promise((resolve) => this.#waiting.push((s) => resolve(take(s))));
  }
}

class ScriptedSocket {
  readyState = 0;
  binaryType = 'blob';
  taken = false;
  #listeners = new Map();
  #frames = [];
  #waiting = [];

  constructor(url) {
    this.url = url;
    // The client adds its listeners right after constructing.
    queueMicrotask(() => {
      this.readyState = 1;
      this.#fire('open', {});
    });
  }

  addEventListener(type, listener, options) {
    if (!this.#listeners.has(type)) this.#listeners.set(type, []);
    this.#listeners.get(type).push({ listener, once: options?.once });
  }

  /** The client sends: each message is kept, decoded, for `nextFrame`. */
  send(bytes) {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    const frame = decode(bytes);
    const waiter = this.#waiting.shift();
    if (waiter) waiter(frame);
    else this.#frames.push(frame);
  }

  close(code = 1000, reason = '') {
    if (this.readyState >= 2) return;
    this.readyState = 3;
    queueMicrotask(() => this.#fire('close', { code, reason }));
  }

  // ---- the script's side ----

  /** The next message the client sent, decoded: `[type, body]`. */
  nextFrame() {
    if (this.#frames.length) return Promise.resolve(this.#frames.shift());
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  /** Delivers server messages (`[type, body]` values), all in one synchronous go. */
  deliver(...messages) {
    for (const message of messages) {
      const bytes = encode(message);
      this.#fire('message', { data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
    }
  }

  /** The connection drops, as when the front dies. */
  drop(code = 1006) {
    this.readyState = 3;
    this.#fire('close', { code, reason: '' });
  }

  #fire(type, event) {
    const listeners = this.#listeners.get(type) ?? [];
    this.#listeners.set(type, listeners.filter((l) => !l.once));
    for (const { listener } of listeners) listener(event);
  }
}

// ---- server messages (PROTOCOL.md §5) ----

export const ARENA_SCHEMA = [
  ['player', [['x', 'fixed', 100], ['y', 'fixed', 100], ['name', 'str', 0], ['hue', 'uint', 0], ['score', 'uint', 0]]],
  ['coin', [['x', 'fixed', 100], ['y', 'fixed', 100]]],
];

export const welcome = (session, resume, resumed = false) => [0, [2, session, resume, 'front-1', resumed]];
export const state = (channel, tick, ack, entities = []) => [1, [ack, channel, tick, ARENA_SCHEMA, entities]];
export const patch = (channel, tick, ack) => [2, [ack, channel, tick, [], [], []]];
export const left = (channel) => [4, [channel, 'left']];
export const unavailable = (channel) => [5, [channel]];
export const message = (channel, tick, value) => [8, [channel, tick, value instanceof Uint8Array ? value : encode(value)]];
