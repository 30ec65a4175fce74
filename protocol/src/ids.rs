//! Tick and sequence numbers: `u32` newtypes whose ordering survives wrap-around,
//! plus the small integer ids that travel on the wire.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

/// The number of a channel's simulation step. Tick 0 is the state before the first step.
///
/// Compared with serial-number arithmetic (RFC 1982): `a` is after `b` when
/// `a - b` (wrapping) is in `1..2^31`, so a channel may run past `u32::MAX`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tick(pub u32);

/// A client's input sequence number within one channel, compared like [`Tick`].
/// 0 is never an input's seq: as an ack it means "no input yet" ([`Seq::NONE`]), so
/// counting skips it when it wraps ([`Seq::next`] of `u32::MAX` is 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seq(pub u32);

/// The position of an entity in a channel's state; small and reused, so it encodes short.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EntityId(pub u32);

/// The index of a kind in the channel's [`Schema`](crate::Schema).
pub type KindId = u16;

/// The index of a field within its kind; at most [`MAX_FIELDS`](crate::MAX_FIELDS) per kind.
pub type FieldId = u8;

/// A map keyed by ids this project hands out itself (session keys, channel numbers),
/// looked up on every input and patch: hashed with one multiplication ([`IdHasher`]).
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// The hash of [`IdMap`]: a multiply and a rotate per word, as rustc's own maps use.
/// The default SipHash guards against keys an attacker picks to collide; these keys
/// are counters and numbers given by this process or its authenticated peers.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasher(u64);

impl IdHasher {
    const K: u64 = 0xf135_7aea_2e62_a9c5;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // The table takes its bucket from the low bits and its tag from the high ones:
        // a rotate brings the best-mixed high bits down.
        self.0.rotate_left(26)
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
}

fn serial_cmp(a: u32, b: u32) -> Ordering {
    match a.wrapping_sub(b) {
        0 => Ordering::Equal,
        d if d < 1 << 31 => Ordering::Greater,
        _ => Ordering::Less,
    }
}

impl Tick {
    /// The tick that follows this one, wrapping from `u32::MAX` to 0.
    pub fn next(self) -> Self {
        Self(self.0.wrapping_add(1))
    }
}

impl Seq {
    /// The ack of a membership that has had no input applied yet.
    pub const NONE: Seq = Seq(0);

    /// The seq of the input after this one: +1, skipping 0 when it wraps.
    pub fn next(self) -> Self {
        match self.0.wrapping_add(1) {
            0 => Self(1),
            n => Self(n),
        }
    }

    /// Whether an input with this seq may follow `ack` (the last applied input of its
    /// membership): it is not 0, and it is after `ack` unless `ack` is [`Seq::NONE`],
    /// which any seq may follow (a new membership continues the client's count).
    pub fn may_follow(self, ack: Seq) -> bool {
        self != Seq::NONE && (ack == Seq::NONE || self.is_after(ack))
    }
}

macro_rules! serial_number {
    ($name:ident) => {
        impl $name {
            /// True when `self` comes after `other` in wrap-around order.
            pub fn is_after(self, other: Self) -> bool {
                serial_cmp(self.0, other.0) == Ordering::Greater
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }

        // Not a total order over all of u32 (no order is, with wrap-around), but a
        // consistent one for any two numbers less than 2^31 apart, which is all that
        // live ticks and sequence numbers ever are.
        impl Ord for $name {
            fn cmp(&self, other: &Self) -> Ordering {
                serial_cmp(self.0, other.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

serial_number!(Tick);
serial_number!(Seq);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_survives_wrap_around() {
        let last = Tick(u32::MAX);
        let first = last.next();
        assert_eq!(first, Tick(0));
        assert!(first.is_after(last));
        assert!(first > last);
        assert!(Seq(5) > Seq(4));
        assert!(Seq(4) < Seq(5));
        assert!(!Seq(4).is_after(Seq(4)));
        assert!(Seq(2).is_after(Seq(u32::MAX - 3)));
    }

    #[test]
    fn input_seqs_skip_zero_when_they_wrap() {
        assert_eq!(Seq(u32::MAX).next(), Seq(1));
        assert_eq!(Seq::NONE.next(), Seq(1));
        assert_eq!(Tick(u32::MAX).next(), Tick(0));
        assert!(Seq(1).may_follow(Seq(u32::MAX)), "across the wrap");
        assert!(Seq(3_000_000_000).may_follow(Seq::NONE), "any first seq");
        assert!(!Seq(5).may_follow(Seq(5)), "a repeat");
        assert!(!Seq(3).may_follow(Seq(5)), "going back");
        assert!(!Seq::NONE.may_follow(Seq::NONE), "0 is never a seq");
    }
}
