//! The supervisor with real child processes (`/bin/sh`, `sleep`): restarts, giving up,
//! and stopping children on shutdown. Children report through files in a temp dir.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use centrum_master::{ChildSpec, SuperviseError, Supervisor, SupervisorOptions, supervise};
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
    }
}

fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn quick(max_restarts: u32) -> SupervisorOptions {
    SupervisorOptions {
        max_restarts,
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        stable_after: Duration::from_secs(30),
        stop_grace: Duration::from_secs(5),
    }
}

/// Whether `pid` is still a process (a reaped child's /proc entry is gone).
fn running(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn a_failing_child_is_restarted_then_given_up_on() {
    let dir = TempDir::new("give-up");
    let runs = dir.file("runs");
    let child = sh("flaky", "echo run >> \"$1\"; exit 3", &runs);
    let result = within(
        "supervise gives up",
        supervise(vec![child], quick(2), Shutdown::new()),
    )
    .await;
    match result {
        Err(SuperviseError::GaveUp { children }) => assert_eq!(children, ["flaky"]),
        other => panic!("expected GaveUp, got {other:?}"),
    }
    // The first run and two restarts.
    assert_eq!(lines(&runs), ["run", "run", "run"]);
}

#[tokio::test]
async fn a_child_given_up_on_leaves_the_others_running() {
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
            },
        ],
        quick(1),
        shutdown.clone(),
    );
    let handle = supervisor.handle();
    eventually("flaky given up", || {
        (handle.given_up() == ["flaky"]).then_some(())
    })
    .await;
    assert_eq!(lines(&runs).len(), 2);
    let pids = handle.pids();
    assert_eq!(pids.len(), 1, "{pids:?}");
    let (name, pid) = &pids[0];
    assert_eq!(name, "steady");
    assert!(running(*pid));
    assert_eq!(supervisor.pids(), pids);

    shutdown.cancel();
    within("supervisor stops", supervisor.wait())
        .await
        .expect("Ok at shutdown while a child still ran");
    assert!(!running(*pid), "sleep {pid} survived the shutdown");
    assert!(handle.pids().is_empty());
}

#[tokio::test]
async fn a_child_that_stayed_up_has_its_restart_count_reset() {
    let dir = TempDir::new("stable");
    let runs = dir.file("runs");
    let shutdown = Shutdown::new();
    // Every run counts as stable, so one restart allowed never runs out.
    let options = SupervisorOptions {
        stable_after: Duration::ZERO,
        ..quick(1)
    };
    let supervisor = Supervisor::start(
        vec![sh("blip", "echo run >> \"$1\"; exit 0", &runs)],
        options,
        shutdown.clone(),
    );
    eventually("five runs", || (lines(&runs).len() >= 5).then_some(())).await;
    assert!(supervisor.handle().given_up().is_empty());
    shutdown.cancel();
    within("supervisor stops", supervisor.wait())
        .await
        .expect("Ok at shutdown");
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
    within("supervisor stops", supervisor.wait())
        .await
        .expect("Ok at shutdown");
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
    };
    let result = within(
        "supervise gives up",
        supervise(vec![child], quick(1), Shutdown::new()),
    )
    .await;
    assert!(
        matches!(&result, Err(SuperviseError::GaveUp { children }) if children == &["ghost"]),
        "{result:?}"
    );
}
