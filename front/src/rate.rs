//! What one client may send: token buckets (governor's direct limiters, one pair per
//! connection, so no lock is shared across connections) for its WebSocket frames and
//! their payload bytes, checked for every frame; and the flood rule that tells a client
//! its frames are dropped, then closes one that keeps sending over the limits.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

use centrum_config::Limits;

/// Drops less than this far apart belong to one streak of flooding.
const STREAK_GAP: Duration = Duration::from_secs(1);

/// At most one `rate_limited` notice per this long.
const NOTICE_EVERY: Duration = Duration::from_secs(1);

/// A connection's token buckets; `None` where the config sets no limit.
#[derive(Debug)]
pub(crate) struct Budget {
    frames: Option<DefaultDirectRateLimiter>,
    bytes: Option<DefaultDirectRateLimiter>,
}

impl Budget {
    pub(crate) fn new(limits: &Limits) -> Self {
        let bucket = |per_s: u32, burst: u32| {
            let per_s = NonZeroU32::new(per_s)?;
            // Validation keeps the burst at 1 or more; the fallback only spares a panic.
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            Some(RateLimiter::direct(
                Quota::per_second(per_s).allow_burst(burst),
            ))
        };
        Self {
            frames: bucket(limits.client_messages_per_s, limits.client_message_burst),
            bytes: bucket(limits.client_bytes_per_s, limits.client_bytes_burst),
        }
    }

    /// Takes one frame of `len` payload bytes from the buckets; false when either is
    /// empty (the frame is then dropped). No allocation, no lock: two atomic updates.
    pub(crate) fn allow(&self, len: u64) -> bool {
        if let Some(frames) = &self.frames
            && frames.check().is_err()
        {
            return false;
        }
        let Some(bytes) = &self.bytes else {
            return true;
        };
        let Ok(len) = u32::try_from(len) else {
            return false;
        };
        match NonZeroU32::new(len) {
            // An empty frame costs no bytes; the frame bucket bounds those.
            None => true,
            // More than the burst is `Err(InsufficientCapacity)`: refused too.
            Some(n) => matches!(bytes.check_n(n), Ok(Ok(()))),
        }
    }
}

/// What to do about a dropped frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing more: the client was told recently.
    Quiet,
    /// Tell the client (`rate_limited`) that this many frames were dropped since the
    /// last notice.
    Notify(u64),
    /// The client has been over the limits for `client_flood_close_ms`: close it.
    Close,
}

/// A client's streak of dropped frames. Time comes in as `now`, so tests drive it.
#[derive(Debug)]
pub(crate) struct Flood {
    close_after: Option<Duration>,
    /// The first and the latest drop of the current streak.
    streak: Option<(Instant, Instant)>,
    last_notice: Option<Instant>,
    unreported: u64,
}

impl Flood {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            close_after: limits.client_flood_close(),
            streak: None,
            last_notice: None,
            unreported: 0,
        }
    }

    /// One frame was dropped at `now`.
    pub(crate) fn dropped(&mut self, now: Instant) -> Verdict {
        self.unreported += 1;
        let start = match self.streak {
            Some((start, last)) if now.saturating_duration_since(last) < STREAK_GAP => start,
            _ => now,
        };
        self.streak = Some((start, now));
        if self
            .close_after
            .is_some_and(|after| now.saturating_duration_since(start) >= after)
        {
            return Verdict::Close;
        }
        if self
            .last_notice
            .is_some_and(|at| now.saturating_duration_since(at) < NOTICE_EVERY)
        {
            return Verdict::Quiet;
        }
        self.last_notice = Some(now);
        Verdict::Notify(std::mem::take(&mut self.unreported))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(frames: u32, burst: u32, bytes: u32, bytes_burst: u32) -> Limits {
        Limits {
            client_messages_per_s: frames,
            client_message_burst: burst,
            client_bytes_per_s: bytes,
            client_bytes_burst: bytes_burst,
            ..Limits::default()
        }
    }

    #[test]
    fn frames_over_the_burst_are_refused() {
        let budget = Budget::new(&limits(1, 3, 0, 1));
        assert!((0..3).all(|_| budget.allow(0)));
        assert!(!budget.allow(0), "the fourth frame at once");
        let unlimited = Budget::new(&limits(0, 1, 0, 1));
        assert!((0..10_000).all(|_| unlimited.allow(1 << 20)));
    }

    #[test]
    fn bytes_over_the_burst_are_refused_and_empty_frames_cost_none() {
        let budget = Budget::new(&limits(0, 1, 1, 100));
        assert!(budget.allow(60));
        assert!(!budget.allow(60), "120 bytes at once of 100");
        assert!(budget.allow(40));
        assert!(budget.allow(0), "an empty frame");
        assert!(!budget.allow(1));
        assert!(!budget.allow(u64::MAX), "more than a u32 is never allowed");
    }

    #[test]
    fn a_flood_is_told_once_a_second_then_closed_after_its_streak() {
        let mut flood = Flood::new(&Limits {
            client_flood_close_ms: 3_000,
            ..Limits::default()
        });
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(flood.dropped(at(0)), Verdict::Notify(1));
        assert_eq!(flood.dropped(at(10)), Verdict::Quiet);
        assert_eq!(flood.dropped(at(500)), Verdict::Quiet);
        assert_eq!(flood.dropped(at(1_000)), Verdict::Notify(3));
        // A second and more without a drop ends the streak: it starts again here.
        assert_eq!(flood.dropped(at(2_100)), Verdict::Notify(1));
        for ms in (2_200..5_100).step_by(100) {
            assert_ne!(flood.dropped(at(ms)), Verdict::Close, "at {ms} ms");
        }
        assert_eq!(flood.dropped(at(5_100)), Verdict::Close);
    }

    #[test]
    fn without_a_close_time_a_flood_is_only_told() {
        let mut flood = Flood::new(&Limits {
            client_flood_close_ms: 0,
            ..Limits::default()
        });
        let t0 = Instant::now();
        for s in 0..100 {
            let verdict = flood.dropped(t0 + Duration::from_millis(s * 500));
            assert_ne!(verdict, Verdict::Close);
        }
    }
}
