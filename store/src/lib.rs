//! Durable storage for a back's channels: per channel, snapshots and a journal of
//! records, each record the work of one tick. [`Store`] is the seam stores fit behind:
//! [`DiskStore`] keeps files under a directory, [`RedisStore`] keys on a Redis server
//! (held by one process at a time), [`MemoryStore`] bytes in memory (for tests of a
//! restart inside one process). No async: a back calls a store from blocking threads.

mod disk;
mod file;
mod memory;
mod redis;
#[cfg(test)]
mod test_log;

use std::fmt;

pub use disk::DiskStore;
pub use memory::MemoryStore;
pub use redis::{RedisOptions, RedisStore};

#[cfg(any(test, feature = "test-server"))]
pub use redis::server::RedisServer;

/// The format of journal and snapshot files this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Where a back keeps its channels.
pub trait Store: Send + Sync + fmt::Debug {
    /// Where the store keeps things, for messages: `centrum-data/back-1`.
    fn describe(&self) -> String;

    /// Opens channel `channel`'s log, reading back what it holds: the newest snapshot
    /// that reads whole and every journal record after it.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read or written, or holds something it
    /// cannot use (corruption before the journal's tail, another format version, a
    /// gap): recovery refuses rather than start over what it cannot read.
    fn open(&self, channel: &str) -> Result<Opened, StoreError>;

    /// The channels the store holds, in no particular order: what a restarted back
    /// looks through for the rooms it had.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the store cannot be read.
    fn channels(&self) -> Result<Vec<String>, StoreError>;

    /// Removes channel `channel` and all that is kept of it (a room disposed of). It
    /// goes at once and whole: a crash midway leaves no half of it to recover. Its
    /// journal and snapshots must not be written after this.
    ///
    /// # Errors
    /// [`StoreError::Io`] when it cannot be removed.
    fn remove(&self, channel: &str) -> Result<(), StoreError>;

    /// Whether this process may still write the store. A store held with a lease (see
    /// [`RedisStore`]) answers [`StoreError::Fenced`] once the lease is lost: nothing
    /// more it writes is kept, and the back stops. Local stores are always writable.
    ///
    /// # Errors
    /// [`StoreError::Fenced`] when the lease is lost.
    fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Syncs to the disk made since it was opened (`fdatasync`, or one `syncfs` for
    /// the journals that asked together); zero for stores that make none.
    fn syncs(&self) -> u64 {
        0
    }

    /// Round trips to a networked store that failed because it could not be reached
    /// (writes, reads and lease renewals) since it was opened; zero for local stores.
    fn failures(&self) -> u64 {
        0
    }
}

/// A channel's log, just opened.
#[derive(Debug)]
pub struct Opened {
    /// What the log held.
    pub recovered: Recovered,
    /// Where the channel's next records go.
    pub journal: Box<dyn Journal>,
    /// Where its snapshots go; usable from another thread than the journal.
    pub snapshots: Box<dyn Snapshots>,
}

/// What a channel's log held when it was opened.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The newest snapshot that read whole, if any.
    pub snapshot: Option<Snapshot>,
    /// Every record after the snapshot, in order; their steps follow each other.
    pub records: Vec<Record>,
    /// What recovery cut or skipped (a torn journal tail, a corrupt snapshot it fell
    /// back from), one line each, for the log. Nothing cut is deleted: it is moved
    /// beside the file it came from.
    pub repairs: Vec<String>,
}

/// A snapshot of a channel after step `step`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The step (a back: the tick count) the snapshot was taken after.
    pub step: u64,
    /// What the channel saved.
    pub bytes: Vec<u8>,
    /// Where it came from, for messages: a file's path.
    pub source: String,
}

/// The journal record of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The step the record is of; each record's is one more than the last one's.
    pub step: u64,
    /// What the channel wrote.
    pub bytes: Vec<u8>,
}

/// When journal writes reach the disk (`fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every record asked to be durable is synced before [`Journal::append`] returns:
    /// nothing acknowledged is lost, even when the machine loses power.
    EveryRecord,
    /// At most once per interval: a crash of the machine (not of the process) may lose
    /// what was acknowledged during the last interval.
    Interval(std::time::Duration),
    /// Never by centrum, when the OS decides: a crash of the process loses nothing,
    /// a crash of the machine may lose the last seconds.
    Never,
}

/// Appends a channel's records, in step order.
pub trait Journal: Send + fmt::Debug {
    /// Appends the record of `step`, which must follow the last one. When `durable`,
    /// the record is on disk (as the [`SyncPolicy`] says) when this returns; records
    /// that are not are synced with the next durable one. A failed append leaves the
    /// journal as it was, so it can be retried.
    ///
    /// # Errors
    /// [`StoreError`] when the write or the sync fails (a full disk, say), or `step`
    /// does not follow the last record.
    fn append(&mut self, step: u64, record: &[u8], durable: bool) -> Result<(), StoreError>;

    /// Records after `step` go to a new segment, so that the journal up to `step` can be
    /// dropped once a snapshot of `step` is written. Call it at the snapshot's step,
    /// before appending the next record.
    ///
    /// # Errors
    /// [`StoreError`] when the new segment cannot be made.
    fn cut(&mut self, step: u64) -> Result<(), StoreError>;
}

/// Writes a channel's snapshots.
pub trait Snapshots: Send + fmt::Debug {
    /// Writes the snapshot of `step` durably and whole (never half of one), then drops
    /// what it makes unneeded: every snapshot but this one and the one before it, and
    /// the journal segments only those older snapshots needed. Keeping the previous
    /// snapshot is what lets recovery fall back when the newest does not read.
    ///
    /// # Errors
    /// [`StoreError`] when the snapshot cannot be written; nothing is dropped then.
    fn write(&mut self, step: u64, snapshot: &[u8]) -> Result<(), StoreError>;
}

/// Why a store could not do something.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}{}", hint(.source))]
    Io {
        /// What was being read or written.
        path: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A file is damaged where it cannot be a torn tail.
    #[error(
        "{path}: {what}; recovery will not start over a journal it cannot read (move the file away to start the channel from its snapshot, losing what the file held after that point)"
    )]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong, and where.
        what: String,
    },
    /// A file of another format version.
    #[error(
        "{path}: format version {found}, this centrum reads version {FORMAT_VERSION}; run the centrum that wrote it, or move the channel's directory away to start it empty"
    )]
    Version {
        /// The file.
        path: String,
        /// Its version.
        found: u32,
    },
    /// Another process holds the store (two backs with one data directory, or a back
    /// still running).
    #[error(
        "{path} is in use by another process (pid {pid}); two backs cannot share a data directory, and a back must be stopped before another one takes its place"
    )]
    InUse {
        /// The directory.
        path: String,
        /// The holder, as it wrote itself in the lock file.
        pid: String,
    },
    /// Another process holds the lease on this back id in a networked store.
    #[error(
        "{store}: back {back} is running elsewhere (it holds the store's lease, token {token}, for {ends_in_ms} ms more); a back runs at most once: stop the other one, or wait for its lease to end (the lease of a killed back ends by itself)"
    )]
    Leased {
        /// The store.
        store: String,
        /// The back id.
        back: String,
        /// The holder's fencing token.
        token: String,
        /// When its lease ends unless it renews it.
        ends_in_ms: i64,
    },
    /// This process lost its lease on the back id: another process took the back over,
    /// or the lease ended before it could be renewed. Nothing more is written.
    #[error(
        "{store}: {why}; this process writes nothing more for back {back} (a back runs at most once)"
    )]
    Fenced {
        /// The store.
        store: String,
        /// The back id.
        back: String,
        /// What happened to the lease.
        why: String,
    },
    /// A networked store did not answer (refused, closed or timed out).
    #[error(
        "{store}: the store is unreachable ({detail}); nothing is acknowledged until it answers"
    )]
    Unreachable {
        /// The store, without credentials.
        store: String,
        /// Why, as the connection said.
        detail: String,
    },
    /// A networked store answered with an error.
    #[error("{store}: the server refused: {detail}")]
    Server {
        /// The store, without credentials.
        store: String,
        /// Its answer.
        detail: String,
    },
    /// The networked store's URL cannot be used.
    #[error("store.url: {why}")]
    Url {
        /// What is wrong with it (never the URL itself: it may hold a password).
        why: String,
    },
    /// The server does not keep writes as `store.fsync` promises.
    #[error("{store}: {what}")]
    Durability {
        /// The store, without credentials.
        store: String,
        /// What it does, and which setting to change.
        what: String,
    },
    /// A record or snapshot over the largest a file may hold.
    #[error("{path}: a record of {len} bytes is over the limit of 1 GiB")]
    TooLarge {
        /// Where it was to go.
        path: String,
        /// Its size.
        len: usize,
    },
    /// Records are missing between two files, or an append skipped a step.
    #[error("{path}: {what}")]
    Gap {
        /// Where the gap was found.
        path: String,
        /// Which steps are missing.
        what: String,
    },
}

fn hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            " (make it writable by this user, or set another data_dir)"
        }
        std::io::ErrorKind::StorageFull => " (the disk is full: free some space)",
        std::io::ErrorKind::ReadOnlyFilesystem => {
            " (the file system is read-only: set a data_dir on a writable one)"
        }
        _ => "",
    }
}
