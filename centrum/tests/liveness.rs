//! Liveness with real processes: a back or a front stopped with SIGSTOP (its sockets
//! open, nothing answering) is noticed within the link timeout. Clients of a stopped
//! back are told `Unavailable` and, after SIGCONT, resynchronised with nothing
//! acknowledged lost; a stopped front is treated by the back as a dropped link.

#[path = "support/ports.rs"]
mod ports;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use centrum_client::{Client, ClientError, ClientOptions, Event, Seq, Value};

use ports::{CLUSTER_SECRET_TOML, free_port};

/// Bounds every wait on the cluster.
const TIMEOUT: Duration = Duration::from_secs(15);
const LINK_TIMEOUT_MS: u64 = 1_000;

/// One node process; killed (after a SIGCONT, should it be stopped) when dropped.
struct Node(Child);

impl Node {
    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.0.id()).expect("pid fits");
        // SAFETY: kill(2) on our own child's pid; it has no memory-safety preconditions.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two fronts and a back serving `arena` (bench-arena) as separate processes, with a
/// 200 ms link heartbeat, a 1 s link timeout and `link_grace_ms` as given. No master:
/// nodes keep trying to register, and play does not need it.
struct Cluster {
    back: Node,
    fronts: Vec<Node>,
    front_ports: Vec<u16>,
}

impl Cluster {
    fn start(name: &str, link_grace_ms: u32) -> Cluster {
        let dir = std::env::temp_dir().join(format!("centrum-live-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let (http, nodes, b1) = (free_port(), free_port(), free_port());
        let front_ports = vec![free_port(), free_port()];
        let config = dir.join("cluster.toml");
        std::fs::write(
            &config,
            format!(
                "[master]\nhttp = \"127.0.0.1:{http}\"\nnodes = \"127.0.0.1:{nodes}\"\n\
                 [[fronts]]\nid = \"front-1\"\nlisten = \"127.0.0.1:{}\"\n\
                 [[fronts]]\nid = \"front-2\"\nlisten = \"127.0.0.1:{}\"\n\
                 [[backs]]\nid = \"back-1\"\nlisten = \"127.0.0.1:{b1}\"\ntick_hz = 20\n\
                 channels = [{{ name = \"arena\", app = \"bench-arena\" }}]\n\
                 [limits]\nlink_heartbeat_ms = 200\nlink_timeout_ms = {LINK_TIMEOUT_MS}\n\
                 link_grace_ms = {link_grace_ms}\n{CLUSTER_SECRET_TOML}",
                front_ports[0], front_ports[1]
            ),
        )
        .expect("write config");
        let node = |role: &str, id: &str| {
            Node(
                Command::new(env!("CARGO_BIN_EXE_centrum"))
                    .args([role, "--config"])
                    .arg(&config)
                    .args(["--id", id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn node"),
            )
        };
        Cluster {
            back: node("back", "back-1"),
            fronts: vec![node("front", "front-1"), node("front", "front-2")],
            front_ports,
        }
    }

    /// A client of front `i` in `arena`, once the front is up and linked.
    async fn player(&self, i: usize, name: &str) -> Client {
        let url = format!("ws://127.0.0.1:{}", self.front_ports[i]);
        let join = rmp_serde::to_vec_named(&Named { name }).expect("encode");
        let deadline = Instant::now() + TIMEOUT;
        loop {
            assert!(
                Instant::now() < deadline,
                "could not join through front {i}"
            );
            let Ok(mut client) = Client::connect(&url, ClientOptions::default()).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            match tokio::time::timeout(TIMEOUT, client.join("arena", &join)).await {
                Ok(Ok(())) => return client,
                // The front is still linking to the back.
                Ok(Err(ClientError::Rejected { .. })) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => panic!("join: {other:?}"),
            }
        }
    }
}

#[derive(serde::Serialize)]
struct Named<'a> {
    name: &'a str,
}

/// One step right: the player's x grows by 1 per applied input, from 0.1.
fn step() -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Move {
        dx: f64,
        dy: f64,
    }
    rmp_serde::to_vec_named(&Move { dx: 1.0, dy: 0.0 }).expect("encode")
}

/// How many inputs the game applied to the player called `name`, from its x.
fn applied(client: &Client, name: &str) -> Option<u64> {
    let mirror = client.mirror("arena")?;
    let id = *mirror
        .entities()
        .keys()
        .find(|&&id| matches!(mirror.field(id, "name"), Some((_, Value::Str(n))) if n == name))?;
    let x = mirror.number(id, "x")?;
    Some((x - 0.1).round() as u64)
}

/// Reads events until `done` holds for the client (checked first), for at most [`TIMEOUT`].
async fn until_state(client: &mut Client, what: &str, mut done: impl FnMut(&Client) -> bool) {
    tokio::time::timeout(TIMEOUT, async {
        while !done(client) {
            client.next_event().await.expect("event");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out: {what}"));
}

/// Reads events until `done`, for at most [`TIMEOUT`].
async fn until(client: &mut Client, what: &str, mut done: impl FnMut(&Client, &Event) -> bool) {
    tokio::time::timeout(TIMEOUT, async {
        loop {
            let event = client.next_event().await.expect("event");
            if done(client, &event) {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out: {what}"));
}

/// A stopped back: its clients hear `Unavailable` within the link timeout (+1 s), new
/// inputs are refused meanwhile, and after SIGCONT they get a full state whose ack
/// covers every input acked before (and any in-doubt one the back did apply), with
/// acked == applied; then play goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_back_is_noticed_and_nothing_acked_is_lost_after_it_continues() {
    let cluster = Cluster::start("sigstop-back", 10_000);
    let mut client = cluster.player(0, "ada").await;
    for _ in 0..5 {
        client.send_input("arena", &step()).await.expect("input");
    }
    until_state(&mut client, "5 inputs acked and applied", |c| {
        c.ack("arena") == Seq(5) && applied(c, "ada") == Some(5)
    })
    .await;

    cluster.back.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    let mut in_doubt = 0;
    for _ in 0..3 {
        client.send_input("arena", &step()).await.expect("input");
        in_doubt += 1;
    }
    until(&mut client, "told unavailable", |_, e| {
        matches!(e, Event::Unavailable { .. })
    })
    .await;
    let noticed = stopped.elapsed();
    println!("unavailable {} ms after SIGSTOP", noticed.as_millis());
    assert!(
        noticed <= Duration::from_millis(LINK_TIMEOUT_MS + 1_000),
        "unavailable after {noticed:?}"
    );
    client.send_input("arena", &step()).await.expect("send");
    let mut refused = String::new();
    until(&mut client, "the input is refused", |_, e| match e {
        Event::Error { code, .. } => {
            refused.clone_from(code);
            true
        }
        _ => false,
    })
    .await;
    assert_eq!(refused, "unavailable");

    // Stopped for 3 s in all, then continued.
    tokio::time::sleep_until((stopped + Duration::from_secs(3)).into()).await;
    cluster.back.signal(libc::SIGCONT);
    let continued = Instant::now();
    until(&mut client, "a fresh state after SIGCONT", |_, e| {
        matches!(e, Event::State { .. })
    })
    .await;
    println!(
        "served again {} ms after SIGCONT",
        continued.elapsed().as_millis()
    );
    let ack = client.ack("arena");
    let applied_now = applied(&client, "ada").expect("the same player");
    println!("acked before 5, in doubt {in_doubt}, acked {ack} and applied {applied_now} after");
    assert!(
        (5..=5 + in_doubt).contains(&ack.0),
        "nothing acked lost, nothing refused applied: ack {ack}"
    );
    assert_eq!(applied_now, u64::from(ack.0), "acked == applied");

    let seq = client.send_input("arena", &step()).await.expect("input");
    until_state(&mut client, "play goes on", |c| {
        c.ack("arena") == seq && applied(c, "ada") == Some(applied_now + 1)
    })
    .await;
}

/// A stopped front: the back takes its link for dropped within the link timeout and,
/// after `link_grace_ms`, ends its clients' memberships, which a client on the other
/// front sees as the stopped front's player leaving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_front_is_a_dropped_link_for_the_back() {
    const GRACE_MS: u64 = 1_000;
    let cluster = Cluster::start("sigstop-front", GRACE_MS as u32);
    let _gone = cluster.player(0, "gone").await;
    let mut watcher = cluster.player(1, "watcher").await;
    until_state(&mut watcher, "the watcher sees both players", |c| {
        applied(c, "gone").is_some()
    })
    .await;

    cluster.fronts[0].signal(libc::SIGSTOP);
    let stopped = Instant::now();
    until_state(&mut watcher, "the stopped front's player leaves", |c| {
        applied(c, "gone").is_none()
    })
    .await;
    let left = stopped.elapsed();
    println!(
        "player of the stopped front gone {} ms after SIGSTOP",
        left.as_millis()
    );
    // Detached at the link timeout, removed a grace later (at the next tick after).
    assert!(
        left >= Duration::from_millis(LINK_TIMEOUT_MS + GRACE_MS - 300)
            && left <= Duration::from_millis(LINK_TIMEOUT_MS + GRACE_MS + 1_000),
        "left after {left:?}"
    );
    assert!(
        applied(&watcher, "watcher").is_some(),
        "the watcher plays on"
    );
}
