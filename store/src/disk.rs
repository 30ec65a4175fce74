//! [`DiskStore`]: a directory per channel holding `snapshot-<step>.snap` files and a
//! journal cut into `journal-<first step>.log` segments at each snapshot, so that
//! dropping the journal a snapshot covers is deleting whole files.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

mod group;

use group::SyncGroup;

use crate::file::{HEADER_LEN, MAX_RECORD, Magic, check_header, header, read_records, record};
use crate::{
    Journal, Opened, Record, Recovered, Snapshot, Snapshots, Store, StoreError, SyncPolicy,
};

/// Channels kept in files under one directory (a back's `data_dir`), which it holds
/// locked for as long as it (or a clone) lives.
#[derive(Debug, Clone)]
pub struct DiskStore {
    root: PathBuf,
    sync: SyncPolicy,
    /// The journals' syncs, shared (group commit).
    group: Arc<SyncGroup>,
    /// `LOCK`, with an exclusive `flock`: two processes appending to one journal would
    /// interleave their records. The kernel drops it however the process ends.
    _lock: Arc<File>,
}

impl DiskStore {
    /// A store under `root`, which is made if missing, must be writable, and must not
    /// be in use by another process.
    ///
    /// # Errors
    /// [`StoreError::Io`] naming the directory when it cannot be made or written;
    /// [`StoreError::InUse`] while another process holds it.
    pub fn new(root: impl Into<PathBuf>, sync: SyncPolicy) -> Result<Self, StoreError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| io(&root, e))?;
        let lock_path = root.join("LOCK");
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| io(&root, e))?;
        // SAFETY: flock(2) on a descriptor this function owns.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(io(&lock_path, e));
            }
            let mut pid = String::new();
            let _ = (&mut lock).take(32).read_to_string(&mut pid);
            return Err(StoreError::InUse {
                path: root.display().to_string(),
                pid: pid.trim().to_owned(),
            });
        }
        // The holder's pid, for the message another process gets; also proves the
        // directory writable now rather than at the first tick.
        lock.set_len(0).map_err(|e| io(&lock_path, e))?;
        lock.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(|e| io(&lock_path, e))?;
        // What a crash left of channels being removed.
        for entry in fs::read_dir(&root).map_err(|e| io(&root, e))?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(REMOVED) {
                fs::remove_dir_all(entry.path()).map_err(|e| io(&entry.path(), e))?;
            }
        }
        let group = SyncGroup::new(&root).map_err(|e| io(&root, e))?;
        Ok(Self {
            root,
            sync,
            group: Arc::new(group),
            _lock: Arc::new(lock),
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// A channel directory being removed is first renamed to a name starting with this,
/// which is never a channel's (names are plain), then deleted; what a crash leaves of
/// one is deleted when the store is next opened.
const REMOVED: &str = ".removed-";

impl Store for DiskStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn syncs(&self) -> u64 {
        self.group.syncs()
    }

    fn channels(&self) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(|e| io(&self.root, e))? {
            let entry = entry.map_err(|e| io(&self.root, e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') || !entry.path().is_dir() {
                continue;
            }
            out.push(name);
        }
        Ok(out)
    }

    fn remove(&self, channel: &str) -> Result<(), StoreError> {
        let dir = self.root.join(channel);
        if !dir.exists() {
            return Ok(());
        }
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let gone = self
            .root
            .join(format!("{REMOVED}{}-{n}-{channel}", std::process::id()));
        fs::rename(&dir, &gone).map_err(|e| io(&dir, e))?;
        sync_dir(&self.root)?;
        fs::remove_dir_all(&gone).map_err(|e| io(&gone, e))
    }

    fn open(&self, channel: &str) -> Result<Opened, StoreError> {
        let dir = self.root.join(channel);
        fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let mut recovered = Recovered::default();
        let files = Files::list(&dir, &mut recovered.repairs)?;
        recovered.snapshot = newest_snapshot(&files.snapshots, &mut recovered.repairs)?;
        let after = recovered.snapshot.as_ref().map_or(0, |s| s.step);
        recovered.records = journal_records(&files.journals, after, &mut recovered.repairs)?;
        let last = recovered.records.last().map_or(after, |r| r.step);
        let journal = DiskJournal::open(
            &dir,
            last,
            self.sync,
            self.group.clone(),
            self._lock.clone(),
        )?;
        Ok(Opened {
            recovered,
            journal: Box::new(journal),
            snapshots: Box::new(DiskSnapshots {
                dir,
                _lock: self._lock.clone(),
            }),
        })
    }
}

/// A channel directory's files, by step.
struct Files {
    /// `(step, path)`, newest first.
    snapshots: Vec<(u64, PathBuf)>,
    /// `(first step, path)`, oldest first.
    journals: Vec<(u64, PathBuf)>,
}

impl Files {
    fn list(dir: &Path, repairs: &mut Vec<String>) -> Result<Self, StoreError> {
        let mut files = Files {
            snapshots: Vec::new(),
            journals: Vec::new(),
        };
        for entry in fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let path = entry.map_err(|e| io(dir, e))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some(step) = step_of(name, "snapshot-", ".snap") {
                files.snapshots.push((step, path));
            } else if let Some(step) = step_of(name, "journal-", ".log") {
                files.journals.push((step, path));
            } else if name.ends_with(".snap.tmp") {
                // A snapshot that was being written when the back stopped: never whole.
                fs::remove_file(&path).map_err(|e| io(&path, e))?;
                repairs.push(format!(
                    "{}: removed an unfinished snapshot",
                    path.display()
                ));
            }
        }
        files.snapshots.sort_by_key(|s| std::cmp::Reverse(s.0));
        files.journals.sort_by_key(|j| j.0);
        Ok(files)
    }
}

fn step_of(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?
        .strip_suffix(suffix)?
        .parse()
        .ok()
}

fn file_name(prefix: &str, step: u64, suffix: &str) -> String {
    format!("{prefix}{step:020}{suffix}")
}

/// The newest snapshot that reads whole; a damaged one is skipped for the one before
/// it (and said so). A snapshot of another format version stops recovery.
fn newest_snapshot(
    snapshots: &[(u64, PathBuf)],
    repairs: &mut Vec<String>,
) -> Result<Option<Snapshot>, StoreError> {
    for (step, path) in snapshots {
        let shown = path.display().to_string();
        let bytes = fs::read(path).map_err(|e| io(path, e))?;
        match check_header(&bytes, Magic::Snapshot, &shown) {
            Ok(()) => {}
            Err(e @ StoreError::Version { .. }) => return Err(e),
            Err(e) => {
                set_aside(path)?;
                repairs.push(format!(
                    "{e}; set aside as {}, falling back to the snapshot before it",
                    damaged_path(path).display()
                ));
                continue;
            }
        }
        let read = read_records(&bytes[HEADER_LEN..]);
        match &read.records[..] {
            [(at, body)] if at == step && read.stopped.is_none() => {
                return Ok(Some(Snapshot {
                    step: *step,
                    bytes: body.clone(),
                    source: shown,
                }));
            }
            _ => {
                set_aside(path)?;
                repairs.push(format!(
                    "{shown}: damaged ({}); set aside as {}, falling back to the snapshot before it",
                    read.stopped.as_deref().unwrap_or("not one record of its step"),
                    damaged_path(path).display()
                ));
            }
        }
    }
    Ok(None)
}

/// Every journal record after step `after`, checking that steps follow each other. A
/// damaged tail of the last segment is a write the crash interrupted: it is cut off
/// (and kept beside the file); damage anywhere else stops recovery.
fn journal_records(
    journals: &[(u64, PathBuf)],
    after: u64,
    repairs: &mut Vec<String>,
) -> Result<Vec<Record>, StoreError> {
    let mut records = Vec::new();
    let mut last = after;
    for (i, (_, path)) in journals.iter().enumerate() {
        let shown = path.display().to_string();
        let is_last = i + 1 == journals.len();
        let bytes = fs::read(path).map_err(|e| io(path, e))?;
        if is_last && bytes.len() < HEADER_LEN {
            // Made but its header never written whole: it holds nothing.
            repairs.push(format!(
                "{shown}: an unfinished new segment; rewritten empty"
            ));
            write_new(path, &header(Magic::Journal))?;
            continue;
        }
        check_header(&bytes, Magic::Journal, &shown)?;
        let read = read_records(&bytes[HEADER_LEN..]);
        if let Some(why) = &read.stopped {
            let at = HEADER_LEN + read.good_len;
            // A crash leaves damage only at the end. Whole records after a bad one
            // are damage in the middle: not a torn tail, and not to be cut off.
            let body = &bytes[HEADER_LEN..];
            let whole_after = read
                .bad_end
                .is_some_and(|end| !read_records(&body[end..]).records.is_empty());
            if !is_last || whole_after {
                let after = if is_last {
                    "whole records"
                } else {
                    "later segments"
                };
                return Err(StoreError::Corrupt {
                    path: shown,
                    what: format!("{why} at byte {at}, and {after} follow it"),
                });
            }
            cut_tail(path, &bytes, at)?;
            repairs.push(format!(
                "{shown}: cut a torn tail of {} bytes at byte {at} ({why}); kept as {}",
                bytes.len() - at,
                torn_path(path, at).display()
            ));
        }
        for (step, payload) in read.records {
            if step <= after {
                continue;
            }
            if step != last + 1 {
                return Err(StoreError::Gap {
                    path: shown,
                    what: format!(
                        "the journal goes from step {last} to step {step}; the records between are missing"
                    ),
                });
            }
            last = step;
            records.push(Record {
                step,
                bytes: payload,
            });
        }
    }
    Ok(records)
}

/// A damaged snapshot is renamed, not deleted, so that pruning never counts it as
/// one of the two kept.
fn set_aside(path: &Path) -> Result<(), StoreError> {
    fs::rename(path, damaged_path(path)).map_err(|e| io(path, e))
}

fn damaged_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".damaged");
    PathBuf::from(name)
}

fn torn_path(path: &Path, at: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".torn-{at}"));
    PathBuf::from(name)
}

/// Moves the bytes of `path` from `at` on into a file beside it, then truncates.
fn cut_tail(path: &Path, bytes: &[u8], at: usize) -> Result<(), StoreError> {
    let torn = torn_path(path, at);
    write_new(&torn, &bytes[at..])?;
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io(path, e))?;
    file.set_len(at as u64).map_err(|e| io(path, e))?;
    file.sync_all().map_err(|e| io(path, e))
}

/// Writes a whole file durably.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut file = File::create(path).map_err(|e| io(path, e))?;
    file.write_all(bytes).map_err(|e| io(path, e))?;
    file.sync_all().map_err(|e| io(path, e))
}

/// Makes a rename or a new file in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

/// A record the reader would refuse as damage is not written at all.
fn too_large(path: &Path, len: usize) -> Result<(), StoreError> {
    if len > MAX_RECORD {
        return Err(StoreError::TooLarge {
            path: path.display().to_string(),
            len,
        });
    }
    Ok(())
}

fn io(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The segment records are appended to.
#[derive(Debug)]
struct DiskJournal {
    /// The store's lock: held for as long as anything can still write.
    _lock: Arc<File>,
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// The file's length: where the next record goes, and where a failed one is cut.
    len: u64,
    next_step: u64,
    sync: SyncPolicy,
    group: Arc<SyncGroup>,
    last_sync: Instant,
    /// A record asked to be durable was written but not synced yet (`Interval`).
    unsynced: bool,
    /// Reused for each record's bytes.
    buf: Vec<u8>,
}

impl DiskJournal {
    /// Appends after step `last`: to the segment that starts at `last + 1` if there
    /// is one (it holds no record), else to a new one. A segment shorter than its
    /// header (a cut that failed half-way, on a full disk) is written afresh.
    fn open(
        dir: &Path,
        last: u64,
        sync: SyncPolicy,
        group: Arc<SyncGroup>,
        lock: Arc<File>,
    ) -> Result<Self, StoreError> {
        let path = dir.join(file_name("journal-", last + 1, ".log"));
        let whole = fs::metadata(&path).is_ok_and(|m| m.len() >= HEADER_LEN as u64);
        if !whole {
            write_new(&path, &header(Magic::Journal))?;
            sync_dir(dir)?;
        }
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        let len = file.metadata().map_err(|e| io(&path, e))?.len();
        Ok(Self {
            _lock: lock,
            dir: dir.to_owned(),
            path,
            file,
            len,
            next_step: last + 1,
            sync,
            group,
            last_sync: Instant::now(),
            unsynced: false,
            buf: Vec::new(),
        })
    }
}

impl Journal for DiskJournal {
    fn append(&mut self, step: u64, payload: &[u8], durable: bool) -> Result<(), StoreError> {
        if step != self.next_step {
            return Err(StoreError::Gap {
                path: self.path.display().to_string(),
                what: format!("step {step} appended where step {} was due", self.next_step),
            });
        }
        too_large(&self.path, payload.len())?;
        self.buf.clear();
        record(&mut self.buf, step, payload);
        if let Err(e) = self.file.write_all(&self.buf) {
            // Cut off what part of the record was written, so a retry appends whole.
            let _ = self.file.set_len(self.len);
            return Err(io(&self.path, e));
        }
        // With an interval, a durable record not synced now is synced by a later
        // append once the interval is up (a channel appends every tick), so none waits
        // longer than the interval and a tick.
        let sync_now = match self.sync {
            SyncPolicy::EveryRecord => durable,
            SyncPolicy::Interval(every) => {
                (durable || self.unsynced) && self.last_sync.elapsed() >= every
            }
            SyncPolicy::Never => false,
        };
        if sync_now {
            if let Err(e) = self.group.sync(&self.file) {
                let _ = self.file.set_len(self.len);
                return Err(io(&self.path, e));
            }
            self.last_sync = Instant::now();
            self.unsynced = false;
        } else if durable {
            self.unsynced = true;
        }
        self.len += self.buf.len() as u64;
        self.next_step += 1;
        Ok(())
    }

    fn cut(&mut self, step: u64) -> Result<(), StoreError> {
        if step + 1 != self.next_step {
            return Err(StoreError::Gap {
                path: self.path.display().to_string(),
                what: format!(
                    "cut at step {step}, but the last record is of step {}",
                    self.next_step - 1
                ),
            });
        }
        if self.len as usize == HEADER_LEN {
            return Ok(()); // The segment is empty: it already starts after `step`.
        }
        self.file.sync_data().map_err(|e| io(&self.path, e))?;
        *self = Self::open(
            &self.dir,
            step,
            self.sync,
            self.group.clone(),
            self._lock.clone(),
        )?;
        Ok(())
    }
}

/// Writes snapshots of one channel and prunes what they supersede.
#[derive(Debug)]
struct DiskSnapshots {
    dir: PathBuf,
    /// The store's lock: held for as long as anything can still write.
    _lock: Arc<File>,
}

impl Snapshots for DiskSnapshots {
    fn write(&mut self, step: u64, snapshot: &[u8]) -> Result<(), StoreError> {
        let name = file_name("snapshot-", step, ".snap");
        too_large(&self.dir.join(&name), snapshot.len())?;
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut bytes = header(Magic::Snapshot).to_vec();
        record(&mut bytes, step, snapshot);
        write_new(&tmp, &bytes)?;
        let path = self.dir.join(name);
        fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        sync_dir(&self.dir)?;
        self.prune()
    }
}

impl DiskSnapshots {
    /// Keeps the two newest snapshots and the journal the older of them needs.
    fn prune(&self) -> Result<(), StoreError> {
        let files = Files::list(&self.dir, &mut Vec::new())?;
        let Some(&(previous, _)) = files.snapshots.get(1) else {
            return Ok(());
        };
        for (_, path) in &files.snapshots[2..] {
            fs::remove_file(path).map_err(|e| io(path, e))?;
        }
        // A segment goes when the next one starts at or before `previous + 1`: all its
        // records are of steps the previous snapshot covers.
        for pair in files.journals.windows(2) {
            if pair[1].0 <= previous + 1 {
                fs::remove_file(&pair[0].1).map_err(|e| io(&pair[0].1, e))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
