//! One run of a child: a process this supervisor spawned (its own child, reaped with its
//! exit status), or one it adopted (left running by a supervisor that died: found in
//! `/proc` by its exact command line and watched through a pidfd). Both stop the same way.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::process::{Child, Command};
use tracing::{debug, info, warn};

use super::{ChildSpec, STDERR_TAIL_BYTES, logs};

/// A running process of a child.
#[derive(Debug)]
pub(super) enum Process {
    Spawned {
        child: Child,
        pid: u32,
        log: Option<(PathBuf, u64)>,
    },
    Adopted {
        adopted: Adopted,
        log: Option<(PathBuf, u64)>,
    },
}

/// A process that is not our child. It is named by a pidfd where the kernel has them
/// (Linux 5.3+), so a signal can never reach another process that reused its pid; else
/// by its pid and start time, checked before every signal.
#[derive(Debug)]
pub(super) struct Adopted {
    pid: u32,
    start_time: u64,
    pidfd: Option<AsyncFd<OwnedFd>>,
}

/// The most of a command line read when looking for a child: a child's is far shorter,
/// and a longer one (cut short) cannot match it.
const MAX_CMDLINE: u64 = 64 * 1024;

/// How often an adopted process is looked at without a pidfd.
const POLL: Duration = Duration::from_millis(100);

/// What `/proc/<pid>/stat` says of a process that matters here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// `Z` (zombie) and `X` (dead) are exited processes.
    state: u8,
    /// Clock ticks after boot: with the pid, names one process for good.
    start_time: u64,
}

impl Process {
    /// Starts `spec`, its output appended to its log in `log_dir` (or to ours).
    pub(super) fn spawn(spec: &ChildSpec, log_dir: Option<&Path>) -> io::Result<Process> {
        let mut command = Command::new(&spec.program);
        command.args(&spec.args).stdin(Stdio::null());
        for (name, value) in &spec.env {
            command.env(name, value.expose());
        }
        let log = match log_dir {
            Some(dir) => {
                let (file, path, offset) = logs::open(dir, &spec.name)?;
                command.stdout(file.try_clone()?).stderr(file);
                Some((path, offset))
            }
            None => {
                command.stdout(Stdio::inherit()).stderr(Stdio::inherit());
                None
            }
        };
        // Should this task be dropped (the supervisor dropped without `wait`), the child
        // dies with it rather than running unsupervised. A supervisor killed outright
        // drops nothing: its children keep running, for the next one to adopt.
        let child = command.kill_on_drop(true).spawn()?;
        // `id` is `None` only once the child has been reaped; it was just spawned.
        let pid = child.id().unwrap_or_default();
        Ok(Process::Spawned { child, pid, log })
    }

    /// A live process running exactly `spec` (same program, same arguments), if there
    /// is one; the oldest if there are several.
    pub(super) fn adopt(spec: &ChildSpec, log_dir: Option<&Path>) -> Option<Process> {
        let (pid, start_time) = find(&spec.program, &spec.args)?;
        let pidfd = match pidfd_open(pid) {
            // SAFETY: the AsyncFd owns the OwnedFd, which nothing else closes or
            // replaces, so the descriptor stays the same open pidfd while it is watched.
            Ok(fd) => match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
                Ok(fd) => Some(fd),
                Err(e) => {
                    debug!(pid, error = %e, "cannot watch a pidfd; polling /proc instead");
                    None
                }
            },
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return None,
            Err(e) => {
                debug!(pid, error = %e, "no pidfd; polling /proc instead");
                None
            }
        };
        // The pid may have died and been reused between the scan and pidfd_open: the
        // pidfd then names another process, whose start time differs.
        if stat(pid).is_none_or(|s| s.start_time != start_time || s.exited()) {
            return None;
        }
        let log = log_dir.map(|dir| {
            let path = logs::path(dir, &spec.name);
            let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            (path, offset)
        });
        let adopted = Adopted {
            pid,
            start_time,
            pidfd,
        };
        Some(Process::Adopted { adopted, log })
    }

    pub(super) fn pid(&self) -> u32 {
        match self {
            Process::Spawned { pid, .. } => *pid,
            Process::Adopted { adopted, .. } => adopted.pid,
        }
    }

    pub(super) fn adopted(&self) -> bool {
        matches!(self, Process::Adopted { .. })
    }

    /// The log file the process writes to, if it has one.
    pub(super) fn log(&self) -> Option<&Path> {
        match self {
            Process::Spawned { log, .. } | Process::Adopted { log, .. } => {
                log.as_ref().map(|(path, _)| path.as_path())
            }
        }
    }

    /// Where this run's output starts in its log.
    pub(super) fn log_offset(&self) -> u64 {
        match self {
            Process::Spawned { log, .. } | Process::Adopted { log, .. } => {
                log.as_ref().map_or(0, |(_, offset)| *offset)
            }
        }
    }

    /// The end of this run's output, at most [`STDERR_TAIL_BYTES`].
    pub(super) fn tail(&self) -> Option<String> {
        let path = self.log()?;
        logs::tail(path, self.log_offset(), STDERR_TAIL_BYTES)
    }

    /// Waits until the process exits; says how, as an operator reads it.
    pub(super) async fn wait(&mut self) -> String {
        match self {
            Process::Spawned { child, .. } => match child.wait().await {
                Ok(status) => describe(status),
                Err(e) => format!("lost track of it: {e}"),
            },
            Process::Adopted { adopted, .. } => {
                adopted.exited().await;
                "exited (status unknown: adopted, not a child of this supervisor)".into()
            }
        }
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL.
    pub(super) async fn stop(&mut self, name: &str, grace: Duration) {
        let pid = self.pid();
        self.signal(libc::SIGTERM);
        match tokio::time::timeout(grace, self.wait()).await {
            Ok(status) => info!(child = name, pid, %status, "stopped"),
            Err(_) => {
                warn!(
                    child = name,
                    pid,
                    grace_ms = grace.as_millis() as u64,
                    "did not exit after SIGTERM; killing it"
                );
                self.signal(libc::SIGKILL);
                if tokio::time::timeout(grace, self.wait()).await.is_err() {
                    warn!(child = name, pid, "still there after SIGKILL");
                }
            }
        }
    }

    fn signal(&self, signal: libc::c_int) {
        let sent = match self {
            // Not reaped until `wait` returns, so the pid still names our child.
            Process::Spawned { child, pid, .. } if child.id().is_some() => {
                // SAFETY: kill(2) takes plain integers and touches no memory of ours.
                unsafe { libc::kill(*pid as libc::pid_t, signal) == 0 }
            }
            Process::Spawned { .. } => false,
            Process::Adopted { adopted, .. } => adopted.signal(signal),
        };
        if !sent {
            debug!(pid = self.pid(), signal, error = %io::Error::last_os_error(), "signal not sent");
        }
    }
}

impl Adopted {
    /// Resolves once the process has exited.
    async fn exited(&self) {
        match &self.pidfd {
            // A pidfd turns readable when its process exits; nothing is ever read.
            Some(fd) => {
                if fd.readable().await.is_err() {
                    self.poll_exit().await;
                }
            }
            None => self.poll_exit().await,
        }
    }

    async fn poll_exit(&self) {
        while self.alive() {
            tokio::time::sleep(POLL).await;
        }
    }

    fn alive(&self) -> bool {
        stat(self.pid).is_some_and(|s| s.start_time == self.start_time && !s.exited())
    }

    fn signal(&self, signal: libc::c_int) -> bool {
        match &self.pidfd {
            Some(fd) => {
                // SAFETY: pidfd_send_signal(2) with a pidfd we own, a null siginfo (the
                // kernel fills it in as for kill(2)) and no flags.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        fd.get_ref().as_raw_fd(),
                        signal,
                        std::ptr::null::<libc::siginfo_t>(),
                        0,
                    )
                };
                r == 0
            }
            // SAFETY: kill(2) takes plain integers; the start time check just before
            // makes a reused pid unlikely to be hit (a pidfd would make it impossible).
            None => self.alive() && unsafe { libc::kill(self.pid as libc::pid_t, signal) == 0 },
        }
    }
}

impl Stat {
    fn exited(self) -> bool {
        matches!(self.state, b'Z' | b'X' | b'x')
    }
}

/// Opens a pidfd for `pid`.
fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The pid and start time of the oldest live process (not this one) whose executable is
/// `program` and whose arguments after the program name are exactly `args`.
fn find(program: &Path, args: &[String]) -> Option<(u32, u64)> {
    let program = std::fs::canonicalize(program).ok()?;
    let own = std::process::id();
    let mut oldest: Option<(u32, u64)> = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        // A process that ends during the scan just fails one of these reads.
        let Some(cmdline) = read_bounded(&entry.path().join("cmdline"), MAX_CMDLINE) else {
            continue;
        };
        if !same_args(&cmdline, args) || !same_program(&entry.path(), &program) {
            continue;
        }
        let Some(stat) = stat(pid) else { continue };
        if stat.exited() {
            continue;
        }
        if oldest.is_none_or(|(_, start)| stat.start_time < start) {
            oldest = Some((pid, stat.start_time));
        }
    }
    oldest
}

/// Whether a NUL-separated command line has exactly `args` after its program name.
fn same_args(cmdline: &[u8], args: &[String]) -> bool {
    let mut words = cmdline
        .strip_suffix(&[0])
        .unwrap_or(cmdline)
        .split(|&b| b == 0);
    if words.next().is_none() {
        return false;
    }
    let mut args = args.iter();
    loop {
        match (words.next(), args.next()) {
            (None, None) => return true,
            (Some(word), Some(arg)) if word == arg.as_bytes() => {}
            _ => return false,
        }
    }
}

/// Whether `/proc/<pid>/exe` is `program`, also when the file was replaced since the
/// process started (a rebuilt binary: the link then ends in ` (deleted)`).
fn same_program(proc_dir: &Path, program: &Path) -> bool {
    let Ok(exe) = std::fs::read_link(proc_dir.join("exe")) else {
        return false;
    };
    if exe == program {
        return true;
    }
    let exe = exe.as_os_str().as_encoded_bytes();
    exe.strip_suffix(b" (deleted)")
        .is_some_and(|exe| exe == program.as_os_str().as_encoded_bytes())
}

/// `/proc/<pid>/stat`, or `None` when the process is gone.
fn stat(pid: u32) -> Option<Stat> {
    // The line is a few hundred bytes; 4 KiB bounds a command name of any length.
    let bytes = read_bounded(Path::new(&format!("/proc/{pid}/stat")), 4096)?;
    parse_stat(&String::from_utf8_lossy(&bytes))
}

/// At most `max` bytes of a file.
fn read_bounded(path: &Path, max: u64) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(File::open(path).ok()?, max), &mut bytes).ok()?;
    Some(bytes)
}

/// `pid (comm) S ppid ...`: the command name may hold spaces and parentheses, so the
/// fields are counted from the last `)`. The state is field 3, the start time field 22.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start_time })
}

/// `exit code 1`, `signal 9`: the status as an operator reads it.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 1 0 0 0 3 1 0 0 20 0 \
                    4 0 987654 12345678 100 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: b'S',
                start_time: 987654
            })
        );
        assert_eq!(parse_stat("4242 (short) Z 1"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn arguments_must_match_exactly() {
        let args = ["back".to_owned(), "--id".to_owned(), "back-1".to_owned()];
        assert!(same_args(b"/bin/centrum\0back\0--id\0back-1\0", &args));
        assert!(!same_args(b"/bin/centrum\0back\0--id\0back-10\0", &args));
        assert!(!same_args(b"/bin/centrum\0back\0--id\0", &args));
        assert!(!same_args(
            b"/bin/centrum\0back\0--id\0back-1\0--config\0x\0",
            &args
        ));
        assert!(!same_args(b"", &args));
        assert!(same_args(b"/bin/true\0", &[]));
    }

    #[tokio::test]
    async fn a_process_left_running_is_found_watched_and_stopped() {
        let sleeper = std::process::Command::new("sleep")
            .arg("1000.5")
            .spawn()
            .expect("spawn sleep");
        let program = PathBuf::from(
            String::from_utf8(
                std::process::Command::new("sh")
                    .args(["-c", "command -v sleep"])
                    .output()
                    .expect("which sleep")
                    .stdout,
            )
            .expect("utf-8")
            .trim(),
        );
        let spec = ChildSpec {
            name: "sleeper".into(),
            program,
            args: vec!["1000.5".into()],
            env: Vec::new(),
        };
        let mut sleeper = Guard(sleeper);
        // Until the child has exec'd `sleep`, its command line is still this test's.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut process = loop {
            if let Some(found) = Process::adopt(&spec, None) {
                break found;
            }
            assert!(std::time::Instant::now() < deadline, "the sleeper is found");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(process.pid(), sleeper.0.id());
        assert!(process.adopted());
        let other = ChildSpec {
            args: vec!["1000.25".into()],
            ..spec.clone()
        };
        assert!(Process::adopt(&other, None).is_none());

        let stop = tokio::time::timeout(
            Duration::from_secs(10),
            process.stop("sleeper", Duration::from_secs(5)),
        );
        // The sleeper is this test's child, not reaped until the `wait` below: the
        // pidfd turns readable at its exit all the same.
        stop.await.expect("stopped within the grace period");
        let status = sleeper.0.wait().expect("reaped");
        assert_eq!(describe(status), "signal 15");
    }

    /// Kills the process if the test fails half-way.
    struct Guard(std::process::Child);

    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
