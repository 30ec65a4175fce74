// The wire format (PROTOCOL.md §2, §5): the one place that turns client messages into
// bytes and server bytes into checked message objects. Every shape the server sends is
// validated here, so the rest of the SDK works with well-formed objects only.
import { Decoder, Encoder } from '@msgpack/msgpack';

import { CentrumError } from './errors.js';

/** The protocol version this client speaks. */
export const PROTOCOL_VERSION = 2;

const encoder = new Encoder();
// 64-bit integer formats (which the server writes only for values beyond 32 bits) decode
// to BigInt, so patch masks of up to 64 fields and large uint fields stay exact.
const decoder = new Decoder({ useBigInt64: true });

const U32_MAX = 0xffffffff;
const FIELD_TYPES = new Set(['bool', 'int', 'uint', 'f32', 'f64', 'fixed', 'str', 'bytes']);

// ---- client -> front -------------------------------------------------------------------

export function encodeHello(token, resume) {
  return encoder.encode([0, [PROTOCOL_VERSION, token, resume ?? null]]);
}

/** A Join; with a seat (a room's, from the matchmaker) it has three elements, else two. */
export function encodeJoin(channel, data, seat) {
  return encoder.encode([1, seat === undefined ? [channel, data] : [channel, data, seat]]);
}

export function encodeLeave(channel) {
  return encoder.encode([2, [channel]]);
}

export function encodeInput(channel, seq, data) {
  return encoder.encode([3, [channel, seq, data]]);
}

export function encodePing(nonce) {
  return encoder.encode([4, [nonce]]);
}

/**
 * Application data (join data, input data) as the bytes of a `bin` field: a Uint8Array is
 * taken as already-encoded MessagePack; `undefined` is empty; anything else is encoded.
 * @param {unknown} value
 * @returns {Uint8Array}
 */
export function appData(value) {
  if (value === undefined) return new Uint8Array(0);
  if (value instanceof Uint8Array) return value;
  return encoder.encode(value);
}

/**
 * The value inside application data (a game's message): the inverse of `appData`. Maps
 * come as objects, bins as Uint8Arrays, and integers in a 64-bit format (which the server
 * writes only for values beyond 32 bits) as BigInts.
 * @param {Uint8Array} bytes
 * @returns {unknown}
 * @throws {CentrumError} code `protocol` (not fatal) when the bytes are not one MessagePack value
 */
export function decodeAppData(bytes) {
  try {
    return decoder.decode(bytes);
  } catch (err) {
    throw new CentrumError('protocol', `the game's data is not one MessagePack value: ${err.message}`);
  }
}

// ---- front -> client -------------------------------------------------------------------

/**
 * Decodes and checks one server message.
 * @param {ArrayBuffer | Uint8Array} bytes
 * @returns {ServerMessage}
 * @throws {CentrumError} code `protocol` for anything that is not a valid server message
 */
export function decodeServer(bytes) {
  let value;
  try {
    value = decoder.decode(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes));
  } catch (err) {
    throw protocol(`not a MessagePack value: ${err.message}`);
  }
  const [type, body] = fields(value, 2, 'message');
  if (!Array.isArray(body)) throw protocol('the message body is not an array');
  switch (type) {
    case 0: {
      const [version, session, resume, front, resumed] = fields(body, 5, 'Welcome');
      return {
        type: 'welcome', version: u32(version, 'version'), session: str(session, 'session'), resume: str(resume, 'resume'),
        front: str(front, 'front'), resumed: bool(resumed, 'resumed'),
      };
    }
    case 1: {
      const [ack, channel, tick, schema, entities] = fields(body, 5, 'State');
      return { type: 'state', ack: u32(ack, 'ack'), channel: str(channel, 'channel'), tick: u32(tick, 'tick'), schema: decodeSchema(schema), entities: list(entities, 'entities') };
    }
    case 2: {
      const [ack, channel, tick, removed, spawned, updated] = fields(body, 6, 'Patch');
      return {
        type: 'patch', ack: u32(ack, 'ack'), channel: str(channel, 'channel'), tick: u32(tick, 'tick'),
        removed: list(removed, 'removed').map((id) => u32(id, 'removed id')),
        spawned: list(spawned, 'spawned'), updated: list(updated, 'updated'),
      };
    }
    case 3: {
      const [channel, reason] = fields(body, 2, 'Rejected');
      return { type: 'rejected', channel: str(channel, 'channel'), reason: str(reason, 'reason') };
    }
    case 4: {
      const [channel, reason] = fields(body, 2, 'Left');
      return { type: 'left', channel: str(channel, 'channel'), reason: str(reason, 'reason') };
    }
    case 5: {
      const [channel] = fields(body, 1, 'Unavailable');
      return { type: 'unavailable', channel: str(channel, 'channel') };
    }
    case 6: {
      const [code, message] = fields(body, 2, 'Error');
      return { type: 'error', code: str(code, 'code'), message: str(message, 'message') };
    }
    case 7: {
      const [nonce] = fields(body, 1, 'Pong');
      if (!isUint(nonce)) throw protocol('Pong.nonce is not an unsigned integer');
      return { type: 'pong', nonce: Number(nonce) };
    }
    case 8: {
      // The game's data stays bytes here: it is the game's MessagePack, and a value this
      // client cannot read is the game's problem, not a reason to drop the connection.
      const [channel, tick, data] = fields(body, 3, 'Message');
      return { type: 'message', channel: str(channel, 'channel'), tick: u32(tick, 'tick'), data: bin(data, 'data') };
    }
    default:
      throw protocol(`unknown message type ${String(type)}`);
  }
}

/** `[ [name, [[field, type, scale], …]], … ]` → `[{ name, fields: [{ name, type, scale }] }]`. */
function decodeSchema(value) {
  return list(value, 'schema').map((kind, k) => {
    const [name, kindFields] = fields(kind, 2, `schema kind ${k}`);
    const decoded = list(kindFields, `fields of kind ${k}`).map((field, f) => {
      const [fieldName, type, scale] = fields(field, 3, `field ${f} of kind ${k}`);
      if (!FIELD_TYPES.has(type)) throw protocol(`field ${f} of kind ${k} has unknown type ${JSON.stringify(type)}`);
      const s = u32(scale, 'scale');
      if (type === 'fixed' && s === 0) throw protocol(`fixed field ${f} of kind ${k} has scale 0`);
      return { name: str(fieldName, 'field name'), type, scale: s };
    });
    if (decoded.length > 64) throw protocol(`kind ${k} has ${decoded.length} fields; at most 64`);
    return { name: str(name, 'kind name'), fields: decoded };
  });
}

function fields(value, n, what) {
  if (!Array.isArray(value) || value.length !== n) {
    throw protocol(`${what} must be an array of ${n} elements`);
  }
  return value;
}

function list(value, what) {
  if (!Array.isArray(value)) throw protocol(`${what} is not an array`);
  return value;
}

function str(value, what) {
  if (typeof value !== 'string') throw protocol(`${what} is not a string`);
  return value;
}

function bool(value, what) {
  if (typeof value !== 'boolean') throw protocol(`${what} is not a bool`);
  return value;
}

function bin(value, what) {
  if (!(value instanceof Uint8Array)) throw protocol(`${what} is not a bin`);
  return value;
}

function isUint(value) {
  return (typeof value === 'number' && Number.isInteger(value) && value >= 0) || (typeof value === 'bigint' && value >= 0n);
}

function u32(value, what) {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > U32_MAX) {
    throw protocol(`${what} is not a u32`);
  }
  return value;
}

function protocol(message) {
  return new CentrumError('protocol', `bad message from the server: ${message}`, true);
}

/**
 * @typedef {{ name: string, fields: { name: string, type: string, scale: number }[] }} Kind
 * @typedef {{ type: string } & Record<string, any>} ServerMessage
 */
