//! Supervision with the real binary: `centrum up` killed outright leaves its nodes
//! serving, a second `up` takes them over (no port fight) and restarts one that dies; a
//! node in a crash loop shows as failed, with how it exited and what it wrote, until an
//! operator restarts it. Every test ends with no process of its cluster left.

#[path = "support/ports.rs"]
mod ports;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use centrum_client::{Client, ClientError, ClientOptions, Event};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use ports::free_port;

/// Every wait in these tests is bounded by this (or a tighter bound under test).
const TIMEOUT: Duration = Duration::from_secs(20);

const TOKEN: &str = "supervision-test-admin-token";

/// One test's cluster: its config file (whose absolute path names every process of
/// it), its ports, and the `up` processes started on it. Dropped, it kills whatever of
/// it is still running.
struct Cluster {
    dir: PathBuf,
    config: PathBuf,
    http: String,
    /// The port of each front: `front-1`, `front-2`, ...
    fronts: Vec<u16>,
    back: u16,
    ups: Vec<Up>,
}

/// A `centrum up` process, its stderr in a file.
struct Up {
    child: Child,
    stderr: PathBuf,
}

impl Cluster {
    /// A cluster of `fronts` fronts and one back (channel `arena`), with the admin token
    /// and `supervision` as its `[supervision]` section.
    fn new(test: &str, fronts: usize, supervision: &str) -> Cluster {
        let dir =
            std::env::temp_dir().join(format!("centrum-supervision-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let dir = std::fs::canonicalize(&dir).expect("absolute scratch dir");
        let (http, nodes, back) = (free_port(), free_port(), free_port());
        let fronts: Vec<u16> = (0..fronts).map(|_| free_port()).collect();
        let front_tables: String = (fronts.iter().enumerate())
            .map(|(i, port)| {
                format!(
                    "[[fronts]]\nid = \"front-{}\"\nlisten = \"127.0.0.1:{port}\"\n",
                    i + 1
                )
            })
            .collect();
        let config = dir.join("cluster.toml");
        std::fs::write(
            &config,
            format!(
                "[master]\nhttp = \"127.0.0.1:{http}\"\nnodes = \"127.0.0.1:{nodes}\"\n\
                 admin_token = \"{TOKEN}\"\n{front_tables}\
                 [[backs]]\nid = \"back-1\"\nlisten = \"127.0.0.1:{back}\"\ntick_hz = 30\n\
                 channels = [{{ name = \"arena\", app = \"bench-arena\" }}]\n\
                 [limits]\nheartbeat_ms = 200\n\
                 [supervision]\n{supervision}\n"
            ),
        )
        .expect("write config");
        Cluster {
            dir,
            config,
            http: format!("127.0.0.1:{http}"),
            fronts,
            back,
            ups: Vec::new(),
        }
    }

    /// Starts `centrum up` on the config, its stderr to a file; returns its index in `ups`.
    fn up(&mut self) -> usize {
        let stderr = self.dir.join(format!("up-{}.stderr", self.ups.len()));
        let file = std::fs::File::create(&stderr).expect("stderr file");
        self.spawn_up(file.into(), stderr)
    }

    /// Starts `centrum up` with its stderr a pipe whose reader is already gone, as when
    /// `centrum up 2>&1 | tee` loses its `tee`.
    fn up_into_a_closed_pipe(&mut self) -> usize {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let nowhere = self.dir.join("nowhere");
        self.spawn_up(writer.into(), nowhere)
    }

    fn spawn_up(&mut self, stderr: Stdio, path: PathBuf) -> usize {
        let child = Command::new(env!("CARGO_BIN_EXE_centrum"))
            .arg("up")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn up");
        self.ups.push(Up {
            child,
            stderr: path,
        });
        self.ups.len() - 1
    }

    /// `GET`/`POST` on the master, with the admin token if `token`; `None` while the
    /// master does not answer.
    async fn http(&self, method: &str, path: &str, token: bool) -> Option<(u16, String)> {
        let auth = if token {
            format!("Authorization: Bearer {TOKEN}\r\n")
        } else {
            String::new()
        };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.http
        );
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(&self.http).await.ok()?;
            stream.write_all(request.as_bytes()).await.ok()?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.ok()?;
            let answer = String::from_utf8(answer).ok()?;
            let (head, body) = answer.split_once("\r\n\r\n")?;
            let status = head.split(' ').nth(1)?.parse().ok()?;
            Some((status, body.to_owned()))
        };
        tokio::time::timeout(TIMEOUT, exchange).await.ok().flatten()
    }

    async fn status(&self) -> Option<Value> {
        match self.http("GET", "/status", true).await? {
            (200, body) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    /// Polls /status every 50 ms until `check` passes, for at most `limit`.
    async fn status_until<T>(
        &self,
        what: &str,
        limit: Duration,
        mut check: impl FnMut(&Value) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        let mut last = None;
        loop {
            if let Some(status) = self.status().await {
                if let Some(found) = check(&status) {
                    return found;
                }
                last = Some(status);
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?}; last /status: {last:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM to every `up` still running, then waits for each to exit.
    fn stop_ups(&mut self) {
        for up in &mut self.ups {
            if matches!(up.child.try_wait(), Ok(None)) {
                signal(up.child.id(), libc::SIGTERM);
            }
        }
        for up in &mut self.ups {
            let deadline = Instant::now() + TIMEOUT;
            while matches!(up.child.try_wait(), Ok(None)) {
                if Instant::now() > deadline {
                    let _ = up.child.kill();
                    panic!("up {} did not stop on SIGTERM", up.child.id());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Live processes of this cluster: any whose command line names its config file.
    fn processes(&self) -> Vec<u32> {
        let config = self.config.as_os_str().as_encoded_bytes();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            if cmdline.split(|&b| b == 0).any(|word| word == config) && !exited(pid) {
                found.push(pid);
            }
        }
        found
    }

    /// Stops every `up` and asserts that nothing of the cluster is left running.
    fn stop_and_check_nothing_is_left(&mut self) {
        self.stop_ups();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.processes();
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "processes left after `up` stopped: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self, node: &str) -> String {
        let path = self
            .config
            .with_extension("run")
            .join(format!("logs/{node}.log"));
        std::fs::read_to_string(path).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for up in &mut self.ups {
            let _ = up.child.kill();
            let _ = up.child.wait();
        }
        for pid in self.processes() {
            signal(pid, libc::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) takes plain integers.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// Gone, or a zombie no one has reaped yet.
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| {
            matches!(rest.trim_start().as_bytes().first(), Some(b'Z' | b'X'))
        }),
        Err(_) => true,
    }
}

/// The supervised entry of `node` in a /status.
fn supervised<'a>(status: &'a Value, node: &str) -> Option<&'a Value> {
    status["supervised"]
        .as_array()?
        .iter()
        .find(|s| s["id"] == node)
}

/// The pid of `node` if it is registered (live) and `up` runs it, by the same pid.
fn live_pid(status: &Value, node: &str) -> Option<u64> {
    let registered = status["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["id"] == node)?["pid"]
        .as_u64()?;
    let entry = supervised(status, node)?;
    (entry["state"] == "running" && entry["pid"].as_u64() == Some(registered)).then_some(registered)
}

/// Every configured node live and running: their pids, by id.
fn all_live(status: &Value) -> Option<Vec<(String, u64)>> {
    let configured = status["configured"]["fronts"]
        .as_array()?
        .iter()
        .chain(status["configured"]["backs"].as_array()?);
    configured
        .map(|id| {
            let id = id.as_str()?;
            Some((id.to_owned(), live_pid(status, id)?))
        })
        .collect()
}

fn pid_of(pids: &[(String, u64)], node: &str) -> u64 {
    pids.iter()
        .find(|(id, _)| id == node)
        .map(|(_, pid)| *pid)
        .unwrap_or_else(|| panic!("no {node} in {pids:?}"))
}

/// A client joined to `arena` on the front, once the front is up and linked.
async fn joined(port: u16) -> Client {
    let deadline = Instant::now() + TIMEOUT;
    let mut client = loop {
        assert!(
            Instant::now() < deadline,
            "front on port {port} did not come up"
        );
        match Client::connect(&format!("ws://127.0.0.1:{port}"), ClientOptions::default()).await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    loop {
        assert!(Instant::now() < deadline, "join through port {port} failed");
        match tokio::time::timeout(TIMEOUT, client.join("arena", &[])).await {
            Ok(Ok(())) => return client,
            // The front is still linking to the back.
            Ok(Err(ClientError::Rejected { .. })) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Ok(Err(e)) => panic!("join: {e}"),
            Err(_) => panic!("join timed out"),
        }
    }
}

/// Sends inputs until a patch acknowledges one: the front forwarded it, the back applied
/// it on a tick and the patch came back. (An input sent while the front relinks to a
/// restarted back is dropped, so one is sent every half second.)
async fn plays(client: &mut Client) {
    #[derive(serde::Serialize)]
    struct Move {
        dx: f64,
        dy: f64,
    }
    let data = rmp_serde::to_vec_named(&Move { dx: 0.1, dy: 0.0 }).expect("encode");
    tokio::time::timeout(TIMEOUT, async {
        loop {
            let seq = client.send_input("arena", &data).await.expect("input");
            let acked = tokio::time::timeout(Duration::from_millis(500), async {
                loop {
                    let event = client.next_event().await.expect("event");
                    if matches!(event, Event::Patch { .. }) && client.ack("arena") == seq {
                        return;
                    }
                }
            })
            .await;
            if acked.is_ok() {
                return;
            }
        }
    })
    .await
    .expect("an input was acknowledged by a patch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_up_leaves_play_going_and_a_new_up_takes_its_nodes_over() {
    let mut cluster = Cluster::new("takeover", 2, "restart_min_ms = 100\nrestart_max_ms = 1000");
    // Nothing reads the first `up`'s stderr: its nodes must not care, as they log to
    // files of their own.
    let first = cluster.up_into_a_closed_pipe();
    let pids = cluster
        .status_until("the first up is fully live", TIMEOUT, all_live)
        .await;
    let (front, front_2, back) = (
        pid_of(&pids, "front-1"),
        pid_of(&pids, "front-2"),
        pid_of(&pids, "back-1"),
    );
    let mut client = joined(cluster.fronts[0]).await;
    plays(&mut client).await;

    // While it lives, another `up` of the cluster stops before touching its nodes.
    let refused = Command::new(env!("CARGO_BIN_EXE_centrum"))
        .arg("up")
        .arg(&cluster.config)
        .output()
        .expect("a second up");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("cannot listen on"), "{said}");
    assert_eq!(
        cluster.status().await.as_ref().and_then(all_live),
        Some(pids.clone())
    );

    // kill -9: no signal handler runs, no child is stopped.
    let up = &mut cluster.ups[first].child;
    up.kill().expect("kill -9 up");
    up.wait().expect("reap up");
    assert!(cluster.status().await.is_none(), "the master is gone");
    // Play goes on: the same client, and a new one whose connection the front logs,
    // now that the `up` its output once went to is dead.
    plays(&mut client).await;
    let mut newcomer = joined(cluster.fronts[0]).await;
    plays(&mut newcomer).await;
    assert!(!exited(front as u32) && !exited(back as u32));
    // A node that dies while no `up` runs is started by the next one.
    signal(front_2 as u32, libc::SIGKILL);

    let started = Instant::now();
    let second = cluster.up();
    let now = cluster
        .status_until(
            "the second up is fully live",
            Duration::from_secs(5),
            |status| {
                let pids = all_live(status)?;
                let taken_over = ["front-1", "back-1"].iter().all(|node| {
                    supervised(status, node)
                        .is_some_and(|s| s["adopted"] == true && s["restarts"] == 0)
                });
                taken_over.then_some(pids)
            },
        )
        .await;
    let took = started.elapsed();
    eprintln!("second up fully live after {took:?}");
    assert_eq!(
        pid_of(&now, "front-1"),
        front,
        "the same process, taken over"
    );
    assert_eq!(pid_of(&now, "back-1"), back, "the same process, taken over");
    assert_ne!(pid_of(&now, "front-2"), front_2, "started anew");
    let entry = cluster.status().await.expect("status");
    assert_eq!(
        supervised(&entry, "front-2").expect("front-2")["adopted"],
        false
    );
    plays(&mut client).await;
    let stderr = std::fs::read_to_string(&cluster.ups[second].stderr).expect("stderr");
    assert!(!stderr.contains("in use"), "a port fight:\n{stderr}");
    assert_eq!(
        stderr.matches("adopted: it was left running").count(),
        2,
        "{stderr}"
    );
    // The nodes kept logging, to files of their own, after the first `up` died. (A node
    // logs its registration just after the master counts it live.)
    for node in ["front-1", "back-1"] {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let log = cluster.log(node);
            match log.matches("registered with master").count() {
                2 => break,
                n if n < 2 && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                _ => panic!("{node} registered twice, logged:\n{log}"),
            }
        }
    }

    // A node taken over is supervised like one started: killed, it is back within 2 s.
    signal(back as u32, libc::SIGKILL);
    let killed = Instant::now();
    let restarted = cluster
        .status_until("back-1 restarted", Duration::from_secs(2), |status| {
            live_pid(status, "back-1").filter(|&pid| pid != back)
        })
        .await;
    eprintln!(
        "back-1 restarted (pid {restarted}) after {:?}",
        killed.elapsed()
    );
    let entry = cluster.status().await.expect("status");
    let entry = supervised(&entry, "back-1").expect("back-1");
    assert_eq!(entry["adopted"], false);
    assert_eq!(entry["restarts"], 1);
    plays(&mut client).await;

    drop((client, newcomer));
    cluster.stop_and_check_nothing_is_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_shows_as_failed_until_an_operator_restarts_the_node() {
    // restart_max_ms is long: a failed node is not retried by itself during the test.
    let mut cluster = Cluster::new(
        "failed",
        1,
        "restart_min_ms = 20\nrestart_max_ms = 600000\nmax_failures = 3",
    );
    // Something else holds the back's port: every start exits at once, saying so.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", cluster.back)).expect("hold the port");
    let up = cluster.up();
    let failed = cluster
        .status_until("back-1 failed", TIMEOUT, |status| {
            supervised(status, "back-1")
                .filter(|s| s["state"] == "failed")
                .cloned()
        })
        .await;
    assert_eq!(failed["failures"], 3);
    assert_eq!(failed["last_exit"], "exit code 1");
    assert_eq!(failed["pid"], Value::Null);
    let tail = failed["stderr_tail"].as_str().unwrap_or_default();
    let cause = format!(
        "backs[0].listen: cannot listen on 127.0.0.1:{}",
        cluster.back
    );
    assert!(tail.contains(&cause), "{tail}");
    assert!(tail.len() <= 4096);
    assert!(failed["retry_in_ms"].as_u64().is_some_and(|ms| ms > 0));
    let (_, metrics) = cluster
        .http("GET", "/metrics", true)
        .await
        .expect("metrics");
    assert!(
        metrics.contains("centrum_master_node_state{node=\"back-1\",state=\"failed\"} 1\n"),
        "{metrics}"
    );
    assert!(
        matches!(cluster.ups[up].child.try_wait(), Ok(None)),
        "up keeps running"
    );

    drop(squatter);
    let (status, _) = cluster
        .http("POST", "/nodes/back-1/restart", false)
        .await
        .expect("answer");
    assert_eq!(status, 401, "the admin token is required");
    let (status, _) = cluster
        .http("POST", "/nodes/back-9/restart", true)
        .await
        .expect("answer");
    assert_eq!(status, 404);
    let now = cluster.status().await.expect("status");
    assert_eq!(
        supervised(&now, "back-1").expect("back-1")["state"],
        "failed"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_centrum"))
        .args(["restart", "back-1", "--config"])
        .arg(&cluster.config)
        .output()
        .expect("centrum restart");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: u64 = said
        .trim()
        .strip_prefix("back-1 restarted: pid ")
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    cluster
        .status_until("back-1 live again", TIMEOUT, |status| {
            (live_pid(status, "back-1") == Some(pid)
                && supervised(status, "back-1")?["failures"] == 0)
                .then_some(())
        })
        .await;
    let mut client = joined(cluster.fronts[0]).await;
    plays(&mut client).await;

    drop(client);
    cluster.stop_and_check_nothing_is_left();
}
