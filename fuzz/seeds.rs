//! Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/seed-*): real
//! messages, frames, requests, configs and tokens, made with the crates' own encoders.
//! Run from the repository root: `cargo +nightly run --manifest-path fuzz/Cargo.toml
//! --example seeds`. Files it writes are named by content, so a rerun changes nothing.

use std::fs;
use std::path::Path;

use bytes::Bytes;
use centrum_config::DEFAULT_TOML;
use centrum_protocol::*;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("fuzz/corpus").join(target);
    fs::create_dir_all(&dir).expect("fuzz/corpus is writable (run from the repository root)");
    fs::write(dir.join(format!("seed-{name}")), bytes).expect("a seed file");
}

/// A few ticks of a small channel: the full state after the first, then each patch,
/// as a client receives them (shared prefix, then body).
fn channel_messages() -> Vec<Vec<u8>> {
    let schema = Schema::new()
        .kind_with(
            "player",
            vec![
                FieldDef::fixed("x", 1000),
                FieldDef::fixed("y", 1000),
                FieldDef::new("name", FieldType::Str),
                FieldDef::new("seq", FieldType::Uint),
            ],
        )
        .kind_plain(
            "shot",
            &[
                ("v", FieldType::F32),
                ("w", FieldType::F64),
                ("t", FieldType::Int),
                ("alive", FieldType::Bool),
                ("b", FieldType::Bytes),
            ],
        );
    let mut state = State::new(schema);
    let a = state.spawn_kind(0).expect("kind 0");
    state.set_number(a, 0, 0.5).expect("fixed x");
    state
        .set_value(a, 2, Value::Str("ann".into()))
        .expect("str name");
    let b = state.spawn_kind(1).expect("kind 1");
    state
        .set_value(b, 4, Value::Bytes(vec![1, 2, 3]))
        .expect("bytes");
    state.commit();
    let mut out = Vec::new();
    let mut msg = SharedPrefix::new(SharedKind::State, Seq(0))
        .as_bytes()
        .to_vec();
    state.encode_full("arena", Tick(41), &mut msg);
    out.push(msg);
    for tick in 42..46u32 {
        match tick {
            42 => {
                state.set_number(a, 1, -0.25).expect("fixed y");
                state.set_value(a, 3, Value::Uint(1)).expect("uint");
            }
            43 => {
                state.remove(b);
                state.spawn_kind(1).expect("kind 1");
            }
            44 => {
                state.set_value(a, 2, Value::Str("bo".into())).expect("str");
                state.set_number(a, 0, 1e6).expect("fixed x");
            }
            _ => {
                let c = state.spawn_kind(0).expect("kind 0");
                state.set_value(c, 3, Value::Uint(u64::MAX)).expect("uint");
            }
        }
        let mut msg = SharedPrefix::new(SharedKind::Patch, Seq(tick - 41))
            .as_bytes()
            .to_vec();
        state.commit_patch("arena", Tick(tick), &mut msg);
        out.push(msg);
    }
    let mut empty = SharedPrefix::new(SharedKind::Patch, Seq(9))
        .as_bytes()
        .to_vec();
    encode_empty_patch("arena", Tick(46), &mut empty);
    out.push(empty);
    out
}

fn client_msgs() -> Vec<Vec<u8>> {
    let mut out = vec![
        encode(&ClientMsg::Hello(Hello {
            version: PROTOCOL_VERSION,
            token: String::new(),
            resume: None,
        })),
        encode(&ClientMsg::Hello(Hello {
            version: PROTOCOL_VERSION,
            token: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.c2ln".into(),
            resume: Some("front-1.2a.9f3c51e07d2a4c81.front-1-42".into()),
        })),
        encode(&ClientMsg::Join(Join {
            channel: "arena".into(),
            data: Bytes::from_static(b"\x81\xa4name\xa3ann"),
            seat: None,
        })),
        encode(&ClientMsg::Join(Join {
            channel: "match.k3x9q2m7p4za.back-1".into(),
            data: Bytes::new(),
            seat: Some("match.k3x9q2m7p4za.back-1:1:1796000000000:00".into()),
        })),
        encode(&ClientMsg::Leave(Leave {
            channel: "arena".into(),
        })),
        encode(&ClientMsg::Input(Input {
            channel: "arena".into(),
            seq: Seq(7),
            data: Bytes::from_static(b"\x82\xa2dx\xca\x3e\x80\x00\x00\xa2dy\xca\xbe\x80\x00\x00"),
        })),
        encode(&ClientMsg::Ping(Ping { nonce: u64::MAX })),
        encode(&FrontMsg::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            session: "front-1-42".into(),
            resume: "front-1.2a.9f3c51e07d2a4c81.front-1-42".into(),
            front: "front-1".into(),
            resumed: true,
        })),
        encode(&FrontMsg::Rejected(Rejected {
            channel: "arena".into(),
            reason: "full".into(),
        })),
        encode(&FrontMsg::Left(Left {
            channel: "arena".into(),
            reason: "kicked".into(),
        })),
        encode(&FrontMsg::Unavailable(Unavailable {
            channel: "arena".into(),
        })),
        encode(&FrontMsg::Error(ErrorMsg {
            code: "malformed".into(),
            message: "what".into(),
        })),
        encode(&FrontMsg::Pong(Pong { nonce: 3 })),
        encode(&FrontMsg::Message(MessageMsg {
            channel: "tag".into(),
            tick: Tick(42),
            data: Bytes::from_static(b"\x81\xa9tagged_by\xa3ann"),
        })),
    ];
    out.extend(channel_messages());
    out
}

fn link_msgs() -> Vec<Vec<u8>> {
    let body = channel_messages().remove(0);
    vec![
        encode(&FrontToBack::Hello(LinkHello {
            version: CLUSTER_VERSION,
            front: "front-1".into(),
            instance: 0x1234_5678_9abc,
            nonce: Bytes::from(vec![7; NONCE_BYTES]),
        })),
        encode(&FrontToBack::Auth(LinkAuth {
            proof: Bytes::from(vec![0xa5; 32]),
        })),
        encode(&FrontToBack::Sessions(LinkSessions {
            sessions: vec![LinkSession {
                session: 3,
                channel: "arena".into(),
                data: Bytes::from_static(b"\xc0"),
                secret: 0xfeed,
                identity: None,
            }],
        })),
        encode(&FrontToBack::Join(LinkJoin {
            session: 4,
            channel: "arena".into(),
            data: Bytes::from_static(b"j"),
            secret: u64::MAX,
            identity: Some(Identity::new("ann").with_claim("name", "Ann")),
            resume: Some(LinkResume {
                front: "front-2".into(),
                session: 3,
                secret: 0xfeed,
            }),
            seat: Some("match.k3x9q2m7p4za.back-1:1:1796000000000:00".into()),
        })),
        encode(&FrontToBack::Leave(LinkLeave {
            session: 4,
            channel: 0,
        })),
        encode(&FrontToBack::Input(LinkInput {
            session: 4,
            channel: 1,
            seq: Seq(9),
            data: Bytes::from_static(b"\x91\x01"),
        })),
        encode(&FrontToBack::Resync(LinkResync {
            channel: 0,
            sessions: vec![1, 2, u64::MAX],
        })),
        encode(&FrontToBack::Away(LinkAway {
            session: 4,
            channel: 0,
        })),
        encode(&FrontToBack::Call(LinkCall {
            call: 9,
            channel: 1,
            data: Bytes::from_static(b"\xc0"),
        })),
        encode(&FrontToBack::Heartbeat(LinkHeartbeat { sent_ms: 1500 })),
        encode(&BackToFront::Welcome(LinkWelcome {
            version: CLUSTER_VERSION,
            back: "back-1".into(),
            channels: vec!["arena".into(), "lobby".into()],
        })),
        encode(&BackToFront::Refused(LinkRefused {
            reason: "version".into(),
        })),
        encode(&BackToFront::State(LinkState {
            channel: 0,
            tick: Tick(41),
            sessions: vec![(3, Seq(0)), (4, Seq(2))],
            body: Bytes::from(body[3..].to_vec()),
        })),
        encode(&BackToFront::Patch(LinkPatch {
            channel: 1,
            tick: Tick(9),
            changed: true,
            acks: vec![(3, Seq(4))],
            body: Bytes::from_static(b"\xa5arena\x09\x90\x90\x90"),
        })),
        encode(&BackToFront::JoinRejected(LinkJoinRejected {
            session: 3,
            channel: "arena".into(),
            reason: "full".into(),
        })),
        encode(&BackToFront::Opened(LinkOpened {
            channel: 70_000,
            name: "match.k3x9q2m7p4za.back-1".into(),
        })),
        encode(&BackToFront::Closed(LinkClosed {
            channel: 70_000,
            reason: "disposed".into(),
        })),
        encode(&BackToFront::Notice(LinkNotice {
            session: 3,
            code: "overloaded".into(),
            message: "input dropped".into(),
        })),
        encode(&BackToFront::Evicted(LinkEvicted {
            session: 3,
            channel: 0,
            reason: "resumed".into(),
        })),
        encode(&BackToFront::Message(LinkMessage {
            channel: 0,
            to: Some(vec![3, 4]),
            body: Bytes::from_static(b"m"),
        })),
        encode(&BackToFront::Message(LinkMessage {
            channel: 0,
            to: None,
            body: Bytes::from_static(b"m"),
        })),
        encode(&BackToFront::Reply(LinkReply {
            call: 9,
            outcome: CallOutcome::BadCall,
            message: "no".into(),
            data: Bytes::new(),
        })),
        encode(&BackToFront::Heartbeat(LinkHeartbeat { sent_ms: 0 })),
        encode(&BackToFront::Challenge(LinkChallenge {
            back: "back-1".into(),
            nonce: Bytes::from(vec![9; NONCE_BYTES]),
            proof: Bytes::from(vec![0x5a; 32]),
        })),
    ]
}

fn node_msgs() -> Vec<Vec<u8>> {
    vec![
        encode(&NodeToMaster::Register(Register {
            version: CLUSTER_VERSION,
            role: Role::Front,
            id: "front-1".into(),
            pid: 4242,
            listen: "127.0.0.1:7310".into(),
            nonce: Bytes::from(vec![1; NONCE_BYTES]),
        })),
        encode(&NodeToMaster::Register(Register {
            version: CLUSTER_VERSION,
            role: Role::Back,
            id: "back-1".into(),
            pid: 7,
            listen: "[::1]:7320".into(),
            nonce: Bytes::new(),
        })),
        encode(&NodeToMaster::Heartbeat(Heartbeat {
            stats: NodeStats {
                clients: 3,
                links: 1,
                channels: vec![ChannelStats {
                    name: "arena".into(),
                    app: "arena".into(),
                    clients: 3,
                    entities: 10,
                    tick: 99,
                    tick_hz: 20,
                    tick_us_avg: 120,
                    tick_us_max: 900,
                    overruns: 0,
                }],
                metrics: vec![Metric {
                    name: "centrum_front_clients".into(),
                    help: "clients".into(),
                    kind: MetricKind::Gauge,
                    labels: vec![("channel".into(), "arena".into())],
                    value: 3.5,
                }],
            },
        })),
        encode(&NodeToMaster::Heartbeat(Heartbeat {
            stats: NodeStats::default(),
        })),
        encode(&MasterToNode::Registered(Registered {
            master: "127.0.0.1:7301".into(),
        })),
        encode(&MasterToNode::Refused(Refused {
            reason: "a live back-1 is registered".into(),
            retry: true,
        })),
        encode(&MasterToNode::Challenge(Challenge {
            nonce: Bytes::from(vec![2; NONCE_BYTES]),
            proof: Bytes::from(vec![3; 32]),
        })),
        encode(&NodeToMaster::Prove(Prove {
            proof: Bytes::from(vec![4; 32]),
        })),
        encode(&MasterToNode::CreateRoom(CreateRoom {
            request: 7,
            room: "match.k3x9q2m7p4za.back-1".into(),
            kind: "match".into(),
            options: Bytes::from_static(b"\x81\xa5label\xa3fun"),
        })),
        encode(&NodeToMaster::RoomCreated(RoomCreated {
            request: 7,
            error: Some(("bad_options".into(), "no".into())),
            metadata: Bytes::new(),
        })),
        encode(&NodeToMaster::RoomCreated(RoomCreated {
            request: 8,
            error: None,
            metadata: Bytes::from_static(b"\x81\xa5label\xa3fun"),
        })),
        encode(&NodeToMaster::Rooms(RoomsReport {
            rooms: vec![RoomReport {
                id: "match.k3x9q2m7p4za.back-1".into(),
                kind: "match".into(),
                clients: 2,
                max_clients: 8,
                metadata: Bytes::from_static(b"\x81\xa5label\xa3fun"),
                locked: true,
                seats_taken: vec![1, u64::MAX],
            }],
            gone: vec!["match.gone.back-1".into()],
        })),
    ]
}

/// Length-prefixed frames, as on a link.
fn framed(msgs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in msgs {
        out.extend_from_slice(&(m.len() as u32).to_be_bytes());
        out.extend_from_slice(m);
    }
    out
}

/// A masked client frame.
fn ws_frame(fin: bool, opcode: u8, payload: &[u8], long: bool) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
    if long {
        f.push(0x80 | 127);
        f.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    } else if payload.len() < 126 {
        f.push(0x80 | payload.len() as u8);
    } else {
        f.push(0x80 | 126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    f
}

/// Deterministic filler for the targets whose input is read through `arbitrary`.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn main() {
    for (i, m) in client_msgs().iter().enumerate() {
        write("client_msg", &format!("{i:02}"), m);
    }

    let links = link_msgs();
    for (i, m) in links.iter().enumerate() {
        write("link_frame", &format!("msg-{i:02}"), m);
    }
    // [limit, chunking, chunk sizes..., frames...]: a 1 KiB frame limit, various reads.
    let mut stream = vec![255, 0];
    stream.extend(framed(&links[..10]));
    write("link_frame", "stream-whole", &stream);
    let mut stream = vec![255, 3, 0, 6, 200];
    stream.extend(framed(&links[10..]));
    write("link_frame", "stream-chunked", &stream);
    let mut stream = vec![2, 0];
    stream.extend(framed(&links[..2]));
    write("link_frame", "stream-oversized", &stream);

    for (i, m) in node_msgs().iter().enumerate() {
        write("node_frame", &format!("{i:02}"), m);
    }

    let mut stream = Vec::new();
    for m in channel_messages() {
        stream.extend_from_slice(&(m.len() as u16).to_be_bytes());
        stream.extend_from_slice(&m);
    }
    write("mirror", "channel", &stream);
    for (i, m) in channel_messages().iter().enumerate() {
        let mut one = (m.len() as u16).to_be_bytes().to_vec();
        one.extend_from_slice(m);
        write("mirror", &format!("msg-{i}"), &one);
    }
    for (i, len) in [32, 96, 256, 512, 1024, 2048].into_iter().enumerate() {
        write("mirror_ops", &format!("{i}"), &noise(i as u64 + 1, len));
        write(
            "store_records",
            &format!("{i}"),
            &noise(i as u64 + 100, len),
        );
    }

    let hello = &client_msgs()[0];
    // [limit, chunking, budget, chunk sizes..., frames...]
    let mut ws = vec![0, 0, 0];
    ws.extend(ws_frame(true, 0x2, hello, false));
    ws.extend(ws_frame(true, 0x9, b"ping", false));
    ws.extend(ws_frame(false, 0x2, &hello[..2], false));
    ws.extend(ws_frame(true, 0xA, b"", false));
    ws.extend(ws_frame(true, 0x0, &hello[2..], false));
    ws.extend(ws_frame(true, 0x1, b"text", false));
    ws.extend(ws_frame(true, 0x8, &[0x03, 0xe8], false));
    write("ws_frames", "session", &ws);
    let mut ws = vec![40, 5, 0, 0, 1, 63];
    ws.extend(ws_frame(true, 0x2, &[7; 300], false));
    ws.extend(ws_frame(true, 0x2, &[8; 200], true));
    write("ws_frames", "long-lengths-chunked", &ws);
    let mut ws = vec![0, 0, 0];
    ws.extend(ws_frame(true, 0x2, &[1; 100], false)[..6].to_vec());
    ws.extend_from_slice(&[0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0]);
    write("ws_frames", "too-large", &ws);
    let mut ws = vec![0, 0, 0x22];
    ws.extend(ws_frame(false, 0x2, &[1; 40], false));
    ws.extend(ws_frame(false, 0x0, &[2; 40], false));
    ws.extend(ws_frame(true, 0x0, &[3; 40], false));
    write("ws_frames", "fragments", &ws);
    write("ws_frames", "unmasked", &[0, 0, 0, 0x82, 0x01, 0x00]);
    // Frames past a burst of 2 frames are dropped, with the message they belong to.
    let mut ws = vec![0, 0, 0x10];
    for _ in 0..4 {
        ws.extend(ws_frame(true, 0x2, hello, false));
    }
    write("ws_frames", "over-budget", &ws);

    let upgrade = "GET /anything HTTP/1.1\r\nHost: play.example.com\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let requests: [&[u8]; 8] = [
        upgrade.as_bytes(),
        b"POST /v1/channels/arena/call HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nContent-Type: application/msgpack\r\nContent-Length: 1\r\n\r\n\xc0",
        b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
        b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: k\r\n\r\n",
        b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
        b"GET / HTTP/1.1\r\nHost:",
        b"POST /v1/channels/a/call HTTP/1.1\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    for (i, r) in requests.iter().enumerate() {
        write("http_request", &format!("{i}"), r);
    }
    let many: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
    write(
        "http_request",
        "many-headers",
        format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes(),
    );

    write("config", "default", DEFAULT_TOML.as_bytes());
    let uncommented: String = DEFAULT_TOML
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .filter(|l| !l.starts_with('#') && !l.starts_with(' '))
        .map(|l| format!("{l}\n"))
        .collect();
    write("config", "uncommented", uncommented.as_bytes());
    let tag = fs::read("examples/tag/tag.toml").expect("examples/tag/tag.toml");
    write("config", "tag", &tag);
    let two = "[master]\nhttp = \"127.0.0.1:0\"\nnodes = \"127.0.0.1:0\"\nadmin_token = \"an-admin-token-long-enough\"\n\n[[fronts]]\nid = \"f1\"\nlisten = \"127.0.0.1:0\"\npublic_url = \"wss://x.example/f1\"\n\n[[fronts]]\nid = \"f2\"\nhost = \"10.0.0.2\"\nlisten = \"10.0.0.2:7310\"\n\n[[backs]]\nid = \"b1\"\nlisten = \"127.0.0.1:0\"\ntick_hz = 60\nchannels = [{ name = \"arena\", app = \"arena\" }, { name = \"lobby\", app = \"chat\" }]\ndata_dir = \"/var/lib/centrum/b1\"\n\n[store]\nkind = \"memory\"\n\n[calls]\nserver_key = \"a-server-key-long-enough\"\n\n[cluster]\nsecret = \"a-cluster-secret-long-enough\"\nsecret_env = \"CENTRUM_FUZZ_NEVER_SET\"\n\n[limits]\nmax_message_bytes = 1024\nslow_client = \"disconnect\"\n";
    write("config", "two-fronts", two.as_bytes());

    // [mode, ...]: even modes a token as sent (and `pattern\0name` for the channel
    // matcher), odd modes claims the target signs with its key.
    let signed_elsewhere = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": "ann", "exp": 4_102_444_800u64, "iss": "issuer", "aud": "centrum"}),
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-another-secret-32"),
    )
    .expect("HMAC signs anything");
    let jwts: [(u8, &str); 9] = [
        (0, ""),
        (0, &signed_elsewhere),
        (0, "match-*\0match-12"),
        (2, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbm4ifQ."),
        (
            1,
            r#"{"sub":"ann","exp":4102444800,"iss":"issuer","aud":"centrum","name":"Ann","team":"red","rooms":["arena","match-*"]}"#,
        ),
        (
            5,
            r#"{"sub":"bo","exp":4102444800,"iss":"issuer","aud":["centrum","x"],"nbf":0}"#,
        ),
        (1, r#"{"sub":"ann","exp":1,"iss":"issuer","aud":"centrum"}"#),
        (
            1,
            r#"{"sub":7,"exp":4102444800,"iss":"other","aud":"centrum","rooms":"arena"}"#,
        ),
        (
            1,
            r#"{"exp":4102444800,"iss":"issuer","aud":"centrum","nbf":4102444800}"#,
        ),
    ];
    for (i, (mode, text)) in jwts.iter().enumerate() {
        let mut seed = vec![*mode];
        seed.extend_from_slice(text.as_bytes());
        write("jwt", &format!("{i}"), &seed);
    }

    for (i, t) in [
        "front-1.2a.9f3c51e07d2a4c81.front-1-42",
        "front_2.0.0000000000000000.s",
        "a.FFFFFFFFFFFFFFFF.ffffffffffffffff.b",
        "front-1.2a.9f3c51e07d2a4c81",
    ]
    .iter()
    .enumerate()
    {
        write("resume_token", &format!("{i}"), t.as_bytes());
    }
    // Seat tokens signed with the target's secret, and text that is almost one.
    let key = centrum_net::auth::ClusterKey::new(b"the fuzzed cluster's secret");
    let seats = [
        ("match.k3x9q2m7p4za.back-1", 1, 1_796_000_000_000),
        ("", 0, 0),
        ("duel.a.b", u64::MAX, u64::MAX),
    ];
    for (i, (room, number, expires_ms)) in seats.into_iter().enumerate() {
        let seat = centrum_net::seat::Seat {
            room: room.into(),
            number,
            expires_ms,
        };
        write("seat_token", &format!("{i}"), seat.token(&key).as_bytes());
    }
    write("seat_token", "3", b"room:1:2:00112233445566778899aabbccddeeff");
}
