//! The channel's random source: seeded, saved with the channel and restored with it,
//! so that a game replayed from its journal draws the same numbers again.

use serde::{Deserialize, Serialize};

/// A small, fast pseudo-random generator (SplitMix64). Not for secrets: for dice,
/// spawn points and shuffles. Every channel has one ([`Ctx::rng`](crate::Ctx::rng)),
/// seeded from the channel's name and saved in its snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator seeded from a name (FNV-1a of its bytes): the seed of a channel's
    /// generator is its name's.
    pub fn from_name(name: &str) -> Self {
        let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Self::new(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `[0, 1)`, with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A number in `[low, high)`.
    pub fn range(&mut self, low: f64, high: f64) -> f64 {
        low + self.unit() * (high - low)
    }

    /// An integer in `0..n`, without modulo bias; 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Lemire's method: the high half of a 128-bit product, rejecting the few
        // low halves that would favour some results.
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_numbers_and_a_saved_one_goes_on_alike() {
        let mut a = Rng::from_name("arena");
        let mut b = Rng::from_name("arena");
        assert_eq!(a.next_u64(), b.next_u64());
        let saved = rmp_serde::to_vec(&a).unwrap();
        let mut c: Rng = rmp_serde::from_slice(&saved).unwrap();
        assert_eq!(a.next_u64(), c.next_u64());
        assert_ne!(Rng::from_name("lobby").next_u64(), b.next_u64());
    }

    #[test]
    fn draws_stay_in_their_ranges() {
        let mut r = Rng::new(7);
        for _ in 0..10_000 {
            assert!((0.0..1.0).contains(&r.unit()));
            assert!((2.0..3.0).contains(&r.range(2.0, 3.0)));
            assert!(r.below(6) < 6);
        }
        assert_eq!(r.below(0), 0);
        let sixes = (0..60_000).filter(|_| r.below(6) == 5).count();
        assert!(
            (9_000..11_000).contains(&sixes),
            "{sixes} sixes in 60000 throws"
        );
    }
}
