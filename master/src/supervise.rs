//! Child-process supervision for `centrum up`: one task per child starts it (or adopts
//! the same node left running by a supervisor that died), restarts it with back-off when
//! it exits, marks it failed after too many quick exits in a row and then retries it at
//! the capped interval, restarts it at an operator's request, and on shutdown sends
//! SIGTERM, then SIGKILL to what is still running after a grace period.

mod logs;
mod process;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{error, info, warn};

use centrum_config::SupervisionConfig;
use centrum_net::{Backoff, Shutdown};

pub use logs::RunDir;

use process::Process;

/// A process to keep running.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// Names the child in logs, in its log file's name and in [`SupervisorHandle`], e.g.
    /// `back-1`.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Environment variables set for the child besides ours (the cluster secret `up`
    /// made): secrets, so that they never show in a log or in `Debug`.
    pub env: Vec<(String, centrum_config::Secret)>,
}

/// How hard to try, and where children's output goes.
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    /// Quick exits in a row (each after a run shorter than `stable_after`) after which a
    /// child is [`ChildState::Failed`]; it is then retried every `backoff_max`.
    pub max_failures: u32,
    /// First restart delay; it doubles (with jitter) up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// A child that ran this long has its failures in a row and back-off reset.
    pub stable_after: Duration,
    /// How long children get to exit after SIGTERM before they are killed.
    pub stop_grace: Duration,
    /// `Some(dir)`: each child's stdout and stderr are appended to `dir/<name>.log`,
    /// which the child writes itself, so it neither blocks nor dies when the supervisor
    /// is gone; the supervisor follows the file to echo it (see `echo`) and to show the
    /// tail of a run that ended. `None`: children share the supervisor's stdout/stderr.
    pub log_dir: Option<PathBuf>,
    /// With `log_dir`, copy each child's log lines to this process's stderr, prefixed
    /// with the child's name.
    pub echo: bool,
    /// Before starting a child, look for a live process with the same program and
    /// arguments (one a supervisor that died left running) and supervise it instead.
    pub adopt: bool,
}

/// What a supervised child is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildState {
    /// A process runs (started or adopted).
    Running,
    /// It exited and is restarted after a back-off.
    Restarting,
    /// It exited quickly `max_failures` times in a row; it is retried every
    /// `backoff_max` and an operator may restart it at once.
    Failed,
    /// The supervisor stopped it (shutdown).
    Stopped,
}

/// One child as the supervisor sees it now.
#[derive(Debug, Clone)]
pub struct ChildStatus {
    pub name: String,
    pub state: ChildState,
    /// The running process, if any.
    pub pid: Option<u32>,
    /// The running process was found running, not started by this supervisor (its exit
    /// status cannot be known: it is not our child).
    pub adopted: bool,
    /// Processes started after the first, whatever the reason.
    pub restarts: u64,
    /// Quick exits in a row.
    pub failures: u32,
    /// How the last run ended: `exit code 1`, `signal 9`, `cannot start: ...`.
    pub last_exit: Option<String>,
    /// The end of the last ended run's output (at most [`STDERR_TAIL_BYTES`]).
    pub stderr_tail: Option<String>,
    /// When the next start is due, while restarting or failed.
    pub retry_at: Option<Instant>,
    /// The child's log file, with [`SupervisorOptions::log_dir`].
    pub log: Option<PathBuf>,
}

/// The most of a child's output kept for [`ChildStatus::stderr_tail`].
pub const STDERR_TAIL_BYTES: usize = 4096;

/// Why supervision could not start, or a restart was not done.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("another `centrum up` (pid {pid}) supervises the nodes of {}", dir.display())]
    Locked { dir: PathBuf, pid: String },
    #[error("cannot use the run directory {}: {source}", dir.display())]
    RunDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no supervised node {0:?}")]
    Unknown(String),
    #[error("a restart of {0} is already under way")]
    Busy(String),
    #[error("{name} did not start: {reason}")]
    NotStarted { name: String, reason: String },
    #[error("the supervisor is stopping")]
    Stopping,
}

/// Running children: see [`Supervisor::start`].
#[derive(Debug)]
pub struct Supervisor {
    handle: SupervisorHandle,
    tasks: JoinSet<()>,
}

/// A cheap, cloneable view of the supervised children, and the way to restart one.
#[derive(Debug, Clone, Default)]
pub struct SupervisorHandle {
    inner: Arc<Mutex<BTreeMap<String, Entry>>>,
}

#[derive(Debug)]
struct Entry {
    status: ChildStatus,
    /// To the child's task. Capacity 1, and at most one restart is asked for at a time
    /// (`restarting`): another is refused with [`SuperviseError::Busy`] until it is done.
    commands: mpsc::Sender<Restart>,
    restarting: bool,
}

/// Marks a child's restart as done when dropped: answered, failed, or given up by a
/// caller that stopped waiting.
#[derive(Debug)]
struct RestartGuard<'a> {
    handle: &'a SupervisorHandle,
    name: &'a str,
}

/// An operator's restart: answered with the new pid once the new process runs.
#[derive(Debug)]
struct Restart {
    reply: oneshot::Sender<Result<u32, String>>,
}

impl SupervisorOptions {
    /// The settings of a config's `[supervision]`, with no log directory.
    pub fn from_config(config: &SupervisionConfig) -> Self {
        SupervisorOptions {
            max_failures: config.max_failures,
            backoff_min: config.restart_min(),
            backoff_max: config.restart_max(),
            stable_after: config.stable_after(),
            stop_grace: config.stop_grace(),
            log_dir: None,
            echo: false,
            adopt: false,
        }
    }
}

impl Default for SupervisorOptions {
    fn default() -> Self {
        SupervisorOptions::from_config(&SupervisionConfig::default())
    }
}

impl ChildState {
    /// `running`, `restarting`, `failed`, `stopped`: as /status and /metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChildState::Running => "running",
            ChildState::Restarting => "restarting",
            ChildState::Failed => "failed",
            ChildState::Stopped => "stopped",
        }
    }

    /// Every state, in the order /metrics lists them.
    pub const ALL: [ChildState; 4] = [
        ChildState::Running,
        ChildState::Restarting,
        ChildState::Failed,
        ChildState::Stopped,
    ];
}

impl Supervisor {
    /// Starts (or adopts) every child, each supervised by its own task, until `shutdown`.
    /// Must be called within a tokio runtime. A child that cannot be spawned (missing
    /// program) counts as a failed run and is retried like one.
    pub fn start(
        children: Vec<ChildSpec>,
        options: SupervisorOptions,
        shutdown: Shutdown,
    ) -> Supervisor {
        let handle = SupervisorHandle::default();
        let mut tasks = JoinSet::new();
        for spec in children {
            let (commands, receiver) = mpsc::channel(1);
            handle.inner.lock().insert(
                spec.name.clone(),
                Entry {
                    status: ChildStatus::new(&spec.name),
                    commands,
                    restarting: false,
                },
            );
            tasks.spawn(keep_running(
                spec,
                options.clone(),
                handle.clone(),
                receiver,
                shutdown.clone(),
            ));
        }
        Supervisor { handle, tasks }
    }

    /// The pids of the running children, by name.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.handle.pids()
    }

    /// A view of the children that stays valid after [`Supervisor::wait`].
    pub fn handle(&self) -> SupervisorHandle {
        self.handle.clone()
    }

    /// Waits until shutdown has stopped every child. At shutdown each child gets SIGTERM
    /// and `stop_grace` to exit before SIGKILL. A failed child does not end supervision:
    /// it is retried until shutdown.
    pub async fn wait(mut self) {
        while let Some(joined) = self.tasks.join_next().await {
            if let Err(e) = joined {
                error!(error = %e, "a supervision task failed");
            }
        }
    }
}

impl SupervisorHandle {
    /// The pids of the running children, by name.
    pub fn pids(&self) -> Vec<(String, u32)> {
        let children = self.inner.lock();
        children
            .values()
            .filter_map(|entry| Some((entry.status.name.clone(), entry.status.pid?)))
            .collect()
    }

    /// Every child's status, by name.
    pub fn children(&self) -> Vec<ChildStatus> {
        let children = self.inner.lock();
        children
            .values()
            .map(|entry| entry.status.clone())
            .collect()
    }

    /// One child's status.
    pub fn child(&self, name: &str) -> Option<ChildStatus> {
        self.inner
            .lock()
            .get(name)
            .map(|entry| entry.status.clone())
    }

    /// Restarts `name` now: stops its process if one runs, forgets its failures, starts
    /// it again and returns the new pid.
    ///
    /// # Errors
    /// [`SuperviseError::Unknown`] for a name not supervised here, `Busy` while another
    /// restart of it is under way, `NotStarted` when the new process could not be
    /// started, `Stopping` at shutdown.
    pub async fn restart(&self, name: &str) -> Result<u32, SuperviseError> {
        let commands = match self.inner.lock().get_mut(name) {
            Some(entry) if entry.restarting => return Err(SuperviseError::Busy(name.to_owned())),
            Some(entry) => {
                entry.restarting = true;
                entry.commands.clone()
            }
            None => return Err(SuperviseError::Unknown(name.to_owned())),
        };
        let _done = RestartGuard { handle: self, name };
        let (reply, answer) = oneshot::channel();
        commands.try_send(Restart { reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SuperviseError::Busy(name.to_owned()),
            mpsc::error::TrySendError::Closed(_) => SuperviseError::Stopping,
        })?;
        match answer.await {
            Ok(Ok(pid)) => Ok(pid),
            Ok(Err(reason)) => Err(SuperviseError::NotStarted {
                name: name.to_owned(),
                reason,
            }),
            Err(_) => Err(SuperviseError::Stopping),
        }
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut ChildStatus)) {
        if let Some(entry) = self.inner.lock().get_mut(name) {
            change(&mut entry.status);
        }
    }
}

impl Drop for RestartGuard<'_> {
    fn drop(&mut self) {
        if let Some(entry) = self.handle.inner.lock().get_mut(self.name) {
            entry.restarting = false;
        }
    }
}

impl ChildStatus {
    fn new(name: &str) -> Self {
        ChildStatus {
            name: name.to_owned(),
            state: ChildState::Restarting,
            pid: None,
            adopted: false,
            restarts: 0,
            failures: 0,
            last_exit: None,
            stderr_tail: None,
            retry_at: None,
            log: None,
        }
    }
}

/// Starts every child and supervises it until `shutdown`: [`Supervisor::start`] then
/// [`Supervisor::wait`].
pub async fn supervise(children: Vec<ChildSpec>, options: SupervisorOptions, shutdown: Shutdown) {
    Supervisor::start(children, options, shutdown).wait().await
}

/// How one run of a child ended.
enum Ended {
    /// It exited by itself: how, and the tail of its output.
    Exited(String),
    /// An operator asked for a restart; the process was stopped.
    Restart(Restart),
    /// Shutdown; the process was stopped.
    Shutdown,
}

/// Runs one child over and over until shutdown.
async fn keep_running(
    spec: ChildSpec,
    options: SupervisorOptions,
    handle: SupervisorHandle,
    mut commands: mpsc::Receiver<Restart>,
    shutdown: Shutdown,
) {
    let name = spec.name.as_str();
    let mut policy = Policy::new(&options);
    let mut started_once = false;
    // An operator's restart waiting for the new process.
    let mut waiting: Option<Restart> = None;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let started = Instant::now();
        let run = if options.adopt {
            Process::adopt(&spec, options.log_dir.as_deref())
        } else {
            None
        };
        let run = match run {
            Some(adopted) => Ok(adopted),
            None => Process::spawn(&spec, options.log_dir.as_deref()),
        };
        let restarted = std::mem::replace(&mut started_once, true);
        let (exit, tail) = match run {
            Err(e) => {
                error!(child = name, program = %spec.program.display(), error = %e, "cannot start");
                let reason = format!("cannot start: {e}");
                if let Some(restart) = waiting.take() {
                    let _ = restart.reply.send(Err(reason.clone()));
                }
                (reason, None)
            }
            Ok(mut process) => {
                let pid = process.pid();
                let adopted = process.adopted();
                handle.update(name, |s| {
                    s.state = ChildState::Running;
                    s.pid = Some(pid);
                    s.adopted = adopted;
                    s.retry_at = None;
                    s.log = process.log().map(PathBuf::from);
                    if restarted {
                        s.restarts += 1;
                    }
                });
                if adopted {
                    info!(child = name, pid, "adopted: it was left running");
                } else {
                    info!(child = name, pid, "started");
                }
                if let Some(restart) = waiting.take() {
                    let _ = restart.reply.send(Ok(pid));
                }
                let echo = match process.log() {
                    Some(log) if options.echo => logs::echo(name, log, process.log_offset()),
                    _ => None,
                };
                let ended = tokio::select! {
                    status = process.wait() => Ended::Exited(status),
                    _ = shutdown.cancelled() => {
                        process.stop(name, options.stop_grace).await;
                        Ended::Shutdown
                    }
                    Some(restart) = commands.recv() => {
                        info!(child = name, pid, "restart requested");
                        process.stop(name, options.stop_grace).await;
                        Ended::Restart(restart)
                    }
                };
                if let Some(echo) = echo {
                    echo.finish().await;
                }
                handle.update(name, |s| s.pid = None);
                match ended {
                    Ended::Shutdown => break,
                    // It exited on the same signal (e.g. a Ctrl-C sent to the whole group).
                    Ended::Exited(_) if shutdown.is_cancelled() => break,
                    Ended::Restart(restart) => {
                        policy.reset();
                        handle.update(name, |s| s.failures = 0);
                        waiting = Some(restart);
                        continue;
                    }
                    Ended::Exited(status) => {
                        warn!(child = name, pid, status = %status, "exited");
                        (status, process.tail())
                    }
                }
            }
        };
        let (failed, delay) = policy.exited(started.elapsed());
        let failures = policy.failures();
        if failed && failures == options.max_failures {
            error!(
                child = name,
                failures,
                retry_every_ms = delay.as_millis() as u64,
                "failed: it keeps exiting; retrying at the longest back-off \
                 (`centrum restart {name}` retries now)"
            );
        } else if failed {
            warn!(
                child = name,
                failures,
                delay_ms = delay.as_millis() as u64,
                "still failing; retrying at the longest back-off"
            );
        } else {
            info!(
                child = name,
                failures,
                delay_ms = delay.as_millis() as u64,
                "restarting after back-off"
            );
        }
        handle.update(name, |s| {
            s.state = if failed {
                ChildState::Failed
            } else {
                ChildState::Restarting
            };
            s.failures = failures;
            s.last_exit = Some(exit);
            s.stderr_tail = tail;
            s.retry_at = Some(Instant::now() + delay);
        });
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
            Some(restart) = commands.recv() => {
                info!(child = name, "restart requested");
                policy.reset();
                handle.update(name, |s| s.failures = 0);
                waiting = Some(restart);
            }
        }
    }
    // Dropping `waiting` tells a pending restart that the supervisor is stopping.
    handle.update(name, |s| {
        s.state = ChildState::Stopped;
        s.pid = None;
        s.retry_at = None;
    });
}

/// The restart policy of one child, without I/O or clocks: given how long a run lasted,
/// whether the child is now failed and how long to wait before the next start.
#[derive(Debug)]
struct Policy {
    backoff: Backoff,
    failures: u32,
    max_failures: u32,
    longest: Duration,
    stable_after: Duration,
}

impl Policy {
    fn new(options: &SupervisorOptions) -> Self {
        Policy {
            backoff: Backoff::new(options.backoff_min, options.backoff_max),
            failures: 0,
            max_failures: options.max_failures,
            longest: options.backoff_max,
            stable_after: options.stable_after,
        }
    }

    /// A run that lasted `ran` ended: `(failed, delay before the next start)`. A run of
    /// `stable_after` or more starts a new series of failures; a failed child waits the
    /// longest back-off.
    fn exited(&mut self, ran: Duration) -> (bool, Duration) {
        if ran >= self.stable_after {
            self.reset();
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures >= self.max_failures {
            (true, self.longest)
        } else {
            (false, self.backoff.next_delay())
        }
    }

    /// Forgets the failures and the back-off (an operator's restart).
    fn reset(&mut self) {
        self.failures = 0;
        self.backoff.reset();
    }

    fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_failures: u32) -> Policy {
        Policy::new(&SupervisorOptions {
            max_failures,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1000),
            stable_after: Duration::from_secs(30),
            ..SupervisorOptions::default()
        })
    }

    /// Within the back-off's jitter (up to 25 % more) of `ms`.
    fn about(delay: Duration, ms: u64) -> bool {
        let ms = Duration::from_millis(ms);
        delay >= ms && delay <= ms.mul_f64(1.25)
    }

    #[test]
    fn quick_exits_back_off_then_fail_and_retry_at_the_longest_delay() {
        let mut policy = policy(5);
        let quick = Duration::from_secs(1);
        let delays: Vec<_> = (0..4).map(|_| policy.exited(quick)).collect();
        assert!(delays.iter().all(|(failed, _)| !failed), "{delays:?}");
        for ((_, delay), ms) in delays.iter().zip([100, 200, 400, 800]) {
            assert!(about(*delay, ms), "{delays:?}");
        }
        assert_eq!(policy.exited(quick), (true, Duration::from_millis(1000)));
        assert_eq!(policy.failures(), 5);
        // Failed, it stays failed, retried at the longest delay, never given up.
        for failures in 6..20 {
            assert_eq!(policy.exited(quick), (true, Duration::from_millis(1000)));
            assert_eq!(policy.failures(), failures);
        }
    }

    #[test]
    fn a_stable_run_or_a_reset_starts_a_new_series() {
        let mut policy = policy(3);
        let quick = Duration::from_millis(10);
        policy.exited(quick);
        policy.exited(quick);
        assert!(policy.exited(quick).0);
        let (failed, delay) = policy.exited(Duration::from_secs(30));
        assert!(!failed && about(delay, 100), "{delay:?}");
        assert_eq!(policy.failures(), 1);

        policy.exited(quick);
        assert!(policy.exited(quick).0);
        policy.reset();
        assert_eq!(policy.failures(), 0);
        let (failed, delay) = policy.exited(quick);
        assert!(!failed && about(delay, 100), "{delay:?}");
    }
}
