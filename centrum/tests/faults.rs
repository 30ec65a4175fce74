//! Faults with real processes under `centrum up`, under load from real clients: a back
//! killed with SIGKILL comes back from its store with every acknowledged input (from
//! its files, or from Redis with its files gone), and its clients are served again as
//! the same players (in its rooms too); a front killed with SIGKILL loses none of its
//! players, who resume on it when it is back; a Redis server that stops makes the
//! back's channels unavailable, acknowledging nothing, until it is back.

#[path = "support/players.rs"]
mod players;
#[path = "support/ports.rs"]
mod ports;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use centrum_client::{Client, ClientError, ClientOptions, Event, Seq};
use centrum_store::RedisServer;

use players::{Join, Move, Seen, TIMEOUT, alive, kill9, node_pid, play, player, player_in};
use ports::{CLUSTER_SECRET_TOML, free_port};
/// Clients of a test: few, so that the suite stays fast on two cores.
const CLIENTS: usize = 6;

/// `centrum up` in a scratch directory (its working directory, so the back's data
/// directory is inside it); stopped with SIGTERM, then SIGKILL, when dropped.
struct Up {
    child: Child,
    http: String,
    front: u16,
    dir: PathBuf,
}

/// A fresh scratch directory holding `cluster.toml`: a master, `front-1`, and `back-1`
/// serving channel `arena` with `app`, on free ports.
struct Scratch {
    dir: PathBuf,
    /// The master's HTTP address.
    http: String,
    /// The front's port.
    front: u16,
}

impl Scratch {
    fn new(name: &str, app: &str) -> Scratch {
        Scratch::with_store(name, app, "")
    }

    /// As [`Scratch::new`], with `store` (a `[store]` table, or nothing) in the config.
    fn with_store(name: &str, app: &str, store: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("centrum-faults-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let (http, nodes, front, back) = (free_port(), free_port(), free_port(), free_port());
        std::fs::write(
            dir.join("cluster.toml"),
            format!(
                "[master]\nhttp = \"127.0.0.1:{http}\"\nnodes = \"127.0.0.1:{nodes}\"\n\
                 [[fronts]]\nid = \"front-1\"\nlisten = \"127.0.0.1:{front}\"\n\
                 [[backs]]\nid = \"back-1\"\nlisten = \"127.0.0.1:{back}\"\ntick_hz = 20\n\
                 channels = [{{ name = \"arena\", app = \"{app}\" }}]\n\
                 rooms = [{{ type = \"duel\", app = \"{app}\", max_clients = 4 }}]\n\
                 [limits]\nheartbeat_ms = 200\n{store}{CLUSTER_SECRET_TOML}"
            ),
        )
        .expect("write config");
        Scratch {
            dir,
            http: format!("127.0.0.1:{http}"),
            front,
        }
    }
}

impl Up {
    fn start(name: &str) -> Up {
        Up::start_with_store(name, "")
    }

    /// As [`Up::start`], with `store` (a `[store]` table) in the config.
    fn start_with_store(name: &str, store: &str) -> Up {
        let Scratch { dir, http, front } = Scratch::with_store(name, "bench-arena", store);
        let log = std::fs::File::create(dir.join("up.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_centrum"))
            .arg("up")
            .arg("cluster.toml")
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn up");
        Up {
            child,
            http,
            front,
            dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("up.log")).unwrap_or_default()
    }

    /// The pid of node `id` as the master lists it, once it is registered.
    async fn pid(&self, id: &str, not: Option<u32>) -> u32 {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            assert!(
                Instant::now() < deadline,
                "{id} did not register\n{}",
                self.log()
            );
            if let Some(pid) = node_pid(&self.http, id).await.filter(|p| Some(*p) != not) {
                return pid;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Up {
    /// Stops `up` (SIGTERM: it stops its nodes) and checks that none of `nodes` is
    /// left running.
    fn stop(mut self, nodes: &[u32]) {
        self.terminate();
        let deadline = Instant::now() + Duration::from_secs(10);
        while nodes.iter().any(|&pid| alive(pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left: Vec<_> = nodes.iter().filter(|&&pid| alive(pid)).collect();
        assert!(left.is_empty(), "processes left behind: {left:?}");
    }

    fn terminate(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return; // stopped already
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// `up` with [`CLIENTS`] players, each with a second of inputs acknowledged.
struct Load {
    up: Up,
    back: u32,
    front: u32,
    stop: tokio::sync::watch::Sender<bool>,
    seen: Vec<Arc<Mutex<Seen>>>,
    players: Vec<tokio::task::JoinHandle<Client>>,
}

impl Load {
    async fn start(name: &str) -> Load {
        Load::start_with_store(name, "").await
    }

    async fn start_with_store(name: &str, store: &str) -> Load {
        let up = Up::start_with_store(name, store);
        let back = up.pid("back-1", None).await;
        let front = up.pid("front-1", None).await;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let seen: Vec<Arc<Mutex<Seen>>> = (0..CLIENTS).map(|_| Arc::default()).collect();
        let players = (0..CLIENTS)
            .map(|i| {
                let (name, seen, stopped) = (format!("p{i}"), seen[i].clone(), stopped.clone());
                let url = format!("ws://127.0.0.1:{}", up.front);
                tokio::spawn(play(url, "arena".into(), name, seen, stopped))
            })
            .collect();
        until(&up, "inputs acknowledged", Instant::now() + TIMEOUT, || {
            seen.iter().all(|s: &Arc<Mutex<Seen>>| s.lock().ack.0 >= 20)
        })
        .await;
        Load {
            up,
            back,
            front,
            stop,
            seen,
            players,
        }
    }
}

/// Waits until `done`, checking every 20 ms; fails with `what` and up's log at `deadline`.
async fn until(up: &Up, what: &str, deadline: Instant, done: impl Fn() -> bool) {
    while !done() {
        assert!(Instant::now() < deadline, "not {what}\n{}", up.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every client has 5 inputs acknowledged past `acks`, by `deadline`.
async fn acked_past(up: &Up, seen: &[Arc<Mutex<Seen>>], acks: &[Seq], deadline: Instant) {
    until(up, "inputs acknowledged again", deadline, || {
        seen.iter()
            .zip(acks)
            .all(|(s, a)| s.lock().ack.0 >= a.0 + 5)
    })
    .await;
}

/// Kills `pid` with SIGKILL and waits until every client has had a full state since:
/// when it was killed, and that state of each client.
async fn kill_until_served(
    up: &Up,
    pid: u32,
    seen: &[Arc<Mutex<Seen>>],
) -> (Instant, Vec<(Instant, Seq, f64)>) {
    let killed = Instant::now();
    kill9(pid);
    let since = |s: &Seen| s.states.iter().find(|(at, ..)| *at > killed).copied();
    until(up, "clients served again", killed + TIMEOUT, || {
        seen.iter().all(|s| since(&s.lock()).is_some())
    })
    .await;
    let states = seen
        .iter()
        .map(|s| since(&s.lock()).expect("served"))
        .collect();
    (killed, states)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_back_killed_under_load_loses_no_acknowledged_input() {
    back_killed_under_load(Load::start("back").await, "its files").await;
}

/// `[store]` for a back on `server`, with a short lease: a killed back's replacement
/// waits for it to end.
fn redis_store(server: &RedisServer) -> String {
    format!(
        "[store]\nkind = \"redis\"\nurl = \"{}\"\nlease_ms = 2000\n",
        server.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_back_on_redis_killed_under_load_comes_back_without_its_files() {
    let Some(server) = RedisServer::start("faults-kill") else {
        return;
    };
    let load = Load::start_with_store("redis-kill", &redis_store(&server)).await;
    back_killed_under_load(load, "Redis").await;
    drop(server);
}

/// Kills the back of `load` and checks that its clients come back to it with every
/// acknowledged input, from the back's store (`kept`: where, for the report).
async fn back_killed_under_load(load: Load, kept: &str) {
    let Load {
        up,
        back,
        front,
        stop,
        seen,
        players,
    } = load;
    // Before the kill every input was forwarded and applied in order, each moving its
    // player by 1: what was acknowledged is what must come back.
    let acked: Vec<Seq> = seen.iter().map(|s| s.lock().ack).collect();
    let data = up.dir.join("centrum-data");
    if kept == "Redis" {
        // Nothing of the back's is on this host: a replacement on another would do.
        assert!(!data.exists(), "a data directory beside a Redis store");
    }
    // Every client is told the back is away, then gets a full state again.
    let (killed, after) = kill_until_served(&up, back, &seen).await;
    let restarted = up.pid("back-1", Some(back)).await;
    assert!(!alive(back) && alive(restarted));
    let slowest = after
        .iter()
        .map(|(at, ..)| at.duration_since(killed))
        .max()
        .expect("clients");
    // Go on playing a little: inputs flow again.
    let again: Vec<Seq> = seen.iter().map(|s| s.lock().ack).collect();
    acked_past(&up, &seen, &again, killed + TIMEOUT).await;
    stop.send(true).expect("stop");
    let mut lost = 0.0;
    for (i, handle) in players.into_iter().enumerate() {
        let client = handle.await.expect("player task");
        player(&client, &format!("p{i}")); // still exactly one player of that name
        // Every input acknowledged before the back died moved the player it came back
        // with: its x in the first full state after the restart.
        let (_, _, x) = after[i];
        lost += (f64::from(acked[i].0) - x).max(0.0);
        assert!(
            seen[i].lock().unavailable >= 1,
            "p{i} was told the back was away"
        );
    }
    eprintln!(
        "back killed under load (kept in {kept}): {CLIENTS} clients served again within {:.0} ms, {lost} acknowledged inputs lost",
        slowest.as_secs_f64() * 1e3
    );
    assert_eq!(lost, 0.0, "acknowledged inputs lost");
    up.stop(&[restarted, front]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_redis_makes_the_channel_unavailable_until_it_is_back() {
    let Some(mut server) = RedisServer::start("faults-outage") else {
        return;
    };
    let Load {
        up,
        back,
        front,
        stop,
        seen,
        players,
    } = Load::start_with_store("redis-outage", &redis_store(&server)).await;
    let stopped = Instant::now();
    server.kill();
    // The back cannot renew its lease: when it ends, the back stops, and its clients
    // are told the channel is unavailable.
    until(
        &up,
        "clients told the channel is unavailable",
        stopped + TIMEOUT,
        || seen.iter().all(|s| s.lock().unavailable >= 1),
    )
    .await;
    let unavailable = stopped.elapsed();
    let acked: Vec<Seq> = seen.iter().map(|s| s.lock().ack).collect();
    // Restarted, the back cannot open its store (its first call reads the server's
    // settings), and says why.
    until(&up, "the back stopped", stopped + TIMEOUT, || !alive(back)).await;
    until(
        &up,
        "a restarted back saying the store is unreachable",
        stopped + TIMEOUT,
        || up.log().contains("the store is unreachable (CONFIG GET"),
    )
    .await;
    assert_eq!(
        seen.iter().map(|s| s.lock().ack).collect::<Vec<_>>(),
        acked,
        "nothing acknowledged while the store is away"
    );
    let started = Instant::now();
    server.restart();
    let since = |s: &Seen| s.states.iter().find(|(at, ..)| *at > started).copied();
    until(&up, "clients served again", started + TIMEOUT, || {
        seen.iter().all(|s| since(&s.lock()).is_some())
    })
    .await;
    let served = started.elapsed();
    acked_past(&up, &seen, &acked, started + TIMEOUT).await;
    stop.send(true).expect("stop");
    let mut lost = 0.0;
    for (i, handle) in players.into_iter().enumerate() {
        let client = handle.await.expect("player task");
        player(&client, &format!("p{i}"));
        let (_, _, x) = since(&seen[i].lock()).expect("served");
        lost += (f64::from(acked[i].0) - x).max(0.0);
    }
    eprintln!(
        "redis stopped under load: {CLIENTS} clients told unavailable within {:.0} ms, served again {:.0} ms after it was back, {lost} acknowledged inputs lost",
        unavailable.as_secs_f64() * 1e3,
        served.as_secs_f64() * 1e3
    );
    assert_eq!(lost, 0.0, "acknowledged inputs lost");
    let restarted = up.pid("back-1", Some(back)).await;
    up.stop(&[restarted, front]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_front_killed_under_load_loses_no_player() {
    let Load {
        up,
        back,
        front,
        stop,
        seen,
        players,
    } = Load::start("front").await;
    // Every client reconnects to the restarted front and resumes: a full state of the
    // same player, with the ack it had.
    let (killed, resumed) = kill_until_served(&up, front, &seen).await;
    let restarted = up.pid("front-1", Some(front)).await;
    assert!(!alive(front) && alive(restarted));
    let mut slowest = Duration::ZERO;
    let mut lost = 0.0;
    for (s, &(at, ack, x)) in seen.iter().zip(&resumed) {
        let s = s.lock();
        assert!(s.closed >= 1, "the connection closed under the client");
        slowest = slowest.max(at.duration_since(killed));
        // The last ack before the resume: the same membership goes on from it. (Not
        // the latest ack: the client has played on since.)
        let before = s.acked_before_resume.expect("the client resumed");
        assert!(
            !before.is_after(ack),
            "the ack went back from {before:?} to {ack:?}"
        );
        lost += (f64::from(ack.0) - x).max(0.0);
    }
    stop.send(true).expect("stop");
    for (i, handle) in players.into_iter().enumerate() {
        let client = handle.await.expect("player task");
        assert!(client.resumed(), "p{i} resumed its session");
        player(&client, &format!("p{i}"));
    }
    eprintln!(
        "front killed under load: {CLIENTS} clients resumed within {:.0} ms as the same players, {lost} acknowledged inputs lost",
        slowest.as_secs_f64() * 1e3
    );
    assert_eq!(lost, 0.0, "acknowledged inputs lost");
    up.stop(&[back, restarted]);
}

/// Reads `client`'s events until `done` holds.
async fn until_event(client: &mut Client, what: &str, done: impl Fn(&Client, &Event) -> bool) {
    let read = async {
        loop {
            let event = client.next_event().await.expect("event");
            if done(client, &event) {
                return;
            }
        }
    };
    tokio::time::timeout(TIMEOUT, read)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_back_brings_its_rooms_back_and_their_players_with_them() {
    let up = Up::start("rooms");
    let back = up.pid("back-1", None).await;
    up.pid("front-1", None).await;
    let mm = centrum_client::Matchmaker::new(&up.http);
    let deadline = Instant::now() + TIMEOUT;
    let seat = loop {
        match mm.create("duel", &()).await {
            Ok(seat) => break seat,
            // The back is not registered with the master yet.
            Err(ClientError::Matchmaker { status: 503, .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("create a room: {e}\n{}", up.log()),
        }
    };
    let other = mm.create("duel", &()).await.expect("a second room");
    let mut ann = Client::connect(&seat.front, ClientOptions::default())
        .await
        .expect("connect");
    let join = Join { name: "ann".into() };
    // The front may not have linked to the back yet (it refuses the join at once, and
    // the seat stays good).
    loop {
        match ann.join_room(&seat, &join).await {
            Ok(()) => break,
            Err(ClientError::Rejected { reason, .. })
                if reason.contains("unavailable") && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("join the room: {e}"),
        }
    }
    ann.send_value(&seat.room, &Move { dx: 1.0, dy: 0.0 })
        .await
        .expect("input");
    let room = seat.room.clone();
    let acked = |c: &Client| c.ack(&room) == Seq(1);
    until_event(&mut ann, "ann's input is acked", |c, _| acked(c)).await;
    let x_before = player_in(&ann, &room, "ann").1;

    kill9(back);
    let again = up.pid("back-1", Some(back)).await;
    assert_ne!(again, back);
    // The front relinks; ann, held for her resume, gets the room's state again.
    until_event(&mut ann, "ann is served again", |c, e| {
        matches!(e, Event::State { channel, .. } if *channel == room) && acked(c)
    })
    .await;
    assert_eq!(
        player_in(&ann, &room, "ann").1,
        x_before,
        "the same player, where she was"
    );
    // Both rooms are listed again, from the restarted back's first report.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let rooms = mm.rooms(Some("duel")).await.expect("listing");
        let ids: Vec<&str> = rooms.iter().map(|r| r.id.as_str()).collect();
        if ids.contains(&seat.room.as_str()) && ids.contains(&other.room.as_str()) {
            break;
        }
        assert!(Instant::now() < deadline, "the rooms came back: {ids:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let front = node_pid(&up.http, "front-1").await.expect("front");
    up.stop(&[again, front]);
}

#[test]
fn a_back_refuses_to_start_over_a_journal_it_cannot_read() {
    let Scratch { dir, .. } = Scratch::new("journal", "arena");
    let channel = dir.join("centrum-data/back-1/arena");
    std::fs::create_dir_all(&channel).expect("channel dir");
    // A journal from a newer centrum: the same magic, format version 9.
    let journal = channel.join("journal-00000000000000000001.log");
    let mut bytes = b"CNTRMJNL".to_vec();
    bytes.extend_from_slice(&9u32.to_le_bytes());
    bytes.extend_from_slice(&[0; 4]);
    std::fs::write(&journal, &bytes).expect("write journal");

    let mut child = Command::new(env!("CARGO_BIN_EXE_centrum"))
        .args(["back", "--id", "back-1", "--config"])
        .arg(dir.join("cluster.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn back");
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the back started over a journal it cannot read");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&journal.display().to_string()) && stderr.contains("format version 9"),
        "the error names the file and its version: {stderr}"
    );
    assert_eq!(
        std::fs::read(&journal).expect("still there"),
        bytes,
        "nothing discarded"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
