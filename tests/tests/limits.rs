//! A front's client limits end to end, over real sockets: a flooding client is told,
//! then closed, while an honest one in its channel misses nothing; framing that would
//! hold the front (endless fragments, a huge frame before the Hello); idle clients;
//! per-address caps and rates, behind trusted proxies or not; the origin allow-list.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use centrum_client::Event;
use centrum_config::{AccessConfig, Limits};
use centrum_protocol::{ClientMsg, FrontMsg, Hello, Input, Join, PROTOCOL_VERSION, Seq, decode};
use centrum_tests::raw_ws::{OP_BINARY, OP_CLOSE, OP_CONTINUATION, frame, message};
use centrum_tests::{ClusterSpec, TestCluster, join, steer, within};

fn hello() -> Vec<u8> {
    message(&ClientMsg::Hello(Hello {
        version: PROTOCOL_VERSION,
        token: String::new(),
        resume: None,
    }))
}

/// Server frames read from a socket (or its read half).
struct Frames<R> {
    read: R,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> Frames<R> {
    /// The next frame's opcode and payload; `None` once the server closed the socket.
    async fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        within("a server frame", async {
            loop {
                if self.buf.len() >= 2 {
                    let (len, at) = match self.buf[1] & 0x7F {
                        126 if self.buf.len() >= 4 => (
                            usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                            4,
                        ),
                        127 if self.buf.len() >= 10 => {
                            let mut n = [0; 8];
                            n.copy_from_slice(&self.buf[2..10]);
                            (u64::from_be_bytes(n) as usize, 10)
                        }
                        126 | 127 => (usize::MAX, 0),
                        n => (usize::from(n), 2),
                    };
                    if len != usize::MAX && self.buf.len() >= at + len {
                        let opcode = self.buf[0] & 0x0F;
                        let payload = self.buf[at..at + len].to_vec();
                        self.buf.drain(..at + len);
                        return Some((opcode, payload));
                    }
                }
                let mut chunk = [0; 16 << 10];
                match self.read.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
    }

    /// Reads to the server's close frame: its code and reason, and the codes of the
    /// `Error` messages before it.
    async fn close(&mut self) -> (u16, String, Vec<String>) {
        let mut errors = Vec::new();
        while let Some((opcode, payload)) = self.next().await {
            if opcode == OP_CLOSE {
                assert!(payload.len() >= 2, "a close frame with a code");
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                let reason = String::from_utf8_lossy(&payload[2..]).into_owned();
                return (code, reason, errors);
            }
            if let Ok(FrontMsg::Error(e)) = decode::<FrontMsg>(&payload, usize::MAX) {
                errors.push(e.code);
            }
        }
        panic!("the server closed without a close frame (errors: {errors:?})");
    }
}

/// Sends a WebSocket upgrade with `headers` (each ending in CRLF): the open socket and
/// its frames once upgraded, or the status it was refused with.
async fn upgrade(addr: SocketAddr, headers: &str) -> Result<Frames<TcpStream>, u16> {
    let mut stream = within("connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    let request = format!(
        "GET / HTTP/1.1\r\nHost: front\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{headers}\r\n"
    );
    within("upgrade", stream.write_all(request.as_bytes()))
        .await
        .expect("send the upgrade");
    let mut buf = Vec::new();
    let end = within("the upgrade's answer", async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return end;
            }
            let mut chunk = [0; 1024];
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed before an answer: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {head:?}"));
    if status != 101 {
        return Err(status);
    }
    Ok(Frames {
        read: stream,
        buf: buf[end + 4..].to_vec(),
    })
}

/// Upgrades and says Hello; returns the socket once the Welcome has arrived.
async fn welcomed(addr: SocketAddr) -> Frames<TcpStream> {
    let mut ws = upgrade(addr, "").await.expect("upgraded");
    ws.read.write_all(&hello()).await.expect("send hello");
    let (opcode, payload) = ws.next().await.expect("welcome");
    assert_eq!(opcode, OP_BINARY);
    let welcome = decode::<FrontMsg>(&payload, usize::MAX).expect("decodes");
    assert!(matches!(welcome, FrontMsg::Welcome(_)), "{welcome:?}");
    ws
}

fn front_addr(cluster: &TestCluster) -> SocketAddr {
    cluster.fronts[0].local_addr()
}

fn spec(limits: Limits) -> ClusterSpec {
    ClusterSpec {
        limits,
        ..ClusterSpec::default()
    }
}

/// A client flooding inputs as fast as its socket takes them is told `rate_limited`,
/// then closed with 1008 once it has kept on for `client_flood_close_ms`; meanwhile an
/// honest client in the same channel gets every patch and its inputs are applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_is_told_then_closed_and_an_honest_one_misses_nothing() {
    let cluster = TestCluster::start(spec(Limits {
        client_flood_close_ms: 1_000,
        ..Limits::default()
    }))
    .await;
    let addr = front_addr(&cluster);
    let mut honest = cluster.connect(0).await;
    join(&mut honest, "arena", b"").await;
    // Once the honest player moves, every tick changes the state and makes a patch.
    let first = honest
        .send_input("arena", &steer(0.1))
        .await
        .expect("input");
    within("the first input's ack", async {
        while honest.ack("arena") < first {
            honest.next_event().await.expect("event");
        }
    })
    .await;

    let mut flooder = welcomed(addr).await;
    let join_arena = message(&ClientMsg::Join(Join {
        channel: "arena".into(),
        data: Bytes::new(),
        seat: None,
    }));
    flooder.read.write_all(&join_arena).await.expect("join");
    let batch: Vec<u8> = (1..=1_000)
        .flat_map(|seq| {
            message(&ClientMsg::Input(Input {
                channel: "arena".into(),
                seq: Seq(seq),
                data: steer(if seq % 2 == 0 { 0.1 } else { -0.1 }),
            }))
        })
        .collect();
    let Frames { read, buf } = flooder;
    let (read, mut write) = read.into_split();
    let flood = tokio::spawn(async move {
        let mut sent = 0u64;
        while write.write_all(&batch).await.is_ok() {
            sent += 1_000;
        }
        sent
    });
    let told = tokio::spawn(async move { Frames { read, buf }.close().await });

    // Two seconds of the honest client's view: an input every 50 ms, every patch.
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut input_every = tokio::time::interval(Duration::from_millis(50));
    let (mut ticks, mut last_seq, mut dx) = (Vec::new(), first, 0.1);
    while tokio::time::Instant::now() < until {
        tokio::select! {
            _ = input_every.tick() => {
                dx = -dx;
                last_seq = honest.send_input("arena", &steer(dx)).await.expect("input");
            }
            event = within("an event", honest.next_event()) => match event.expect("event") {
                Event::Patch { tick, .. } => ticks.push(tick.0),
                Event::State { .. } => panic!("the honest client fell behind (a resync)"),
                Event::Error { code, message } => panic!("the honest client got {code}: {message}"),
                Event::Closed { reason } => panic!("the honest client was closed: {reason}"),
                _ => {}
            },
        }
    }
    let (code, reason, errors) = within("the flooder's close", told).await.expect("reader");
    assert_eq!(
        (code, reason.as_str()),
        (1008, "rate_limited"),
        "{errors:?}"
    );
    assert!(
        errors.iter().filter(|c| *c == "rate_limited").count() >= 2,
        "told, then closed: {errors:?}"
    );
    let sent = within("the flood ends", flood).await.expect("writer");
    assert!(sent >= 2_000, "only {sent} inputs sent: not a flood");

    assert!(ticks.len() >= 30, "{} patches in 2 s at 20 Hz", ticks.len());
    for pair in ticks.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "a patch was missed: {ticks:?}");
    }
    // The honest inputs are applied: the ack catches up with the last one.
    within("the last input's ack", async {
        while honest.ack("arena") < last_seq {
            honest.next_event().await.expect("event");
        }
    })
    .await;
    cluster.stop().await;
}

/// A message in endless empty continuation frames is closed at the fragment limit.
#[tokio::test]
async fn endless_empty_continuations_are_closed() {
    let cluster = TestCluster::start(ClusterSpec::default()).await;
    let mut ws = welcomed(front_addr(&cluster)).await;
    let mut frames = frame(OP_BINARY, false, b"");
    for _ in 0..100 {
        frames.extend(frame(OP_CONTINUATION, false, b""));
    }
    // The front may close before it has read them all.
    let _ = ws.read.write_all(&frames).await;
    let (code, reason, errors) = ws.close().await;
    assert_eq!((code, reason.as_str()), (1008, "too_many_fragments"));
    assert_eq!(errors, ["too_many_fragments"]);
    cluster.stop().await;
}

/// Before its Hello, a client's frame may claim at most `hello_max_bytes`: a larger
/// one is refused from its header alone, with none of its payload sent.
#[tokio::test]
async fn a_large_frame_before_the_hello_is_refused_from_its_header() {
    let cluster = TestCluster::start(ClusterSpec::default()).await;
    let addr = front_addr(&cluster);
    for claimed in [4_097u64, 1 << 20, u64::MAX >> 1] {
        let mut ws = upgrade(addr, "").await.expect("upgraded");
        let mut header = vec![0x80 | OP_BINARY, 0x80 | 127];
        header.extend_from_slice(&claimed.to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        ws.read.write_all(&header).await.expect("send the header");
        let (code, reason, errors) = ws.close().await;
        assert_eq!((code, reason.as_str()), (1009, "too_large"), "{claimed}");
        assert_eq!(errors, ["too_large"]);
    }
    // A Hello within the limit is welcome, and a message over it is fine after it.
    let mut ws = welcomed(addr).await;
    let ping = ClientMsg::Ping(centrum_protocol::Ping { nonce: 7 });
    let mut big = centrum_protocol::encode(&ping);
    big.resize(8_000, 0);
    ws.read
        .write_all(&frame(OP_BINARY, true, &big))
        .await
        .expect("send");
    // Trailing bytes make it malformed, which proves it was read whole.
    let (code, reason, _) = ws.close().await;
    assert_eq!((code, reason.as_str()), (1007, "malformed"));
    cluster.stop().await;
}

/// A client in no channel that sends nothing for `client_idle_ms` is closed (1000,
/// `idle`); one that watches a channel is not.
#[tokio::test]
async fn an_idle_client_is_closed_and_a_watching_one_is_not() {
    let cluster = TestCluster::start(spec(Limits {
        client_idle_ms: 300,
        ..Limits::default()
    }))
    .await;
    let mut idle = cluster.connect(0).await;
    let mut watcher = cluster.connect(0).await;
    join(&mut watcher, "arena", b"").await;
    let started = tokio::time::Instant::now();
    let mut told = false;
    let reason = within("the idle close", async {
        loop {
            match idle.next_event().await {
                Ok(Event::Error { code, .. }) if code == "idle" => told = true,
                Ok(Event::Closed { reason }) => return reason,
                Ok(other) => panic!("{other:?}"),
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await;
    let after = started.elapsed();
    assert!(told, "an Error with code idle comes first");
    assert!(
        reason.contains("code 1000") && reason.contains("idle"),
        "{reason}"
    );
    assert!(
        after >= Duration::from_millis(200) && after < Duration::from_secs(3),
        "closed after {after:?}"
    );
    // The watcher, silent three times as long, is still connected.
    let until = started + Duration::from_secs(1);
    while let Ok(event) = tokio::time::timeout_at(until, watcher.next_event()).await {
        if let Event::Closed { reason } = event.expect("event") {
            panic!("the watcher was closed: {reason}");
        }
    }
    watcher.ping().await.expect("ping");
    within("the pong", async {
        loop {
            match watcher.next_event().await.expect("event") {
                Event::Pong { .. } => return,
                Event::Closed { reason } => panic!("the watcher was closed: {reason}"),
                _ => {}
            }
        }
    })
    .await;
    cluster.stop().await;
}

/// `max_connections_per_ip` connections from one address are served; the next is
/// refused with 429 until one of them closes.
#[tokio::test]
async fn connections_per_address_are_capped() {
    let cluster = TestCluster::start(spec(Limits {
        max_connections_per_ip: 2,
        connections_per_ip_per_s: 0,
        ..Limits::default()
    }))
    .await;
    let addr = front_addr(&cluster);
    let first = cluster.connect(0).await;
    let second = upgrade(addr, "").await.expect("the second");
    assert_eq!(upgrade(addr, "").await.err(), Some(429));
    let refused = centrum_client::Client::connect(
        &cluster.front_url(0),
        centrum_client::ClientOptions::default(),
    )
    .await;
    assert!(refused.is_err(), "the client library sees the refusal too");
    first.close().await.expect("close");
    // The front frees the place once it has seen the close.
    let third = within("a place again", async {
        loop {
            if let Ok(ws) = upgrade(addr, "").await {
                return ws;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Closed, so that the front need not wait out their handshakes to stop.
    drop((second, third));
    cluster.stop().await;
}

/// New connections from one address beyond `connections_per_ip_burst` at once, and
/// `connections_per_ip_per_s` after, are refused with 429 and `Retry-After`.
#[tokio::test]
async fn new_connections_per_address_are_rate_limited() {
    let cluster = TestCluster::start(spec(Limits {
        max_connections_per_ip: 0,
        connections_per_ip_per_s: 1,
        connections_per_ip_burst: 3,
        ..Limits::default()
    }))
    .await;
    let addr = front_addr(&cluster);
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(upgrade(addr, "").await.expect("within the burst"));
    }
    let mut conn = centrum_tests::http::Connection::open(addr).await;
    let response = conn.response().await;
    assert_eq!(response.status, 429);
    assert_eq!(response.header("retry-after"), Some("1"));
    assert!(response.error().contains("new connections per second"));
    drop((open, conn));
    cluster.stop().await;
}

/// From a trusted proxy, the client is the address its `X-Forwarded-For` names; from
/// any other peer the header is ignored.
#[tokio::test]
async fn forwarded_for_counts_from_trusted_proxies_only() {
    let limits = Limits {
        max_connections_per_ip: 1,
        connections_per_ip_per_s: 0,
        ..Limits::default()
    };
    let behind_proxy = TestCluster::start(ClusterSpec {
        limits,
        access: AccessConfig {
            trusted_proxies: vec!["127.0.0.1".parse().expect("ip")],
            allowed_origins: Vec::new(),
        },
        ..ClusterSpec::default()
    })
    .await;
    let addr = front_addr(&behind_proxy);
    let a = "X-Forwarded-For: 198.51.100.1\r\n";
    let b = "X-Forwarded-For: 6.6.6.6, 198.51.100.2\r\n";
    let client_a = upgrade(addr, a).await.expect("client a");
    assert_eq!(upgrade(addr, a).await.err(), Some(429), "a second a");
    let client_b = upgrade(addr, b).await.expect("client b: another address");
    // The proxy's own connections count as its address.
    let proxy = upgrade(addr, "").await.expect("the proxy itself");
    drop((client_a, client_b, proxy));
    behind_proxy.stop().await;

    let direct = TestCluster::start(ClusterSpec {
        limits,
        access: AccessConfig {
            trusted_proxies: vec!["10.0.0.0/8".parse().expect("network")],
            allowed_origins: Vec::new(),
        },
        ..ClusterSpec::default()
    })
    .await;
    let addr = front_addr(&direct);
    let client_a = upgrade(addr, a).await.expect("client a");
    assert_eq!(
        upgrade(addr, b).await.err(),
        Some(429),
        "both are 127.0.0.1: an untrusted peer's header is ignored"
    );
    drop(client_a);
    direct.stop().await;
}

/// With `allowed_origins`, an upgrade from another origin gets 403; one without an
/// Origin header (not a browser) is served.
#[tokio::test]
async fn an_origin_not_allowed_gets_403() {
    let cluster = TestCluster::start(ClusterSpec {
        access: AccessConfig {
            trusted_proxies: Vec::new(),
            allowed_origins: vec!["https://game.example.com".into()],
        },
        ..ClusterSpec::default()
    })
    .await;
    let addr = front_addr(&cluster);
    assert_eq!(
        upgrade(addr, "Origin: https://evil.example\r\n")
            .await
            .err(),
        Some(403)
    );
    let allowed = upgrade(addr, "Origin: https://GAME.example.com\r\n").await;
    assert!(allowed.is_ok());
    drop(allowed);
    let mut ws = upgrade(addr, "").await.expect("no Origin");
    ws.read.write_all(&hello()).await.expect("hello");
    assert!(matches!(
        ws.next()
            .await
            .map(|(_, p)| decode::<FrontMsg>(&p, usize::MAX)),
        Some(Ok(FrontMsg::Welcome(_)))
    ));
    cluster.stop().await;
}
