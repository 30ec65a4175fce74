// One channel the client has joined: its mirror, tick and ack, inputs numbered by `seq`,
// events for what each State and Patch changed, and the game's messages. A Channel
// outlives reconnections: the client joins it again on the new connection and its mirror
// is rebuilt from that State.
import { appData, decodeAppData } from './codec.js';
import { Emitter } from './emitter.js';
import { CentrumError } from './errors.js';
import { Mirror } from './mirror.js';
import { nextSeq, serialAfter } from './serial.js';

/**
 * States (PROTOCOL.md §8): `joining` (Join sent, no State yet), `joined`, `unavailable`
 * (the back is unreachable; a State follows), `leaving`, `out`.
 */
export class Channel extends Emitter {
  /** The last input `seq` of this client that the back applied (0: none yet). */
  ack = 0;
  state = 'joining';
  mirror = new Mirror();
  #seq = 0;
  #link;

  /**
   * @param {string} name
   * @param {Uint8Array} data the join data, kept to join again after a reconnect
   * @param {{ send(bytes: Uint8Array): void, input(channel: string, seq: number, data: Uint8Array): void, leave(channel: Channel): Promise<void> }} link
   * @param {string} [seat] a room's seat token, kept (as the join data) to join again
   */
  constructor(name, data, link, seat) {
    super();
    this.name = name;
    this.joinData = data;
    this.seat = seat;
    this.#link = link;
  }

  /** The tick of the latest State or Patch. */
  get tick() {
    return this.mirror.tick;
  }

  /** The kinds of entity and their fields. */
  get schema() {
    return this.mirror.schema;
  }

  /**
   * Sends an input; returns its `seq` (1, 2, …, 4294967295, then 1 again: never 0). Acks
   * arrive with later patches (`ack`).
   * @param {unknown} data MessagePack-able value, or already-encoded bytes
   * @returns {number}
   * @throws {CentrumError} `not_joined` unless joined, `not_connected` while reconnecting
   */
  sendInput(data) {
    if (this.state !== 'joined') {
      throw new CentrumError('not_joined', `channel ${JSON.stringify(this.name)} is ${this.state}: inputs need a joined channel`);
    }
    const seq = nextSeq(this.#seq);
    this.#link.input(this.name, seq, appData(data));
    this.#seq = seq;
    return seq;
  }

  /** Leaves the channel; resolves when the front confirms. */
  leave() {
    return this.#link.leave(this);
  }

  // ---- called by the Client ----

  /** @internal A State: replace the mirror and tell what changed. */
  onState(message) {
    const changes = this.mirror.replace(message);
    this.#acked(message.ack);
    this.state = 'joined';
    this.#report(changes);
    this.emit('state', { tick: message.tick, ack: message.ack });
  }

  /** @internal A Patch. */
  onPatch(message) {
    const changes = this.mirror.apply(message);
    this.#acked(message.ack);
    this.#report(changes);
    this.emit('patch', { tick: message.tick, ack: message.ack });
  }

  /**
   * @internal A message of the game. Its data is decoded here, so that data this client
   * cannot read costs an `error` event, not the connection.
   * @throws {CentrumError} `protocol` when the data is not MessagePack; nothing is emitted
   */
  onMessage(message) {
    const data = decodeAppData(message.data);
    this.emit('message', data, { tick: message.tick, bytes: message.data });
  }

  /**
   * The back refuses an input whose seq is not after the ack (`bad_seq`), so inputs go on
   * after an ack this Channel's own count has not reached: a membership that inputs of
   * another connection moved on (a resumed session). Ack 0 is a new membership, which
   * takes any seq: the count goes on from where it was (§7.3).
   */
  #acked(ack) {
    this.ack = ack;
    if (ack !== 0 && (this.#seq === 0 || serialAfter(ack, this.#seq))) this.#seq = ack;
  }

  #report({ added, changed, removed }) {
    for (const entity of removed) this.emit('removed', entity);
    for (const entity of added) this.emit('added', entity);
    for (const [entity, names] of changed) this.emit('changed', entity, names);
  }
}
