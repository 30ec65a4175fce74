//! A client in another language: `tests/python/arena_client.py`, written from
//! PROTOCOL.md alone (version 2), plays the arena through two fronts of a real cluster:
//! each of its two clients must be told by the game's `you` message which player is its
//! own, and see one of them move. The test installs its two Python packages (msgpack,
//! websockets) into a venv under target/.

use std::path::{Path, PathBuf};
use std::process::Command;

use centrum_tests::{ClusterSpec, TestCluster};

/// A venv with the client's packages, made once per target directory.
fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/python-client-venv");
    let python = venv.join("bin/python");
    let ready = venv.join(".ready");
    if !ready.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 is installed");
        assert!(made.success(), "python3 -m venv failed");
        let pip = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "msgpack>=1,<2",
                "websockets>=12,<16",
            ])
            .status()
            .expect("pip runs");
        assert!(pip.success(), "pip install msgpack websockets failed");
        std::fs::write(&ready, b"").expect("mark venv ready");
    }
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_written_from_the_spec_plays_through_two_fronts() {
    let python = python();
    let cluster = TestCluster::start(ClusterSpec {
        fronts: 2,
        ..ClusterSpec::default()
    })
    .await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/arena_client.py");
    let (a, b) = (cluster.front_url(0), cluster.front_url(1));
    // The fronts link to the back asynchronously; the script's join would be rejected
    // as unavailable before that, so wait for the links through a Rust client first.
    for url in [&a, &b] {
        let mut c = centrum_tests::within(
            "client",
            centrum_client::Client::connect(url, Default::default()),
        )
        .await
        .expect("connect");
        centrum_tests::within("join", async {
            while c.join("arena", &[]).await.is_err() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
    }
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&a)
        .arg(&b)
        .output();
    let output = centrum_tests::within("python client", output)
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("ok: ana moved"), "{stdout}");
    assert!(
        stdout.contains("the game told ana she is player"),
        "{stdout}"
    );
    cluster.stop().await;
}
