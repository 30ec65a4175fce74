//! The real binary with TLS: `centrum check` names an unusable certificate or key by
//! its field, and a front process reloads its certificate on SIGHUP while serving.

#[path = "support/ports.rs"]
mod ports;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use centrum_client::{Client, ClientOptions};

use ports::{CLUSTER_SECRET_TOML, free_port};

const TIMEOUT: Duration = Duration::from_secs(20);

fn centrum() -> Command {
    Command::new(env!("CARGO_BIN_EXE_centrum"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("centrum-tls-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A new self-signed certificate for 127.0.0.1 in `dir`/front.crt and front.key,
/// written aside and renamed over; returns its PEM.
fn certificate(dir: &Path) -> String {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("cert");
    for (name, text) in [
        ("front.crt", made.cert.pem()),
        ("front.key", made.signing_key.serialize_pem()),
    ] {
        let aside = dir.join(format!("{name}.new"));
        std::fs::write(&aside, text).expect("write");
        std::fs::rename(&aside, dir.join(name)).expect("rename");
    }
    made.cert.pem()
}

/// A one-front config with the front on `port` serving the certificate in `dir`
/// (relative paths: the config file's folder).
fn config(dir: &Path, port: u16, key: &str) -> PathBuf {
    let path = dir.join("cluster.toml");
    let (http, nodes, back) = (free_port(), free_port(), free_port());
    std::fs::write(
        &path,
        format!(
            r#"
[master]
http = "127.0.0.1:{http}"
nodes = "127.0.0.1:{nodes}"
[[fronts]]
id = "front-1"
listen = "127.0.0.1:{port}"
tls = {{ cert = "front.crt", key = "{key}" }}
[[backs]]
id = "back-1"
listen = "127.0.0.1:{back}"
tick_hz = 20
channels = [{{ name = "arena", app = "arena" }}]
[store]
kind = "memory"
{CLUSTER_SECRET_TOML}"#
        ),
    )
    .expect("write config");
    path
}

#[test]
fn check_names_an_unusable_key_by_its_field() {
    let dir = scratch("check");
    certificate(&dir);
    let good = config(&dir, free_port(), "front.key");
    let out = centrum().arg("check").arg(&good).output().expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("wss://127.0.0.1:"), "{stdout}");

    let bad = config(&dir, free_port(), "front.crt");
    let out = centrum().arg("check").arg(&bad).output().expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "fronts[0].tls.key: no private key in {} (expected PEM \"PRIVATE KEY\")",
        dir.join("front.crt").display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Kills the front at the end of the test, however it ends, unless it was taken.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Connects to `url` trusting only `root`, retrying until `TIMEOUT` while the
/// front starts or reloads.
async fn connects(url: &str, root: &str) {
    let options = ClientOptions {
        tls_root_pem: Some(root.to_owned()),
        connect_timeout: Duration::from_secs(2),
        ..ClientOptions::default()
    };
    let tries = async {
        while Client::connect(url, options.clone()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(TIMEOUT, tries)
        .await
        .unwrap_or_else(|_| panic!("no connection to {url} trusting the certificate"));
}

#[tokio::test]
async fn a_front_process_reloads_its_certificate_on_sighup() {
    let dir = scratch("sighup");
    let first = certificate(&dir);
    let port = free_port();
    let path = config(&dir, port, "front.key");
    let mut front = Running(Some(
        centrum()
            .args(["front", "--id", "front-1", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts"),
    ));
    let pid = front.0.as_ref().map_or(0, Child::id);
    let pid = libc::pid_t::try_from(pid).expect("a pid");
    let url = format!("wss://127.0.0.1:{port}");
    connects(&url, &first).await;

    let second = certificate(&dir);
    // SAFETY: kill(2) on our own child's pid, which it keeps until it is waited for.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    connects(&url, &second).await;

    // It was the signal that reloaded it (the files' own watch waits for them to
    // settle and logs no signal), and the front lived through it.
    let mut child = front.0.take().expect("the front");
    assert!(
        child.try_wait().expect("status").is_none(),
        "the front exited"
    );
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("joins")
        .expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SIGHUP: reloading the tls certificate"),
        "{stderr}"
    );
    assert!(stderr.contains("tls certificate reloaded"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
