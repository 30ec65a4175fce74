//! The attack suite of issue 14: each attack runs while two honest players steer in the
//! arena at 20 Hz, and after it their service is checked (every patch, every input
//! acked in order, nothing refused or dropped) and its numbers printed. The limits'
//! own behaviour is tested in limits.rs, auth.rs and tls.rs; this file checks that
//! honest clients keep their service while the limits are being hit.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use centrum_client::{Client, Event};
use centrum_config::Limits;
use centrum_net::auth::ClusterKey;
use centrum_protocol::{
    BackToFront, ClientMsg, FrontMsg, FrontToBack, HANDSHAKE_FRAME_BYTES, Hello, Input, Join,
    LinkAuth, LinkHello, PROTOCOL_VERSION, Register, Role, Seq, decode,
};
use centrum_tests::raw_ws::{OP_BINARY, OP_CLOSE, OP_CONTINUATION, frame, message};
use centrum_tests::{CLUSTER_SECRET, ClusterSpec, TestCluster, join, steer, until, within};

/// The attacks come from 127.0.0.1, as the honest clients do: no per-address limit,
/// or it would stop the attackers before the limit under test.
fn limits() -> Limits {
    Limits {
        max_connections_per_ip: 0,
        connections_per_ip_per_s: 0,
        ..Limits::default()
    }
}

fn spec(limits: Limits) -> ClusterSpec {
    ClusterSpec {
        limits,
        ..ClusterSpec::default()
    }
}

/// How long the honest players play at the least, attack or not.
const PLAY_AT_LEAST: Duration = Duration::from_millis(1_500);

/// What one honest player saw while it played.
#[derive(Debug, Default)]
struct Service {
    ticks: Vec<u32>,
    latencies_ms: Vec<f64>,
    /// Inputs sent and not acked when play stopped (after a grace for the last ones).
    unacked: usize,
    played: Duration,
}

/// Two honest players on front 0, each steering at 20 Hz until [`Honest::finish`].
struct Honest {
    started: Instant,
    stop: watch::Sender<bool>,
    players: Vec<JoinHandle<Service>>,
}

impl Honest {
    /// Returns once both have joined and their first input was acked.
    async fn start(cluster: &TestCluster) -> Honest {
        let (stop, stopped) = watch::channel(false);
        let mut players = Vec::new();
        for _ in 0..2 {
            let mut client = cluster.connect(0).await;
            join(&mut client, "arena", b"").await;
            players.push(tokio::spawn(play(client, stopped.clone())));
        }
        Honest {
            started: Instant::now(),
            stop,
            players,
        }
    }

    /// Stops play and checks what each player saw: consecutive patches at about the
    /// tick rate, every input acked in order, no error, refusal or drop (those panic in
    /// [`play`]). Prints the numbers for the record.
    async fn finish(self, attack: &str) {
        // Enough patches for a rate, however quickly the attack was over.
        tokio::time::sleep_until(self.started + PLAY_AT_LEAST).await;
        self.stop.send_replace(true);
        for (i, player) in self.players.into_iter().enumerate() {
            let s = within("an honest player stops", player)
                .await
                .expect("the honest player kept its service");
            let mut lat = s.latencies_ms.clone();
            lat.sort_by(f64::total_cmp);
            let p99 = lat
                .get(((lat.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or(f64::NAN);
            let per_s = s.ticks.len() as f64 / s.played.as_secs_f64();
            println!(
                "[{attack}] honest {i}: {per_s:.1} patches/s over {:.1} s, input-to-ack p99 {p99:.0} ms \
                 ({} inputs), {} unacked",
                s.played.as_secs_f64(),
                lat.len(),
                s.unacked
            );
            for pair in s.ticks.windows(2) {
                assert_eq!(pair[1], pair[0] + 1, "[{attack}] honest {i} missed a patch");
            }
            // 20 Hz: a debug build on two busy cores still ticks far above half of it.
            assert!(per_s >= 10.0, "[{attack}] honest {i}: {per_s:.1} patches/s");
            assert_eq!(s.unacked, 0, "[{attack}] honest {i}: inputs never acked");
            assert!(!lat.is_empty(), "[{attack}] honest {i} sent no input");
        }
    }
}

/// One honest player's loop: an input every 50 ms, every event read; any refusal,
/// resync, error or close fails the test.
async fn play(mut client: Client, mut stopped: watch::Receiver<bool>) -> Service {
    let started = Instant::now();
    let mut service = Service::default();
    let mut pending: std::collections::VecDeque<(u32, Instant)> = Default::default();
    let mut every = tokio::time::interval(Duration::from_millis(50));
    let mut dx = 0.1;
    let mut last_ack = 0u32;
    let mut stopping: Option<Instant> = None;
    loop {
        if let Some(at) = stopping
            && (pending.is_empty() || at.elapsed() > Duration::from_secs(3))
        {
            break;
        }
        tokio::select! {
            _ = stopped.changed(), if stopping.is_none() => {
                service.played = started.elapsed();
                stopping = Some(Instant::now());
            }
            _ = every.tick(), if stopping.is_none() => {
                dx = -dx;
                let seq = client.send_input("arena", &steer(dx)).await.expect("input");
                pending.push_back((seq.0, Instant::now()));
            }
            event = within("an honest player's event", client.next_event()) => {
                match event.expect("event") {
                    Event::Patch { tick, ack, .. } => {
                        assert!(ack.0 >= last_ack, "acks went back: {} after {last_ack}", ack.0);
                        last_ack = ack.0;
                        if stopping.is_none() {
                            service.ticks.push(tick.0);
                        }
                        while pending.front().is_some_and(|(seq, _)| *seq <= ack.0) {
                            if let Some((_, sent)) = pending.pop_front() {
                                service.latencies_ms.push(sent.elapsed().as_secs_f64() * 1e3);
                            }
                        }
                    }
                    Event::State { .. } => panic!("an honest player fell behind (a resync)"),
                    Event::Unavailable { channel } => panic!("an honest player saw {channel} unavailable"),
                    Event::Left { reason, .. } => panic!("an honest player was removed: {reason}"),
                    Event::Rejected { reason, .. } => panic!("an honest player was refused: {reason}"),
                    Event::Error { code, message } => panic!("an honest player got {code}: {message}"),
                    Event::Closed { reason } => panic!("an honest player was closed: {reason}"),
                    Event::Message { .. } | Event::Pong { .. } => {}
                }
            }
        }
    }
    service.unacked = pending.len();
    let _ = client.close().await;
    service
}

/// Opens a WebSocket on `addr` without a client library; returns the socket once the
/// server answered 101 (and any bytes after its head).
async fn upgrade(addr: SocketAddr) -> (TcpStream, Vec<u8>) {
    let mut stream = within("connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    let request = "GET / HTTP/1.1\r\nHost: front\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    stream.write_all(request.as_bytes()).await.expect("upgrade");
    let mut buf = Vec::new();
    let end = within("the upgrade's answer", async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return end;
            }
            let mut chunk = [0; 1024];
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed before an answer");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    assert!(buf.starts_with(b"HTTP/1.1 101"), "not upgraded");
    let rest = buf[end + 4..].to_vec();
    (stream, rest)
}

/// Upgraded, hello said and the welcome read (with whatever came with it).
async fn welcomed(addr: SocketAddr) -> TcpStream {
    let (mut stream, _) = upgrade(addr).await;
    let hello = message(&ClientMsg::Hello(Hello {
        version: PROTOCOL_VERSION,
        token: String::new(),
        resume: None,
    }));
    stream.write_all(&hello).await.expect("hello");
    let mut first = [0; 256];
    let n = within("the welcome", stream.read(&mut first))
        .await
        .expect("read");
    assert!(n > 0, "closed instead of a welcome");
    stream
}

/// Reads server frames until the close frame: its code and reason, and the codes of
/// the `Error` messages before it. `None` when the socket closed without one.
async fn close_of(mut read: impl AsyncRead + Unpin) -> Option<(u16, String, Vec<String>)> {
    let mut buf = Vec::new();
    let mut errors = Vec::new();
    loop {
        while buf.len() >= 2 {
            let (len, at) = match buf[1] & 0x7F {
                126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
                127 if buf.len() >= 10 => {
                    let mut n = [0; 8];
                    n.copy_from_slice(&buf[2..10]);
                    (u64::from_be_bytes(n) as usize, 10)
                }
                126 | 127 => break,
                n => (usize::from(n), 2),
            };
            if buf.len() < at + len {
                break;
            }
            let opcode = buf[0] & 0x0F;
            let payload: Vec<u8> = buf.drain(..at + len).skip(at).collect();
            if opcode == OP_CLOSE && payload.len() >= 2 {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                let reason = String::from_utf8_lossy(&payload[2..]).into_owned();
                return Some((code, reason, errors));
            }
            if let Ok(FrontMsg::Error(e)) = decode::<FrontMsg>(&payload, usize::MAX) {
                errors.push(e.code);
            }
        }
        let mut chunk = [0; 16 << 10];
        match read.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The master's `/gate` for the arena names a configured front's URL.
async fn gate_answers(cluster: &TestCluster) {
    let started = Instant::now();
    let response = centrum_tests::http::request(
        cluster.master_http,
        "GET /gate?channel=arena HTTP/1.1\r\nHost: master\r\n",
        b"",
    )
    .await;
    assert_eq!(
        response.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&response.body)
    );
    let url = response.json()["url"].as_str().map(str::to_owned);
    let configured: Vec<String> = (0..cluster.fronts.len())
        .map(|i| cluster.front_url(i))
        .collect();
    assert!(
        url.as_ref().is_some_and(|u| configured.contains(u)),
        "{url:?} is none of {configured:?}"
    );
    println!("/gate answered in {:?}", started.elapsed());
}

/// A stranger without the cluster secret links to the back as front-1 (the back's
/// challenge answered with a forged proof) and registers with the master as front-1
/// at its own address: both refused, and the gate still sends clients to the real
/// front. While 100 silent connections hold the back's link port (more than its 64
/// handshakes in flight), a front with the secret still links. The handshakes
/// themselves are tested in back/src/link.rs and master/tests/master.rs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_without_the_secret_cannot_link_register_or_hold_the_link_port() {
    let cluster = TestCluster::start(ClusterSpec {
        fronts: 2,
        ..spec(limits())
    })
    .await;
    let honest = Honest::start(&cluster).await;
    let back = cluster.config.backs[0].listen;

    // A LinkHello as front-1, then a forged LinkAuth.
    let stream = within("connect", TcpStream::connect(back))
        .await
        .expect("connect");
    let mut link = centrum_net::framed(stream, HANDSHAKE_FRAME_BYTES);
    let hello = LinkHello {
        version: centrum_protocol::CLUSTER_VERSION,
        front: "front-1".into(),
        instance: 7,
        nonce: centrum_net::auth::nonce().expect("nonce"),
    };
    within(
        "send",
        centrum_net::send(&mut link, &FrontToBack::Hello(hello)),
    )
    .await
    .expect("send the hello");
    let challenge = within(
        "the challenge",
        centrum_net::recv::<_, BackToFront>(&mut link),
    )
    .await
    .expect("recv");
    assert!(
        matches!(challenge, Some(BackToFront::Challenge(_))),
        "{challenge:?}"
    );
    let forged = LinkAuth {
        proof: Bytes::from(vec![0x5A; 32]),
    };
    // The back may close before it has read the proof.
    let _ = within(
        "send",
        centrum_net::send(&mut link, &FrontToBack::Auth(forged)),
    )
    .await;
    match within(
        "the refusal",
        centrum_net::recv::<_, BackToFront>(&mut link),
    )
    .await
    {
        Ok(Some(BackToFront::Refused(_)) | None) | Err(_) => {}
        Ok(Some(other)) => panic!("a forged proof got {other:?}"),
    }

    // Registration as front-1 at the stranger's address, with another secret.
    let stranger = ClusterKey::new(b"not the cluster's secret");
    let stream = within("connect", TcpStream::connect(cluster.config.master.nodes))
        .await
        .expect("connect");
    let mut control = centrum_net::framed(stream, HANDSHAKE_FRAME_BYTES);
    let register = Register {
        version: centrum_protocol::CLUSTER_VERSION,
        role: Role::Front,
        id: "front-1".into(),
        pid: 1,
        listen: "127.0.0.1:1".into(),
        nonce: Bytes::new(),
    };
    let registered = within(
        "the registration",
        centrum_net::register(&mut control, &register, &stranger),
    )
    .await;
    assert!(registered.is_err(), "a stranger registered: {registered:?}");
    gate_answers(&cluster).await;

    // 100 silent connections to the link port, then a real handshake as front-2.
    let mut silent = Vec::new();
    for _ in 0..100 {
        silent.push(
            within("connect", TcpStream::connect(back))
                .await
                .expect("connect"),
        );
    }
    let key = ClusterKey::new(CLUSTER_SECRET.as_bytes());
    let opener = centrum_net::LinkOpener {
        key: &key,
        front: "front-2",
        back: "back-1",
        instance: 8,
        max_frame_bytes: 1 << 20,
    };
    let started = Instant::now();
    let stream = within("connect", TcpStream::connect(back))
        .await
        .expect("connect");
    let mut link = centrum_net::framed(stream, HANDSHAKE_FRAME_BYTES);
    let welcome = within("a real link", opener.open(&mut link, Vec::new)).await;
    assert!(welcome.is_ok(), "{welcome:?}");
    println!(
        "linked in {:?} beside 100 silent connections",
        started.elapsed()
    );
    drop(link);
    drop(silent);
    honest.finish("stranger").await;
    gate_answers(&cluster).await;
    cluster.stop().await;
}

/// A client writing inputs as fast as its socket takes them for 2 s is told
/// `rate_limited`, then closed with 1008; the honest players lose nothing. (The limit
/// itself: limits.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_flooding_at_full_rate_is_closed_and_honest_players_keep_their_service() {
    let cluster = TestCluster::start(spec(Limits {
        client_flood_close_ms: 1_000,
        ..limits()
    }))
    .await;
    let honest = Honest::start(&cluster).await;
    let mut flooder = welcomed(cluster.fronts[0].local_addr()).await;
    let join_arena = message(&ClientMsg::Join(Join {
        channel: "arena".into(),
        data: Bytes::new(),
        seat: None,
    }));
    flooder.write_all(&join_arena).await.expect("join");
    let batch: Vec<u8> = (1..=500)
        .flat_map(|seq| {
            message(&ClientMsg::Input(Input {
                channel: "arena".into(),
                seq: Seq(seq),
                data: steer(if seq % 2 == 0 { 0.1 } else { -0.1 }),
            }))
        })
        .collect();
    let (read, mut write) = flooder.into_split();
    let started = Instant::now();
    let flood = tokio::spawn(async move {
        let mut sent = 0u64;
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until && write.write_all(&batch).await.is_ok() {
            sent += 500;
        }
        sent
    });
    let (code, reason, errors) = within("the flooder's close", close_of(read))
        .await
        .expect("a close frame");
    let closed_after = started.elapsed();
    let sent = within("the flood ends", flood).await.expect("writer");
    println!("flooder: {sent} inputs written, closed {code} {reason} after {closed_after:?}");
    assert_eq!(
        (code, reason.as_str()),
        (1008, "rate_limited"),
        "{errors:?}"
    );
    assert!(errors.iter().any(|c| c == "rate_limited"), "{errors:?}");
    assert!(sent >= 1_000, "only {sent} inputs: not a flood");
    honest.finish("flood").await;
    cluster.stop().await;
}

/// 100 connections sending endless empty continuation frames and 100 sending the
/// header of a 64 KiB frame before their Hello (its payload never finished) are all
/// closed; the honest players lose nothing. (One of each: limits.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_fragments_and_unfinished_frames_from_many_connections_are_closed() {
    let cluster = TestCluster::start(spec(limits())).await;
    let honest = Honest::start(&cluster).await;
    let addr = cluster.fronts[0].local_addr();
    let mut attackers = tokio::task::JoinSet::new();
    for i in 0..200 {
        attackers.spawn(async move {
            let (mut stream, _) = upgrade(addr).await;
            let bytes = if i % 2 == 0 {
                let mut frames = frame(OP_BINARY, false, b"");
                for _ in 0..1_000 {
                    frames.extend(frame(OP_CONTINUATION, false, b""));
                }
                frames
            } else {
                let mut header = vec![OP_BINARY, 0x80 | 127];
                header.extend_from_slice(&(64u64 << 10).to_be_bytes());
                header.extend_from_slice(&[1, 2, 3, 4]);
                header.extend_from_slice(&[0; 1_000]);
                header
            };
            // The front may close before it has read them all.
            let _ = stream.write_all(&bytes).await;
            close_of(stream)
                .await
                .map(|(code, reason, _)| (code, reason))
        });
    }
    let mut closes = std::collections::BTreeMap::<String, usize>::new();
    within("every attacker closed", async {
        while let Some(done) = attackers.join_next().await {
            let (code, reason) = done.expect("attacker").expect("a close frame");
            *closes.entry(format!("{code} {reason}")).or_default() += 1;
        }
    })
    .await;
    println!("attackers closed: {closes:?}");
    assert_eq!(
        closes.get("1008 too_many_fragments"),
        Some(&100),
        "{closes:?}"
    );
    assert_eq!(closes.get("1009 too_large"), Some(&100), "{closes:?}");
    honest.finish("fragments").await;
    cluster.stop().await;
}

/// Welcomed connections that say nothing fill the front up to `max_connections`; they
/// are closed after `client_idle_ms`, so a new player gets in within a bounded time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_at_the_cap_do_not_lock_new_players_out() {
    let cluster = TestCluster::start(spec(Limits {
        max_connections: 20,
        client_idle_ms: 300,
        ..limits()
    }))
    .await;
    let honest = Honest::start(&cluster).await;
    let addr = cluster.fronts[0].local_addr();
    let mut idle = Vec::new();
    for _ in 0..18 {
        idle.push(welcomed(addr).await);
    }
    let started = Instant::now();
    let mut newcomer = cluster.connect(0).await;
    join(&mut newcomer, "arena", b"").await;
    let waited = started.elapsed();
    println!("a new player joined after {waited:?} with the front full of idle connections");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    for mut conn in idle {
        within("an idle close", async {
            let mut buf = [0; 1024];
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
    drop(newcomer);
    honest.finish("idle").await;
    cluster.stop().await;
}

/// Joins whose data would make the arena's full state larger than `max_frame_bytes`
/// are refused, and the front's link (which carries the state) never drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_that_would_outgrow_the_link_frame_are_refused_and_the_link_holds() {
    // `echo` keeps each joiner's name in its state: big names grow the full state.
    let cluster = TestCluster::start(ClusterSpec {
        backs: vec![
            ("arena".into(), "arena".into()),
            ("talk".into(), "echo".into()),
        ],
        apps: centrum_games::registry().with("echo", centrum_tests::games::Echo::default),
        calls: centrum_config::CallsConfig {
            max_body_bytes: 16 << 10,
            ..Default::default()
        },
        ..spec(Limits {
            max_frame_bytes: 64 << 10,
            max_message_bytes: 32 << 10,
            client_bytes_burst: 32 << 10,
            ..limits()
        })
    })
    .await;
    let honest = Honest::start(&cluster).await;
    // A member of the channel the big joins go to: its link must hold throughout.
    let mut member = cluster.connect(0).await;
    join(
        &mut member,
        "talk",
        &rmp_serde::to_vec(&"member").expect("encode"),
    )
    .await;
    let data = rmp_serde::to_vec(&"x".repeat(16 << 10)).expect("encode");
    let mut refused = 0;
    for _ in 0..8 {
        let mut big = cluster.connect(0).await;
        match within("a big join", big.join("talk", &data)).await {
            Ok(()) => {}
            Err(centrum_client::ClientError::Rejected { reason, .. }) => {
                assert!(reason.contains("is full"), "{reason}");
                refused += 1;
            }
            Err(e) => panic!("a big join failed otherwise: {e}"),
        }
    }
    println!("{refused} of 8 big joins refused");
    assert!(refused > 0, "the state would have outgrown max_frame_bytes");
    // The member still hears its channel: a line it says comes back to it.
    let line = centrum_tests::games::Say::Line {
        text: "still here".into(),
    };
    member
        .send_input("talk", &rmp_serde::to_vec_named(&line).expect("encode"))
        .await
        .expect("input");
    until(&mut member, "the member's line is acked", |c, event| {
        assert!(
            !matches!(event, Event::Unavailable { .. }),
            "the link dropped"
        );
        c.ack("talk") == Seq(1)
    })
    .await;
    honest.finish("big joins").await;
    cluster.stop().await;
}

/// 200 connections sending a request head a byte at a time and 200 idle keep-alive
/// connections to the master's HTTP: `/gate` still answers. (The timeouts and cap
/// themselves: master/tests/master.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_http_connections_do_not_stop_the_gate() {
    let cluster = TestCluster::start(spec(limits())).await;
    let honest = Honest::start(&cluster).await;
    let master = cluster.master_http;
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(
            within("connect", TcpStream::connect(master))
                .await
                .expect("connect"),
        );
    }
    let (stop, stopped) = watch::channel(false);
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let mut stopped = stopped.clone();
        slow.spawn(async move {
            let Ok(mut stream) = TcpStream::connect(master).await else {
                return;
            };
            let head = b"GET /gate?channel=arena HTTP/1.1\r\nHost: master\r\nX-Slow: ";
            let mut every = tokio::time::interval(Duration::from_millis(100));
            for byte in head.iter().chain(std::iter::repeat(&b'a')) {
                tokio::select! {
                    _ = stopped.changed() => return,
                    _ = every.tick() => {
                        if stream.write_all(&[*byte]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    // Let the slow heads get going before asking.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        gate_answers(&cluster).await;
    }
    stop.send_replace(true);
    within("the slow clients stop", async {
        while slow.join_next().await.is_some() {}
    })
    .await;
    drop(idle);
    honest.finish("slowloris").await;
    cluster.stop().await;
}
