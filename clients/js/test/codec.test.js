// The wire format against PROTOCOL.md §11's golden bytes, and the decoder's refusals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Encoder } from '@msgpack/msgpack';

import { appData, decodeAppData, decodeServer, encodeHello, encodeInput, encodeJoin, encodeLeave, encodePing } from '../src/codec.js';
import { CentrumError, PROTOCOL_VERSION } from '../src/index.js';

const hex = (s) => Uint8Array.from(s.trim().split(/\s+/), (b) => parseInt(b, 16));

test('client messages encode to the golden bytes of §11', () => {
  assert.equal(PROTOCOL_VERSION, 2);
  assert.deepEqual(encodeHello('', null), hex('92 00 93 02 a0 c0'));
  assert.deepEqual(
    encodeHello('', 'front-1.2a.9f3c51e07d2a4c81.front-1-42'),
    hex('92 00 93 02 a0 d9 26 66 72 6f 6e 74 2d 31 2e 32 61 2e 39 66 33 63 35 31 65 30 37 64 32 61 34 63 38 31 2e 66 72 6f 6e 74 2d 31 2d 34 32'),
  );
  assert.deepEqual(encodeJoin('arena', appData(undefined)), hex('92 01 92 a5 61 72 65 6e 61 c4 00'));
  // A room's Join carries the seat as a third element (a str).
  assert.deepEqual(encodeJoin('r', appData(undefined), 'st'), hex('92 01 93 a1 72 c4 00 a2 73 74'));
  assert.deepEqual(appData({ name: 'ada' }), hex('81 a4 6e 61 6d 65 a3 61 64 61'));
  // §11.3 writes the input's floats as float 32: an application picks its own encoding and
  // hands the SDK the bytes.
  const input = new Encoder({ forceFloat32: true }).encode({ dx: 0.25, dy: -0.25 });
  assert.deepEqual(
    encodeInput('arena', 7, appData(input)),
    hex('92 03 93 a5 61 72 65 6e 61 07 c4 11 82 a2 64 78 ca 3e 80 00 00 a2 64 79 ca be 80 00 00'),
  );
  assert.deepEqual(encodePing(1), hex('92 04 91 01'));
  assert.deepEqual(encodeLeave('arena'), hex('92 02 91 a5 61 72 65 6e 61'));
});

test('server messages decode from the bytes of §11', () => {
  assert.deepEqual(
    decodeServer(hex(`92 00 95 02 aa 66 72 6f 6e 74 2d 31 2d 34 32 d9 26 66 72 6f 6e 74 2d 31 2e 32 61 2e 39 66 33 63 35 31
      65 30 37 64 32 61 34 63 38 31 2e 66 72 6f 6e 74 2d 31 2d 34 32 a7 66 72 6f 6e 74 2d 31 c2`)),
    { type: 'welcome', version: 2, session: 'front-1-42', resume: 'front-1.2a.9f3c51e07d2a4c81.front-1-42', front: 'front-1', resumed: false },
  );
  // The same Welcome with resumed = true (c3).
  assert.equal(decodeServer(hex(`92 00 95 02 aa 66 72 6f 6e 74 2d 31 2d 34 32 d9 26 66 72 6f 6e 74 2d 31 2e 32 61 2e 39 66 33 63 35 31
      65 30 37 64 32 61 34 63 38 31 2e 66 72 6f 6e 74 2d 31 2d 34 32 a7 66 72 6f 6e 74 2d 31 c3`)).resumed, true);
  const state = decodeServer(hex('92 01 95 00 a5 61 72 65 6e 61 29 91 92 a6 70 6c 61 79 65 72 93 93 a1 78 a5 66 69 78 65 64 cd 03 e8 93 a1 79 a5 66 69 78 65 64 cd 03 e8 93 a3 73 65 71 a4 75 69 6e 74 00 9a 00 00 64 64 00 01 00 64 64 00'));
  assert.deepEqual(state, {
    type: 'state', ack: 0, channel: 'arena', tick: 41,
    schema: [{ name: 'player', fields: [{ name: 'x', type: 'fixed', scale: 1000 }, { name: 'y', type: 'fixed', scale: 1000 }, { name: 'seq', type: 'uint', scale: 0 }] }],
    entities: [0, 0, 100, 100, 0, 1, 0, 100, 100, 0],
  });
  assert.deepEqual(decodeServer(hex('92 02 96 01 a5 61 72 65 6e 61 2a 90 90 95 01 07 cd 01 5e d1 ff 6a 01')), {
    type: 'patch', ack: 1, channel: 'arena', tick: 42, removed: [], spawned: [], updated: [1, 7, 350, -150, 1],
  });
  assert.deepEqual(decodeServer(hex('92 02 96 02 a5 61 72 65 6e 61 2b 90 90 90')), {
    type: 'patch', ack: 2, channel: 'arena', tick: 43, removed: [], spawned: [], updated: [],
  });
  assert.deepEqual(
    decodeServer(hex('92 06 92 aa 6e 6f 74 5f 6a 6f 69 6e 65 64 b6 6e 6f 74 20 69 6e 20 63 68 61 6e 6e 65 6c 20 22 61 72 65 6e 61 22')),
    { type: 'error', code: 'not_joined', message: 'not in channel "arena"' },
  );
});

test('a Message decodes from its golden bytes, and its data to the game\'s value', () => {
  // {"tagged_by": "ann"} on channel "tag" at tick 42.
  const data = hex('81 a9 74 61 67 67 65 64 5f 62 79 a3 61 6e 6e');
  const message = decodeServer(hex('92 08 93 a3 74 61 67 2a c4 0f 81 a9 74 61 67 67 65 64 5f 62 79 a3 61 6e 6e'));
  assert.deepEqual(message, { type: 'message', channel: 'tag', tick: 42, data });
  assert.ok(message.data instanceof Uint8Array);
  assert.deepEqual(decodeAppData(message.data), { tagged_by: 'ann' });
  // Games write structs as maps with field names; integers as the shortest format.
  assert.deepEqual(decodeAppData(appData({ scored: { player: 7, score: 3 } })), { scored: { player: 7, score: 3 } });
  assert.equal(decodeAppData(hex('cf 00 00 00 01 00 00 00 00')), 2n ** 32n, 'a 64-bit integer is a BigInt');
  assert.throws(() => decodeAppData(hex('c1')), (err) => err instanceof CentrumError && err.code === 'protocol' && !err.fatal);
  assert.throws(() => decodeAppData(hex('01 02')), (err) => err.code === 'protocol', 'trailing bytes');
});

test('anything else from the server is a protocol error, never a crash', () => {
  for (const [bytes, why] of [
    ['c1', 'not a MessagePack value'],
    ['92 09 90', 'unknown message type 9'],
    ['93 00 90 00', 'array of 2'],
    ['92 05 92 a1 61 a1 62', 'array of 1'],
    ['92 00 94 02 a0 a0 a0', 'Welcome must be an array of 5'],  // a version 1 Welcome
    ['92 00 95 02 02 a0 a0 c2', 'session is not a string'],
    ['92 00 95 02 a0 a0 a0 01', 'resumed is not a bool'],
    ['92 08 93 a1 61 2a a1 62', 'data is not a bin'],
    ['92 08 92 a1 61 2a', 'Message must be an array of 3'],
    ['92 02 96 01 a1 61 2a 90 90 01', 'updated is not an array'],
    ['92 02 96 01 a1 61 2a 90 90 95 01', 'not a MessagePack value'],
    ['92 07 91 ff', 'nonce'],
    ['92 01 95 00 a1 61 00 91 92 a1 6b 91 93 a1 66 a4 75 75 69 64 00 90', 'unknown type "uuid"'],
    ['92 05 91 a1 61 00', 'not a MessagePack value'],  // a trailing byte
  ]) {
    assert.throws(() => decodeServer(hex(bytes)), (err) => {
      assert.ok(err instanceof CentrumError, bytes);
      assert.equal(err.code, 'protocol');
      assert.ok(err.message.includes(why), `${bytes}: ${err.message}`);
      return true;
    });
  }
});
