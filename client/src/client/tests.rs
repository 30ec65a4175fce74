//! The driver against a fake front (tokio-tungstenite on 127.0.0.1:0) and a fake gate
//! (raw HTTP/1.1): what needs a socket. What the messages mean is tested on the
//! session alone, in `session/tests.rs`.

use std::future::Future;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use centrum_protocol::{
    ClientMsg, ErrorMsg, FrontMsg, Hello, Input, Join, PROTOCOL_VERSION, Pong, Rejected, Seq, Tick,
    Unavailable, decode, encode,
};

use crate::fixtures::{ADA, Chat, game_message, patch_message, state_message, welcome, world};
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

    /// Expects the hello and answers with a new session's welcome from `front-1`.
    async fn welcome(&mut self) -> Hello {
        let ClientMsg::Hello(hello) = self.recv().await else {
            panic!("expected Hello first")
        };
        self.send(welcome(false)).await;
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

    /// Expects a ping and answers it.
    async fn pong(&mut self) {
        let ClientMsg::Ping(ping) = self.recv().await else {
            panic!("expected a ping")
        };
        self.send(FrontMsg::Pong(Pong { nonce: ping.nonce })).await;
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

/// Join data and an input as a game defines them.
#[derive(Serialize)]
struct JoinData<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct Steer {
    dx: f32,
}

#[tokio::test]
async fn hello_carries_version_token_and_resume_token_and_the_welcome_is_kept() {
    let (url, front) = fake_front(|mut peer| async move {
        let ClientMsg::Hello(hello) = peer.recv().await else {
            panic!("expected Hello first")
        };
        assert_eq!(
            hello,
            Hello {
                version: PROTOCOL_VERSION,
                token: "secret".into(),
                resume: Some("resume-6".into()),
            }
        );
        peer.send(welcome(true)).await;
        peer.expect_close().await;
    })
    .await;
    let options = ClientOptions {
        token: "secret".into(),
        resume: Some("resume-6".into()),
        ..ClientOptions::default()
    };
    let printed = format!("{options:?}");
    assert!(
        !printed.contains("secret") && !printed.contains("resume-6"),
        "tokens are not printed: {printed}"
    );
    let client = within("connect", Client::connect(&url, options))
        .await
        .expect("connect");
    assert_eq!(client.session(), "front-1-7");
    assert_eq!(client.front(), "front-1");
    assert_eq!(client.resume_token(), "resume-7");
    assert!(client.resumed());
    assert!(!format!("{client:?}").contains("resume-7"));
    assert_eq!(client.messages_received(), 1, "the welcome");
    assert_eq!(client.bytes_received(), encode(&welcome(true)).len() as u64);
    within("close", client.close()).await.expect("close");
    finish(front).await;
}

#[tokio::test]
async fn a_refused_hello_is_a_handshake_error_with_the_servers_code() {
    let (url, front) = fake_front(|mut peer| async move {
        let _hello = peer.recv().await;
        peer.send(FrontMsg::Error(ErrorMsg {
            code: "version".into(),
            message: "protocol version 2 is not supported; this server speaks 3".into(),
        }))
        .await;
        peer.close(CloseCode::Protocol, "version").await;
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
}

#[tokio::test]
async fn a_front_that_closes_or_answers_in_text_instead_of_welcoming_fails_the_connect() {
    let (url, front) = fake_front(|mut peer| async move {
        let _hello = peer.recv().await;
        peer.close(CloseCode::Away, "").await;
    })
    .await;
    match within("connect", Client::connect(&url, ClientOptions::default())).await {
        Err(ClientError::Closed(reason)) => assert!(reason.contains("1001"), "{reason}"),
        other => panic!("expected Closed, got {other:?}"),
    }
    finish(front).await;

    let (url, front) = fake_front(|mut peer| async move {
        let _hello = peer.recv().await;
        within("text", peer.ws.send(Message::text("welcome")))
            .await
            .expect("send");
        // The client gives up without a close handshake.
        while let Some(Ok(_)) = within("the client's end", peer.ws.next()).await {}
    })
    .await;
    match within("connect", Client::connect(&url, ClientOptions::default())).await {
        Err(ClientError::Protocol(message)) => assert!(message.contains("text"), "{message}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
    finish(front).await;
}

#[tokio::test]
async fn a_front_that_never_welcomes_times_out() {
    let (url, front) = fake_front(|mut peer| async move {
        let _hello = peer.recv().await;
        // Silent until the client gives up and drops the connection.
        while let Some(Ok(_)) = within("the client's end", peer.ws.next()).await {}
    })
    .await;
    let options = ClientOptions {
        connect_timeout: Duration::from_millis(200),
        ..ClientOptions::default()
    };
    assert!(matches!(
        within("connect", Client::connect(&url, options)).await,
        Err(ClientError::Timeout("connect"))
    ));
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

#[tokio::test]
async fn a_session_on_the_wire_join_inputs_patches_and_messages() {
    let (url, front) = fake_front(|mut peer| async move {
        peer.welcome().await;
        let join = peer.expect_join("arena").await;
        assert_eq!(
            &join.data[..],
            rmp_serde::to_vec_named(&JoinData { name: "ada" }).expect("encode"),
            "typed join data travels as a map with field names"
        );
        let mut world = world();
        peer.send_bytes(state_message(&world, "arena", 10, 0)).await;
        world.commit();
        // A second Join here would fail: the client refuses it itself.
        let input = peer.expect_input().await;
        assert_eq!((input.seq, &input.data[..]), (Seq(1), &b"raw"[..]));
        let input = peer.expect_input().await;
        assert_eq!(input.seq, Seq(2));
        assert_eq!(
            &input.data[..],
            rmp_serde::to_vec_named(&Steer { dx: 0.5 }).expect("encode")
        );
        let input = peer.expect_input().await;
        assert_eq!(input.seq, Seq(77), "a seq the caller chose");
        assert_eq!(peer.expect_input().await.seq, Seq(3));
        world.set_number(ADA, 0, 2.5).expect("set");
        peer.send_bytes(patch_message(&mut world, "arena", 11, 3))
            .await;
        peer.send_bytes(game_message("arena", 11, &Chat::new("bo", "gg")))
            .await;
        peer.expect_close().await;
    })
    .await;
    let mut client = connect(&url).await;
    within(
        "join",
        client.join_value("arena", &JoinData { name: "ada" }),
    )
    .await
    .expect("join");
    let mirror = client.mirror("arena").expect("a mirror once join returns");
    assert_eq!(mirror.tick(), Tick(10));
    assert_eq!(mirror.number(ADA, "x"), Some(1.5));
    match within("second join", client.join("arena", b"")).await {
        Err(ClientError::AlreadyJoined(channel)) => assert_eq!(channel, "arena"),
        other => panic!("expected AlreadyJoined, got {other:?}"),
    }

    assert_eq!(
        client.send_input("arena", b"raw").await.expect("input"),
        Seq(1)
    );
    let seq = client
        .send_value("arena", &Steer { dx: 0.5 })
        .await
        .expect("input");
    assert_eq!(seq, Seq(2));
    client
        .send_input_with_seq("arena", Seq(77), b"e")
        .await
        .expect("input");
    assert_eq!(
        client.send_input("arena", b"f").await.expect("input"),
        Seq(3)
    );

    assert_eq!(
        next(&mut client).await.expect("event"),
        Event::Patch {
            channel: "arena".into(),
            tick: Tick(11),
            ack: Seq(3),
        }
    );
    assert_eq!(client.ack("arena"), Seq(3));
    assert_eq!(
        client.mirror("arena").and_then(|m| m.number(ADA, "x")),
        Some(2.5)
    );
    let event = next(&mut client).await.expect("event");
    assert!(
        matches!(&event, Event::Message { tick: Tick(11), .. }),
        "{event:?}"
    );
    assert_eq!(
        event.message::<Chat>().transpose().expect("a chat"),
        Some(Chat::new("bo", "gg"))
    );
    assert_eq!(
        client.messages_received(),
        4,
        "welcome, state, patch, message"
    );
    within("close", client.close()).await.expect("close");
    finish(front).await;
}

#[tokio::test]
async fn a_rejected_join_is_an_error_and_not_also_an_event() {
    let (url, front) = fake_front(|mut peer| async move {
        peer.welcome().await;
        peer.expect_join("arena").await;
        peer.send(FrontMsg::Rejected(Rejected {
            channel: "arena".into(),
            reason: "the arena is full".into(),
        }))
        .await;
        peer.pong().await;
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
    client.ping().await.expect("ping");
    match next(&mut client).await {
        Ok(Event::Pong { nonce: 1, rtt }) => assert!(rtt < WAIT, "{rtt:?}"),
        other => panic!("expected the pong, got {other:?}"),
    }
    within("close", client.close()).await.expect("close");
    finish(front).await;
}

#[tokio::test]
async fn events_during_a_join_are_kept_and_returned_in_order() {
    let (url, front) = fake_front(|mut peer| async move {
        peer.welcome().await;
        peer.expect_join("arena").await;
        peer.send(FrontMsg::Unavailable(Unavailable {
            channel: "lobby".into(),
        }))
        .await;
        peer.send(FrontMsg::Error(ErrorMsg {
            code: "overloaded".into(),
            message: "input 3 dropped".into(),
        }))
        .await;
        let mut lobby = world();
        peer.send_bytes(state_message(&lobby, "lobby", 3, 0)).await;
        lobby.commit();
        lobby.set_number(ADA, 0, 9.0).expect("set");
        peer.send_bytes(patch_message(&mut lobby, "lobby", 4, 0))
            .await;
        peer.send_bytes(state_message(&world(), "arena", 7, 0))
            .await;
        peer.expect_close().await;
    })
    .await;
    let mut client = connect(&url).await;
    within("join", client.join("arena", b""))
        .await
        .expect("join");
    // Applied as they arrived, reported after.
    assert_eq!(
        client.mirror("lobby").and_then(|m| m.number(ADA, "x")),
        Some(9.0)
    );
    let expected = [
        Event::Unavailable {
            channel: "lobby".into(),
        },
        Event::Error {
            code: "overloaded".into(),
            message: "input 3 dropped".into(),
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
    ];
    for want in expected {
        assert_eq!(next(&mut client).await.expect("event"), want);
    }
    within("close", client.close()).await.expect("close");
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
async fn a_server_close_is_one_closed_event_then_every_call_is_a_closed_error() {
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
        client.send_value("arena", &Steer { dx: 1.0 }).await,
        Err(ClientError::Closed(_))
    ));
    assert!(matches!(
        within("join", client.join("arena", b"")).await,
        Err(ClientError::Closed(_))
    ));
    assert!(matches!(client.ping().await, Err(ClientError::Closed(_))));
    assert!(matches!(
        client.leave("arena").await,
        Err(ClientError::Closed(_))
    ));
    within("close", client.close())
        .await
        .expect("closing a closed client is fine");
    finish(front).await;
}

#[tokio::test]
async fn a_dropped_connection_is_a_closed_event_and_sending_fails() {
    let (url, front) = fake_front(|mut peer| async move {
        peer.welcome().await;
        // No close frame: the TCP connection just ends.
        drop(peer);
    })
    .await;
    let mut client = connect(&url).await;
    finish(front).await;
    match next(&mut client).await {
        Ok(Event::Closed { reason }) => {
            assert!(reason.starts_with("the connection"), "{reason}");
        }
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(matches!(
        client.send_input("arena", b"").await,
        Err(ClientError::Closed(_))
    ));
}

#[tokio::test]
async fn a_text_message_is_a_protocol_error_and_the_connection_stays() {
    let (url, front) = fake_front(|mut peer| async move {
        peer.welcome().await;
        within("text", peer.ws.send(Message::text("hello")))
            .await
            .expect("send");
        peer.send_bytes(vec![0xc1]).await;
        peer.send(FrontMsg::Error(ErrorMsg {
            code: "still".into(),
            message: "here".into(),
        }))
        .await;
        peer.expect_close().await;
    })
    .await;
    let mut client = connect(&url).await;
    for want in ["text message", "undecodable"] {
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

/// A front that answers the probes keeps the connection; one that stops answering
/// (its socket open, nothing coming out) ends it with `Closed`, within
/// `ping_after + silence_timeout`, as a dropped connection would.
#[tokio::test]
async fn a_front_that_falls_silent_ends_the_connection_as_a_drop() {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (url, front) = fake_front(|mut peer| async move {
        peer.welcome().await;
        // Answers two probes, then goes silent with the socket open until told.
        peer.pong().await;
        peer.pong().await;
        let _ = within("the test's end", stop_rx).await;
    })
    .await;
    let options = ClientOptions {
        ping_after: Duration::from_millis(100),
        silence_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    };
    let mut client = within("connect", Client::connect(&url, options))
        .await
        .expect("connect");
    let start = std::time::Instant::now();
    let event = next(&mut client).await.expect("an event");
    let after = start.elapsed();
    let Event::Closed { reason } = event else {
        panic!("expected Closed, got {event:?}")
    };
    assert!(reason.contains("sent nothing"), "{reason}");
    // Two answered probes (~100 ms each), then 100 ms to the third and 300 ms unanswered.
    assert!(
        after >= Duration::from_millis(550) && after < Duration::from_secs(3),
        "closed after {after:?}"
    );
    assert!(
        matches!(next(&mut client).await, Err(ClientError::Closed(_))),
        "nothing follows Closed"
    );
    let _ = stop_tx.send(());
    finish(front).await;
}
