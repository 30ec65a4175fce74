//! The real binary: `centrum check` on good and bad files, and `centrum up` running a
//! two-front cluster as separate supervised processes that clients play through.

#[path = "support/players.rs"]
mod players;
#[path = "support/ports.rs"]
mod ports;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use centrum_client::{Client, ClientError, ClientOptions, Event};

use players::live_node;
use ports::{CLUSTER_SECRET_TOML, free_port};

const TIMEOUT: Duration = Duration::from_secs(20);

fn centrum() -> Command {
    Command::new(env!("CARGO_BIN_EXE_centrum"))
}

/// `centrum check FILE`, which must pass: what it printed.
fn check_ok(file: &Path) -> String {
    let out = centrum().arg("check").arg(file).output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("centrum-test-{}-{name}", std::process::id()));
    // Fresh: a back would recover channels a former run left in its data directory.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn check_accepts_a_good_config_and_names_every_problem_in_a_bad_one() {
    let dir = scratch("check");
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        r#"
[master]
http = "127.0.0.1:7300"
nodes = "127.0.0.1:7301"
[[fronts]]
id = "front-1"
listen = "127.0.0.1:7310"
[[backs]]
id = "back-1"
listen = "127.0.0.1:7320"
tick_hz = 500
channels = [{ name = "arena", app = "arena" }]
[[backs]]
id = "back-2"
listen = "127.0.0.1:7321"
tick_hz = 20
channels = [{ name = "arena", app = "arena" }]
"#,
    )
    .expect("write");
    let out = centrum().arg("check").arg(&bad).output().expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("backs[0].tick_hz: must be between 1 and 240"),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("backs[1].channels[0].name: channel \"arena\" is already owned by backs[0]"),
        "{stderr}"
    );

    let unknown_app = dir.join("app.toml");
    std::fs::write(
        &unknown_app,
        std::fs::read_to_string(&bad)
            .expect("read")
            .replace("tick_hz = 500", "tick_hz = 20")
            .replace(
                "name = \"arena\", app = \"arena\" }]\n[[backs]]",
                "name = \"x\", app = \"chess\" }]\n[[backs]]",
            ),
    )
    .expect("write");
    let out = centrum()
        .arg("check")
        .arg(&unknown_app)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "backs[0].channels[0].app: unknown application \"chess\" (this binary has: arena, bench-arena)"
        ),
        "{stderr}"
    );

    let missing = centrum()
        .args(["check", "/nonexistent/centrum.toml"])
        .output()
        .expect("runs");
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent/centrum.toml")
    );
}

/// `centrum check` shows each node's ops port, and refuses one on another socket's
/// address, naming both fields.
#[test]
fn check_shows_ops_ports_and_refuses_a_clash() {
    let dir = scratch("check-ops");
    let good = dir.join("ops.toml");
    let text = centrum_config::DEFAULT_TOML
        .replace(
            "listen = \"127.0.0.1:7310\"",
            "listen = \"127.0.0.1:7310\"\nops = \"0.0.0.0:7390\"",
        )
        .replace(
            "listen = \"127.0.0.1:7320\"",
            "listen = \"127.0.0.1:7320\"\nops = \"127.0.0.1:7391\"",
        );
    std::fs::write(&good, &text).expect("write");
    let stdout = check_ok(&good);
    // A wildcard bind is shown at the node's host.
    assert!(
        stdout.contains("(host 127.0.0.1)  ops http://127.0.0.1:7390\n"),
        "{stdout}"
    );
    assert!(stdout.contains("ops http://127.0.0.1:7391\n"), "{stdout}");

    let bad = dir.join("ops-clash.toml");
    std::fs::write(&bad, text.replace("0.0.0.0:7390", "127.0.0.1:7310")).expect("write");
    let out = centrum().arg("check").arg(&bad).output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr
            .contains("fronts[0].ops: address 127.0.0.1:7310 is already used by fronts[0].listen"),
        "{stderr}"
    );
}

/// `centrum check` reads the `[auth]` key as a front will: a good one is shown, one that
/// cannot be read is named by its field.
#[test]
fn check_reads_the_auth_key_as_a_front_will() {
    let dir = scratch("check-auth");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/jwt");
    let key = fixtures.join("ed25519.pub.pem");
    let good = dir.join("auth.toml");
    let auth = format!(
        "\n[auth]\nalgorithm = \"EdDSA\"\npublic_key_file = {:?}\n",
        key.display().to_string()
    );
    std::fs::write(&good, format!("{}{auth}", centrum_config::DEFAULT_TOML)).expect("write");
    let stdout = check_ok(&good);
    assert!(
        stdout.contains("auth    JWT EdDSA; without a token: refused"),
        "{stdout}"
    );

    let bad = dir.join("bad-auth.toml");
    let wrong = auth.replace("ed25519.pub.pem", "es256.pub.pem");
    std::fs::write(&bad, format!("{}{wrong}", centrum_config::DEFAULT_TOML)).expect("write");
    let out = centrum().arg("check").arg(&bad).output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("auth.public_key_file: "), "{stderr}");
}

/// `centrum check` reads the Redis store's URL as a back will, and never shows it.
#[test]
fn check_reads_the_store_url_as_a_back_will() {
    let dir = scratch("check-store");
    let file = dir.join("redis.toml");
    let config = centrum_config::DEFAULT_TOML.replace(
        "# [store]\n# kind = \"disk\"",
        "[store]\nkind = \"redis\"\nurl_env = \"CENTRUM_TEST_STORE_URL\"",
    );
    std::fs::write(&file, config).expect("write");
    let check = |url: Option<&str>| {
        let mut command = centrum();
        command.arg("check").arg(&file);
        match url {
            Some(url) => command.env("CENTRUM_TEST_STORE_URL", url),
            None => command.env_remove("CENTRUM_TEST_STORE_URL"),
        };
        command.output().expect("runs")
    };
    let out = check(None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("store.url: no store URL") && stderr.contains("CENTRUM_TEST_STORE_URL"),
        "{stderr}"
    );
    let out = check(Some("memcached://:hunter2@cache:11211"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("must start with redis://") && !stderr.contains("hunter2"),
        "{stderr}"
    );
    let out = check(Some("redis://:hunter2@cache:6379/0"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("store   redis (keys centrum:{<back id>}:..., lease 10000 ms")
            && !stdout.contains("hunter2"),
        "{stdout}"
    );
}

/// `centrum check FILE | head -2`: the reader goes away; the command ends quietly.
#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let dir = scratch("pipe");
    let file = dir.join("ok.toml");
    std::fs::write(&file, centrum_config::DEFAULT_TOML).expect("write");
    let (reader, writer) = std::io::pipe().expect("pipe");
    // Closed before the command writes anything: its first line already fails.
    drop(reader);
    let out = centrum()
        .arg("check")
        .arg(&file)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.is_empty(), "nothing to say about it: {stderr}");
}

/// Kills the `up` process (and so its children) when the test ends, pass or fail.
struct Up(std::process::Child);

impl Up {
    /// `centrum up CONFIG` in `dir`, quiet.
    fn start(config: &Path, dir: &Path) -> Up {
        Up(centrum()
            .arg("up")
            .arg(config)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn up"))
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_a_cluster_of_processes_that_clients_play_through() {
    let dir = scratch("up");
    let (http, nodes, f1, f2, b1, ops) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let config = dir.join("cluster.toml");
    std::fs::write(
        &config,
        format!(
            "[master]\nhttp = \"127.0.0.1:{http}\"\nnodes = \"127.0.0.1:{nodes}\"\n\
             [[fronts]]\nid = \"front-1\"\nlisten = \"127.0.0.1:{f1}\"\n\
             [[fronts]]\nid = \"front-2\"\nlisten = \"127.0.0.1:{f2}\"\n\
             [[backs]]\nid = \"back-1\"\nlisten = \"127.0.0.1:{b1}\"\ntick_hz = 30\n\
             ops = \"127.0.0.1:{ops}\"\n\
             channels = [{{ name = \"arena\", app = \"bench-arena\" }}]\n"
        ),
    )
    .expect("write config");
    let up = Up::start(&config, &dir);

    let gate = format!("127.0.0.1:{http}");
    let deadline = Instant::now() + TIMEOUT;
    // The gate answers once a front process has registered with the master.
    let first = loop {
        assert!(Instant::now() < deadline, "cluster did not come up");
        match Client::connect_via_gate(&gate, "arena", ClientOptions::default()).await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    drop(first);
    // One client on each front process.
    let mut clients = Vec::new();
    for port in [f1, f2] {
        let mut c = loop {
            assert!(
                Instant::now() < deadline,
                "front on port {port} did not come up"
            );
            match Client::connect(&format!("ws://127.0.0.1:{port}"), ClientOptions::default()).await
            {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        loop {
            assert!(Instant::now() < deadline, "join through port {port} failed");
            match c.join("arena", &[]).await {
                Ok(()) => break,
                // The front is still linking to the back process.
                Err(ClientError::Rejected { .. }) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("join: {e}"),
            }
        }
        clients.push(c);
    }
    let (mut a, mut b) = (clients.remove(0), clients.remove(0));

    #[derive(serde::Serialize)]
    struct Move {
        dx: f64,
        dy: f64,
    }
    let data = rmp_serde::to_vec_named(&Move {
        dx: 0.25,
        dy: -0.25,
    })
    .expect("encode");
    let seq = a.send_input("arena", &data).await.expect("input");
    tokio::time::timeout(TIMEOUT, async {
        loop {
            let event = a.next_event().await.expect("event");
            if matches!(event, Event::Patch { .. }) && a.ack("arena") == seq {
                return;
            }
        }
    })
    .await
    .expect("own input acked");
    // a's own player moved: find it as the entity b does not own... both mirrors agree.
    let moved = |c: &Client| {
        c.mirror("arena").is_some_and(|m| {
            m.entities()
                .keys()
                .any(|&id| m.number(id, "x").is_some_and(|x| (x - 0.35).abs() < 1e-9))
        })
    };
    assert!(moved(&a), "a sees its own player at x = 0.35");
    tokio::time::timeout(TIMEOUT, async {
        while !moved(&b) {
            b.next_event().await.expect("event");
        }
    })
    .await
    .expect("b sees a's move");

    // The back process serves its ops port: ready, and its own metrics.
    let ops = format!("127.0.0.1:{ops}");
    let ready = http_get(&ops, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 200 OK\r\n"), "{ready}");
    assert!(ready.ends_with("\r\n\r\nready\n"), "{ready}");
    let metrics = http_get(&ops, "/metrics").await;
    assert!(
        metrics.contains("\ncentrum_back_ticks_total{channel=\"arena\"} "),
        "{metrics}"
    );
    drop(up);
}

/// The whole answer to `GET path` (the server closes the connection after it).
async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::time::timeout(TIMEOUT, async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        stream.write_all(head.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.expect("read");
        String::from_utf8(out).expect("utf-8")
    })
    .await
    .expect("an answer in time")
}

/// A front pool: `up` runs one instance, and any number more join under ids of their
/// own (as Kubernetes pods of one Deployment would); the master lists and gates each,
/// and the back links each. An id that is no instance is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_front_pool_takes_any_number_of_instances() {
    let dir = scratch("pool");
    let (http, nodes, back) = (free_port(), free_port(), free_port());
    let config = dir.join("cluster.toml");
    std::fs::write(
        &config,
        format!(
            "[master]\nhttp = \"127.0.0.1:{http}\"\nnodes = \"127.0.0.1:{nodes}\"\n\
             [[fronts]]\nid = \"front\"\npool = true\nlisten = \"127.0.0.1:0\"\n\
             [[backs]]\nid = \"back-1\"\nlisten = \"127.0.0.1:{back}\"\ntick_hz = 30\n\
             channels = [{{ name = \"arena\", app = \"bench-arena\" }}]\n{CLUSTER_SECRET_TOML}"
        ),
    )
    .expect("write config");
    let _up = Up::start(&config, &dir);
    let _extra = Up(centrum()
        .args(["front", "--id", "front-7f9c-x2x9q", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn a second instance"));
    let http = format!("127.0.0.1:{http}");
    for id in ["front-1", "front-7f9c-x2x9q"] {
        let deadline = Instant::now() + TIMEOUT;
        let url = loop {
            let url = live_node(&http, id)
                .await
                .and_then(|n| n["client_url"].as_str().map(str::to_owned));
            if let Some(url) = url.filter(|u| !u.is_empty()) {
                break url;
            }
            assert!(Instant::now() < deadline, "{id} registered with the master");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut client = Client::connect(&url, ClientOptions::default())
            .await
            .expect("connect");
        loop {
            match client.join("arena", &[]).await {
                Ok(()) => break,
                // Still linking to the back.
                Err(ClientError::Rejected { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("join through {id}: {e}"),
            }
        }
        assert!(client.mirror("arena").is_some(), "{id} serves the channel");
    }
    let out = centrum()
        .args(["front", "--id", "frontier", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("no front \"frontier\""),
        "{said}"
    );
}

/// Addresses that cannot work are named before anything runs: a `--host` the config
/// does not place anything on, a bind address of another machine, and an advertised
/// address that does not reach the node.
#[test]
fn a_node_names_the_address_it_cannot_use() {
    let dir = scratch("addresses");
    let (http, nodes, front, back, nobody) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let write = |back_table: &str| {
        let config = dir.join("cluster.toml");
        std::fs::write(
            &config,
            format!(
                "[master]\nhttp = \"127.0.0.1:{http}\"\nnodes = \"127.0.0.1:{nodes}\"\n\
                 [[fronts]]\nid = \"front-1\"\nlisten = \"127.0.0.1:{front}\"\n\
                 [[backs]]\nid = \"back-1\"\n{back_table}tick_hz = 20\n\
                 channels = [{{ name = \"arena\", app = \"arena\" }}]\n{CLUSTER_SECRET_TOML}"
            ),
        )
        .expect("write config");
        config
    };
    let fails = |args: &[&str], config: &Path, needle: &str| {
        let out = centrum()
            .args(args)
            .arg(config)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .expect("run");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} failed");
        assert!(said.contains(needle), "{args:?}: {said}");
    };
    let config = write(&format!("listen = \"127.0.0.1:{back}\"\n"));
    fails(
        &["up", "--host", "elsewhere"],
        &config,
        r#"--host "elsewhere": the config places nothing on that host (it names: 127.0.0.1)"#,
    );
    // 192.0.2.0/24 is for documentation: no machine has it.
    let config = write("listen = \"192.0.2.7:7320\"\nadvertise = \"192.0.2.7:7320\"\n");
    fails(
        &["back", "--id", "back-1", "--config"],
        &config,
        "backs[0].listen: cannot listen on 192.0.2.7:7320",
    );
    let config = write(&format!(
        "listen = \"127.0.0.1:{back}\"\nadvertise = \"127.0.0.1:{nobody}\"\n"
    ));
    fails(
        &["back", "--id", "back-1", "--config"],
        &config,
        &format!(
            "backs[0].advertise: other nodes dial back-1 at 127.0.0.1:{nobody}, which cannot be reached"
        ),
    );
}
