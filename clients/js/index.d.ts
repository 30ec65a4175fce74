// Type declarations of centrum-client (the sources are plain JavaScript in src/).

/** The protocol version this client speaks. */
export declare const PROTOCOL_VERSION: 2;

/**
 * Every rejected promise and every `error` event carries one. `code` is the server's
 * (PROTOCOL.md §10: `version`, `malformed`, `not_joined`, `input_refused`, `bad_seq`,
 * `messages_dropped`, …) or the client's own: `gate_failed`, `connect_failed`, `closed`,
 * `protocol`, `not_connected`, `not_joined`, `already_joined`, `timeout`, `rejected`,
 * `silent` (the front stopped answering; the client reconnects).
 */
export declare class CentrumError extends Error {
  readonly name: 'CentrumError';
  readonly code: string;
  /** True when the connection ends because of it. */
  readonly fatal: boolean;
  constructor(code: string, message: string, fatal?: boolean);
}

/** A field value: `fixed`, `f32`, `f64` and small `int`/`uint` are numbers. */
export type Value = boolean | number | bigint | string | Uint8Array;

/** One entity of a channel. The same object is updated in place by every patch. */
export interface Entity {
  readonly id: number;
  /** The kind's name from the schema, e.g. `player`. */
  readonly kind: string;
  readonly fields: Record<string, Value>;
}

export interface FieldDef {
  name: string;
  type: 'bool' | 'int' | 'uint' | 'f32' | 'f64' | 'fixed' | 'str' | 'bytes';
  /** The fixed-point scale of `fixed` fields; 0 for the others. */
  scale: number;
}

export interface Kind {
  name: string;
  fields: FieldDef[];
}

export interface Changes {
  added: Entity[];
  changed: [Entity, string[]][];
  removed: Entity[];
}

/** A copy of one channel's state, built from a State and advanced by each Patch. */
export declare class Mirror {
  schema: Kind[];
  /** -1 before the first State. */
  tick: number;
  entities: Map<number, Entity>;
  replace(state: { tick: number; schema: Kind[]; entities: unknown[] }): Changes;
  apply(patch: { tick: number; removed: number[]; spawned: unknown[]; updated: unknown[] }): Changes;
}

/** RFC 1982 order on u32 ticks and seqs: is `a` after `b`? */
export declare function serialAfter(a: number, b: number): boolean;

type Unsubscribe = () => void;

/** What comes with a game's message besides its value. */
export interface MessageInfo {
  /** The tick during which the game sent it; it arrives after that tick's `state`/`patch`. */
  tick: number;
  /** The message's MessagePack as it arrived, for a game that decodes it itself. */
  bytes: Uint8Array;
}

/**
 * `M` is the type of the game's messages as this application expects them. The SDK does
 * not check it: `data` is whatever the MessagePack held (maps as objects, bins as
 * Uint8Arrays, integers in a 64-bit format as BigInts).
 */
export interface ChannelEvents<M = unknown> {
  /** A full state replaced the mirror: after the join, a resync, `unavailable`, a reconnect. */
  state: (info: { tick: number; ack: number }) => void;
  patch: (info: { tick: number; ack: number }) => void;
  added: (entity: Entity) => void;
  changed: (entity: Entity, fields: string[]) => void;
  removed: (entity: Entity) => void;
  /** The channel's back is unreachable; a `state` follows when it is back. */
  unavailable: () => void;
  /** The client is no longer in the channel. */
  left: (info: { reason: string }) => void;
  /** A re-join (after `unavailable` or a reconnect) was refused; `left` follows. */
  rejected: (info: { reason: string }) => void;
  /**
   * A message of the game, to this client alone or to everyone in the channel: sent during
   * `info.tick`, it arrives after that tick's `state` or `patch`, so the mirror already
   * shows that tick. Only while the channel is joined or unavailable. A listener added
   * right after `await client.join()` hears every message that followed the join's State.
   */
  message: (data: M, info: MessageInfo) => void;
}

export declare class Channel<M = unknown> {
  readonly name: string;
  /** `joining`, `joined`, `unavailable`, `leaving` or `out`. */
  readonly state: 'joining' | 'joined' | 'unavailable' | 'leaving' | 'out';
  readonly mirror: Mirror;
  readonly tick: number;
  readonly schema: Kind[];
  /** The last input seq of this client the back applied; 0 for none. */
  readonly ack: number;
  /**
   * Sends an input and returns its seq: 1, 2, …, 4294967295, then 1 again (never 0).
   * `data` is any MessagePack-able value, or already-encoded bytes. Throws `not_joined`
   * unless joined, `not_connected` while the connection is being re-established (inputs
   * are not queued).
   */
  sendInput(data: unknown): number;
  /** Leaves; resolves when the front confirms. */
  leave(): Promise<void>;
  on<E extends keyof ChannelEvents<M>>(event: E, listener: ChannelEvents<M>[E]): Unsubscribe;
  once<E extends keyof ChannelEvents<M>>(event: E, listener: ChannelEvents<M>[E]): Unsubscribe;
}

export interface ClientEvents {
  error: (error: CentrumError) => void;
  reconnecting: (info: { attempt: number; delayMs: number }) => void;
  /**
   * `resumed` is the Welcome's: true when the server took the resume token, so the session
   * kept its id and joining again claimed each membership the back still held (the same
   * player, the same ack; where the back no longer held it, the join made a new player).
   * False: a new session, every channel was joined afresh.
   */
  reconnected: (info: { resumed: boolean }) => void;
  /** The end: `close()`, reconnecting off or given up, or a fatal error. */
  closed: (info: { reason: string }) => void;
}

export interface ClientOptions {
  /**
   * The JWT sent in Hello; `""` (the default) for none. A function is called before every
   * dial, the first and each reconnect, so that an expired token is replaced: it may return
   * the token or a promise of it; if it throws, the dial fails with `token_failed`. A token
   * the front refuses fails the dial with `unauthorized`; a reconnect gives up on it unless
   * the token is a function.
   */
  token?: string | (() => string | Promise<string>);
  /** Dial again after an unexpected close. Default true. */
  reconnect?: boolean;
  /** Give up reconnecting after this long. Default 30000. */
  maxReconnectMs?: number;
  /** For the gate, the WebSocket and the Welcome. Default 10000. */
  connectTimeoutMs?: number;
  /** Ping a front that has sent nothing for this long. Default 2000. */
  pingAfterMs?: number;
  /**
   * A front that then answers nothing for this long is taken for gone: the connection is
   * dropped and the client reconnects and resumes (emitting `error` with code `silent`).
   * Default 4000.
   */
  silenceTimeoutMs?: number;
  /** A WebSocket constructor; default: the platform's, else the `ws` package. */
  WebSocket?: unknown;
}

export type Target = { url: string } | { gate: string; channel: string };

export declare class Client {
  /** Connects (through the master's gate, or to a front's URL) and waits for Welcome. */
  static connect(target: Target, options?: ClientOptions): Promise<Client>;
  readonly state: 'open' | 'reconnecting' | 'closed';
  readonly session: string;
  readonly front: string;
  /**
   * The current connection's Welcome said the session resumed (see `reconnected`). False
   * on the first connection.
   */
  readonly resumed: boolean;
  /**
   * Resolves with the Channel once its first State arrived; rejects `rejected` with the
   * reason. `M` types the game's messages (`message` events); it is not checked.
   */
  join<M = unknown>(channel: string, data?: unknown): Promise<Channel<M>>;
  channel<M = unknown>(name: string): Channel<M> | undefined;
  /** Round trip in milliseconds. */
  ping(timeoutMs?: number): Promise<number>;
  close(): Promise<void>;
  on<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): Unsubscribe;
  once<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): Unsubscribe;
}
