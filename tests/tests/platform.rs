//! The platform end to end, in-process clusters and real sockets: a game's messages
//! (order, targets, limits), typed inputs refused before the game, the seq rule,
//! `Welcome.resumed`, and HTTP calls to a channel with every way they can fail.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use centrum_client::{Client, ClientOptions, Event};
use centrum_config::{CallsConfig, Secret};
use centrum_protocol::{EntityId, Seq, Value};
use centrum_tests::games::{Ask, Echo, Heard, Say};
use centrum_tests::http::{Connection, request};
use centrum_tests::{ClusterSpec, TestCluster, join, until, within};

const KEY: &str = "a-test-server-key";

fn echo_spec(fronts: usize) -> ClusterSpec {
    ClusterSpec {
        fronts,
        backs: vec![
            ("echo".into(), "echo".into()),
            ("arena".into(), "arena".into()),
        ],
        apps: centrum_games::registry().with("echo", Echo::default),
        calls: CallsConfig {
            server_key: Some(Secret::new(KEY)),
            ..CallsConfig::default()
        },
        ..ClusterSpec::default()
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(value).expect("encode")
}

/// The next game message, with what the client's mirror and ack were when it arrived.
async fn next_message(client: &mut Client, channel: &str) -> (Heard, Option<u32>, Seq) {
    within("a message", async {
        loop {
            let event = client.next_event().await.expect("event");
            if let Event::Message { channel: c, .. } = &event {
                assert_eq!(c, channel);
                let heard: Heard = event.message().expect("a message").expect("decodes");
                return (heard, lines_of(client, channel), client.ack(channel));
            }
        }
    })
    .await
}

/// The next `Error` event: its code and message.
async fn next_error(client: &mut Client) -> (String, String) {
    within("an error", async {
        loop {
            if let Event::Error { code, message } = client.next_event().await.expect("event") {
                return (code, message);
            }
        }
    })
    .await
}

/// The `lines` of the speaker this client's mirror shows first.
fn lines_of(client: &Client, channel: &str) -> Option<u32> {
    let mirror = client.mirror(channel)?;
    let (&id, _) = mirror.entities().iter().next()?;
    match mirror.field(id, "lines") {
        Some((_, Value::Uint(n))) => u32::try_from(*n).ok(),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_greets_its_joiner_after_its_state_and_broadcasts_reach_every_front() {
    let cluster = TestCluster::start(echo_spec(2)).await;
    let mut ana = cluster.connect(0).await;
    join(&mut ana, "echo", &encode(&"ana")).await;
    // The join's State came first (join() returns on it), then the greeting.
    assert!(ana.mirror("echo").is_some());
    let (hello, ..) = next_message(&mut ana, "echo").await;
    assert_eq!(hello, Heard::Hello { name: "ana".into() });

    let mut bo = cluster.connect(1).await;
    join(&mut bo, "echo", &encode(&"bo")).await;
    let (hello, ..) = next_message(&mut bo, "echo").await;
    assert_eq!(hello, Heard::Hello { name: "bo".into() });

    ana.send_value("echo", &Say::Line { text: "hi".into() })
        .await
        .expect("send");
    // Sent during the tick that applied ana's input: it arrives after that tick's
    // patch, so ana already sees her line counted and her input acked.
    let (said, lines, ack) = next_message(&mut ana, "echo").await;
    let expected = Heard::Said {
        name: "ana".into(),
        text: "hi".into(),
    };
    assert_eq!(said, expected);
    assert_eq!((lines, ack), (Some(1), Seq(1)));
    let (said, ..) = next_message(&mut bo, "echo").await;
    assert_eq!(said, expected, "the broadcast reached the other front");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_game_does_not_take_is_refused_before_it_and_everyone_plays_on() {
    let cluster = TestCluster::start(echo_spec(1)).await;
    let mut bo = cluster.connect(0).await;
    join(&mut bo, "echo", &encode(&"bo")).await;
    let mut ana = cluster.connect(0).await;
    join(&mut ana, "echo", &encode(&"ana")).await;

    // A message type the game does not declare.
    #[derive(serde::Serialize)]
    #[serde(rename_all = "snake_case")]
    enum Other {
        Dance { style: String },
    }
    ana.send_value(
        "echo",
        &Other::Dance {
            style: "waltz".into(),
        },
    )
    .await
    .expect("send");
    let (code, message) = next_error(&mut ana).await;
    assert_eq!(code, "input_refused");
    assert!(
        message.starts_with("input does not decode as Say: ") && message.contains("dance"),
        "{message}"
    );

    // A message the game tries to send over the size limit: the game hears of it.
    ana.send_value("echo", &Say::Big { bytes: 2 << 20 })
        .await
        .expect("send");
    let (code, message) = next_error(&mut ana).await;
    assert_eq!(code, "input_refused");
    assert!(message.contains("over the limit"), "{message}");

    // A seq that is not after the ack: refused, and the ack stays. (The refusals
    // above count as applied; their ack comes with the tick's patch, after them.)
    until(&mut ana, "both refused inputs are acked", |c, _| {
        c.ack("echo") == Seq(2)
    })
    .await;
    let ack = ana.ack("echo");
    ana.send_input_with_seq("echo", ack, &encode(&Say::Line { text: "x".into() }))
        .await
        .expect("send");
    let (code, message) = next_error(&mut ana).await;
    assert_eq!(code, "bad_seq");
    assert!(
        message.contains(&format!("input {ack} dropped")),
        "{message}"
    );
    assert_eq!(ana.ack("echo"), ack);

    // Join data of the wrong type.
    let mut cy = cluster.connect(0).await;
    let err = within("join", cy.join("echo", &encode(&42)))
        .await
        .expect_err("rejected");
    assert!(
        err.to_string()
            .contains("join data does not decode as Option<String>"),
        "{err}"
    );

    // Bo was never disturbed and hears what comes next.
    bo.send_value(
        "echo",
        &Say::Line {
            text: "still here".into(),
        },
    )
    .await
    .expect("send");
    until(&mut bo, "bo hears himself", |_, e| {
        e.message::<Heard>().and_then(Result::ok)
            == Some(Heard::Said {
                name: "bo".into(),
                text: "still here".into(),
            })
    })
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seqs_wrap_past_the_largest_to_one() {
    let cluster = TestCluster::start(echo_spec(1)).await;
    let mut ana = cluster.connect(0).await;
    join(&mut ana, "echo", &encode(&"ana")).await;
    let line = encode(&Say::Line { text: "x".into() });
    for seq in [u32::MAX - 1, u32::MAX, 1] {
        ana.send_input_with_seq("echo", Seq(seq), &line)
            .await
            .expect("send");
    }
    until(&mut ana, "the ack wraps to 1", |c, e| {
        assert!(
            !matches!(e, Event::Error { .. }),
            "no input across the wrap is refused: {e:?}"
        );
        c.ack("echo") == Seq(1)
    })
    .await;
    assert_eq!(lines_of(&ana, "echo"), Some(3));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_welcome_says_whether_the_session_resumed() {
    let cluster = TestCluster::start(echo_spec(1)).await;
    let fresh = cluster.connect(0).await;
    assert!(!fresh.resumed());
    let resume = |token: &str| ClientOptions {
        resume: Some(token.to_owned()),
        ..ClientOptions::default()
    };
    let url = cluster.front_url(0);
    let again = within(
        "connect",
        Client::connect(&url, resume(fresh.resume_token())),
    )
    .await
    .expect("connect");
    assert!(again.resumed());
    assert_eq!(again.session(), fresh.session());
    for token in ["garbage", "front-9.1.0123456789abcdef.front-9-1"] {
        let other = within("connect", Client::connect(&url, resume(token)))
            .await
            .expect("connect");
        assert!(!other.resumed(), "{token}");
        assert_ne!(other.session(), fresh.session());
    }
    cluster.stop().await;
}

fn front(cluster: &TestCluster) -> SocketAddr {
    cluster.fronts[0].local_addr()
}

fn call_head(channel: &str, content_type: &str) -> String {
    format!(
        "POST /v1/channels/{channel}/call HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {KEY}\r\nContent-Type: {content_type}\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_http_reach_the_game_and_answer_in_the_callers_format() {
    let cluster = TestCluster::start(echo_spec(1)).await;
    let mut ana = cluster.connect(0).await;
    join(&mut ana, "echo", &encode(&"ana")).await;
    ana.send_value("echo", &Say::Line { text: "one".into() })
        .await
        .expect("send");
    until(&mut ana, "ana's line is counted", |c, _| {
        lines_of(c, "echo") == Some(1)
    })
    .await;

    // JSON in, JSON out; then MessagePack on the same kept-alive connection.
    let mut conn = Connection::open(front(&cluster)).await;
    conn.send(&call_head("echo", "application/json"), br#""lines""#)
        .await;
    let reply = conn.response().await;
    assert_eq!(
        reply.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json(), serde_json::json!({"ana": 1}));
    conn.send(
        &call_head("echo", "application/msgpack"),
        &encode(&Ask::Lines),
    )
    .await;
    let reply = conn.response().await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/msgpack"));
    let lines: BTreeMap<String, u32> = rmp_serde::from_slice(&reply.body).expect("msgpack");
    assert_eq!(lines, BTreeMap::from([("ana".to_owned(), 1)]));

    // A call changes the game like anything else: the announcement reaches clients.
    let reply = request(
        front(&cluster),
        &call_head("echo", "application/json"),
        br#"{"announce": {"text": "closing soon"}}"#,
    )
    .await;
    assert_eq!(reply.status, 200);
    until(&mut ana, "ana hears the server", |_, e| {
        e.message::<Heard>().and_then(Result::ok)
            == Some(Heard::Said {
                name: "server".into(),
                text: "closing soon".into(),
            })
    })
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_cannot_be_served_get_a_status_that_says_why() {
    let cluster = TestCluster::start(ClusterSpec {
        calls: CallsConfig {
            server_key: Some(Secret::new(KEY)),
            max_body_bytes: 100,
            ..CallsConfig::default()
        },
        ..echo_spec(1)
    })
    .await;
    let addr = front(&cluster);
    let json = |channel: &str| call_head(channel, "application/json");
    let cases: Vec<(String, Vec<u8>, u16, &str)> = vec![
        (
            "POST /v1/channels/echo/call HTTP/1.1\r\nContent-Type: application/json\r\n".into(),
            b"\"lines\"".to_vec(),
            401,
            "needs the server key",
        ),
        (
            "POST /v1/channels/echo/call HTTP/1.1\r\nAuthorization: Bearer not-the-key-at-all\r\nContent-Type: application/json\r\n".into(),
            b"\"lines\"".to_vec(),
            401,
            "needs the server key",
        ),
        (json("nowhere"), b"\"lines\"".to_vec(), 404, "unknown channel \"nowhere\""),
        (
            json("echo").replace("/call", "/kall"),
            b"\"lines\"".to_vec(),
            404,
            "POST /v1/channels/{channel}/call",
        ),
        (
            json("echo").replace("POST", "PUT"),
            b"\"lines\"".to_vec(),
            405,
            "use POST",
        ),
        (call_head("echo", "text/plain"), b"lines".to_vec(), 415, "application/json"),
        (json("echo"), b"{\"lines\"".to_vec(), 400, "the body is not JSON"),
        (json("echo"), b"\"dance\"".to_vec(), 400, "call does not decode as Ask"),
        (json("echo"), b"\"refuse\"".to_vec(), 422, "the echo refuses"),
        (json("arena"), b"\"anything\"".to_vec(), 501, "this game takes no calls"),
        (json("echo"), vec![b' '; 101], 413, "at most 100 bytes"),
    ];
    for (head, body, status, says) in cases {
        let reply = request(addr, &head, &body).await;
        assert_eq!(reply.status, status, "{head}: {:?}", reply.json());
        assert!(reply.error().contains(says), "{head}: {}", reply.error());
        if status == 401 {
            assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        }
    }
    // A large body refused unread, on a connection meant to stay open: the caller
    // still reads the whole answer (the front does not reset the connection under
    // it), then the connection ends.
    let mut conn = Connection::open(addr).await;
    conn.send(&json("echo"), &vec![b' '; 200 * 1024]).await;
    let reply = conn.response().await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(conn.closed().await, "the front closes after an unread body");
    // No Content-Length at all.
    let mut conn = Connection::open(addr).await;
    conn.send_raw(format!("{}Connection: close\r\n\r\n", json("echo")).as_bytes())
        .await;
    assert_eq!(conn.response().await.status, 411);
    // A plain GET is neither a call nor a WebSocket.
    let reply = request(addr, "GET / HTTP/1.1\r\n", b"").await;
    assert_eq!(reply.status, 426);
    assert!(reply.error().contains("open a WebSocket here"));

    // The front still serves clients and calls.
    let mut ana = cluster.connect(0).await;
    join(&mut ana, "echo", &encode(&"ana")).await;
    let reply = request(addr, &json("echo"), b"\"lines\"").await;
    assert_eq!(reply.json(), serde_json::json!({"ana": 0}));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_off_without_a_key_and_an_unanswered_call_times_out() {
    let off = TestCluster::start(ClusterSpec {
        calls: CallsConfig::default(),
        ..echo_spec(1)
    })
    .await;
    let reply = request(
        front(&off),
        &call_head("echo", "application/json"),
        b"\"lines\"",
    )
    .await;
    assert_eq!(reply.status, 403);
    assert!(
        reply.error().contains("[calls] server_key"),
        "{}",
        reply.error()
    );
    off.stop().await;

    // One tick a second and 100 ms to answer: a call waits for the next tick, too long.
    let slow = TestCluster::start(ClusterSpec {
        tick_hz: 1,
        calls: CallsConfig {
            server_key: Some(Secret::new(KEY)),
            timeout_ms: 100,
            ..CallsConfig::default()
        },
        ..echo_spec(1)
    })
    .await;
    // Wait for the link, so that what follows is a timeout and not `unavailable`.
    let mut ana = slow.connect(0).await;
    join(&mut ana, "echo", &encode(&"ana")).await;
    // Right after a tick, the next is ~900 ms away. Only a stall of the machine
    // between two of these calls and a tick could let one be answered in time, so a
    // few tries make that no matter; none may get anything but 504 or 200.
    let mut timed_out = None;
    for _ in 0..5 {
        let reply = request(
            front(&slow),
            &call_head("echo", "application/json"),
            b"\"lines\"",
        )
        .await;
        match reply.status {
            504 => {
                timed_out = Some(reply.error());
                break;
            }
            200 => {}
            other => panic!("a call got {other}: {}", reply.error()),
        }
    }
    let error = timed_out.expect("a call times out");
    assert!(error.contains("did not answer within 100 ms"), "{error}");
    slow.stop().await;
}

/// The arena tells a joiner which player is its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_arena_tells_each_joiner_its_own_player() {
    let cluster = TestCluster::start(echo_spec(1)).await;
    let mut ana = cluster.connect(0).await;
    #[derive(serde::Serialize)]
    struct Name<'a> {
        name: &'a str,
    }
    join(&mut ana, "arena", &encode(&Name { name: "ana" })).await;
    #[derive(serde::Deserialize, Debug)]
    #[serde(rename_all = "snake_case")]
    enum Told {
        You { player: u32 },
    }
    let mut told = None;
    until(&mut ana, "ana is told her player", |_, e| {
        told = e.message::<Told>().and_then(Result::ok);
        told.is_some()
    })
    .await;
    let Some(Told::You { player }) = told else {
        unreachable!("until returned")
    };
    let mirror = ana.mirror("arena").expect("mirror");
    assert_eq!(
        mirror.field(EntityId(player), "name").map(|(_, v)| v),
        Some(&Value::Str("ana".into()))
    );
    cluster.stop().await;
}
