// A connection to a front (PROTOCOL.md §4–§8): Hello and Welcome, the channels it joined,
// pings, and reconnecting. When the connection drops unexpectedly the client dials again
// (through the gate when it came through the gate, so a dead front is avoided), presents
// its resume token and joins every channel again with the same join data. Where the back
// still holds the session's membership (PROTOCOL.md §7.8) the join resumes it: the same
// player, the same ack. Either way each channel's mirror is rebuilt from the new State.
// The game's messages go to the Channel they name, in the order the front sent them.
// A front that falls silent (nothing for `pingAfterMs`, then no answer to a ping for
// `silenceTimeoutMs`: PROTOCOL.md §7.10) is treated exactly like a dropped connection.
// The token (PROTOCOL.md: authentication) is a string, or a function asked for a fresh
// one before every dial, since a token may have expired by the time the client reconnects.
// Rooms (PROTOCOL.md: rooms): the master's matchmaker reserves a seat, which the Join of
// the room presents, on this connection or on a new one to the front the seat names; a
// rejoin after a reconnect presents the same seat, which the resume claim makes good.
import { appData, decodeServer, encodeHello, encodeInput, encodeJoin, encodeLeave, encodePing } from './codec.js';
import { Channel } from './channel.js';
import { Emitter } from './emitter.js';
import { CentrumError } from './errors.js';
import { askGate } from './gate.js';
import { Matchmaker } from './matchmaker.js';

const DEFAULTS = {
  token: '',
  reconnect: true,
  maxReconnectMs: 30_000,
  connectTimeoutMs: 10_000,
  pingAfterMs: 2_000,
  silenceTimeoutMs: 4_000,
  WebSocket: undefined,
};

/** The nonces of the pings that probe a silent front start here; `ping()` counts from 1. */
const PROBE_NONCE = 2 ** 52;

/**
 * Server close reasons after which dialling again cannot help (§10): the same client
 * would break the same rule, flood again, or (`idle`) had nothing to do on the server.
 */
const FATAL_FOR_GOOD = new Set([
  'version', 'hello_required', 'malformed', 'too_large', 'binary_only',
  'too_many_fragments', 'rate_limited', 'idle',
]);

/** Back-off between reconnection attempts: 100 ms doubling to 5 s, with jitter. */
const FIRST_RETRY_MS = 100;
const LONGEST_RETRY_MS = 5_000;

export class Client extends Emitter {
  /** `open`, `reconnecting` or `closed`. */
  state = 'open';
  /** This connection's session id and front, from Welcome. */
  session = '';
  front = '';

  #target;
  #options;
  #ws = null;
  #resume = null;
  /** @type {Map<string, Channel>} channels joined, joining or leaving, by name */
  #channels = new Map();
  /** @type {Map<Channel, { resolve: Function, reject: Function }>} joins awaiting their State */
  #joins = new Map();
  /** @type {Map<Channel, { resolve: Function, reject: Function }>} leaves awaiting Left */
  #leaves = new Map();
  /** @type {Map<number, { resolve: Function, reject: Function, sentAt: number, timer: any }>} */
  #pings = new Map();
  #nextNonce = 1;
  /** What `close()` said, so the close that follows is not taken for a drop. */
  #closing = false;
  /** The Welcome's `resumed` on the current connection. */
  #resumed = false;
  /**
   * What arrived from the server (messages, the close) while it is held, in order, or null
   * when nothing is held. See `#hold`.
   * @type {(() => void)[] | null}
   */
  #held = null;
  /** When the current connection last received something (performance.now()). */
  #heard = 0;
  /** When the probe sent since then left, or null while the front talks. */
  #probe = null;
  #nextProbe = PROBE_NONCE;
  #watchTimer = null;

  /**
   * Connects and waits for Welcome.
   * @param {{ gate: string, channel: string } | { url: string, master?: string }} target
   *   the master's HTTP address and the channel to ask its gate about, or a front's
   *   WebSocket URL (and the master's HTTP address, for rooms)
   * @param {Partial<typeof DEFAULTS>} [options]
   * @returns {Promise<Client>}
   * @throws {CentrumError} `gate_failed`, `connect_failed`, or the server's code
   */
  static async connect(target, options = {}) {
    if (!target || (typeof target.url !== 'string' && (typeof target.gate !== 'string' || typeof target.channel !== 'string'))) {
      throw new TypeError('Client.connect needs { url } or { gate, channel }');
    }
    const client = new Client(target, { ...DEFAULTS, ...options });
    await client.#dial();
    return client;
  }

  /**
   * Reserves a seat in an open room of `type` (whose metadata matches `filter`), or in a
   * new one created with `options`; connects to the front the seat names and joins the
   * room with `data`.
   * @param {string} master the master's HTTP(S) origin
   * @param {string} type
   * @param {{ options?: unknown, filter?: Record<string, unknown>, data?: unknown } & Partial<typeof DEFAULTS>} [request]
   *   with the options of `connect`
   * @returns {Promise<{ client: Client, channel: Channel }>}
   * @throws {CentrumError} the matchmaker's code (`unknown_type`, `no_capacity`, …),
   *   `matchmake_failed`, `connect_failed`, `rejected`
   */
  static joinOrCreate(master, type, { options, filter, data, ...connectOptions } = {}) {
    return Client.#seated(master, connectOptions, data, (matchmaker) => matchmaker.joinOrCreate(type, { options, filter }));
  }

  /**
   * Like `joinOrCreate`, in a new room of `type` created with `options`.
   * @returns {Promise<{ client: Client, channel: Channel }>}
   */
  static create(master, type, { options, data, ...connectOptions } = {}) {
    return Client.#seated(master, connectOptions, data, (matchmaker) => matchmaker.create(type, { options }));
  }

  /**
   * Like `joinOrCreate`, in the room `roomId`.
   * @returns {Promise<{ client: Client, channel: Channel }>}
   * @throws {CentrumError} `no_such_room`, `room_full`, `room_locked`, … as `joinOrCreate`
   */
  static joinById(master, roomId, { data, ...connectOptions } = {}) {
    return Client.#seated(master, connectOptions, data, (matchmaker) => matchmaker.joinById(roomId));
  }

  /**
   * The rooms of `type` (every type when absent) that the master lists.
   * @returns {Promise<import('./matchmaker.js').RoomListing[]>}
   * @throws {CentrumError} the server's code or `matchmake_failed`
   */
  static getAvailableRooms(master, type, { connectTimeoutMs = DEFAULTS.connectTimeoutMs } = {}) {
    return new Matchmaker(master, { timeoutMs: connectTimeoutMs }).rooms(type);
  }

  static async #seated(master, connectOptions, data, reserve) {
    const timeoutMs = connectOptions.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs;
    const reservation = await reserve(new Matchmaker(master, { timeoutMs }));
    const client = await Client.connect({ url: reservation.front, master }, connectOptions);
    try {
      const channel = await client.join(reservation.room, data, { seat: reservation.seat });
      return { client, channel };
    } catch (err) {
      await client.close();
      throw err;
    }
  }

  /** @private use Client.connect */
  constructor(target, options) {
    super();
    this.#target = target;
    this.#options = options;
  }

  /**
   * Joins `name`; resolves with the Channel once its first State arrived.
   * @param {string} name
   * @param {unknown} [data] join data: a MessagePack-able value or encoded bytes
   * @param {{ seat?: string }} [options] a room's seat token, from the matchmaker
   * @returns {Promise<Channel>}
   * @throws {CentrumError} `rejected` (message: the reason; `reason`: its leading code),
   *   `already_joined`, `not_connected`
   */
  join(name, data, { seat } = {}) {
    if (seat !== undefined && typeof seat !== 'string') {
      return Promise.reject(new TypeError('a seat is the matchmaker\'s token string'));
    }
    if (this.#channels.has(name)) {
      return Promise.reject(new CentrumError('already_joined', `already in or joining channel ${JSON.stringify(name)}`));
    }
    const channel = new Channel(name, appData(data), {
      input: (ch, seq, bytes) => this.#send(encodeInput(ch, seq, bytes)),
      leave: (ch) => this.#leave(ch),
    }, seat);
    try {
      this.#send(encodeJoin(name, channel.joinData, seat));
    } catch (err) {
      return Promise.reject(err);
    }
    this.#channels.set(name, channel);
    return new Promise((resolve, reject) => this.#joins.set(channel, { resolve, reject }));
  }

  /**
   * Reserves a seat through the master this client was made with (the gate's, or the
   * `master` beside a URL) and joins the room on this connection: an open room of `type`
   * whose metadata matches `filter`, else a new one created with `options`.
   * @param {string} type
   * @param {{ options?: unknown, filter?: Record<string, unknown>, data?: unknown }} [request]
   * @returns {Promise<Channel>}
   * @throws {CentrumError} as the static `joinOrCreate`; TypeError when no master is known
   */
  async joinOrCreate(type, { options, filter, data } = {}) {
    const reservation = await this.#matchmaker().joinOrCreate(type, { options, filter });
    return this.join(reservation.room, data, { seat: reservation.seat });
  }

  /** Like `joinOrCreate`, in a new room. @returns {Promise<Channel>} */
  async create(type, { options, data } = {}) {
    const reservation = await this.#matchmaker().create(type, { options });
    return this.join(reservation.room, data, { seat: reservation.seat });
  }

  /** Like `joinOrCreate`, in the room `roomId`. @returns {Promise<Channel>} */
  async joinById(roomId, { data } = {}) {
    const reservation = await this.#matchmaker().joinById(roomId);
    return this.join(reservation.room, data, { seat: reservation.seat });
  }

  /** The rooms of `type` (every type when absent) the master lists. */
  getAvailableRooms(type) {
    try {
      return this.#matchmaker().rooms(type);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  #matchmaker() {
    const master = this.#target.gate ?? this.#target.master;
    if (typeof master !== 'string') {
      throw new TypeError('this client knows no master: connect with { gate, channel } or { url, master } for rooms');
    }
    return new Matchmaker(master, { timeoutMs: this.#options.connectTimeoutMs });
  }

  /**
   * True when the server took the resume token this client presented (a reconnect): the
   * session kept its id, and each join claimed the membership the back still held for it.
   * False on a first connection, and when the server started a new session.
   */
  get resumed() {
    return this.#resumed;
  }

  /** A channel this client is in (or joining), by name. */
  channel(name) {
    return this.#channels.get(name);
  }

  /**
   * Measures the round trip to the front, through the client's own queue there.
   * @returns {Promise<number>} milliseconds
   * @throws {CentrumError} `not_connected`, `timeout`, `closed`
   */
  ping(timeoutMs = 5_000) {
    const nonce = this.#nextNonce++;
    return new Promise((resolve, reject) => {
      try {
        this.#send(encodePing(nonce));
      } catch (err) {
        reject(err);
        return;
      }
      const timer = setTimeout(() => {
        this.#pings.delete(nonce);
        reject(new CentrumError('timeout', `no Pong within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pings.set(nonce, { resolve, reject, sentAt: performance.now(), timer });
    });
  }

  /** Closes the connection for good: no reconnecting. */
  async close() {
    if (this.state === 'closed') return;
    this.#closing = true;
    const ws = this.#ws;
    if (ws && ws.readyState <= 1) {
      const closed = new Promise((resolve) => ws.addEventListener('close', resolve, { once: true }));
      ws.close(1000);
      await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 2_000))]);
    }
    this.#end('closed by the client');
  }

  // ---- connection ----------------------------------------------------------------------

  /**
   * Opens a WebSocket, sends Hello and waits for Welcome.
   * @returns {Promise<boolean>} whether the server resumed the previous session
   */
  async #dial() {
    const token = await this.#token();
    const url = this.#target.url ?? (await askGate(this.#target.gate, this.#target.channel, this.#options.connectTimeoutMs)).url;
    const WebSocketClass = await webSocketClass(this.#options.WebSocket);
    const ws = new WebSocketClass(url);
    ws.binaryType = 'arraybuffer';
    return new Promise((resolve, reject) => {
      let welcomed = false;
      const fail = (err) => {
        clearTimeout(timer);
        if (!welcomed) reject(err);
      };
      const timer = setTimeout(() => {
        fail(new CentrumError('connect_failed', `no Welcome from ${url} within ${this.#options.connectTimeoutMs} ms`));
        ws.close();
      }, this.#options.connectTimeoutMs);
      ws.addEventListener('open', () => {
        ws.send(encodeHello(token, this.#resume));
      });
      ws.addEventListener('error', () => {
        fail(new CentrumError('connect_failed', `cannot connect to ${url}`));
      });
      ws.addEventListener('close', (event) => {
        if (!welcomed) {
          fail(new CentrumError('connect_failed', `${url} closed the connection (${event.code} ${event.reason || 'no reason'})`));
        } else {
          // Behind whatever messages are held: they arrived before the close.
          this.#inbox(() => {
            if (this.#ws === ws) this.#dropped(event.code, event.reason);
          });
        }
      });
      ws.addEventListener('message', (event) => {
        if (this.#ws === ws) {
          this.#heard = performance.now();
          this.#probe = null;
        }
        let message;
        try {
          message = decodeServer(event.data);
        } catch (err) {
          this.emit('error', err);
          fail(err);
          ws.close(1002);
          return;
        }
        if (welcomed) {
          this.#inbox(() => this.#receive(message, ws));
        } else if (message.type === 'welcome') {
          welcomed = true;
          clearTimeout(timer);
          this.#ws = ws;
          this.session = message.session;
          this.front = message.front;
          this.#resume = message.resume;
          this.#resumed = message.resumed;
          this.#heard = performance.now();
          this.#probe = null;
          this.#watch(ws);
          resolve(message.resumed);
        } else if (message.type === 'error') {
          fail(new CentrumError(message.code, message.message, true));
        } else {
          fail(new CentrumError('protocol', `expected Welcome, got ${message.type}`, true));
        }
      });
    });
  }

  /**
   * Pings a front that has sent nothing for `pingAfterMs`; one that then answers nothing
   * for `silenceTimeoutMs` is gone as far as this client is concerned: the socket is
   * dropped and the client reconnects and resumes, as after any drop.
   */
  #watch(ws) {
    clearTimeout(this.#watchTimer);
    this.#watchTimer = null;
    if (this.#ws !== ws) return;
    const now = performance.now();
    let wake;
    if (this.#probe !== null) {
      wake = this.#probe + this.#options.silenceTimeoutMs;
      if (now >= wake) {
        const silentMs = Math.round(now - this.#heard);
        this.emit('error', new CentrumError('silent', `the front sent nothing for ${silentMs} ms, not even a pong; reconnecting`));
        if (typeof ws.terminate === 'function') ws.terminate();
        else ws.close(4001, 'silent');
        this.#dropped(4001, 'silent');
        return;
      }
    } else {
      wake = this.#heard + this.#options.pingAfterMs;
      if (now >= wake) {
        this.#probe = now;
        const nonce = this.#nextProbe++;
        try {
          ws.send(encodePing(nonce));
        } catch {
          // A socket that cannot take it is closing; its close event follows.
        }
        wake = now + this.#options.silenceTimeoutMs;
      }
    }
    this.#watchTimer = setTimeout(() => this.#watch(ws), Math.max(0, wake - now));
    // The socket keeps a Node process alive while it is open, not this timer.
    this.#watchTimer.unref?.();
  }

  /** The token for the next Hello: the option itself, or what its function gives now. */
  async #token() {
    const option = this.#options.token;
    if (typeof option !== 'function') return option ?? '';
    let token;
    try {
      token = await option();
    } catch (err) {
      throw new CentrumError('token_failed', `the token function failed: ${err?.message ?? err}`);
    }
    if (typeof token !== 'string') {
      throw new CentrumError('token_failed', `the token function gave ${typeof token}, not a string`);
    }
    return token;
  }

  /** The connection ended without `close()`: dial again, or give up. */
  #dropped(code, reason) {
    clearTimeout(this.#watchTimer);
    this.#watchTimer = null;
    this.#ws = null;
    this.#failPings(new CentrumError('closed', `the connection closed (${code} ${reason || 'no reason'})`));
    if (this.#closing) return;
    if (!this.#options.reconnect || FATAL_FOR_GOOD.has(reason)) {
      this.#end(`the connection closed (${code} ${reason || 'no reason'})`);
      return;
    }
    this.#reconnect();
  }

  async #reconnect() {
    this.state = 'reconnecting';
    const started = performance.now();
    for (let attempt = 1; ; attempt++) {
      const delayMs = Math.round(Math.min(LONGEST_RETRY_MS, FIRST_RETRY_MS * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2));
      if (performance.now() + delayMs - started > this.#options.maxReconnectMs) {
        this.#end(`could not reconnect within ${this.#options.maxReconnectMs} ms`);
        return;
      }
      this.emit('reconnecting', { attempt, delayMs });
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      if (this.#closing) return;
      let resumed;
      try {
        resumed = await this.#dial();
      } catch (err) {
        // A refused token is refused again, unless a fresh one can be fetched.
        const refusedForGood = err.code === 'unauthorized' && typeof this.#options.token !== 'function';
        if (FATAL_FOR_GOOD.has(err.code) || refusedForGood) {
          this.emit('error', err);
          this.#end(err.message);
          return;
        }
        continue;
      }
      this.state = 'open';
      this.#joinAgain();
      this.emit('reconnected', { resumed });
      return;
    }
  }

  /** A new connection is in no channel: join each again with its join data (a resume
   * where the back still holds the membership, a fresh join otherwise). */
  #joinAgain() {
    for (const [name, channel] of this.#channels) {
      if (channel.state === 'leaving') {
        // The close left the channel already.
        this.#forget(channel, 'left');
        continue;
      }
      channel.state = 'joining';
      // A room's seat again: the back takes it as good when the resume claim finds the
      // membership, and refuses it (seat_expired) when it has to seat the client anew.
      this.#send(encodeJoin(name, channel.joinData, channel.seat));
    }
  }

  /** No more connection: every pending promise fails, every channel is out. */
  #end(reason) {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.#watchTimer);
    this.#watchTimer = null;
    this.#ws = null;
    const closed = new CentrumError('closed', reason, true);
    this.#failPings(closed);
    for (const channel of [...this.#channels.values()]) this.#forget(channel, reason, closed);
    this.emit('closed', { reason });
  }

  #failPings(err) {
    for (const { reject, timer } of this.#pings.values()) {
      clearTimeout(timer);
      reject(err);
    }
    this.#pings.clear();
  }

  #send(bytes) {
    const ws = this.#ws;
    if (!ws || ws.readyState !== 1) {
      throw new CentrumError('not_connected', this.state === 'closed' ? 'the client is closed' : 'the connection is down; it is being re-established');
    }
    ws.send(bytes);
  }

  // ---- messages ------------------------------------------------------------------------

  /** Handles what arrived from the server now, or after what is held. */
  #inbox(handle) {
    if (this.#held) this.#held.push(handle);
    else handle();
  }

  /**
   * Holds what arrives next until the current task, and the promise jobs it queued, are
   * done. A resolved join calls it: the application's code after `await client.join()`
   * then adds its listeners before the messages that followed the State are handled,
   * even when they arrived in the same task (Node's ws emits every message of one read
   * at once), so it never misses the game's first message, such as who its player is.
   */
  #hold() {
    if (this.#held) return;
    this.#held = [];
    nextTask(() => {
      const held = this.#held;
      this.#held = null;
      for (let i = 0; i < held.length; i++) {
        try {
          held[i]();
        } catch (err) {
          // A bug, not the server's doing: reported on its own task, as the Emitter does,
          // so that what arrived after it is still handled.
          queueMicrotask(() => {
            throw err;
          });
        }
        if (this.#held) {
          // Another join resolved: the rest waits behind it, still in order.
          this.#held.push(...held.slice(i + 1));
          return;
        }
      }
    });
  }

  #receive(message, ws) {
    if (this.state === 'closed') return; // `closed` is the end: nothing follows it
    const channel = message.channel === undefined ? undefined : this.#channels.get(message.channel);
    switch (message.type) {
      case 'state': {
        if (!channel || channel.state === 'leaving') return; // §8: ignore after Leave
        this.#guard(ws, () => channel.onState(message));
        const join = this.#joins.get(channel);
        if (join) {
          this.#joins.delete(channel);
          join.resolve(channel);
          this.#hold();
        }
        return;
      }
      case 'patch':
        if (!channel || channel.state === 'leaving' || channel.state === 'joining') return;
        this.#guard(ws, () => channel.onPatch(message));
        return;
      case 'rejected': {
        if (!channel) return;
        const err = rejectedError(message.reason);
        const join = this.#joins.get(channel);
        this.#forget(channel, message.reason, err);
        if (!join) channel.emit('rejected', { reason: message.reason });
        return;
      }
      case 'left':
        if (!channel) return;
        this.#forget(channel, message.reason);
        return;
      case 'unavailable':
        if (!channel) return;
        channel.state = 'unavailable';
        channel.emit('unavailable');
        return;
      case 'error':
        this.emit('error', new CentrumError(message.code, message.message, FATAL_FOR_GOOD.has(message.code)));
        return;
      case 'pong': {
        const ping = this.#pings.get(message.nonce);
        if (!ping) return;
        this.#pings.delete(message.nonce);
        clearTimeout(ping.timer);
        ping.resolve(performance.now() - ping.sentAt);
        return;
      }
      case 'message':
        // Only in the channel: not before its State, not after a Leave (§8).
        if (!channel || (channel.state !== 'joined' && channel.state !== 'unavailable')) return;
        try {
          channel.onMessage(message);
        } catch (err) {
          if (!(err instanceof CentrumError)) throw err;
          this.emit('error', err);
        }
        return;
      case 'welcome':
        this.emit('error', new CentrumError('protocol', 'a second Welcome on one connection'));
        return;
    }
  }

  /**
   * Applies a State or Patch; one that does not fit means the mirror cannot be trusted,
   * so the client reports it and reconnects, which brings fresh States (§9.5).
   */
  #guard(ws, apply) {
    try {
      apply();
    } catch (err) {
      if (!(err instanceof CentrumError)) throw err;
      this.emit('error', err);
      ws.close(4000, 'mirror mismatch');
    }
  }

  /** The channel is out: settle what waited on it and let it go. */
  #forget(channel, reason, err) {
    this.#channels.delete(channel.name);
    channel.state = 'out';
    const join = this.#joins.get(channel);
    this.#joins.delete(channel);
    const leave = this.#leaves.get(channel);
    this.#leaves.delete(channel);
    if (join) join.reject(err ?? new CentrumError('closed', reason));
    if (leave) leave.resolve();
    channel.emit('left', { reason });
  }

  #leave(channel) {
    if (this.#channels.get(channel.name) !== channel || channel.state === 'out') {
      return Promise.reject(new CentrumError('not_joined', `not in channel ${JSON.stringify(channel.name)}`));
    }
    if (channel.state === 'leaving') return this.#leaves.get(channel).promise;
    try {
      this.#send(encodeLeave(channel.name));
    } catch (err) {
      return Promise.reject(err);
    }
    channel.state = 'leaving';
    let settle;
    const promise = new Promise((resolve, reject) => (settle = { resolve, reject }));
    this.#leaves.set(channel, { ...settle, promise });
    return promise;
  }
}

/**
 * A refused join: the message is the server's reason, whose leading code (`seat_expired`,
 * `room_full`, `unauthorized`, …, before ": ") is also `reason`.
 */
function rejectedError(reason) {
  const err = new CentrumError('rejected', reason);
  err.reason = /^([a-z][a-z0-9_]*): /.exec(reason)?.[1] ?? '';
  return err;
}

/**
 * Runs `fn` in a task of its own, after the promise jobs queued so far: setImmediate in
 * Node; in browsers a MessageChannel, which background tabs do not throttle as they do
 * timers.
 */
function nextTask(fn) {
  if (typeof setImmediate === 'function') {
    setImmediate(fn);
  } else if (typeof MessageChannel === 'function') {
    const { port1, port2 } = new MessageChannel();
    port1.onmessage = () => {
      port1.close();
      fn();
    };
    port2.postMessage(null);
  } else {
    setTimeout(fn, 0);
  }
}

/** The WebSocket to use: the option, the platform's, or Node's `ws` package. */
async function webSocketClass(option) {
  if (option) return option;
  if (globalThis.WebSocket) return globalThis.WebSocket;
  try {
    const module = await import('ws');
    return module.default ?? module.WebSocket;
  } catch {
    throw new CentrumError('connect_failed', 'no WebSocket here: install the ws package, or pass options.WebSocket');
  }
}
