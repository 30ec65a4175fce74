//! Accepting TCP connections when the process runs short of resources: an accept that
//! fails for want of file descriptors or memory waits (10 ms doubling to 1 s) instead
//! of spinning, and is logged once per interval with a count, not once per attempt.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tracing::warn;

/// First wait after a resource error; it doubles up to [`MAX_WAIT`].
const MIN_WAIT: Duration = Duration::from_millis(10);
const MAX_WAIT: Duration = Duration::from_secs(1);
/// At most one warning per this long, however many accepts fail.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A listener whose [`Acceptor::accept`] only returns connections; failures are
/// counted (for `/metrics`), waited out and logged sparingly.
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    policy: AcceptPolicy,
}

impl Acceptor {
    pub fn new(listener: TcpListener) -> Self {
        Self {
            listener,
            policy: AcceptPolicy::default(),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection; each failed accept on the way adds one to `errors`.
    /// Cancel-safe, as `TcpListener::accept` is.
    pub async fn accept(&mut self, errors: &AtomicU64) -> (TcpStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok(accepted) => {
                    self.policy.succeeded();
                    return accepted;
                }
                Err(e) => {
                    errors.fetch_add(1, Relaxed);
                    let step = self.policy.failed(&e, Instant::now());
                    if let Some(suppressed) = step.log {
                        warn!(error = %e, suppressed, "accept failed; waiting before the next accept");
                    }
                    if !step.wait.is_zero() {
                        tokio::time::sleep(step.wait).await;
                    }
                }
            }
        }
    }
}

/// What to do after one failed accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Step {
    /// How long to wait before the next accept.
    wait: Duration,
    /// `Some(n)`: log now, mentioning the `n` failures not logged since the last line.
    log: Option<u64>,
}

/// The back-off and log throttle, with time passed in so that tests drive it.
#[derive(Debug, Default)]
struct AcceptPolicy {
    wait: Option<Duration>,
    last_log: Option<Instant>,
    unlogged: u64,
}

impl AcceptPolicy {
    fn succeeded(&mut self) {
        self.wait = None;
    }

    fn failed(&mut self, e: &io::Error, now: Instant) -> Step {
        let wait = if starved(e) {
            let next = self.wait.map_or(MIN_WAIT, |w| (w * 2).min(MAX_WAIT));
            self.wait = Some(next);
            next
        } else {
            // The one connection went wrong (reset before it was accepted): the next
            // accept may go on at once.
            Duration::ZERO
        };
        let log = match self.last_log {
            Some(at) if now.duration_since(at) < LOG_EVERY => {
                self.unlogged += 1;
                None
            }
            _ => {
                self.last_log = Some(now);
                Some(std::mem::take(&mut self.unlogged))
            }
        };
        Step { wait, log }
    }
}

/// Whether `e` says the process (or the system) is out of what an accept needs, so
/// that retrying at once would fail again.
fn starved(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(errno::EMFILE | errno::ENFILE | errno::ENOBUFS | errno::ENOMEM)
    ) || e.kind() == io::ErrorKind::OutOfMemory
}

/// The errno values of Linux (and the BSDs, where they agree) that `starved` tests, so
/// that the crate needs no libc binding for four numbers.
mod errno {
    pub(super) const ENOMEM: i32 = 12;
    pub(super) const ENFILE: i32 = 23;
    pub(super) const EMFILE: i32 = 24;
    pub(super) const ENOBUFS: i32 = 105;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(errno::EMFILE)
    }

    #[test]
    fn starved_accepts_wait_longer_each_time_and_log_once_per_interval() {
        let mut policy = AcceptPolicy::default();
        let t0 = Instant::now();
        let first = policy.failed(&emfile(), t0);
        assert_eq!(
            first,
            Step {
                wait: MIN_WAIT,
                log: Some(0)
            }
        );
        let waits: Vec<_> = (1..10)
            .map(|i| policy.failed(&emfile(), t0 + Duration::from_millis(i)))
            .collect();
        assert!(waits.iter().all(|s| s.log.is_none()), "{waits:?}");
        assert_eq!(waits[0].wait, MIN_WAIT * 2);
        assert_eq!(waits[8].wait, MAX_WAIT);
        let later = policy.failed(&emfile(), t0 + LOG_EVERY);
        assert_eq!(later.log, Some(9), "the line counts what it stood for");
        policy.succeeded();
        assert_eq!(policy.failed(&emfile(), t0 + LOG_EVERY * 3).wait, MIN_WAIT);
    }

    #[test]
    fn a_connection_reset_before_accept_does_not_wait() {
        let mut policy = AcceptPolicy::default();
        let reset = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(policy.failed(&reset, Instant::now()).wait, Duration::ZERO);
    }
}
