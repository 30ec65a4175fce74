//! Child-process supervision for `centrum up`: one task per child starts it, restarts it
//! with back-off when it exits, gives up after too many quick failures, and on shutdown
//! sends SIGTERM, then SIGKILL to what is still running after a grace period.
//! [`Supervisor::wait`] returns at shutdown, or early with [`SuperviseError::GaveUp`] once
//! every child has been given up on; a child given up on while others run is logged.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::process::{Child, Command};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use centrum_net::{Backoff, Shutdown};

/// A process to keep running.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// Names the child in logs and in [`SupervisorHandle::pids`], e.g. `back-1`.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// How hard to try.
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    /// Restarts in a row (each after a run shorter than `stable_after`) before giving up
    /// on a child: it runs at most `max_restarts + 1` times.
    pub max_restarts: u32,
    /// First restart delay; it doubles (with jitter) up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// A child that ran this long has its restart count and back-off reset.
    pub stable_after: Duration,
    /// How long children get to exit after SIGTERM before they are killed.
    pub stop_grace: Duration,
}

/// Why supervision ended before shutdown.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("gave up on every child after repeated failures: {}", .children.join(", "))]
    GaveUp { children: Vec<String> },
}

/// Running children: see [`Supervisor::start`].
#[derive(Debug)]
pub struct Supervisor {
    handle: SupervisorHandle,
    tasks: JoinSet<Outcome>,
    children: usize,
}

/// A cheap, cloneable view of the supervised children that outlives [`Supervisor::wait`].
#[derive(Debug, Clone, Default)]
pub struct SupervisorHandle {
    inner: Arc<Mutex<Children>>,
}

#[derive(Debug, Default)]
struct Children {
    /// Pid of each running child, by name.
    pids: BTreeMap<String, u32>,
    given_up: Vec<String>,
}

/// How a child's supervision ended.
#[derive(Debug)]
enum Outcome {
    Stopped,
    GaveUp(String),
}

impl Default for SupervisorOptions {
    fn default() -> Self {
        SupervisorOptions {
            max_restarts: 10,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            stable_after: Duration::from_secs(30),
            stop_grace: Duration::from_secs(5),
        }
    }
}

impl Supervisor {
    /// Starts every child, each supervised by its own task, until `shutdown`. Must be
    /// called within a tokio runtime. A child that cannot be spawned (missing program)
    /// counts as a failed run and is retried like one.
    pub fn start(
        children: Vec<ChildSpec>,
        options: SupervisorOptions,
        shutdown: Shutdown,
    ) -> Supervisor {
        let handle = SupervisorHandle::default();
        let mut tasks = JoinSet::new();
        let count = children.len();
        for spec in children {
            tasks.spawn(keep_running(
                spec,
                options.clone(),
                handle.clone(),
                shutdown.clone(),
            ));
        }
        Supervisor {
            handle,
            tasks,
            children: count,
        }
    }

    /// The pids of the running children, by name.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.handle.pids()
    }

    /// A view of the children that stays valid after [`Supervisor::wait`].
    pub fn handle(&self) -> SupervisorHandle {
        self.handle.clone()
    }

    /// Waits until shutdown has stopped every child, or until every child was given up on.
    /// At shutdown each child gets SIGTERM and `stop_grace` to exit before SIGKILL.
    ///
    /// # Errors
    /// [`SuperviseError::GaveUp`] when every child was given up on (none is left running).
    pub async fn wait(mut self) -> Result<(), SuperviseError> {
        let mut given_up = Vec::new();
        while let Some(joined) = self.tasks.join_next().await {
            match joined {
                Ok(Outcome::GaveUp(name)) => given_up.push(name),
                Ok(Outcome::Stopped) => {}
                Err(e) => error!(error = %e, "a supervision task failed"),
            }
        }
        if self.children > 0 && given_up.len() == self.children {
            given_up.sort();
            return Err(SuperviseError::GaveUp { children: given_up });
        }
        Ok(())
    }
}

impl SupervisorHandle {
    /// The pids of the running children, by name. A child between two runs is absent.
    pub fn pids(&self) -> Vec<(String, u32)> {
        let children = self.inner.lock();
        children
            .pids
            .iter()
            .map(|(name, pid)| (name.clone(), *pid))
            .collect()
    }

    /// The children given up on, in the order it happened.
    pub fn given_up(&self) -> Vec<String> {
        self.inner.lock().given_up.clone()
    }

    fn started(&self, name: &str, pid: u32) {
        self.inner.lock().pids.insert(name.to_owned(), pid);
    }

    fn exited(&self, name: &str) {
        self.inner.lock().pids.remove(name);
    }

    fn gave_up(&self, name: &str) {
        self.inner.lock().given_up.push(name.to_owned());
    }
}

/// Starts every child and supervises it until `shutdown`: [`Supervisor::start`] then
/// [`Supervisor::wait`].
///
/// # Errors
/// As [`Supervisor::wait`].
pub async fn supervise(
    children: Vec<ChildSpec>,
    options: SupervisorOptions,
    shutdown: Shutdown,
) -> Result<(), SuperviseError> {
    Supervisor::start(children, options, shutdown).wait().await
}

/// Runs one child over and over until shutdown or too many quick failures.
async fn keep_running(
    spec: ChildSpec,
    options: SupervisorOptions,
    handle: SupervisorHandle,
    shutdown: Shutdown,
) -> Outcome {
    let name = spec.name.as_str();
    let mut backoff = Backoff::new(options.backoff_min, options.backoff_max);
    let mut quick_failures: u32 = 0;
    loop {
        if shutdown.is_cancelled() {
            return Outcome::Stopped;
        }
        let started = Instant::now();
        match spawn(&spec) {
            Err(e) => {
                error!(child = name, program = %spec.program.display(), error = %e, "cannot start")
            }
            Ok(mut child) => {
                // `id` is `None` only once the child has been reaped; it was just spawned.
                let pid = child.id().unwrap_or_default();
                handle.started(name, pid);
                info!(child = name, pid, "started");
                let status = tokio::select! {
                    status = child.wait() => status,
                    _ = shutdown.cancelled() => {
                        stop(name, pid, &mut child, options.stop_grace).await;
                        handle.exited(name);
                        return Outcome::Stopped;
                    }
                };
                handle.exited(name);
                if shutdown.is_cancelled() {
                    // It exited on the same signal (e.g. a Ctrl-C sent to the whole group).
                    return Outcome::Stopped;
                }
                match status {
                    Ok(status) => warn!(child = name, pid, status = %describe(status), "exited"),
                    Err(e) => warn!(child = name, pid, error = %e, "lost track of the child"),
                }
            }
        }
        if started.elapsed() >= options.stable_after {
            quick_failures = 0;
            backoff.reset();
        }
        quick_failures += 1;
        if quick_failures > options.max_restarts {
            error!(
                child = name,
                restarts = options.max_restarts,
                "giving up on the child: it keeps failing; the others keep running"
            );
            handle.gave_up(name);
            return Outcome::GaveUp(spec.name);
        }
        let delay = backoff.next_delay();
        info!(
            child = name,
            restart = quick_failures,
            of = options.max_restarts,
            delay_ms = delay.as_millis() as u64,
            "restarting after back-off"
        );
        tokio::select! {
            _ = shutdown.cancelled() => return Outcome::Stopped,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

fn spawn(spec: &ChildSpec) -> std::io::Result<Child> {
    Command::new(&spec.program)
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        // Should this task be dropped (the supervisor dropped without `wait`), the child
        // dies with it rather than running unsupervised.
        .kill_on_drop(true)
        .spawn()
}

/// SIGTERM, up to `grace` to exit, then SIGKILL.
async fn stop(name: &str, pid: u32, child: &mut Child, grace: Duration) {
    // The child is not reaped until `wait` returns, so `pid` still names it.
    match Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
    {
        Ok(status) if status.success() => debug!(child = name, pid, "sent SIGTERM"),
        // Already exited, or no `kill` command: the wait below or SIGKILL settles it.
        Ok(status) => debug!(child = name, pid, status = %describe(status), "kill -TERM failed"),
        Err(e) => {
            warn!(child = name, pid, error = %e, "cannot run kill -TERM; killing instead");
            if let Err(e) = child.start_kill() {
                debug!(child = name, pid, error = %e, "SIGKILL failed");
            }
        }
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(Ok(status)) => info!(child = name, pid, status = %describe(status), "stopped"),
        Ok(Err(e)) => {
            warn!(child = name, pid, error = %e, "lost track of the child while stopping it")
        }
        Err(_) => {
            warn!(
                child = name,
                pid,
                grace_ms = grace.as_millis() as u64,
                "did not exit after SIGTERM; killing it"
            );
            if let Err(e) = child.kill().await {
                warn!(child = name, pid, error = %e, "cannot kill the child");
            }
        }
    }
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
