//! When to send a heartbeat and when a peer's silence means it is gone, for the two
//! ends of a link (and a front's client connections). No I/O and no timer of its own:
//! time comes in as `now`, and the caller sleeps until [`Liveness::deadline`].

use std::time::Duration;

use tokio::time::Instant;

use crate::FrameError;

/// What the caller should do at [`Liveness::deadline`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Nothing yet: sleep until the (new) deadline.
    Wait,
    /// Send a heartbeat (or ping) now.
    Send,
    /// Nothing has arrived from the peer for at least the timeout: close the connection.
    Dead { silent: Duration },
}

/// A peer's liveness: a heartbeat every `every` (or only while the peer is silent),
/// dead after `timeout` of silence.
#[derive(Debug, Clone)]
pub struct Liveness {
    every: Duration,
    timeout: Duration,
    heard: Instant,
    next_beat: Instant,
    /// Beat only once the peer has been silent for `every` (a ping that asks for an
    /// answer), rather than every `every` whatever happens (a one-way heartbeat).
    when_silent: bool,
}

impl Liveness {
    /// A heartbeat every `every` whatever else is sent, for links where both sides beat.
    /// Starts counting at `now`, as if the peer had just spoken.
    pub fn new(now: Instant, every: Duration, timeout: Duration) -> Self {
        Self {
            every,
            timeout,
            heard: now,
            next_beat: now + every,
            when_silent: false,
        }
    }

    /// A beat (a ping the peer answers) once the peer has been silent for `every`, then
    /// every `every` while the silence lasts; a peer that talks is never pinged.
    pub fn when_silent(now: Instant, every: Duration, timeout: Duration) -> Self {
        Self {
            when_silent: true,
            ..Self::new(now, every, timeout)
        }
    }

    /// Something arrived from the peer (any frame counts).
    pub fn heard(&mut self, now: Instant) {
        self.heard = now;
    }

    /// How long the peer has been silent.
    pub fn silent_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.heard)
    }

    /// When the peer will count as dead if nothing arrives before.
    pub fn dead_at(&self) -> Instant {
        self.heard + self.timeout
    }

    /// When to call [`Liveness::poll`] next: the next heartbeat or the moment the
    /// silence reaches the timeout, whichever comes first. A caller that does not move
    /// its timer on every frame polls early at worst, and gets [`Beat::Wait`].
    pub fn deadline(&self) -> Instant {
        self.next_beat.min(self.heard + self.timeout)
    }

    /// What is due at `now`. A heartbeat is due every `every` whatever else was sent;
    /// the peer is dead once it has been silent for `timeout`.
    pub fn poll(&mut self, now: Instant) -> Beat {
        let silent = self.silent_for(now);
        if silent >= self.timeout {
            return Beat::Dead { silent };
        }
        if self.when_silent && self.next_beat < self.heard + self.every {
            self.next_beat = self.heard + self.every;
        }
        if now >= self.next_beat {
            // Late polls (a busy task) do not make heartbeats bunch up.
            self.next_beat = now + self.every;
            return Beat::Send;
        }
        Beat::Wait
    }
}

/// The frames of a link, read with a [`Liveness`]: a heartbeat is asked for every
/// period, and a peer silent for the timeout ends the stream with
/// [`FrameError::Silent`]. Both ends of a front ↔ back link read this way.
#[derive(Debug)]
pub struct LiveFrames<S> {
    frames: S,
    live: Liveness,
    opened: Instant,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl<S> LiveFrames<S>
where
    S: futures_util::Stream<Item = Result<bytes::BytesMut, std::io::Error>> + Unpin,
{
    /// Reads `frames`, beating every `every`, dead after `timeout` of silence.
    pub fn new(frames: S, every: Duration, timeout: Duration) -> Self {
        let opened = Instant::now();
        let live = Liveness::new(opened, every, timeout);
        let timer = Box::pin(tokio::time::sleep_until(live.deadline()));
        Self {
            frames,
            live,
            opened,
            timer,
        }
    }

    /// The next frame, or `None` when the peer closed the link. `beat` is called, with
    /// the time since the link opened, whenever a heartbeat is due meanwhile.
    ///
    /// # Errors
    /// [`FrameError::Io`] from the stream; [`FrameError::Silent`] once nothing, not
    /// even a heartbeat, arrived for the timeout.
    pub async fn next(
        &mut self,
        mut beat: impl FnMut(Duration),
    ) -> Option<Result<bytes::BytesMut, FrameError>> {
        use futures_util::{FutureExt, StreamExt};
        loop {
            let frame = tokio::select! {
                frame = self.frames.next() => frame,
                () = &mut self.timer => {
                    let now = Instant::now();
                    let due = self.live.poll(now);
                    self.timer.as_mut().reset(self.live.deadline());
                    match due {
                        Beat::Wait => continue,
                        Beat::Send => {
                            beat(now - self.opened);
                            continue;
                        }
                        // This process may be the one that was stopped: a frame that
                        // arrived meanwhile and waits unread is a sign of life.
                        Beat::Dead { silent } => match self.frames.next().now_or_never() {
                            Some(frame) => frame,
                            None => return Some(Err(FrameError::Silent(silent))),
                        },
                    }
                }
            };
            // Any frame is a sign of life; the timer is not moved on every frame (it
            // wakes early at worst, and sleeps again).
            self.live.heard(Instant::now());
            return frame.map(|f| f.map_err(FrameError::from));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: Duration = Duration::from_millis(500);
    const TIMEOUT: Duration = Duration::from_millis(2_500);

    /// Sleeps to each deadline and polls, as the link tasks do, until `until`.
    async fn run_until(live: &mut Liveness, until: Instant) -> Vec<(Duration, Beat)> {
        let start = Instant::now();
        let mut seen = Vec::new();
        while live.deadline() <= until {
            tokio::time::sleep_until(live.deadline()).await;
            let beat = live.poll(Instant::now());
            seen.push((Instant::now() - start, beat));
            if matches!(beat, Beat::Dead { .. }) {
                break;
            }
        }
        seen
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_dead_at_the_timeout_with_a_heartbeat_every_period() {
        let start = Instant::now();
        let mut live = Liveness::new(start, EVERY, TIMEOUT);
        let seen = run_until(&mut live, start + Duration::from_secs(10)).await;
        let ms = |d: Duration| d.as_millis();
        let sends: Vec<_> = seen
            .iter()
            .filter(|(_, b)| *b == Beat::Send)
            .map(|(t, _)| ms(*t))
            .collect();
        assert_eq!(sends, [500, 1000, 1500, 2000]);
        let (at, last) = *seen.last().unwrap();
        assert_eq!(
            ms(at),
            2_500,
            "dead exactly at the timeout, not a period later"
        );
        assert_eq!(last, Beat::Dead { silent: TIMEOUT });
    }

    #[tokio::test(start_paused = true)]
    async fn anything_heard_pushes_the_timeout_back() {
        let start = Instant::now();
        let mut live = Liveness::new(start, EVERY, TIMEOUT);
        // The peer speaks at 2 s, 4 s and 6 s, then falls silent.
        for at in [2, 4, 6] {
            let seen = run_until(&mut live, start + Duration::from_secs(at)).await;
            assert!(
                seen.iter()
                    .all(|(_, b)| *b != Beat::Dead { silent: TIMEOUT })
            );
            tokio::time::sleep_until(start + Duration::from_secs(at)).await;
            live.heard(Instant::now());
        }
        let seen = run_until(&mut live, start + Duration::from_secs(20)).await;
        let (_, last) = *seen.last().unwrap();
        assert!(matches!(last, Beat::Dead { .. }), "{seen:?}");
        assert_eq!(
            Instant::now() - start,
            Duration::from_millis(8_500),
            "dead 2.5 s after the last frame at 6 s"
        );
        assert_eq!(live.silent_for(Instant::now()), TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn when_silent_pings_only_a_peer_that_has_been_quiet_for_a_period() {
        let start = Instant::now();
        let mut live = Liveness::when_silent(start, EVERY, TIMEOUT);
        // The peer talks every 400 ms for 2 s: never pinged.
        for _ in 0..5 {
            let next = Instant::now() + Duration::from_millis(400);
            let seen = run_until(&mut live, next).await;
            assert!(seen.iter().all(|(_, b)| *b == Beat::Wait), "{seen:?}");
            tokio::time::sleep_until(next).await;
            live.heard(Instant::now());
        }
        // Then silent from 2 s: pinged at 2.5, 3.0, ... and dead at 4.5 s.
        let seen = run_until(&mut live, start + Duration::from_secs(10)).await;
        let at = |b: Beat| -> Vec<u128> {
            seen.iter()
                .filter(|(_, x)| *x == b)
                .map(|(t, _)| (*t + Duration::from_secs(2)).as_millis())
                .collect()
        };
        assert_eq!(at(Beat::Send), [2_500, 3_000, 3_500, 4_000]);
        assert_eq!(Instant::now() - start, Duration::from_millis(4_500));
        assert!(matches!(seen.last().unwrap().1, Beat::Dead { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_poll_sends_one_heartbeat_not_a_burst() {
        let start = Instant::now();
        let mut live = Liveness::new(start, EVERY, TIMEOUT);
        tokio::time::sleep(Duration::from_millis(1_600)).await;
        live.heard(Instant::now());
        assert_eq!(live.poll(Instant::now()), Beat::Send);
        assert_eq!(live.poll(Instant::now()), Beat::Wait);
        assert_eq!(live.deadline(), Instant::now() + EVERY);
    }
}
