//! One cluster over three hosts, each a network namespace with an address of its own,
//! joined by a bridge: `centrum up --host H` on each runs the nodes the one config
//! places there, they find each other by their advertised addresses, and the backs
//! keep their channels in a Redis server on host 1. Then, while clients play across
//! hosts, one host is cut off the network and healed; has all its processes killed and
//! started again; and dies for good, another host taking over its address and its
//! nodes, whose channels come back from Redis. Each time clients are told Unavailable,
//! are served again, and lose no acknowledged input.
//!
//! Needs root, iproute2 and redis-server. Where namespaces cannot be made the test
//! says so and passes, unless `CENTRUM_REQUIRE_NETNS=1` (set by `.ci/run` as root)
//! makes it fail.

#[path = "support/players.rs"]
mod players;
#[path = "support/ports.rs"]
mod ports;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use centrum_client::Seq;

use players::{Seen, TIMEOUT, node_pid, play, player_in};
use ports::CLUSTER_SECRET_TOML;

/// Hosts 1, 2 and 3: the master; front-1 and back-1; front-2 and back-2.
const HOSTS: usize = 3;

/// Namespaces, a bridge between them and a way in from the test's own namespace,
/// all named after this process so that runs side by side do not meet. Removed,
/// with every process inside, when dropped.
struct Net {
    /// `10.251.N`: host `h` is `10.251.N.h`, the test itself `10.251.N.254`.
    subnet: String,
    /// The namespace holding the bridge.
    switch: String,
    /// The hosts' namespaces, host 1 first.
    hosts: Vec<String>,
}

/// Runs `ip ARGS`, or says what failed.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Net {
    /// Makes the namespaces and links, or says why it cannot.
    fn make() -> Result<Net, String> {
        let pid = std::process::id();
        let net = Net {
            subnet: format!("10.251.{}", 1 + pid % 250),
            switch: format!("centrum-{pid}-sw"),
            hosts: (1..=HOSTS).map(|h| format!("centrum-{pid}-h{h}")).collect(),
        };
        // Dropped on any failure below: what was made is removed again.
        net.build()?;
        Ok(net)
    }

    fn build(&self) -> Result<(), String> {
        let sw = self.switch.as_str();
        ip(&["netns", "add", sw])?;
        ip(&["-n", sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", sw, "link", "set", "br0", "up"])?;
        for (i, ns) in self.hosts.iter().enumerate() {
            let port = format!("p{}", i + 1);
            let address = format!("{}.{}/24", self.subnet, i + 1);
            ip(&["netns", "add", ns])?;
            ip(&[
                "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", &port, "netns",
                sw,
            ])?;
            ip(&["-n", ns, "addr", "add", &address, "dev", "eth0"])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", sw, "link", "set", &port, "master", "br0", "up"])?;
        }
        // The test's way in: its clients and its requests to the master.
        let way_in = self.way_in();
        let address = format!("{}.254/24", self.subnet);
        ip(&[
            "link", "add", &way_in, "type", "veth", "peer", "name", "p0", "netns", sw,
        ])?;
        ip(&["addr", "add", &address, "dev", &way_in])?;
        ip(&["link", "set", &way_in, "up"])?;
        ip(&["-n", sw, "link", "set", "p0", "master", "br0", "up"])
    }

    /// The test's end of its link to the bridge, in its own namespace.
    fn way_in(&self) -> String {
        format!("centrum{}", std::process::id() % 100_000)
    }

    /// Host `h`'s address.
    fn addr(&self, h: usize) -> String {
        format!("{}.{h}", self.subnet)
    }

    /// Takes host `h` off the network, or puts it back.
    fn set_link(&self, h: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.hosts[h - 1], "link", "set", "eth0", state]).expect("link state");
    }

    /// Kills every process of host `h` with SIGKILL, as a host that dies.
    fn kill_all(&self, h: usize) -> usize {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.hosts[h - 1]])
            .output()
            .expect("ip netns pids");
        let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if !pids.is_empty() {
            let _ = Command::new("kill").arg("-KILL").args(&pids).status();
        }
        pids.len()
    }

    /// `centrum up --host <host h>` in host `h`'s namespace, in its own directory.
    fn up(&self, h: usize, dir: &std::path::Path) -> Child {
        self.up_as(h, h, dir)
    }

    /// Host `h` takes over host `from`'s address, as a floating IP moves: the others
    /// forget where it was (what a gratuitous ARP tells them).
    fn take_over(&self, h: usize, from: usize) {
        let address = format!("{}/24", self.addr(from));
        ip(&[
            "-n",
            &self.hosts[h - 1],
            "addr",
            "add",
            &address,
            "dev",
            "eth0",
        ])
        .expect("address");
        let moved = self.addr(from);
        for (i, ns) in self.hosts.iter().enumerate() {
            if i + 1 != h {
                let _ = ip(&["-n", ns, "neigh", "flush", "to", &moved]);
            }
        }
        let _ = ip(&["neigh", "flush", "to", &moved, "dev", &self.way_in()]);
    }

    /// Redis in host `h`'s namespace, on its address, keeping its append-only file in
    /// `dir`; answering when this returns.
    fn redis(&self, h: usize, dir: &std::path::Path) -> Child {
        let server = Command::new("ip")
            .args(["netns", "exec", &self.hosts[h - 1], "redis-server"])
            .args([
                "--bind",
                &self.addr(h),
                "--port",
                "6390",
                "--protected-mode",
                "no",
            ])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let at = format!("{}:6390", self.addr(h));
        let deadline = Instant::now() + TIMEOUT;
        while std::net::TcpStream::connect(&at).is_err() {
            assert!(Instant::now() < deadline, "redis-server answers at {at}");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// `centrum up --host <host as>` in host `h`'s namespace, in `dir`: host `h` runs
    /// what the config places on host `as`.
    fn up_as(&self, h: usize, r#as: usize, dir: &std::path::Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("up.log"))
            .expect("log file");
        Command::new("ip")
            .args(["netns", "exec", &self.hosts[h - 1]])
            .arg(env!("CARGO_BIN_EXE_centrum"))
            .args(["up", "cluster.toml", "--host", &self.addr(r#as)])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn up")
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for h in 1..=self.hosts.len() {
            self.kill_all(h);
        }
        // Deleting a namespace deletes its ends of the links, and so the links.
        for ns in self.hosts.iter().chain([&self.switch]) {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.way_in()]);
    }
}

/// The cluster's one config: every way of giving an address is used once (a wildcard
/// bind dialed at its host, an explicit `advertise`, a bind on the host's address).
fn config(net: &Net) -> String {
    let [h1, h2, h3] = [net.addr(1), net.addr(2), net.addr(3)];
    format!(
        r#"[master]
host = "{h1}"
http = "{h1}:7300"
nodes = "0.0.0.0:7301"

[[fronts]]
id = "front-1"
host = "{h2}"
listen = "0.0.0.0:7310"

[[fronts]]
id = "front-2"
host = "{h3}"
listen = "{h3}:7310"

[[backs]]
id = "back-1"
host = "{h2}"
listen = "0.0.0.0:7320"
advertise = "{h2}:7320"
tick_hz = 20
channels = [{{ name = "east", app = "bench-arena" }}]

[[backs]]
id = "back-2"
host = "{h3}"
listen = "{h3}:7320"
tick_hz = 20
channels = [{{ name = "west", app = "bench-arena" }}]

[limits]
heartbeat_ms = 200
link_heartbeat_ms = 100
link_timeout_ms = 500
client_ping_ms = 300
client_timeout_ms = 1000

[supervision]
restart_min_ms = 50

[store]
kind = "redis"
url = "redis://{h1}:6390/"
lease_ms = 1000
{CLUSTER_SECRET_TOML}"#
    )
}

/// A player: its name, and what it saw.
struct Player {
    name: String,
    seen: Arc<Mutex<Seen>>,
}

/// Waits until `done`, checking every 20 ms; fails with `what` and the hosts' logs.
async fn until(dirs: &[PathBuf], what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        if Instant::now() > deadline {
            let logs: Vec<String> = dirs
                .iter()
                .map(|d| std::fs::read_to_string(d.join("up.log")).unwrap_or_default())
                .collect();
            panic!("not {what}\n{}", logs.join("\n----\n"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// For each player, its first full state after `since`: the x it was served at.
fn served_since(players: &[Player], since: Instant) -> Option<Vec<(Seq, f64)>> {
    players
        .iter()
        .map(|p| {
            let seen = p.seen.lock();
            let (_, ack, x) = *seen.states.iter().find(|(at, ..)| *at > since)?;
            Some((ack, x))
        })
        .collect()
}

/// What each player's state holds now: the inputs the server said it applied.
fn applied(players: &[Player]) -> Vec<f64> {
    players.iter().map(|p| p.seen.lock().x).collect()
}

/// Waits until every player has `n` more inputs acknowledged than now.
async fn acks_past(logs: &[PathBuf], players: &[Player], n: u32, what: &str) {
    let now: Vec<Seq> = players.iter().map(|p| p.seen.lock().ack).collect();
    until(logs, what, || {
        players
            .iter()
            .zip(&now)
            .all(|(p, a)| p.seen.lock().ack.0 >= a.0 + n)
    })
    .await;
}

/// After a fault at `since`: waits until every player was served again and plays on;
/// how long the serving took, and the inputs of `applied` (before the fault) missing.
async fn recovery(
    logs: &[PathBuf],
    players: &[Player],
    since: Instant,
    applied: &[f64],
    what: &str,
) -> (Duration, f64) {
    until(logs, &format!("served after {what}"), || {
        served_since(players, since).is_some()
    })
    .await;
    let took = Instant::now().duration_since(since);
    let served = served_since(players, since).expect("served");
    acks_past(logs, players, 5, &format!("playing after {what}")).await;
    (took, lost(applied, &served))
}

/// Inputs the server said it applied before a fault (each moves a player by 1: its
/// `x` then) that the player's state after the fault does not hold.
fn lost(applied: &[f64], served: &[(Seq, f64)]) -> f64 {
    applied
        .iter()
        .zip(served)
        .map(|(before, (_, x))| (before - x).max(0.0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_three_hosts_survives_a_host_cut_off_killed_and_replaced() {
    let required = std::env::var("CENTRUM_REQUIRE_NETNS").is_ok_and(|v| v == "1");
    let redis = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status();
    match redis {
        Ok(_) => {}
        Err(e) if !required => return eprintln!("skipped: no redis-server here ({e})"),
        Err(e) => panic!("redis-server is needed (.ci/run installs it): {e}"),
    }
    let net = match Net::make() {
        Ok(net) => net,
        Err(why) if !required => {
            eprintln!(
                "skipped: cannot make network namespaces here (needs root and iproute2): {why}"
            );
            return;
        }
        Err(why) => panic!("cannot make network namespaces: {why}"),
    };
    let root = std::env::temp_dir().join(format!("centrum-hosts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dirs: Vec<PathBuf> = (1..=HOSTS).map(|h| root.join(format!("h{h}"))).collect();
    for dir in &dirs {
        std::fs::create_dir_all(dir).expect("host dir");
        std::fs::write(dir.join("cluster.toml"), config(&net)).expect("config");
    }
    let redis = net.redis(1, &dirs[0]);
    let mut ups: Vec<Child> = (1..=HOSTS).map(|h| net.up(h, &dirs[h - 1])).collect();

    // Every node registers with the master on host 1, each from its own host.
    let http = format!("{}:7300", net.addr(1));
    for id in ["front-1", "front-2", "back-1", "back-2"] {
        let deadline = Instant::now() + TIMEOUT;
        while node_pid(&http, id).await.is_none() {
            assert!(Instant::now() < deadline, "{id} registered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Everyone plays on the other host's back: each front links across hosts.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut players = Vec::new();
    let mut tasks = Vec::new();
    for (front_host, channel) in [(2, "west"), (3, "east")] {
        for i in 0..2 {
            let name = format!("{channel}{i}");
            let seen = Arc::new(Mutex::new(Seen::default()));
            let url = format!("ws://{}:7310", net.addr(front_host));
            let task = play(
                url,
                channel.into(),
                name.clone(),
                seen.clone(),
                stopped.clone(),
            );
            tasks.push(tokio::spawn(task));
            players.push(Player { name, seen });
        }
    }
    acks_past(&dirs, &players, 20, "playing across hosts").await;

    // Host 3 is cut off: front-1 loses back-2 (its players are told Unavailable), and
    // the players on front-2 lose their front.
    let before = applied(&players);
    let cut = Instant::now();
    net.set_link(3, false);
    until(&dirs, "told of the cut", || {
        players[..2].iter().all(|p| p.seen.lock().unavailable >= 1)
            && players[2..].iter().all(|p| p.seen.lock().closed >= 1)
    })
    .await;
    let healed = Instant::now();
    net.set_link(3, true);
    let (after_cut, lost_to_cut) = recovery(&dirs, &players, healed, &before, "the heal").await;

    // Host 3 dies: every process on it is killed; then it starts again, disk and all.
    let before = applied(&players);
    let back_2 = node_pid(&http, "back-2").await.expect("back-2 listed");
    let killed = Instant::now();
    assert!(net.kill_all(3) >= 3, "up, front-2 and back-2 ran on host 3");
    let _ = ups[2].wait();
    until(&dirs, "told of the dead host", || {
        players[..2].iter().all(|p| p.seen.lock().unavailable >= 2)
    })
    .await;
    ups[2] = net.up(3, &dirs[2]);
    let (after_kill, lost_to_kill) =
        recovery(&dirs, &players, killed, &before, "the restart").await;
    let restarted = node_pid(&http, "back-2").await;
    assert!(
        restarted.is_some_and(|pid| pid != back_2),
        "back-2 is a new process"
    );

    // Host 3 dies for good. Host 1 takes over its address and runs its nodes, with
    // nothing of host 3's on its disk: back-2's channels come back from Redis.
    let before = applied(&players);
    let back_2 = node_pid(&http, "back-2").await.expect("back-2 listed");
    let replaced = Instant::now();
    net.kill_all(3);
    let _ = ups[2].wait();
    net.set_link(3, false);
    net.take_over(1, 3);
    let stand_in = root.join("h1-as-h3");
    std::fs::create_dir_all(&stand_in).expect("dir");
    std::fs::write(stand_in.join("cluster.toml"), config(&net)).expect("config");
    ups.push(net.up_as(1, 3, &stand_in));
    let mut logs = dirs.clone();
    logs.push(stand_in);
    let (after_move, lost_to_move) =
        recovery(&logs, &players, replaced, &before, "host 3 was replaced").await;
    let moved = node_pid(&http, "back-2").await;
    assert!(
        moved.is_some_and(|pid| pid != back_2),
        "back-2 runs on host 1"
    );

    stop.send(true).expect("stop");
    for (task, p) in tasks.into_iter().zip(&players) {
        let client = task.await.expect("player task");
        let channel = if p.name.starts_with("west") {
            "west"
        } else {
            "east"
        };
        player_in(&client, channel, &p.name); // still exactly one player of that name
        assert!(
            client.resumed() || p.name.starts_with("west"),
            "{} resumed",
            p.name
        );
    }
    eprintln!(
        "three hosts: cut off for {:.0} ms, all served {:.0} ms after the heal, {lost_to_cut} acknowledged inputs lost; \
         host killed: all served {:.0} ms after the kill, {lost_to_kill} lost; \
         host replaced: all served {:.0} ms after it died, {lost_to_move} lost",
        healed.duration_since(cut).as_secs_f64() * 1e3,
        after_cut.as_secs_f64() * 1e3,
        after_kill.as_secs_f64() * 1e3,
        after_move.as_secs_f64() * 1e3,
    );
    assert_eq!(lost_to_cut, 0.0, "acknowledged inputs lost to the cut");
    assert_eq!(
        lost_to_kill, 0.0,
        "acknowledged inputs lost to the killed host"
    );
    assert_eq!(
        lost_to_move, 0.0,
        "acknowledged inputs lost to the replaced host"
    );
    for mut up in ups.into_iter().chain([redis]) {
        let _ = up.kill();
        let _ = up.wait();
    }
    drop(net);
    let _ = std::fs::remove_dir_all(&root);
}
