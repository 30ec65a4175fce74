//! The supervisor with real child processes (`/bin/sh`, `sleep`): restarts, a crash loop
//! marked failed and retried, operator restarts, and stopping children on shutdown. Children
//! report through files in a temp dir.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use centrum_master::{
    ChildSpec, ChildState, SuperviseError, Supervisor, SupervisorOptions, supervise,
};
use centrum_net::Shutdown;

/// Every wait in a test is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// Polls `check` until it returns `Some`, for at most [`TIMEOUT`].
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    within(what, async {
        loop {
            if let Some(v) = check() {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// A fresh directory for one test's files, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("centrum-supervise-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child running `script` under `sh`, with `$1` = `file`.
fn sh(name: &str, script: &str, file: &Path) -> ChildSpec {
    ChildSpec {
        name: name.into(),
        program: "/bin/sh".into(),
        args: vec![
            "-c".into(),
            script.into(),
            "sh".into(),
            file.display().to_string(),
        ],
        env: Vec::new(),
    }
}

fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn quick(max_failures: u32) -> SupervisorOptions {
    SupervisorOptions {
        max_failures,
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        stable_after: Duration::from_secs(30),
        stop_grace: Duration::from_secs(5),
        log_dir: None,
        echo: false,
        adopt: false,
    }
}

/// Whether `pid` is still a process (a reaped child's /proc entry is gone).
fn running(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn a_crash_loop_is_failed_with_its_exit_and_output_then_retried_at_the_longest_back_off() {
    let dir = TempDir::new("failed");
    let runs = dir.file("runs");
    let child = sh(
        "flaky",
        "echo run >> \"$1\"; echo \"cannot listen: run $(wc -l < \"$1\")\" >&2; exit 3",
        &runs,
    );
    let backoff_max = Duration::from_millis(300);
    let options = SupervisorOptions {
        backoff_max,
        log_dir: Some(dir.file("logs")),
        ..quick(2)
    };
    let shutdown = Shutdown::new();
    let supervisor = Supervisor::start(vec![child], options, shutdown.clone());
    let handle = supervisor.handle();
    let task = tokio::spawn(supervisor.wait());
    let failed = eventually("flaky failed", || {
        handle
            .child("flaky")
            .filter(|s| s.state == ChildState::Failed)
    })
    .await;
    assert_eq!(failed.failures, 2);
    assert_eq!(failed.last_exit.as_deref(), Some("exit code 3"));
    assert_eq!(
        failed.stderr_tail.as_deref(),
        Some("cannot listen: run 2"),
        "the tail is the last run's output only"
    );
    assert_eq!(failed.pid, None);
    assert_eq!(failed.restarts, 1);
    let retry_in = failed
        .retry_at
        .expect("a failed child is retried")
        .saturating_duration_since(Instant::now());
    assert!(
        retry_in > Duration::from_millis(200) && retry_in <= backoff_max,
        "retried at the longest back-off, not sooner: {retry_in:?}"
    );

    // Not abandoned: retried, and failed again, while supervision goes on.
    eventually("a retry", || (lines(&runs).len() >= 4).then_some(())).await;
    let again = eventually("failed again", || {
        handle
            .child("flaky")
            .filter(|s| s.state == ChildState::Failed && s.failures >= 4)
    })
    .await;
    assert_eq!(again.stderr_tail.as_deref(), Some("cannot listen: run 4"));
    assert!(
        !task.is_finished(),
        "supervision goes on with every child failed"
    );
    shutdown.cancel();
    within("supervisor stops", task).await.expect("joined");
    assert_eq!(
        handle.child("flaky").map(|s| s.state),
        Some(ChildState::Stopped)
    );
}

#[tokio::test]
async fn an_operator_restart_forgets_the_failures_and_starts_at_once() {
    let dir = TempDir::new("restart");
    let runs = dir.file("runs");
    let shutdown = Shutdown::new();
    let options = SupervisorOptions {
        // A failed child is not retried by itself during this test.
        backoff_max: Duration::from_secs(600),
        ..quick(2)
    };
    let supervisor = Supervisor::start(
        vec![
            sh("flaky", "echo run >> \"$1\"; exit 1", &runs),
            ChildSpec {
                name: "steady".into(),
                program: "sleep".into(),
                args: vec!["1000".into()],
                env: Vec::new(),
            },
        ],
        options,
        shutdown.clone(),
    );
    let handle = supervisor.handle();
    eventually("flaky failed", || {
        handle
            .child("flaky")
            .filter(|s| s.state == ChildState::Failed)
    })
    .await;
    assert_eq!(lines(&runs).len(), 2);

    within("restart", handle.restart("flaky"))
        .await
        .expect("restarted");
    // It ran once more, and that exit is the first of a new count.
    let after = eventually("flaky exited again", || {
        handle
            .child("flaky")
            .filter(|s| s.state == ChildState::Restarting)
    })
    .await;
    assert_eq!(after.failures, 1);
    assert_eq!(lines(&runs).len(), 3);

    // A running child is stopped and started again.
    let old = eventually("steady runs", || handle.child("steady")?.pid).await;
    let new = within("restart steady", handle.restart("steady"))
        .await
        .expect("restarted");
    assert_ne!(old, new);
    assert!(!running(old), "the old process was stopped");
    assert!(running(new));
    let steady = handle.child("steady").expect("steady");
    assert_eq!((steady.state, steady.restarts), (ChildState::Running, 1));

    let unknown = within("restart ghost", handle.restart("ghost")).await;
    assert!(
        matches!(&unknown, Err(SuperviseError::Unknown(name)) if name == "ghost"),
        "{unknown:?}"
    );
    shutdown.cancel();
    within("supervisor stops", supervisor.wait()).await;
    assert!(!running(new), "sleep {new} survived the shutdown");
}

#[tokio::test]
async fn one_restart_of_a_child_at_a_time() {
    let dir = TempDir::new("busy");
    let ready = dir.file("ready");
    let shutdown = Shutdown::new();
    let supervisor = Supervisor::start(
        // Ignores SIGTERM: each restart waits out the grace period before SIGKILL.
        vec![sh(
            "stubborn",
            "trap '' TERM; echo ready >> \"$1\"; exec sleep 1000",
            &ready,
        )],
        SupervisorOptions {
            stop_grace: Duration::from_millis(300),
            ..quick(3)
        },
        shutdown.clone(),
    );
    let handle = supervisor.handle();
    eventually("stubborn runs", || handle.child("stubborn")?.pid).await;
    let (first, second) = within("two restarts", async {
        tokio::join!(handle.restart("stubborn"), handle.restart("stubborn"))
    })
    .await;
    first.expect("the first restart");
    assert!(
        matches!(&second, Err(SuperviseError::Busy(name)) if name == "stubborn"),
        "{second:?}"
    );
    // Done, so the next one is taken.
    within("a third restart", handle.restart("stubborn"))
        .await
        .expect("restarted");
    assert_eq!(handle.child("stubborn").map(|s| s.restarts), Some(2));
    shutdown.cancel();
    within("supervisor stops", supervisor.wait()).await;
}

#[tokio::test]
async fn a_failed_child_leaves_the_others_running() {
    let dir = TempDir::new("others");
    let runs = dir.file("runs");
    let shutdown = Shutdown::new();
    let supervisor = Supervisor::start(
        vec![
            sh("flaky", "echo run >> \"$1\"; exit 1", &runs),
            ChildSpec {
                name: "steady".into(),
                program: "sleep".into(),
                args: vec!["1000".into()],
                env: Vec::new(),
            },
        ],
        quick(1),
        shutdown.clone(),
    );
    let handle = supervisor.handle();
    eventually("flaky failed", || {
        handle
            .child("flaky")
            .filter(|s| s.state == ChildState::Failed)
    })
    .await;
    let pids = handle.pids();
    assert_eq!(pids.len(), 1, "{pids:?}");
    let (name, pid) = &pids[0];
    assert_eq!(name, "steady");
    assert!(running(*pid));
    assert_eq!(supervisor.pids(), pids);

    shutdown.cancel();
    within("supervisor stops", supervisor.wait()).await;
    assert!(!running(*pid), "sleep {pid} survived the shutdown");
    assert!(handle.pids().is_empty());
}

#[tokio::test]
async fn a_child_that_stayed_up_has_its_failures_forgotten() {
    let dir = TempDir::new("stable");
    let runs = dir.file("runs");
    let shutdown = Shutdown::new();
    // Every run counts as stable, so each exit is the first of a new series and two
    // in a row are never reached.
    let options = SupervisorOptions {
        stable_after: Duration::ZERO,
        ..quick(2)
    };
    let supervisor = Supervisor::start(
        vec![sh("blip", "echo run >> \"$1\"; exit 0", &runs)],
        options,
        shutdown.clone(),
    );
    eventually("five runs", || (lines(&runs).len() >= 5).then_some(())).await;
    let blip = supervisor.handle().child("blip").expect("blip");
    assert_ne!(blip.state, ChildState::Failed, "{blip:?}");
    assert!(blip.failures <= 1, "{blip:?}");
    assert!(blip.restarts >= 4, "{blip:?}");
    shutdown.cancel();
    within("supervisor stops", supervisor.wait()).await;
}

#[tokio::test]
async fn shutdown_sends_sigterm_then_kills_what_ignores_it() {
    let dir = TempDir::new("stop");
    let (polite, stubborn) = (dir.file("polite"), dir.file("stubborn"));
    let shutdown = Shutdown::new();
    let grace = Duration::from_millis(300);
    let supervisor = Supervisor::start(
        vec![
            sh(
                "polite",
                "trap 'echo term >> \"$1\"; exit 0' TERM; echo ready >> \"$1\"; \
                 while :; do sleep 0.05; done",
                &polite,
            ),
            // SIGTERM stays ignored across `exec`.
            sh(
                "stubborn",
                "trap '' TERM; echo ready >> \"$1\"; exec sleep 1000",
                &stubborn,
            ),
        ],
        SupervisorOptions {
            stop_grace: grace,
            ..quick(3)
        },
        shutdown.clone(),
    );
    let handle = supervisor.handle();
    let pids = eventually("both children ready", || {
        let pids = handle.pids();
        (pids.len() == 2 && lines(&polite) == ["ready"] && lines(&stubborn) == ["ready"])
            .then_some(pids)
    })
    .await;

    let start = Instant::now();
    shutdown.cancel();
    within("supervisor stops", supervisor.wait()).await;
    assert_eq!(lines(&polite), ["ready", "term"], "polite got SIGTERM");
    assert!(
        start.elapsed() >= grace,
        "the stubborn child was killed before its grace period"
    );
    for (name, pid) in pids {
        assert!(!running(pid), "{name} ({pid}) survived the shutdown");
    }
    // Neither was restarted.
    assert_eq!(lines(&stubborn), ["ready"]);
}

#[tokio::test]
async fn a_program_that_cannot_start_counts_as_a_failure() {
    let child = ChildSpec {
        name: "ghost".into(),
        program: "/nonexistent/centrum-test-program".into(),
        args: Vec::new(),
        env: Vec::new(),
    };
    let shutdown = Shutdown::new();
    let supervisor = Supervisor::start(vec![child], quick(1), shutdown.clone());
    let handle = supervisor.handle();
    let failed = eventually("ghost failed", || {
        handle
            .child("ghost")
            .filter(|s| s.state == ChildState::Failed)
    })
    .await;
    let exit = failed.last_exit.unwrap_or_default();
    assert!(exit.starts_with("cannot start: "), "{exit}");
    let restart = within("restart ghost", handle.restart("ghost")).await;
    assert!(
        matches!(&restart, Err(SuperviseError::NotStarted { name, .. }) if name == "ghost"),
        "{restart:?}"
    );
    shutdown.cancel();
    within("supervise stops", supervise(Vec::new(), quick(1), shutdown)).await;
    within("supervisor stops", supervisor.wait()).await;
}
