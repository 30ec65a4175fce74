// The master's matchmaker (PROTOCOL.md: rooms): HTTP calls that reserve a seat in a room
// of a type (joining an open one or creating one) or in a given room, and the listing of
// rooms. A seat reservation names the room, a front to dial and the seat token the Join
// presents. Every answer is checked here; the server's errors keep their code.
import { CentrumError } from './errors.js';

/** Longest `Retry-After` taken from a 429, in seconds; beyond it the header is ignored. */
const LONGEST_RETRY_AFTER_S = 3_600;

export class Matchmaker {
  #origin;
  #timeoutMs;

  /**
   * @param {string} master the master's HTTP(S) origin, e.g. `http://127.0.0.1:7300`
   * @param {{ timeoutMs?: number }} [options] per request; default 10000
   */
  constructor(master, { timeoutMs = 10_000 } = {}) {
    if (typeof master !== 'string' || master === '') throw new TypeError('Matchmaker needs the master\'s HTTP origin');
    this.#origin = master.replace(/\/+$/, '');
    this.#timeoutMs = timeoutMs;
  }

  /** The master's origin, without a trailing slash. */
  get master() {
    return this.#origin;
  }

  /**
   * A seat in an open room of `type` whose metadata matches every field of `filter`, or
   * in a new room created with `options` when there is none.
   * @param {string} type
   * @param {{ options?: unknown, filter?: Record<string, unknown> }} [request]
   * @returns {Promise<SeatReservation>}
   * @throws {CentrumError} the server's code (`unknown_type`, `bad_options`, `no_capacity`,
   *   `rate_limited`, …) or `matchmake_failed`
   */
  joinOrCreate(type, { options = null, filter } = {}) {
    const body = filter === undefined ? { options } : { options, filter };
    return this.#reserve(`/v1/rooms/${encodeURIComponent(type)}/join-or-create`, body);
  }

  /**
   * A seat in a new room of `type`, created with `options`.
   * @returns {Promise<SeatReservation>}
   * @throws {CentrumError} as `joinOrCreate`
   */
  create(type, { options = null } = {}) {
    return this.#reserve(`/v1/rooms/${encodeURIComponent(type)}/create`, { options });
  }

  /**
   * A seat in the room `roomId`.
   * @returns {Promise<SeatReservation>}
   * @throws {CentrumError} `no_such_room`, `room_full`, `room_locked`, … or `matchmake_failed`
   */
  joinById(roomId) {
    return this.#reserve(`/v1/rooms/${encodeURIComponent(roomId)}/join`, {});
  }

  /**
   * The rooms of `type` (of every type when it is absent), as the master lists them.
   * @param {string} [type]
   * @returns {Promise<RoomListing[]>}
   * @throws {CentrumError} the server's code or `matchmake_failed`
   */
  async rooms(type) {
    const query = type === undefined ? '' : `?type=${encodeURIComponent(type)}`;
    const { url, body } = await this.#request('GET', `/v1/rooms${query}`);
    if (!Array.isArray(body)) throw failed(`${url} answered with no list of rooms`);
    return body.map((room, i) => {
      const ok = room !== null && typeof room === 'object' && typeof room.id === 'string' && typeof room.type === 'string'
        && Number.isInteger(room.clients) && Number.isInteger(room.max) && typeof room.locked === 'boolean';
      if (!ok) throw failed(`${url} answered room ${i} without id, type, clients, max and locked`);
      return { id: room.id, type: room.type, clients: room.clients, max: room.max, metadata: room.metadata ?? null, locked: room.locked };
    });
  }

  async #reserve(path, request) {
    const { url, body } = await this.#request('POST', path, request);
    const ok = body !== null && typeof body === 'object' && typeof body.room === 'string' && typeof body.front === 'string'
      && typeof body.seat === 'string' && Number.isFinite(body.expires_in_ms);
    if (!ok) throw failed(`${url} answered without a seat reservation (room, front, seat, expires_in_ms)`);
    return { room: body.room, type: typeof body.type === 'string' ? body.type : '', front: body.front, seat: body.seat, expiresInMs: body.expires_in_ms };
  }

  /** One request; resolves with the parsed JSON of a 2xx answer, else throws. */
  async #request(method, path, request) {
    const url = `${this.#origin}${path}`;
    const init = { method, signal: AbortSignal.timeout(this.#timeoutMs) };
    if (request !== undefined) {
      init.headers = { 'Content-Type': 'application/json' };
      init.body = JSON.stringify(request);
    }
    let response;
    let text;
    try {
      response = await fetch(url, init);
      text = await response.text();
    } catch (err) {
      const why = err?.name === 'TimeoutError' ? `no answer within ${this.#timeoutMs} ms` : err?.message ?? String(err);
      throw failed(`cannot reach the matchmaker at ${url}: ${why}`);
    }
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      throw failed(`the matchmaker at ${url} answered ${response.status} without JSON`);
    }
    if (response.ok) return { url, body };
    if (typeof body?.error !== 'string') {
      throw failed(`the matchmaker at ${url} answered ${response.status} without an error code`);
    }
    const err = new CentrumError(body.error, typeof body.message === 'string' ? body.message : `${body.error} (${response.status})`);
    err.status = response.status;
    const retryAfter = Number(response.headers.get('retry-after'));
    if (response.headers.has('retry-after') && Number.isFinite(retryAfter) && retryAfter >= 0 && retryAfter <= LONGEST_RETRY_AFTER_S) {
      err.retryAfterMs = retryAfter * 1000;
    }
    throw err;
  }
}

function failed(message) {
  return new CentrumError('matchmake_failed', message);
}

/**
 * @typedef {{ room: string, type: string, front: string, seat: string, expiresInMs: number }} SeatReservation
 * @typedef {{ id: string, type: string, clients: number, max: number, metadata: unknown, locked: boolean }} RoomListing
 */
