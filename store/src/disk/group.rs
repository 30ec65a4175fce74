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
    /// The last sync that failed, and why: it and every sync before it may have left
    /// a waiter's write off the disk. Later ones may not report the error again (the
    /// kernel reports a writeback error once per open file), so it is kept.
    failed: Option<(u64, io::ErrorKind, String)>,
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
        })
    }

    /// Syncs made so far.
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs.load(Relaxed)
    }

    /// Returns once what was written to `file` before the call is on the disk.
    ///
    /// # Errors
    /// The sync's error; the write may or may not have reached the disk.
    pub(crate) fn sync(&self, file: &File) -> io::Result<()> {
        let mut state = self.state.lock();
        let mine = state.started + 1;
        state.waiting.push(file.as_raw_fd());
        loop {
            if state.finished >= mine {
                return match &state.failed {
                    Some((failed, kind, message)) if *failed >= mine => {
                        Err(io::Error::new(*kind, message.clone()))
                    }
                    _ => Ok(()),
                };
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
            let result = parking_lot::MutexGuard::unlocked(&mut state, || self.sync_now(&files));
            state.running = false;
            state.finished = mine;
            if let Err(e) = result {
                state.failed = Some((mine, e.kind(), e.to_string()));
            }
            self.finished.notify_all();
        }
    }

    /// One sync covering `files`: `fdatasync` for one, `syncfs` for more.
    fn sync_now(&self, files: &[RawFd]) -> io::Result<()> {
        self.syncs.fetch_add(1, Relaxed);
        #[cfg(test)]
        if self.fail_next.swap(false, Relaxed) {
            return Err(io::Error::other("injected failure"));
        }
        // SAFETY: each descriptor belongs to a caller blocked in `sync` until this
        // sync is over, so it stays open; `root` is this group's own.
        let failed = unsafe {
            match files {
                [one] => libc::fdatasync(*one),
                _ => libc::syncfs(self.root.as_raw_fd()),
            }
        };
        if failed == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
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

    #[test]
    fn files_that_sync_at_once_share_syncs() {
        let dir = scratch("shared");
        let group = Arc::new(SyncGroup::new(&dir).unwrap());
        let (threads, rounds) = (16, 20);
        let barrier = Arc::new(Barrier::new(threads));
        let workers: Vec<_> = (0..threads)
            .map(|i| {
                let (group, barrier, dir) = (group.clone(), barrier.clone(), dir.clone());
                std::thread::spawn(move || {
                    let mut file = File::create(dir.join(format!("f{i}"))).unwrap();
                    for _ in 0..rounds {
                        barrier.wait(); // every file asks at the same moment, as on a tick
                        file.write_all(b"record").unwrap();
                        group.sync(&file).unwrap();
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        // A round takes a sync for the first file to ask, one for the files that asked
        // while it ran, and one for each latecomer a busy machine makes (about 2.5 a
        // round here): far from one per file.
        let (syncs, files) = (group.syncs(), (threads * rounds) as u64);
        assert!(syncs >= rounds as u64, "{syncs}");
        assert!(syncs <= files / 2, "{syncs} syncs for {files} records");
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
