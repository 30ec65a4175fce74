//! The client against a fake front (tokio-tungstenite on 127.0.0.1:0, sending states
//! and patches built the way the real front builds them: a per-client prefix and a
//! body encoded by `centrum_protocol::State`) and a fake gate (raw HTTP/1.1).

use std::future::Future;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use centrum_protocol::{
    ClientMsg, EntityId, ErrorMsg, FieldDef, FieldType, FrontMsg, Hello, Input, Join, Leave, Left,
    PROTOCOL_VERSION, PatchMsg, Pong, Rejected, Schema, Seq, SharedKind, SharedPrefix, State, Tick,
    Unavailable, Value, Welcome, WireValue, decode, encode,
};

use crate::{Client, ClientError, ClientOptions, Event};

/// Bounds every network await; far above anything a passing test needs.
const WAIT: Duration = Duration::from_secs(5);

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} timed out"))
}

/// The server side of one fake-front connection.
struct Peer {
    ws: WebSocketStream<TcpStream>,
}

impl Peer {
    async fn recv(&mut self) -> ClientMsg {
        loop {
            match within("a client message", self.ws.next()).await {
                Some(Ok(Message::Binary(bytes))) => {
                    return decode(&bytes, usize::MAX).expect("the client sends valid messages");
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected a client message, got {other:?}"),
            }
        }
    }

    async fn send(&mut self, msg: FrontMsg) {
        self.send_bytes(encode(&msg)).await;
    }

    async fn send_bytes(&mut self, bytes: Vec<u8>) {
        within("send", self.ws.send(Message::Binary(bytes.into())))
            .await
            .expect("send to the client");
    }

    /// Expects the hello and answers with a welcome from `front-1`.
    async fn welcome(&mut self) -> Hello {
        let ClientMsg::Hello(hello) = self.recv().await else {
            panic!("expected Hello first")
        };
        self.send(FrontMsg::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            session: "front-1-7".into(),
            resume: "resume-7".into(),
            front: "front-1".into(),
        }))
        .await;
        hello
    }

    async fn expect_join(&mut self, channel: &str) -> Join {
        match self.recv().await {
            ClientMsg::Join(join) if join.channel == channel => join,
            other => panic!("expected a join of {channel:?}, got {other:?}"),
        }
    }

    async fn expect_input(&mut self) -> Input {
        match self.recv().await {
            ClientMsg::Input(input) => input,
            other => panic!("expected an input, got {other:?}"),
        }
    }

    /// Expects the client's close handshake and nothing before it.
    async fn expect_close(mut self) {
        loop {
            match within("the client's close", self.ws.next()).await {
                Some(Ok(Message::Close(_))) => break,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected the client to close, got {other:?}"),
            }
        }
        // Polling to the end sends tungstenite's answering close frame.
        while let Some(Ok(_)) = within("the close reply", self.ws.next()).await {}
    }

    /// Closes from the server side, as the real front does after a fatal error.
    async fn close(mut self, code: CloseCode, reason: &str) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        within("server close", self.ws.close(Some(frame)))
            .await
            .expect("close");
        while let Some(Ok(_)) = within("the client's close reply", self.ws.next()).await {}
    }
}

/// A fake front that accepts one connection and runs `script` on it. Await the
/// returned task with [`finish`] so that the script's assertions count.
async fn fake_front<F, Fut>(script: F) -> (String, JoinHandle<()>)
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}", listener.local_addr().expect("local addr"));
    let task = tokio::spawn(async move {
        let (stream, _) = within("accept", listener.accept()).await.expect("accept");
        let ws = within("upgrade", tokio_tungstenite::accept_async(stream))
            .await
            .expect("upgrade");
        script(Peer { ws }).await;
    });
    (url, task)
}

async fn finish<T>(task: JoinHandle<T>) -> T {
    within("the fake server", task)
        .await
        .expect("the fake server's script passed")
}

/// A fake gate answering one connection per `(status, body)`, in order. The task
/// returns the request lines it saw.
async fn fake_gate(replies: Vec<(u16, String)>) -> (String, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr").to_string();
    let task = tokio::spawn(async move {
        let mut lines = Vec::new();
        for (status, body) in replies {
            let (mut stream, _) = within("accept", listener.accept()).await.expect("accept");
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                assert!(head.len() < 8192, "request head too long");
                let mut buf = [0; 1024];
                let n = within("request", stream.read(&mut buf))
                    .await
                    .expect("read");
                assert!(n > 0, "the client hung up mid-request");
                head.extend_from_slice(&buf[..n]);
            }
            let head = String::from_utf8(head).expect("ascii request");
            lines.push(head.lines().next().unwrap_or_default().to_owned());
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            within("response", stream.write_all(response.as_bytes()))
                .await
                .expect("write");
        }
        lines
    });
    (addr, task)
}

async fn connect(url: &str) -> Client {
    within("connect", Client::connect(url, ClientOptions::default()))
        .await
        .expect("connect")
}

async fn next(client: &mut Client) -> Result<Event, ClientError> {
    within("next event", client.next_event()).await
}

/// A world of players with a fixed-point `x` and a `name`; player `ada` is entity 0.
fn world() -> State {
    let schema = Schema::new().kind_with(
        "player",
        vec![
            FieldDef::fixed("x", 100),
            FieldDef::new("name", FieldType::Str),
        ],
    );
    let mut state = State::new(schema);
    let ada = state
        .spawn_with(0, vec![Value::Fixed(150), Value::Str("ada".into())])
        .expect("spawn");
    assert_eq!(ada, ADA);
    state
}

const ADA: EntityId = EntityId(0);

/// A full state as the front sends it: this client's prefix, then the shared body.
fn state_message(state: &State, channel: &str, tick: u32, ack: u32) -> Vec<u8> {
    let mut out = SharedPrefix::new(SharedKind::State, Seq(ack))
        .as_bytes()
        .to_vec();
    state.encode_full(channel, Tick(tick), &mut out);
    out
}

/// The changes since the last commit, as the front sends them.
fn patch_message(state: &mut State, channel: &str, tick: u32, ack: u32) -> Vec<u8> {
    let mut out = SharedPrefix::new(SharedKind::Patch, Seq(ack))
        .as_bytes()
        .to_vec();
    assert!(
        state.commit_patch(channel, Tick(tick), &mut out),
        "no changes"
    );
    out
}

fn x_of(client: &Client, channel: &str) -> Option<f64> {
    client.mirror(channel)?.number(ADA, "x")
}

#[tokio::test]
async fn hello_carries_version_and_token_and_welcome_names_session_and_front() {
    let (url, front) = fake_front(|mut peer| async move {
        let hello = peer.welcome().await;
        assert_eq!(
            hello,
            Hello {
                version: PROTOCOL_VERSION,
                token: "secret".into(),
                resume: None,
            }
        );
        peer.expect_close().await;
    })
    .await;
    let options = ClientOptions {
        token: "secret".into(),
        ..ClientOptions::default()
    };
    assert!(
        !format!("{options:?}").contains("secret"),
        "the token is not printed"
    );
    let client = within("connect", Client::connect(&url, options))
        .await
        .expect("connect");
    assert_eq!(client.session(), "front-1-7");
    assert_eq!(client.front(), "front-1");
    within("close", client.close()).await.expect("close");
    finish(front).await;
}

#[tokio::test]
async fn a_refused_version_is_a_handshake_error_with_the_servers_code() {
    let (url, front) = fake_front(|mut peer| async move {
        let _hello = peer.recv().await;
        peer.send(FrontMsg::Error(ErrorMsg {
            code: "version".into(),
            message: "protocol version 1 is not supported; this server speaks 2".into(),
        }))
        .await;
        peer.close(CloseCode::Protocol, "").await;
    })
    .await;
    match within("connect", Client::connect(&url, ClientOptions::default())).await {
        Err(ClientError::Handshake { code, message }) => {
            assert_eq!(code, "version");
            assert!(message.contains("not supported"), "{message}");
        }
        other => panic!("expected a handshake error, got {other:?}"),
    }
    finish(front).await;

    // A welcome for another version is refused by the client itself.
    let (url, front) = fake_front(|mut peer| async move {
        let _hello = peer.recv().await;
        peer.send(FrontMsg::Welcome(Welcome {
            version: PROTOCOL_VERSION + 1,
            session: "s".into(),
            resume: "r".into(),
            front: "f".into(),
        }))
        .await;
    })
    .await;
    match within("connect", Client::connect(&url, ClientOptions::default())).await {
        Err(ClientError::Handshake { code, .. }) => assert_eq!(code, "version"),
        other => panic!("expected a handshake error, got {other:?}"),
    }
    finish(front).await;
}

#[tokio::test]
async fn join_applies_the_state_and_patches_update_mirror_and_ack() {
    let (url, front) = fake_front(|mut peer| async move {
        peer.welcome().await;
        // An input before the join is refused; it does not count for the membership.
        assert_eq!(peer.expect_input().await.seq, Seq(1));
        peer.send(FrontMsg::Error(ErrorMsg {
            code: "not_joined".into(),
            message: "input for channel \"arena\", which this client has not joined".into(),
        }))
        .await;
        let join = peer.expect_join("arena").await;
        assert_eq!(&join.data[..], b"ada");
        let mut world = world();
        peer.send_bytes(state_message(&world, "arena", 10, 0)).await;
        world.commit();
        let input = peer.expect_input().await;
        assert_eq!((input.seq, &input.data[..]), (Seq(1), &b"right"[..]));
        world.set_number(ADA, 0, 2.5).expect("set");
        peer.send_bytes(patch_message(&mut world, "arena", 11, 1))
            .await;
        peer.expect_close().await;
    })
    .await;
    let mut client = connect(&url).await;
    assert_eq!(
        client.send_input("arena", b"early").await.expect("input"),
        Seq(1)
    );
    within("join", client.join("arena", b"ada"))
        .await
        .expect("join");
    assert!(matches!(
        next(&mut client).await,
        Ok(Event::Error { code, .. }) if code == "not_joined"
    ));
    let mirror = client.mirror("arena").expect("a mirror after the join");
    assert_eq!(mirror.tick(), Tick(10));
    assert_eq!(mirror.number(ADA, "x"), Some(1.5));
    assert_eq!(client.ack("arena"), Seq(0));

    let seq = client.send_input("arena", b"right").await.expect("input");
    assert_eq!(seq, Seq(1));
    assert_eq!(
        next(&mut client).await.expect("event"),
        Event::Patch {
            channel: "arena".into(),
            tick: Tick(11),
            ack: Seq(1),
        }
    );
    assert_eq!(x_of(&client, "arena"), Some(2.5));
    assert_eq!(client.mirror("arena").map(|m| m.tick()), Some(Tick(11)));
    assert_eq!(client.ack("arena"), Seq(1));
    within("close", client.close()).await.expect("close");
    finish(front).await;
}

#[tokio::test]
async fn a_rejected_join_is_an_error_with_the_reason() {
    let (url, front) = fake_front(|mut peer| async move {
        peer.welcome().await;
        peer.expect_join("arena").await;
        peer.send(FrontMsg::Rejected(Rejected {
            channel: "arena".into(),
            reason: "the arena is full".into(),
        }))
        .await;
        let ClientMsg::Ping(ping) = peer.recv().await else {
            panic!("expected a ping")
        };
        peer.send(FrontMsg::Pong(Pong { nonce: ping.nonce })).await;
        peer.expect_close().await;
    })
    .await;
    let mut client = connect(&url).await;
    match within("join", client.join("arena", b"")).await {
        Err(ClientError::Rejected { channel, reason }) => {
            assert_eq!(channel, "arena");
            assert_eq!(reason, "the arena is full");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(client.mirror("arena").is_none());
    // The rejection was the join's answer, not also an event for later.
    client.ping().await.expect("ping");
    assert!(matches!(
        next(&mut client).await,
        Ok(Event::Pong { nonce: 1, .. })
    ));
    within("close", client.close()).await.expect("close");
    finish(front).await;
}

#[tokio::test]
async fn events_during_a_join_are_kept_and_returned_in_order() {
    let (url, front) = fake_front(|mut peer| async move {
        peer.welcome().await;
        peer.expect_join("arena").await;
        let mut lobby = world();
        peer.send(FrontMsg::Unavailable(Unavailable {
            channel: "lobby".into(),
        }))
        .await;
        peer.send(FrontMsg::Error(ErrorMsg {
            code: "overloaded".into(),
            message: "input 3 dropped".into(),
        }))
        .await;
        peer.send(FrontMsg::Rejected(Rejected {
            channel: "lobby".into(),
            reason: "full".into(),
        }))
        .await;
        peer.send_bytes(state_message(&lobby, "lobby", 3, 0)).await;
        lobby.commit();
        lobby.set_number(ADA, 0, 9.0).expect("set");
        peer.send_bytes(patch_message(&mut lobby, "lobby", 4, 0))
            .await;
        peer.send(FrontMsg::Left(Left {
            channel: "lobby".into(),
            reason: "kicked".into(),
        }))
        .await;
        let mut arena = world();
        peer.send_bytes(state_message(&arena, "arena", 7, 0)).await;
        arena.commit();
        arena.set_number(ADA, 0, 3.0).expect("set");
        peer.send_bytes(patch_message(&mut arena, "arena", 8, 0))
            .await;
        peer.expect_close().await;
    })
    .await;
    let mut client = connect(&url).await;
    within("join", client.join("arena", b""))
        .await
        .expect("join");
    assert_eq!(x_of(&client, "arena"), Some(1.5));
    let expected = [
        Event::Unavailable {
            channel: "lobby".into(),
        },
        Event::Error {
            code: "overloaded".into(),
            message: "input 3 dropped".into(),
        },
        Event::Rejected {
            channel: "lobby".into(),
            reason: "full".into(),
        },
        Event::State {
            channel: "lobby".into(),
            tick: Tick(3),
            ack: Seq(0),
        },
        Event::Patch {
            channel: "lobby".into(),
            tick: Tick(4),
            ack: Seq(0),
        },
        Event::Left {
            channel: "lobby".into(),
            reason: "kicked".into(),
        },
        Event::Patch {
            channel: "arena".into(),
            tick: Tick(8),
            ack: Seq(0),
        },
    ];
    for want in expected {
        assert_eq!(next(&mut client).await.expect("event"), want);
    }
    assert_eq!(x_of(&client, "arena"), Some(3.0));
    assert!(client.mirror("lobby").is_none(), "left, so forgotten");
    within("close", client.close()).await.expect("close");
    finish(front).await;
}

#[tokio::test]
async fn send_input_numbers_each_channel_from_one() {
    let (url, front) = fake_front(|mut peer| async move {
        peer.welcome().await;
        let mut seen = Vec::new();
        for _ in 0..6 {
            let i = peer.expect_input().await;
            seen.push((i.channel, i.seq.0, i.data.to_vec()));
        }
        let want: Vec<(String, u32, Vec<u8>)> = vec![
            ("arena".into(), 1, b"a".to_vec()),
            ("arena".into(), 2, b"b".to_vec()),
            ("arena".into(), 3, b"c".to_vec()),
            ("lobby".into(), 1, b"d".to_vec()),
            ("arena".into(), 77, b"e".to_vec()),
            ("arena".into(), 4, b"f".to_vec()),
        ];
        assert_eq!(seen, want);
        peer.expect_close().await;
    })
    .await;
    let mut client = connect(&url).await;
    let mut seqs = Vec::new();
    for data in [b"a", b"b", b"c"] {
        seqs.push(client.send_input("arena", data).await.expect("input"));
    }
    seqs.push(client.send_input("lobby", b"d").await.expect("input"));
    client
        .send_input_with_seq("arena", Seq(77), b"e")
        .await
        .expect("input");
    seqs.push(client.send_input("arena", b"f").await.expect("input"));
    assert_eq!(seqs, [Seq(1), Seq(2), Seq(3), Seq(1), Seq(4)]);
    within("close", client.close()).await.expect("close");
    finish(front).await;
}

#[tokio::test]
async fn leaving_forgets_the_channel_at_once_and_a_new_membership_numbers_inputs_from_one() {
    let (url, front) = fake_front(|mut peer| async move {
        peer.welcome().await;
        peer.expect_join("arena").await;
        let mut world = world();
        peer.send_bytes(state_message(&world, "arena", 1, 0)).await;
        world.commit();
        assert_eq!(peer.expect_input().await.seq, Seq(1));
        assert_eq!(peer.expect_input().await.seq, Seq(2));
        world.set_number(ADA, 0, 2.0).expect("set");
        peer.send_bytes(patch_message(&mut world, "arena", 2, 2))
            .await;
        assert_eq!(
            peer.recv().await,
            ClientMsg::Leave(Leave {
                channel: "arena".into()
            })
        );
        // Queued before the Left: the client ignores them.
        peer.send_bytes(state_message(&world, "arena", 3, 2)).await;
        world.set_number(ADA, 0, 5.0).expect("set");
        peer.send_bytes(patch_message(&mut world, "arena", 4, 2))
            .await;
        peer.send(FrontMsg::Left(Left {
            channel: "arena".into(),
            reason: "left".into(),
        }))
        .await;
        peer.expect_join("arena").await;
        world.set_number(ADA, 0, 6.0).expect("set");
        world.commit();
        peer.send_bytes(state_message(&world, "arena", 5, 0)).await;
        assert_eq!(peer.expect_input().await.seq, Seq(1));
        let ClientMsg::Ping(ping) = peer.recv().await else {
            panic!("expected a ping")
        };
        peer.send(FrontMsg::Pong(Pong { nonce: ping.nonce })).await;
        peer.expect_close().await;
    })
    .await;
    let mut client = connect(&url).await;
    within("join", client.join("arena", b""))
        .await
        .expect("join");
    client.send_input("arena", b"1").await.expect("input");
    client.send_input("arena", b"2").await.expect("input");
    assert!(matches!(
        next(&mut client).await,
        Ok(Event::Patch { ack: Seq(2), .. })
    ));
    assert_eq!(client.ack("arena"), Seq(2));

    client.leave("arena").await.expect("leave");
    assert!(client.mirror("arena").is_none());
    assert_eq!(client.ack("arena"), Seq(0));
    // Joining again before the Left is read: the stragglers neither answer the join
    // nor become events.
    within("rejoin", client.join("arena", b""))
        .await
        .expect("rejoin");
    let mirror = client.mirror("arena").expect("the new membership's mirror");
    assert_eq!(mirror.tick(), Tick(5));
    assert_eq!(mirror.number(ADA, "x"), Some(6.0));
    assert_eq!(
        client.send_input("arena", b"3").await.expect("input"),
        Seq(1)
    );
    client.ping().await.expect("ping");
    assert_eq!(
        next(&mut client).await.expect("event"),
        Event::Left {
            channel: "arena".into(),
            reason: "left".into(),
        }
    );
    assert!(matches!(next(&mut client).await, Ok(Event::Pong { .. })));
    within("close", client.close()).await.expect("close");
    finish(front).await;
}

#[tokio::test]
async fn a_rejection_after_unavailable_ends_the_membership() {
    let (url, front) = fake_front(|mut peer| async move {
        peer.welcome().await;
        peer.expect_join("arena").await;
        peer.send_bytes(state_message(&world(), "arena", 1, 0))
            .await;
        assert_eq!(peer.expect_input().await.seq, Seq(1));
        peer.send(FrontMsg::Unavailable(Unavailable {
            channel: "arena".into(),
        }))
        .await;
        peer.send(FrontMsg::Rejected(Rejected {
            channel: "arena".into(),
            reason: "the arena is full".into(),
        }))
        .await;
        peer.expect_join("arena").await;
        peer.send_bytes(state_message(&world(), "arena", 9, 0))
            .await;
        assert_eq!(peer.expect_input().await.seq, Seq(1));
        peer.expect_close().await;
    })
    .await;
    let mut client = connect(&url).await;
    within("join", client.join("arena", b""))
        .await
        .expect("join");
    client.send_input("arena", b"").await.expect("input");
    assert_eq!(
        next(&mut client).await.expect("event"),
        Event::Unavailable {
            channel: "arena".into()
        }
    );
    assert!(
        client.mirror("arena").is_some(),
        "still in the channel, with a stale mirror"
    );
    assert!(matches!(
        next(&mut client).await,
        Ok(Event::Rejected { channel, .. }) if channel == "arena"
    ));
    assert!(client.mirror("arena").is_none());
    within("join again", client.join("arena", b""))
        .await
        .expect("join again");
    assert_eq!(
        client.send_input("arena", b"").await.expect("input"),
        Seq(1)
    );
    within("close", client.close()).await.expect("close");
    finish(front).await;
}

#[tokio::test]
async fn joining_a_channel_twice_is_refused_without_asking_the_server() {
    let (url, front) = fake_front(|mut peer| async move {
        peer.welcome().await;
        peer.expect_join("arena").await;
        peer.send_bytes(state_message(&world(), "arena", 1, 0))
            .await;
        // A second Join here would fail expect_close.
        peer.expect_close().await;
    })
    .await;
    let mut client = connect(&url).await;
    within("join", client.join("arena", b""))
        .await
        .expect("join");
    match within("second join", client.join("arena", b"")).await {
        Err(ClientError::AlreadyJoined(channel)) => assert_eq!(channel, "arena"),
        other => panic!("expected AlreadyJoined, got {other:?}"),
    }
    within("close", client.close()).await.expect("close");
    finish(front).await;
}

#[tokio::test]
async fn the_gate_sends_the_client_to_its_front() {
    let (front_url, front) = fake_front(|mut peer| async move {
        peer.welcome().await;
        peer.expect_close().await;
    })
    .await;
    let body = format!(r#"{{"url":"{front_url}","front":"front-1","channel":"arena"}}"#);
    let (gate, gate_task) = fake_gate(vec![(200, body)]).await;
    let client = within(
        "gate",
        Client::connect_via_gate(
            &format!("http://{gate}/"),
            "arena",
            ClientOptions::default(),
        ),
    )
    .await
    .expect("connect via the gate");
    assert_eq!(client.front(), "front-1");
    within("close", client.close()).await.expect("close");
    finish(front).await;
    assert_eq!(
        finish(gate_task).await,
        ["GET /gate?channel=arena HTTP/1.1"]
    );
}

#[tokio::test]
async fn gate_errors_carry_the_status_and_the_masters_message() {
    let (gate, gate_task) = fake_gate(vec![
        (404, r#"{"error":"unknown channel \"no where\""}"#.into()),
        (503, r#"{"error":"no live front"}"#.into()),
        (200, r#"{"front":"front-1"}"#.into()),
    ])
    .await;
    let cases = [
        ("no where", 404, "unknown channel \"no where\""),
        ("arena", 503, "no live front"),
        ("arena", 200, "not a gate reply"),
    ];
    for (channel, want_status, want_message) in cases {
        match within(
            "gate",
            Client::connect_via_gate(&gate, channel, ClientOptions::default()),
        )
        .await
        {
            Err(ClientError::Gate { status, message }) => {
                assert_eq!(status, want_status);
                assert!(message.contains(want_message), "{message}");
            }
            other => panic!("expected a gate error, got {other:?}"),
        }
    }
    assert_eq!(
        finish(gate_task).await,
        [
            "GET /gate?channel=no%20where HTTP/1.1",
            "GET /gate?channel=arena HTTP/1.1",
            "GET /gate?channel=arena HTTP/1.1",
        ]
    );
}

#[tokio::test]
async fn a_server_close_is_one_closed_event_then_closed_errors() {
    let (url, front) = fake_front(|mut peer| async move {
        peer.welcome().await;
        peer.close(CloseCode::Away, "shutting down").await;
    })
    .await;
    let mut client = connect(&url).await;
    match next(&mut client).await {
        Ok(Event::Closed { reason }) => {
            assert!(
                reason.contains("1001") && reason.contains("shutting down"),
                "{reason}"
            );
        }
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(matches!(
        next(&mut client).await,
        Err(ClientError::Closed(_))
    ));
    assert!(matches!(
        client.send_input("arena", b"").await,
        Err(ClientError::Closed(_))
    ));
    assert!(matches!(
        within("join", client.join("arena", b"")).await,
        Err(ClientError::Closed(_))
    ));
    finish(front).await;
}

#[tokio::test]
async fn a_close_during_a_join_ends_it_after_the_events_before() {
    let (url, front) = fake_front(|mut peer| async move {
        peer.welcome().await;
        peer.expect_join("arena").await;
        peer.send(FrontMsg::Unavailable(Unavailable {
            channel: "lobby".into(),
        }))
        .await;
        peer.close(CloseCode::Away, "bye").await;
    })
    .await;
    let mut client = connect(&url).await;
    assert!(matches!(
        within("join", client.join("arena", b"")).await,
        Err(ClientError::Closed(_))
    ));
    assert!(matches!(
        next(&mut client).await,
        Ok(Event::Unavailable { channel }) if channel == "lobby"
    ));
    assert!(matches!(next(&mut client).await, Ok(Event::Closed { .. })));
    assert!(matches!(
        next(&mut client).await,
        Err(ClientError::Closed(_))
    ));
    finish(front).await;
}

#[tokio::test]
async fn undecodable_and_text_messages_are_protocol_errors_and_the_connection_stays() {
    let (url, front) = fake_front(|mut peer| async move {
        peer.welcome().await;
        peer.send_bytes(vec![0xc1]).await;
        peer.send_bytes(vec![0x92, 0x2a, 0x90]).await;
        within("text", peer.ws.send(Message::text("hello")))
            .await
            .expect("send");
        peer.send(FrontMsg::Error(ErrorMsg {
            code: "still".into(),
            message: "here".into(),
        }))
        .await;
        peer.expect_close().await;
    })
    .await;
    let mut client = connect(&url).await;
    for want in ["undecodable", "unknown message type 42", "text message"] {
        match next(&mut client).await {
            Err(ClientError::Protocol(message)) => {
                assert!(message.contains(want), "{message:?} lacks {want:?}");
            }
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }
    assert_eq!(
        next(&mut client).await.expect("event"),
        Event::Error {
            code: "still".into(),
            message: "here".into(),
        }
    );
    within("close", client.close()).await.expect("close");
    finish(front).await;
}

#[tokio::test]
async fn a_patch_that_does_not_fit_hides_the_mirror_until_the_next_state() {
    let (url, front) = fake_front(|mut peer| async move {
        peer.welcome().await;
        peer.expect_join("arena").await;
        let mut world = world();
        peer.send_bytes(state_message(&world, "arena", 10, 0)).await;
        world.commit();
        // An update of entity 5, which does not exist.
        let bad = PatchMsg {
            ack: Seq(0),
            channel: "arena".into(),
            tick: Tick(11),
            removed: vec![],
            spawned: vec![],
            updated: vec![WireValue::Uint(5), WireValue::Uint(1), WireValue::Uint(3)],
        };
        peer.send(FrontMsg::Patch(bad)).await;
        world.set_number(ADA, 0, 4.0).expect("set");
        // Skipped: the mirror waits for a full state.
        peer.send_bytes(patch_message(&mut world, "arena", 12, 0))
            .await;
        peer.send_bytes(state_message(&world, "arena", 12, 0)).await;
        // A patch for a channel the client is not in.
        peer.send(FrontMsg::Patch(PatchMsg {
            ack: Seq(0),
            channel: "lobby".into(),
            tick: Tick(1),
            removed: vec![],
            spawned: vec![],
            updated: vec![],
        }))
        .await;
        peer.expect_close().await;
    })
    .await;
    let mut client = connect(&url).await;
    within("join", client.join("arena", b""))
        .await
        .expect("join");
    match next(&mut client).await {
        Err(ClientError::Protocol(message)) => {
            assert!(
                message.contains("\"arena\"") && message.contains("entity 5"),
                "{message}"
            );
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert!(
        client.mirror("arena").is_none(),
        "a broken mirror is hidden"
    );
    assert_eq!(
        next(&mut client).await.expect("event"),
        Event::State {
            channel: "arena".into(),
            tick: Tick(12),
            ack: Seq(0),
        }
    );
    assert_eq!(x_of(&client, "arena"), Some(4.0));
    match next(&mut client).await {
        Err(ClientError::Protocol(message)) => assert!(message.contains("\"lobby\""), "{message}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
    within("close", client.close()).await.expect("close");
    finish(front).await;
}

#[tokio::test]
async fn a_pong_reports_the_round_trip_and_an_unasked_one_is_an_error() {
    let (url, front) = fake_front(|mut peer| async move {
        peer.welcome().await;
        let ClientMsg::Ping(ping) = peer.recv().await else {
            panic!("expected a ping")
        };
        peer.send(FrontMsg::Pong(Pong { nonce: ping.nonce })).await;
        peer.send(FrontMsg::Pong(Pong { nonce: 999 })).await;
        peer.expect_close().await;
    })
    .await;
    let mut client = connect(&url).await;
    client.ping().await.expect("ping");
    match next(&mut client).await {
        Ok(Event::Pong { nonce, rtt }) => {
            assert_eq!(nonce, 1);
            assert!(rtt < WAIT, "{rtt:?}");
        }
        other => panic!("expected a pong, got {other:?}"),
    }
    assert!(matches!(
        next(&mut client).await,
        Err(ClientError::Protocol(m)) if m.contains("999")
    ));
    within("close", client.close()).await.expect("close");
    finish(front).await;
}

#[tokio::test]
async fn a_message_over_the_limit_ends_the_connection() {
    let (url, front) = fake_front(|mut peer| async move {
        peer.welcome().await;
        peer.send_bytes(vec![0; 4096]).await;
        // The client drops the connection without a close handshake.
        while let Some(Ok(_)) = within("the client's end", peer.ws.next()).await {}
    })
    .await;
    let options = ClientOptions {
        max_message_bytes: 1024,
        ..ClientOptions::default()
    };
    let mut client = within("connect", Client::connect(&url, options))
        .await
        .expect("connect");
    match next(&mut client).await {
        Ok(Event::Closed { reason }) => assert!(reason.contains("too long"), "{reason}"),
        other => panic!("expected Closed, got {other:?}"),
    }
    drop(client);
    finish(front).await;
}

#[tokio::test]
async fn connect_failures_are_connect_errors_or_timeouts() {
    // A port nobody listens on any more.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}", listener.local_addr().expect("addr"));
    drop(listener);
    match within("connect", Client::connect(&url, ClientOptions::default())).await {
        Err(ClientError::Connect { url: u, .. }) => assert_eq!(u, url),
        other => panic!("expected a connect error, got {other:?}"),
    }

    // A server that accepts the TCP connection and never answers the upgrade.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}", listener.local_addr().expect("addr"));
    let options = ClientOptions {
        connect_timeout: Duration::from_millis(200),
        ..ClientOptions::default()
    };
    let silent = tokio::spawn(async move {
        let (stream, _) = within("accept", listener.accept()).await.expect("accept");
        stream
    });
    assert!(matches!(
        within("connect", Client::connect(&url, options)).await,
        Err(ClientError::Timeout("connect"))
    ));
    drop(finish(silent).await);
}
