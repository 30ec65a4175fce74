// Type declarations of centrum-client (the sources are plain JavaScript in src/).

/** The protocol version this client speaks. */
export declare const PROTOCOL_VERSION: 2;

/**
 * Every rejected promise and every `error` event carries one. `code` is the server's
 * (PROTOCOL.md §10: `version`, `malformed`, `not_joined`, `input_refused`, `bad_seq`,
 * `messages_dropped`, …), the matchmaker's (`unknown_type`, `no_such_room`, `room_full`,
 * `room_locked`, `bad_options`, `bad_request`, `rate_limited`, `no_capacity`,
 * `unavailable`), or the client's own: `gate_failed`, `connect_failed`, `closed`,
 * `protocol`, `not_connected`, `not_joined`, `already_joined`, `timeout`, `rejected`,
 * `matchmake_failed` (the matchmaker could not be reached or answered nothing readable),
 * `silent` (the front stopped answering; the client reconnects).
 */
export declare class CentrumError extends Error {
  readonly name: 'CentrumError';
  readonly code: string;
  /** True when the connection ends because of it. */
  readonly fatal: boolean;
  /**
   * Code `rejected` only: the leading code of the server's reason (the text before
   * `": "`: `seat_required`, `seat_invalid`, `seat_expired`, `seat_used`, `room_full`,
   * `no_such_room`, `unauthorized`, `forbidden`, …), or `""` when it has none. The whole
   * reason is `message`.
   */
  readonly reason?: string;
  /** A matchmaker's refusal: the HTTP status it came with (404, 409, 429, 503, …). */
  readonly status?: number;
  /** A matchmaker's `rate_limited`: its `Retry-After`, in milliseconds. */
  readonly retryAfterMs?: number;
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
  /**
   * The client is no longer in the channel: `left` (its own leave), `disposed` (the room
   * closed), or the reason the connection or a re-join ended.
   */
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

/**
 * Where to connect: a front's WebSocket URL (with `master`, the master's HTTP origin, the
 * client can reserve room seats), or the master's gate and the channel to ask it about.
 */
export type Target = { url: string; master?: string } | { gate: string; channel: string };

/** A room as `GET /v1/rooms` lists it. */
export interface RoomListing {
  /** The room id, `<type>.<12 base32 chars>.<back id>`: treat it as opaque. It is the room's channel name. */
  id: string;
  type: string;
  /** Joined clients plus unexpired seat reservations. */
  clients: number;
  /** The room's `max_clients`. */
  max: number;
  /** What the game published about the room (filters match it), or null. */
  metadata: unknown;
  /** A locked room takes no joinOrCreate and no joinById. */
  locked: boolean;
}

/** A seat the matchmaker reserved: good for one Join of `room` on any front, for `expiresInMs`. */
export interface SeatReservation {
  /** The room id, to join as a channel name. */
  room: string;
  type: string;
  /** A front's WebSocket URL to dial (any front of the cluster takes the seat). */
  front: string;
  /** The opaque token the Join presents. */
  seat: string;
  expiresInMs: number;
}

/** What joinOrCreate asks for. */
export interface JoinOrCreateRequest {
  /** Creation options for a new room, any JSON; the game may refuse them (`bad_options`). Default null. */
  options?: unknown;
  /** Join only a room whose metadata has each of these fields equal to the given value. */
  filter?: Record<string, unknown>;
  /** The join data, as for `join`. */
  data?: unknown;
}

export interface CreateRequest {
  options?: unknown;
  data?: unknown;
}

export interface JoinByIdRequest {
  data?: unknown;
}

/** The client a static room helper connected, and the room it joined. */
export interface Seated<M = unknown> {
  client: Client;
  channel: Channel<M>;
}

/**
 * The master's matchmaker over HTTP: seat reservations and the listing of rooms. The
 * Client's room methods use it; use it alone to reserve a seat that another program joins.
 * Refusals reject with the server's code, unreachable or unreadable answers with
 * `matchmake_failed`.
 */
export declare class Matchmaker {
  /** `master`: the master's HTTP(S) origin. `timeoutMs` bounds each request (default 10000). */
  constructor(master: string, options?: { timeoutMs?: number });
  readonly master: string;
  joinOrCreate(type: string, request?: { options?: unknown; filter?: Record<string, unknown> }): Promise<SeatReservation>;
  create(type: string, request?: { options?: unknown }): Promise<SeatReservation>;
  joinById(roomId: string): Promise<SeatReservation>;
  /** The rooms of `type`, or of every type. */
  rooms(type?: string): Promise<RoomListing[]>;
}

export declare class Client {
  /** Connects (through the master's gate, or to a front's URL) and waits for Welcome. */
  static connect(target: Target, options?: ClientOptions): Promise<Client>;
  /**
   * Asks the master (`master`: its HTTP(S) origin) for a seat in an open room of `type`
   * whose metadata matches `filter`, or in a new room created with `options`; connects to
   * the front the seat names and joins the room with `data`. The client reconnects to that
   * front. Rejects with the matchmaker's code (`unknown_type`, `no_capacity`,
   * `rate_limited`, …), `matchmake_failed`, `connect_failed` or `rejected`; on a failed
   * join the client is closed.
   */
  static joinOrCreate<M = unknown>(master: string, type: string, request?: JoinOrCreateRequest & ClientOptions): Promise<Seated<M>>;
  /** Like `joinOrCreate`, always in a new room. */
  static create<M = unknown>(master: string, type: string, request?: CreateRequest & ClientOptions): Promise<Seated<M>>;
  /** Like `joinOrCreate`, in room `roomId` (`no_such_room`, `room_full`, `room_locked`). */
  static joinById<M = unknown>(master: string, roomId: string, request?: JoinByIdRequest & ClientOptions): Promise<Seated<M>>;
  /** `GET {master}/v1/rooms?type=…`: the rooms of `type` (of every type when absent). */
  static getAvailableRooms(master: string, type?: string, options?: { connectTimeoutMs?: number }): Promise<RoomListing[]>;
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
   * reason. `M` types the game's messages (`message` events); it is not checked. A room
   * needs its `seat` (see `joinOrCreate`); the client presents it again when it rejoins
   * after a reconnect.
   */
  join<M = unknown>(channel: string, data?: unknown, options?: { seat?: string }): Promise<Channel<M>>;
  /**
   * Reserves a seat through this client's master (the gate it connected through, or the
   * `master` beside its URL) and joins the room on this connection; resolves with the
   * room's Channel. Rejects as the static `joinOrCreate`; a TypeError when the client
   * knows no master.
   */
  joinOrCreate<M = unknown>(type: string, request?: JoinOrCreateRequest): Promise<Channel<M>>;
  create<M = unknown>(type: string, request?: CreateRequest): Promise<Channel<M>>;
  joinById<M = unknown>(roomId: string, request?: JoinByIdRequest): Promise<Channel<M>>;
  getAvailableRooms(type?: string): Promise<RoomListing[]>;
  channel<M = unknown>(name: string): Channel<M> | undefined;
  /** Round trip in milliseconds. */
  ping(timeoutMs?: number): Promise<number>;
  close(): Promise<void>;
  on<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): Unsubscribe;
  once<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): Unsubscribe;
}
