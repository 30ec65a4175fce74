//! The channel's side of its store: each tick's record is appended (and synced, by
//! policy) on a blocking thread before the tick's frames leave, and snapshots are
//! written in the background, never stalling a tick. A failing store stalls only
//! this channel, retried with back-off: nothing is acknowledged that is not written;
//! past `StorePolicy::outage` the channel stops, and its back with it, so that its
//! clients are told it is unavailable rather than wait on a game that does not move.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use centrum_net::{Backoff, Shutdown};
use centrum_store::{Journal, Snapshots, StoreError};

use super::journal::SnapshotBody;
use crate::metrics::ChannelMetrics;

/// When to snapshot, and how long a journal may fail before the channel stops.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StorePolicy {
    pub(crate) every: Duration,
    pub(crate) journal_bytes: u64,
    /// The config's `limits.link_timeout_ms`: a channel stalled on its store this long
    /// is reported unavailable, as a back silent this long is.
    pub(crate) outage: Duration,
}

/// The store of one channel, as its tick loop uses it.
#[derive(Debug)]
pub(crate) struct Persist {
    channel: String,
    /// Moved into the blocking task of each append and back; None only while one runs.
    journal: Option<Box<dyn Journal>>,
    snapshots: Option<Box<dyn Snapshots>>,
    /// The snapshot being written, handing the writer back when done.
    writing: Option<JoinHandle<Written>>,
    /// The journal is cut at this step before the next append (a snapshot's step).
    cut_at: Option<u64>,
    policy: StorePolicy,
    last_snapshot: Instant,
    bytes_since_snapshot: u64,
    metrics: Arc<ChannelMetrics>,
}

/// What a snapshot writer hands back: itself, the step, the bytes written or why not.
type Written = (Box<dyn Snapshots>, u64, Result<usize, StoreError>);

/// Why a record was not written.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// Shutdown came first.
    Shutdown,
    /// The writer itself failed (a bug: it panicked): nothing more can be written, so
    /// the back stops and its supervisor starts it again, from what is durable.
    Failed,
    /// The store failed for longer than `limit` (`StorePolicy::outage`); its last error.
    Outage { limit: Duration, error: String },
}

impl Persist {
    /// The store of a channel that replayed `replayed` journal bytes to come back.
    pub(crate) fn new(
        channel: &str,
        journal: Box<dyn Journal>,
        snapshots: Box<dyn Snapshots>,
        policy: StorePolicy,
        metrics: Arc<ChannelMetrics>,
        now: Instant,
        replayed: u64,
    ) -> Self {
        // A channel that came back through its journal snapshots at once: restarts
        // closer together than the interval must not let the journal grow for ever.
        let last_snapshot = match replayed {
            0 => now,
            _ => now.checked_sub(policy.every).unwrap_or(now),
        };
        Self {
            channel: channel.to_owned(),
            journal: Some(journal),
            snapshots: Some(snapshots),
            writing: None,
            cut_at: None,
            policy,
            last_snapshot,
            bytes_since_snapshot: replayed,
            metrics,
        }
    }

    /// Appends the record of `step`, durable when `durable` (by the sync policy),
    /// retrying while the store fails, until it is written or `shutdown`.
    ///
    /// # Errors
    /// [`Stopped`]: shutdown came first, or the writer failed.
    pub(crate) async fn commit(
        &mut self,
        step: u64,
        record: Vec<u8>,
        durable: bool,
        shutdown: &Shutdown,
    ) -> Result<(), Stopped> {
        let record = Arc::new(record);
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        let mut failures = 0u32;
        // On tokio's clock, which tests may pause.
        let mut failing_since = None;
        loop {
            let Some(mut journal) = self.journal.take() else {
                return Err(Stopped::Failed); // a task that panicked took it
            };
            let cut_at = self.cut_at;
            let bytes = record.clone();
            let started = Instant::now();
            let task = tokio::task::spawn_blocking(move || {
                let result = match cut_at {
                    Some(at) => journal.cut(at).map(|()| true),
                    None => Ok(false),
                }
                .and_then(|cut| journal.append(step, &bytes, durable).map(|()| cut));
                (journal, result)
            });
            let (journal, result) = tokio::select! {
                joined = task => match joined {
                    Ok(done) => done,
                    Err(e) => {
                        error!(channel = %self.channel, error = %e, "the journal writer failed; the back stops");
                        return Err(Stopped::Failed);
                    }
                },
                _ = shutdown.cancelled() => return Err(Stopped::Shutdown),
            };
            self.journal = Some(journal);
            match result {
                Ok(cut) => {
                    if cut {
                        self.cut_at = None;
                    }
                    let m = &self.metrics;
                    m.journal_records.fetch_add(1, Relaxed);
                    m.journal_bytes.fetch_add(record.len() as u64, Relaxed);
                    m.record_commit(started.elapsed().as_micros() as u64);
                    if failures > 0 {
                        info!(channel = %self.channel, step, "the journal is written again");
                    }
                    self.bytes_since_snapshot += record.len() as u64;
                    return Ok(());
                }
                Err(e) => {
                    self.metrics.store_errors.fetch_add(1, Relaxed);
                    let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() >= self.policy.outage {
                        let limit = self.policy.outage;
                        error!(channel = %self.channel, step, error = %e, "the store failed for too long; the channel stops");
                        return Err(Stopped::Outage {
                            limit,
                            error: e.to_string(),
                        });
                    }
                    if failures.is_multiple_of(20) {
                        error!(channel = %self.channel, step, error = %e, "cannot write the journal; the channel waits (nothing is acknowledged until it is written)");
                    }
                    failures += 1;
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        _ = shutdown.cancelled() => return Err(Stopped::Shutdown),
                    }
                }
            }
        }
    }

    /// Whether a snapshot is due at `now` and none is being written.
    pub(crate) fn snapshot_due(&mut self, now: Instant) -> bool {
        if self.writing.as_ref().is_some_and(|w| !w.is_finished()) {
            return false;
        }
        // Finished: collect the writer and what came of it (without waiting).
        if let Some(done) = self.writing.take().and_then(FutureExt::now_or_never) {
            self.written(done);
        }
        self.snapshots.is_some()
            && (now.duration_since(self.last_snapshot) >= self.policy.every
                || self.bytes_since_snapshot >= self.policy.journal_bytes)
    }

    /// What came of a snapshot's writing.
    fn written(&mut self, done: Result<Written, tokio::task::JoinError>) {
        match done {
            Ok((snapshots, step, Ok(bytes))) => {
                self.snapshots = Some(snapshots);
                self.metrics.snapshots.fetch_add(1, Relaxed);
                info!(channel = %self.channel, step, bytes, "snapshot written");
            }
            Ok((snapshots, step, Err(e))) => {
                self.snapshots = Some(snapshots);
                self.metrics.store_errors.fetch_add(1, Relaxed);
                warn!(channel = %self.channel, step, error = %e, "snapshot failed; the journal is kept, and the next one will try again");
            }
            Err(e) => {
                error!(channel = %self.channel, error = %e, "the snapshot writer failed; no more snapshots for this channel");
            }
        }
    }

    /// Puts a wrapper around the journal, for tests that make it fail.
    #[cfg(test)]
    pub(crate) fn wrap_journal(&mut self, wrap: impl FnOnce(Box<dyn Journal>) -> Box<dyn Journal>) {
        if let Some(journal) = self.journal.take() {
            self.journal = Some(wrap(journal));
        }
    }

    /// Waits for the snapshot being written, for tests.
    #[cfg(test)]
    pub(crate) async fn finish_snapshot(&mut self) {
        if let Some(writing) = self.writing.take() {
            let done = writing.await;
            self.written(done);
        }
    }

    /// Writes `body`, the channel after tick `step`, in the background; the journal is
    /// cut there at the next commit. None (the game did not save) writes nothing.
    pub(crate) fn snapshot(&mut self, step: u64, body: Option<SnapshotBody>, now: Instant) {
        // Tried now either way; one that could not be taken waits a whole interval.
        self.last_snapshot = now;
        self.bytes_since_snapshot = 0;
        // Without a body (the game does not save) nothing is written or pruned: the
        // journal keeps it all.
        let Some(body) = body else {
            return;
        };
        let Some(mut snapshots) = self.snapshots.take() else {
            return;
        };
        self.cut_at = Some(step);
        self.writing = Some(tokio::task::spawn_blocking(move || {
            let bytes =
                rmp_serde::to_vec(&body).expect("a snapshot is plain data and always encodes");
            let result = snapshots.write(step, &bytes).map(|()| bytes.len());
            (snapshots, step, result)
        }));
    }
}
