//! Exponential back-off for reconnecting links, with jitter so that many nodes
//! restarting together do not reconnect in lockstep.

use std::time::Duration;

/// Delays that double from `min` to `max`; [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
    seed: u64,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let seed = u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15;
        Self {
            min,
            max,
            current: min,
            seed,
        }
    }

    /// The delay before the next attempt: the current step plus up to 25 % jitter.
    pub fn next_delay(&mut self) -> Duration {
        // xorshift: jitter needs no cryptographic randomness.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let step = self.current;
        self.current = (self.current * 2).min(self.max);
        step + step.mul_f64((self.seed % 1000) as f64 / 4000.0)
    }

    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_max_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let d: Vec<_> = (0..5).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(100) && d[0] <= Duration::from_millis(125));
        assert!(d[1] >= Duration::from_millis(200) && d[1] <= Duration::from_millis(250));
        assert!(d[4] >= Duration::from_millis(500) && d[4] <= Duration::from_millis(625));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(125));
    }
}
