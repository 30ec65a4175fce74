// The mirror against PROTOCOL.md §9: the worked example of §9.8, the changes it reports,
// values by type, and patches that do not fit.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { decodeServer } from '../src/codec.js';
import { CentrumError, Mirror } from '../src/index.js';

const hex = (s) => Uint8Array.from(s.trim().split(/\s+/), (b) => parseInt(b, 16));

const ARENA = [
  { name: 'player', fields: [{ name: 'x', type: 'fixed', scale: 100 }, { name: 'y', type: 'fixed', scale: 100 }, { name: 'name', type: 'str', scale: 0 }, { name: 'hue', type: 'uint', scale: 0 }, { name: 'score', type: 'uint', scale: 0 }] },
  { name: 'coin', fields: [{ name: 'x', type: 'fixed', scale: 100 }, { name: 'y', type: 'fixed', scale: 100 }] },
];

/** The mirror at tick 100 of §9.8. */
function worked() {
  const mirror = new Mirror();
  mirror.replace({
    tick: 100, schema: ARENA,
    entities: [
      0, 1, 100, 200, 1, 1, 200, 300, 2, 0, 300, 400, 'ann', 20, 0, 3, 1, 400, 500,
      4, 0, 500, 600, 'bo', 40, 2, 5, 0, 600, 700, 'cy', 50, 0, 6, 1, 700, 800, 8, 1, 900, 1000, 9, 1, 1000, 1100,
    ],
  });
  return mirror;
}

const plain = (mirror) => Object.fromEntries([...mirror.entities].map(([id, e]) => [id, [e.kind, { ...e.fields }]]));

test('the worked example of §9.8 applies to the table it gives', () => {
  const mirror = worked();
  const patch = decodeServer(hex('92 02 96 0c a5 61 72 65 6e 61 65 91 05 97 07 00 cd 04 1a cd 07 e9 a3 64 65 65 cc 89 00 9b 02 03 cd 01 72 cd 01 5e 02 10 03 05 03 cd 0f a0 cd 0b b8'));
  const changes = mirror.apply(patch);
  assert.equal(mirror.tick, 101);
  assert.deepEqual(plain(mirror), {
    0: ['coin', { x: 1, y: 2 }],
    1: ['coin', { x: 2, y: 3 }],
    2: ['player', { x: 3.7, y: 3.5, name: 'ann', hue: 20, score: 0 }],
    3: ['coin', { x: 4, y: 5 }],
    4: ['player', { x: 5, y: 6, name: 'bo', hue: 40, score: 3 }],
    6: ['coin', { x: 7, y: 8 }],
    7: ['player', { x: 10.5, y: 20.25, name: 'dee', hue: 137, score: 0 }],
    8: ['coin', { x: 9, y: 10 }],
    9: ['coin', { x: 40, y: 30 }],
  });
  assert.deepEqual(changes.removed.map((e) => e.fields.name), ['cy']);
  assert.deepEqual(changes.added.map((e) => e.id), [7]);
  assert.deepEqual(changes.changed.map(([e, names]) => [e.id, names]), [[2, ['x', 'y']], [4, ['score']], [9, ['x', 'y']]]);
});

test('a State replacing the mirror reports the difference and keeps entity objects', () => {
  const mirror = worked();
  const ann = mirror.entities.get(2);
  const changes = mirror.replace({ tick: 140, schema: ARENA, entities: [2, 0, 300, 450, 'ann', 20, 1, 3, 1, 400, 500, 11, 1, 5, 5] });
  assert.equal(mirror.entities.get(2), ann, 'the same object, updated');
  assert.deepEqual(ann.fields, { x: 3, y: 4.5, name: 'ann', hue: 20, score: 1 });
  assert.deepEqual(changes.changed.map(([e, names]) => [e.id, names]), [[2, ['y', 'score']]]);
  assert.deepEqual(changes.added.map((e) => e.id), [11]);
  assert.deepEqual(changes.removed.map((e) => e.id).sort((a, b) => a - b), [0, 1, 4, 5, 6, 8, 9]);
});

test('values keep their declared types; 64-bit masks and integers stay exact', () => {
  const fields = Array.from({ length: 64 }, (_, i) => ({ name: `f${i}`, type: 'int', scale: 0 }));
  fields[0] = { name: 'flag', type: 'bool', scale: 0 };
  fields[1] = { name: 'raw', type: 'bytes', scale: 0 };
  fields[2] = { name: 'ratio', type: 'f64', scale: 0 };
  fields[63] = { name: 'big', type: 'uint', scale: 0 };
  const mirror = new Mirror();
  const values = fields.map(() => 0);
  values[0] = false; values[1] = new Uint8Array([1]); values[2] = 0.5; values[63] = 0;
  mirror.replace({ tick: 1, schema: [{ name: 'wide', fields }], entities: [3, 0, ...values] });
  // Bit 63 and bit 0: the mask needs 64 bits, so it arrives as a BigInt.
  const changes = mirror.apply({ tick: 2, removed: [], spawned: [], updated: [3, (1n << 63n) | 1n, true, 2n ** 60n] });
  const entity = mirror.entities.get(3);
  assert.equal(entity.fields.flag, true);
  assert.equal(entity.fields.big, 2n ** 60n, 'beyond 2^53 a uint stays a BigInt');
  assert.deepEqual(changes.changed[0][1], ['flag', 'big']);
  mirror.apply({ tick: 3, removed: [], spawned: [], updated: [3, 1n << 63n, 12n] });
  assert.equal(entity.fields.big, 12, 'small values are numbers');
});

test('a patch that does not fit is a protocol error', () => {
  for (const [patch, why] of [
    [{ tick: 100, removed: [], spawned: [], updated: [] }, 'not after'],
    [{ tick: 101, removed: [42], spawned: [], updated: [] }, 'removed entity 42'],
    [{ tick: 101, removed: [], spawned: [0, 1, 5, 5], updated: [] }, 'spawned entity 0 exists'],
    [{ tick: 101, removed: [], spawned: [20, 7, 5, 5], updated: [] }, 'unknown kind 7'],
    [{ tick: 101, removed: [], spawned: [20, 1, 5], updated: [] }, 'too few values'],
    [{ tick: 101, removed: [], spawned: [], updated: [7, 1, 5] }, 'updated entity 7'],
    [{ tick: 101, removed: [], spawned: [], updated: [0, 4, 5] }, 'names field 2'],
    [{ tick: 101, removed: [], spawned: [], updated: [0, 1, 'x'] }, 'holds string'],
    [{ tick: 101, removed: [], spawned: [], updated: [0, 3, 5] }, 'ends inside'],
  ]) {
    assert.throws(() => worked().apply(patch), (err) => err instanceof CentrumError && err.code === 'protocol' && err.message.includes(why), why);
  }
  assert.throws(() => new Mirror().apply({ tick: 1, removed: [], spawned: [], updated: [] }), /before any state/);
});
