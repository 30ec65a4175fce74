// Wrap-around order on u32 ticks and seqs (PROTOCOL.md §9.6), and the seq that follows
// another (§7.3): +1, except that 0 is never a seq, so 4294967295 is followed by 1.

/** RFC 1982 serial-number order on u32 ticks and seqs: is `a` after `b`? */
export function serialAfter(a, b) {
  const d = (a - b) >>> 0;
  return d >= 1 && d <= 0x7fffffff;
}

/**
 * The input seq after `seq`. 0 means "no input yet" in an ack, so it is skipped on wrap.
 * @param {number} seq a u32
 * @returns {number} in 1..=4294967295
 */
export function nextSeq(seq) {
  return seq >= 0xffffffff ? 1 : seq + 1;
}
