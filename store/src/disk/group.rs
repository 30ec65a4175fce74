//! Group commit: the journals of one store that must reach the disk at the same moment
//! share one sync. A back ticks every channel on one grid, so with hundreds of rooms
//! hundreds of journals ask for a sync in the same millisecond; one `fdatasync` each
//! costs two block writes and a wake-up apiece, and most of a durable back's CPU.
//!
//! Each caller has already written its record. It waits for the next sync to *start*
//! (a sync that started before its write does not cover it), and whoever finds no sync
//! running starts one for everyone waiting: `fdatasync` of the one file when it is
//! alone, else one `syncfs` of the store's filesystem. A back with one channel syncs
//! exactly as before; a back with many makes one sync per tick.
//!
//! Errors are told per file. `syncfs` reports a writeback error once per descriptor it
//! is called on, whichever file it came from, so after it each waiting file is asked
//! for its own unseen error (`sync_file_range` with `WAIT_BEFORE`, which writes
//! nothing): a page of one journal that failed while another group's sync wrote it back
//! is still that journal's error. An error `syncfs` itself reports (another file's, or
//! an inode's) fails every file of its group, which then retries: a false alarm costs a
//! retry, a missed one would acknowledge a tick that is not on the disk.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::{Condvar, Mutex};

/// The syncs of one store's journals.
#[derive(Debug)]
pub(crate) struct SyncGroup {
    /// The store's directory: `syncfs` syncs the filesystem it is on.
    root: File,
    state: Mutex<State>,
    finished: Condvar,
    /// Syncs made (`fdatasync` or `syncfs`), for the back's metrics.
    syncs: AtomicU64,
    /// Tests: the next sync fails.
    #[cfg(test)]
    fail_next: std::sync::atomic::AtomicBool,
    /// Tests: the first leader waits until this many files more wait behind it.
    #[cfg(test)]
    first_waits_for: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    /// The number of the last sync started, and of the last finished; syncs run one at
    /// a time, in order.
    started: u64,
    finished: u64,
    running: bool,
    /// The files waiting for the next sync to start.
    waiting: Vec<RawFd>,
    /// What the last sync covering a file said of it, until its caller takes it. A
    /// journal appends one record at a time, so a file waits at most once.
    outcomes: HashMap<RawFd, Result<(), (io::ErrorKind, String)>>,
}

impl SyncGroup {
    /// The group of the store under `root`.
    pub(crate) fn new(root: &Path) -> io::Result<Self> {
        Ok(Self {
            root: File::open(root)?,
            state: Mutex::new(State::default()),
            finished: Condvar::new(),
            syncs: AtomicU64::new(0),
            #[cfg(test)]
            fail_next: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            first_waits_for: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Syncs made so far.
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs.load(Relaxed)
    }

    /// Returns once what was written to `file` before the call is on the disk.
    ///
    /// # Errors
    /// The sync's error for this file; the write may or may not have reached the disk.
    pub(crate) fn sync(&self, file: &File) -> io::Result<()> {
        let fd = file.as_raw_fd();
        let mut state = self.state.lock();
        let mine = state.started + 1;
        state.waiting.push(fd);
        loop {
            if state.finished >= mine {
                let outcome = state.outcomes.remove(&fd).unwrap_or(Ok(()));
                return outcome.map_err(|(kind, message)| io::Error::new(kind, message));
            }
            if state.running {
                self.finished.wait(&mut state);
                continue;
            }
            // No sync runs, and none started since this call's write: this call leads
            // the next one, for every file waiting.
            debug_assert_eq!(state.started + 1, mine);
            state.running = true;
            state.started = mine;
            let files = std::mem::take(&mut state.waiting);
            #[cfg(test)]
            self.hold_first(&mut state);
            let outcomes = parking_lot::MutexGuard::unlocked(&mut state, || self.sync_now(&files));
            for (fd, outcome) in files.into_iter().zip(outcomes) {
                state
                    .outcomes
                    .insert(fd, outcome.map_err(|e| (e.kind(), e.to_string())));
            }
            state.running = false;
            state.finished = mine;
            self.finished.notify_all();
        }
    }

    /// One sync covering `files`, and what it says of each: `fdatasync` for one file,
    /// else `syncfs` and then each file's own writeback error.
    fn sync_now(&self, files: &[RawFd]) -> Vec<io::Result<()>> {
        self.syncs.fetch_add(1, Relaxed);
        #[cfg(test)]
        if self.fail_next.swap(false, Relaxed) {
            return files
                .iter()
                .map(|_| Err(io::Error::other("injected failure")))
                .collect();
        }
        let last_error = |status: libc::c_int| {
            if status == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        // SAFETY: each descriptor belongs to a caller blocked in `sync` until this
        // sync is over, so it stays open; `root` is this group's own.
        unsafe {
            if let [one] = files {
                return vec![last_error(libc::fdatasync(*one))];
            }
            let whole = last_error(libc::syncfs(self.root.as_raw_fd()));
            files
                .iter()
                .map(|&fd| {
                    let own = last_error(libc::sync_file_range(
                        fd,
                        0,
                        0,
                        libc::SYNC_FILE_RANGE_WAIT_BEFORE,
                    ));
                    match (&whole, own) {
                        (_, Err(e)) => Err(e),
                        (Err(e), Ok(())) => Err(io::Error::new(e.kind(), format!("syncfs: {e}"))),
                        (Ok(()), Ok(())) => Ok(()),
                    }
                })
                .collect()
        }
    }

    /// Tests: make the first leader wait, unlocked, until enough files wait behind it.
    #[cfg(test)]
    fn hold_first(&self, state: &mut parking_lot::MutexGuard<'_, State>) {
        let more = self.first_waits_for.swap(0, Relaxed);
        while state.waiting.len() < more {
            parking_lot::MutexGuard::unlocked(state, std::thread::yield_now);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::sync::{Arc, Barrier};

    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("centrum-sync-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn one_file_alone_is_synced_by_itself() {
        let dir = scratch("alone");
        let group = SyncGroup::new(&dir).unwrap();
        let mut file = File::create(dir.join("a")).unwrap();
        for _ in 0..3 {
            file.write_all(b"record").unwrap();
            group.sync(&file).unwrap();
        }
        assert_eq!(group.syncs(), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `threads` files each write a record at the same moment, then sync, while the
    /// first sync to start holds until all the others wait behind it; their results.
    fn sync_together(group: &Arc<SyncGroup>, dir: &Path, threads: usize) -> Vec<io::Result<()>> {
        group.first_waits_for.store(threads - 1, Relaxed);
        let barrier = Arc::new(Barrier::new(threads));
        let workers: Vec<_> = (0..threads)
            .map(|i| {
                let (group, barrier) = (group.clone(), barrier.clone());
                let path = dir.join(format!("f{i}"));
                std::thread::spawn(move || {
                    let mut file = File::create(path).unwrap();
                    barrier.wait();
                    file.write_all(b"record").unwrap();
                    group.sync(&file)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    }

    #[test]
    fn files_that_sync_while_a_sync_runs_share_the_next_one() {
        let dir = scratch("shared");
        let group = Arc::new(SyncGroup::new(&dir).unwrap());
        // The first file's sync starts alone; the 15 others must then share one sync,
        // whatever the disk's speed.
        for result in sync_together(&group, &dir, 16) {
            result.unwrap();
        }
        assert_eq!(
            group.syncs(),
            2,
            "one for the first file, one for the other 15"
        );
        assert!(
            group.state.lock().outcomes.is_empty(),
            "every outcome was taken"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_sync_fails_only_the_files_it_covered() {
        let dir = scratch("covered");
        let group = Arc::new(SyncGroup::new(&dir).unwrap());
        // The first file's sync fails while the other three wait behind it; theirs is
        // the next sync, which succeeds.
        group.fail_next.store(true, Relaxed);
        let results = sync_together(&group, &dir, 4);
        let failed = results.iter().filter(|r| r.is_err()).count();
        assert_eq!(failed, 1, "{results:?}");
        assert_eq!(group.syncs(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_sync_is_told_to_its_callers_and_not_held_against_later_ones() {
        let dir = scratch("failed");
        let group = SyncGroup::new(&dir).unwrap();
        let mut file = File::create(dir.join("a")).unwrap();
        file.write_all(b"record").unwrap();
        group.fail_next.store(true, Relaxed);
        let err = group.sync(&file).unwrap_err();
        assert!(err.to_string().contains("injected"), "{err}");
        file.write_all(b"record").unwrap();
        group.sync(&file).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
