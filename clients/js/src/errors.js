// The one error type of the SDK: every rejected promise and every `error` event carries a
// CentrumError, whose `code` is the server's (PROTOCOL.md §10) or one of the client's own.

/**
 * Client-side codes, beside the server's (`version`, `malformed`, `not_joined`, …):
 * - `gate_failed`: the master's gate did not name a front
 * - `connect_failed`: the WebSocket did not open, or no Welcome came
 * - `closed`: the connection ended (and reconnecting gave up or was off)
 * - `protocol`: the server sent something this client cannot read; it closes
 * - `not_connected`: an input while the connection is down (it is not queued)
 * - `not_joined`: an input or leave for a channel the client is not in
 * - `timeout`: no answer in time
 * - `rejected`: the channel refused the join (`message` is its reason, `reason` the
 *   reason's leading code: `seat_expired`, `room_full`, `unauthorized`, …)
 * - `matchmake_failed`: the master's matchmaker could not be reached, or answered nothing
 *   it could read (its own refusals keep their code: `room_full`, `no_capacity`, …)
 */
export class CentrumError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {boolean} [fatal] true when the connection ends because of it
   */
  constructor(code, message, fatal = false) {
    super(message);
    this.name = 'CentrumError';
    this.code = code;
    this.fatal = fatal;
  }
}
