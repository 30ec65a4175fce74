//! The run directory of `centrum up` and the children's log files in it: a lock so that
//! one supervisor at a time owns a cluster's nodes, one append-only log per child (which
//! the child writes itself, so it outlives the supervisor), reading a run's tail, and
//! echoing new lines to the supervisor's stderr.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::SuperviseError;

/// A log larger than this when its child starts is moved to `<name>.log.1` (replacing
/// the previous one), so a child's logs take at most about twice this on disk.
const ROTATE_BYTES: u64 = 16 * 1024 * 1024;

/// How often an echo looks for new lines.
const ECHO_EVERY: Duration = Duration::from_millis(200);

/// The most an echo holds of one line; a longer one is written in pieces.
const ECHO_LINE_BYTES: usize = 16 * 1024;

/// The run directory, locked for as long as this value lives: `up-<host>.lock` holds an
/// exclusive `flock` (released by the kernel when the process dies, however it dies;
/// not inherited by children) and the holder's pid; `logs/` holds the children's logs.
/// The lock is per host, so that the `up`s of several hosts of one config may run on one
/// machine (separate network namespaces) beside one another.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    _lock: File,
}

impl RunDir {
    /// Creates `path` (and `path/logs`) if needed and locks it for `host`.
    ///
    /// # Errors
    /// [`SuperviseError::Locked`] while another live process holds the lock;
    /// [`SuperviseError::RunDir`] when the directory or lock file cannot be made.
    pub fn lock(path: &Path, host: &str) -> Result<RunDir, SuperviseError> {
        let failed = |source| SuperviseError::RunDir {
            dir: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(path.join("logs")).map_err(failed)?;
        // Absolute, so that /status and the banner name it wherever they are read.
        let path = &std::fs::canonicalize(path).map_err(failed)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path.join(lock_name(host)))
            .map_err(failed)?;
        // SAFETY: flock(2) on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(failed(e));
            }
            let mut pid = String::new();
            let _ = file.take(32).read_to_string(&mut pid);
            return Err(SuperviseError::Locked {
                dir: path.to_path_buf(),
                pid: pid.trim().to_owned(),
            });
        }
        file.set_len(0).map_err(failed)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(failed)?;
        Ok(RunDir {
            path: path.to_path_buf(),
            _lock: file,
        })
    }

    /// A run directory of this user's for a config that has no file (a binary's built-in
    /// one): `<temp>/centrum-<program>-<uid>.run`.
    pub fn in_temp(program: &str) -> PathBuf {
        // SAFETY: getuid(2) cannot fail and touches no memory.
        let uid = unsafe { libc::getuid() };
        std::env::temp_dir().join(format!("centrum-{program}-{uid}.run"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the children's logs go: `<run dir>/logs`.
    pub fn logs(&self) -> PathBuf {
        self.path.join("logs")
    }
}

/// `up-<host>.lock`, the host kept to characters that are safe in a file name.
fn lock_name(host: &str) -> String {
    let host: String = host
        .chars()
        .take(64)
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
            _ => '_',
        })
        .collect();
    format!("up-{host}.lock")
}

/// `dir/<name>.log`.
pub(super) fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

/// Opens `name`'s log for appending (rotated first if large) and says where it ends:
/// a new run's output starts there.
pub(super) fn open(dir: &Path, name: &str) -> io::Result<(File, PathBuf, u64)> {
    std::fs::create_dir_all(dir)?;
    let path = path(dir, name);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > ROTATE_BYTES) {
        std::fs::rename(&path, dir.join(format!("{name}.log.1")))?;
    }
    let file = OpenOptions::new().create(true).append(true).open(&path)?;
    let offset = file.metadata()?.len();
    Ok((file, path, offset))
}

/// The last `max` bytes of `path` after `from`, starting at a line, as text; `None`
/// when there is none.
pub(super) fn tail(path: &Path, from: u64, max: usize) -> Option<String> {
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    // A log rotated since `from` was taken is shorter: then its end is all there is.
    let from = if from > len { 0 } else { from };
    let start = from.max(len.saturating_sub(max as u64));
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut bytes = Vec::with_capacity(max);
    file.take(max as u64).read_to_end(&mut bytes).ok()?;
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if start > from
        && let Some(newline) = text.find('\n')
    {
        text.drain(..=newline);
    }
    let text = text.trim_end();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Echoes a log to stderr: see [`echo`].
#[derive(Debug)]
pub(super) struct Echo {
    stop: CancellationToken,
    done: oneshot::Receiver<()>,
}

/// Copies the lines appended to `log` after `offset` to this process's stderr, each
/// prefixed with `name`, until [`Echo::finish`]. It runs on a thread of its own: a
/// stderr that blocks (nobody reads it) then blocks only the echo, never the runtime
/// and never the child, which writes to the file; a stderr that fails ends the echo.
pub(super) fn echo(name: &str, log: &Path, offset: u64) -> Option<Echo> {
    let stop = CancellationToken::new();
    let (done_tx, done) = oneshot::channel();
    let (name, log, token) = (name.to_owned(), log.to_path_buf(), stop.clone());
    let spawned = std::thread::Builder::new()
        .name(format!("echo {name}"))
        .spawn(move || {
            follow(&name, &log, offset, &token);
            let _ = done_tx.send(());
        });
    match spawned {
        Ok(_) => Some(Echo { stop, done }),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start a thread to echo a child's log");
            None
        }
    }
}

impl Echo {
    /// Echoes what is left, then stops; waits at most a second for it (a blocked stderr
    /// keeps the thread, not the caller).
    pub(super) async fn finish(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.done).await;
    }
}

fn follow(name: &str, log: &Path, offset: u64, stop: &CancellationToken) {
    let Ok(mut file) = File::open(log) else {
        return;
    };
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return;
    }
    let mut line = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let last = stop.is_cancelled();
        loop {
            // A regular file: a read at its end returns 0 rather than waiting.
            let n = match file.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for &byte in &chunk[..n] {
                line.push(byte);
                if (byte == b'\n' || line.len() >= ECHO_LINE_BYTES) && !write_line(name, &mut line)
                {
                    return;
                }
            }
        }
        if last {
            if !line.is_empty() {
                line.push(b'\n');
                write_line(name, &mut line);
            }
            return;
        }
        std::thread::sleep(ECHO_EVERY);
    }
}

/// Writes `name | line` to stderr and clears `line`; `false` when stderr fails.
fn write_line(name: &str, line: &mut Vec<u8>) -> bool {
    let mut stderr = io::stderr().lock();
    let written = write!(stderr, "{name} | ").and_then(|()| stderr.write_all(line));
    line.clear();
    written.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_starts_at_a_line_and_after_the_run_began() {
        let dir = std::env::temp_dir().join(format!("centrum-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut file, log, offset) = open(&dir, "back-1").expect("open");
        assert_eq!(offset, 0);
        file.write_all(b"old run\n").expect("write");
        let (mut file, _, offset) = open(&dir, "back-1").expect("open again");
        assert_eq!(offset, 8);
        assert_eq!(
            tail(&log, offset, 4096),
            None,
            "nothing written by this run"
        );
        file.write_all(b"one\ntwo\nthree\n").expect("write");
        assert_eq!(tail(&log, offset, 4096).as_deref(), Some("one\ntwo\nthree"));
        assert_eq!(tail(&log, offset, 9).as_deref(), Some("three"));
        assert_eq!(tail(&log, 10_000, 9).as_deref(), Some("three"), "rotated");

        let run = RunDir::lock(&dir.join("run"), "127.0.0.1").expect("lock");
        assert!(run.logs().is_dir());
        assert!(run.path().join("up-127.0.0.1.lock").is_file());
        let err = RunDir::lock(&dir.join("run"), "127.0.0.1").expect_err("locked twice");
        assert_eq!(
            err.to_string(),
            format!(
                "another `centrum up` (pid {}) supervises the nodes of {}",
                std::process::id(),
                dir.join("run").display()
            )
        );
        let other = RunDir::lock(&dir.join("run"), "10.0.0.2").expect("another host's lock");
        assert_eq!(lock_name("fe80::1/x"), "up-fe80__1_x.lock");
        drop(run);
        // Another test of this process forking a child at this instant holds a copy of
        // the descriptor until the child's exec closes it: the lock is free once it has.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while let Err(e) = RunDir::lock(&dir.join("run"), "127.0.0.1") {
            assert!(std::time::Instant::now() < deadline, "still locked: {e}");
            std::thread::yield_now();
        }
        drop(other);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
