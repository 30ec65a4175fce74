// Wrap-around order of ticks and seqs, and the seq after another (PROTOCOL.md §7.3, §9.6).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { serialAfter } from '../src/index.js';
import { nextSeq } from '../src/serial.js';

test('ticks compare as serial numbers across the wrap', () => {
  assert.ok(serialAfter(1, 0));
  assert.ok(serialAfter(0, 0xffffffff));
  assert.ok(!serialAfter(5, 5));
  assert.ok(!serialAfter(0, 1));
  assert.ok(!serialAfter(0x80000000, 0));
});

test('the seq after 4294967295 is 1, and every next seq is after the one before', () => {
  assert.equal(nextSeq(0), 1, 'the first input');
  assert.equal(nextSeq(1), 2);
  assert.equal(nextSeq(0xfffffffe), 0xffffffff);
  assert.equal(nextSeq(0xffffffff), 1, '0 is never a seq');
  for (const seq of [1, 2, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff]) {
    assert.ok(serialAfter(nextSeq(seq), seq), `${nextSeq(seq)} is after ${seq}`);
    assert.notEqual(nextSeq(seq), 0);
  }
});
