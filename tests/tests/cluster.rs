//! End-to-end: whole clusters in-process on 127.0.0.1:0, driven by real WebSocket
//! clients (the Rust client library).

use std::time::Duration;

use centrum_client::{Client, ClientOptions, Event};
use centrum_protocol::{EntityId, FrontMsg, Mirror, Seq, SharedKind, SharedPrefix, Value, decode};
use centrum_tests::{ClusterSpec, TestCluster, join, until, within};

fn bench_spec(fronts: usize) -> ClusterSpec {
    ClusterSpec {
        fronts,
        backs: vec![("arena".into(), "bench-arena".into())],
        tick_hz: 50,
        ..ClusterSpec::default()
    }
}

fn named(name: &str) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Join<'a> {
        name: &'a str,
    }
    rmp_serde::to_vec_named(&Join { name }).expect("encode")
}

fn steer(dx: f64, dy: f64) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Move {
        dx: f64,
        dy: f64,
    }
    rmp_serde::to_vec_named(&Move { dx, dy }).expect("encode")
}

/// The entity of the arena player called `name`.
fn player(mirror: &Mirror, name: &str) -> Option<EntityId> {
    mirror
        .entities()
        .keys()
        .copied()
        .find(|&id| matches!(mirror.field(id, "name"), Some((_, Value::Str(n))) if n == name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_two_fronts_see_each_others_moves() {
    let cluster = TestCluster::start(ClusterSpec {
        fronts: 2,
        ..ClusterSpec::default()
    })
    .await;
    let mut ana = cluster.connect(0).await;
    let mut bo = cluster.connect(1).await;
    assert_ne!(ana.front(), bo.front());
    join(&mut ana, "arena", &named("ana")).await;
    join(&mut bo, "arena", &named("bo")).await;
    until(&mut ana, "ana sees bo", |c, _| {
        c.mirror("arena").and_then(|m| player(m, "bo")).is_some()
    })
    .await;

    let bo_mirror = bo.mirror("arena").expect("mirror");
    let ana_id = player(bo_mirror, "ana").expect("bo sees ana");
    let x0 = bo_mirror.number(ana_id, "x").expect("x");
    let right = if x0 < 32.0 { 1.0 } else { -1.0 };
    ana.send_input("arena", &steer(right, 0.0))
        .await
        .expect("input");
    until(&mut bo, "bo sees ana move", |c, _| {
        c.mirror("arena")
            .and_then(|m| m.number(ana_id, "x"))
            .is_some_and(|x| (x - x0) * right > 1.0)
    })
    .await;
    until(&mut ana, "ana's input is acked", |c, _| {
        c.ack("arena") == Seq(1)
    })
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_converge_to_the_backs_state_and_late_joiners_get_it() {
    let cluster = TestCluster::start(bench_spec(2)).await;
    let mut clients = Vec::new();
    for i in 0..4 {
        let mut c = cluster.connect(i % 2).await;
        join(&mut c, "arena", &[]).await;
        clients.push(c);
    }
    // 60 inputs each, interleaved across clients and fronts, in bursts that span ticks.
    for seq in 1..=60u32 {
        for c in clients.iter_mut() {
            let dir = if (seq / 20) % 2 == 0 { 1.0 } else { -1.0 };
            c.send_input_with_seq("arena", Seq(seq), &steer(0.25 * dir, -0.25 * dir))
                .await
                .expect("input");
        }
        if seq % 10 == 0 {
            for c in clients.iter_mut() {
                until(c, "acks", |c, _| c.ack("arena") >= Seq(seq)).await;
            }
        }
    }
    let (tick, body) = within("snapshot", cluster.backs[0].snapshot("arena"))
        .await
        .expect("channel exists");
    let mut prefixed = SharedPrefix::new(SharedKind::State, Seq(0))
        .as_bytes()
        .to_vec();
    prefixed.extend_from_slice(&body);
    let FrontMsg::State(state) = decode(&prefixed, usize::MAX).expect("decodes") else {
        panic!("not a state")
    };
    let mut authoritative = Mirror::new();
    authoritative.apply_state(&state).expect("applies");
    assert_eq!(authoritative.entities().len(), 4);
    // The state is static now; each mirror must reach it (checked before each wait).
    for c in clients.iter_mut() {
        within("mirror equals the back's state", async {
            while !c
                .mirror("arena")
                .is_some_and(|m| m.entities() == authoritative.entities())
            {
                c.next_event().await.expect("event");
            }
        })
        .await;
    }
    // Every player applied the same 60 inputs.
    let expected_x = 0.1
        + (1..=60u32)
            .map(|s| if (s / 20) % 2 == 0 { 0.25 } else { -0.25 })
            .sum::<f64>();
    for id in authoritative.entities().keys() {
        assert!((authoritative.number(*id, "x").expect("x") - expected_x).abs() < 1e-9);
    }

    let mut late = cluster.connect(1).await;
    join(&mut late, "arena", &[]).await;
    let mirror = late.mirror("arena").expect("late joiner has state");
    assert!(mirror.tick() >= tick);
    let others: Vec<_> = mirror
        .entities()
        .iter()
        .filter(|(id, _)| authoritative.entities().contains_key(id))
        .collect();
    assert_eq!(others.len(), 4, "the late joiner sees every earlier player");
    for (id, e) in others {
        assert_eq!(Some(e), authoritative.entity(*id));
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_link_relinks_and_resynchronises_clients() {
    let cluster = TestCluster::start(ClusterSpec {
        proxied_links: true,
        ..bench_spec(1)
    })
    .await;
    let mut a = cluster.connect(0).await;
    join(&mut a, "arena", &[]).await;
    for _ in 0..5 {
        a.send_input("arena", &steer(0.25, 0.0))
            .await
            .expect("input");
    }
    until(&mut a, "acks before the cut", |c, _| {
        c.ack("arena") == Seq(5)
    })
    .await;

    cluster.proxies[0].cut();
    until(
        &mut a,
        "told the channel is unavailable",
        |_, e| matches!(e, Event::Unavailable { channel } if channel == "arena"),
    )
    .await;
    until(&mut a, "fresh state after relink", |_, e| {
        matches!(e, Event::State { .. })
    })
    .await;
    // The back kept the session through the grace period: same player, same position.
    let mirror = a.mirror("arena").expect("mirror");
    assert_eq!(mirror.entities().len(), 1);
    let (&id, _) = mirror.entities().iter().next().expect("player");
    assert!((mirror.number(id, "x").expect("x") - 1.35).abs() < 1e-9);
    assert_eq!(a.ack("arena"), Seq(5));
    a.send_input("arena", &steer(0.25, 0.0))
        .await
        .expect("input after relink");
    until(&mut a, "input after relink applied", |c, _| {
        c.mirror("arena")
            .and_then(|m| m.number(id, "x"))
            .is_some_and(|x| (x - 1.6).abs() < 1e-9)
    })
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_others_keep_playing() {
    let mut spec = bench_spec(1);
    spec.limits.max_message_bytes = 1024;
    let cluster = TestCluster::start(spec).await;
    let mut good = cluster.connect(0).await;
    join(&mut good, "arena", &[]).await;

    // Input before join: an error, and the connection stays usable.
    let mut early = cluster.connect(0).await;
    early
        .send_input("arena", &steer(1.0, 0.0))
        .await
        .expect("send");
    until(
        &mut early,
        "not_joined error",
        |_, e| matches!(e, Event::Error { code, .. } if code == "not_joined"),
    )
    .await;
    // Join of an unknown channel: rejected with the reason.
    match within("join unknown", early.join("nowhere", &[])).await {
        Err(centrum_client::ClientError::Rejected { reason, .. }) => {
            assert!(reason.contains("unknown channel"), "{reason}")
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    join(&mut early, "arena", &[]).await;

    // Malformed MessagePack, an unknown message type, an oversized message: each is
    // answered with an error naming the problem, then the connection is closed.
    let cases: [(&str, Vec<u8>); 3] = [
        ("malformed", vec![0xc1, 0x00]),
        ("malformed", vec![0x92, 0x2a, 0x90]),
        ("too_large", vec![0x04; 2000]),
    ];
    for (code, bytes) in cases {
        let mut bad = cluster.connect(0).await;
        bad.send_raw(bytes).await.expect("send");
        let mut saw_error = false;
        until(&mut bad, "error then close", |_, e| {
            if let Event::Error { code: c, .. } = e {
                saw_error |= c == code;
            }
            matches!(e, Event::Closed { .. })
        })
        .await;
        assert!(saw_error, "expected error code {code}");
    }

    // Everyone else is still served.
    let seq = good
        .send_input("arena", &steer(0.25, 0.25))
        .await
        .expect("input");
    until(&mut good, "good client's input applied", |c, _| {
        c.ack("arena") == seq
    })
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_protocol_version_is_refused_with_a_reason() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let cluster = TestCluster::start(bench_spec(1)).await;
    let (mut ws, _) = within(
        "ws connect",
        tokio_tungstenite::connect_async(cluster.front_url(0)),
    )
    .await
    .expect("connect");
    // Hello{version: 99, token: "", resume: nil}
    ws.send(Message::Binary(
        vec![0x92, 0x00, 0x93, 99, 0xa0, 0xc0].into(),
    ))
    .await
    .expect("send");
    let reply = within("reply", ws.next())
        .await
        .expect("a reply")
        .expect("ok");
    let FrontMsg::Error(err) = decode(&reply.into_data(), usize::MAX).expect("decodes") else {
        panic!("expected an error")
    };
    assert_eq!(err.code, "version");
    assert!(
        err.message.contains("99")
            && err
                .message
                .contains(&format!("speaks {}", centrum_protocol::PROTOCOL_VERSION)),
        "{}",
        err.message
    );
    match within("close", ws.next()).await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1002),
        other => panic!("expected a close frame, got {other:?}"),
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_points_clients_at_a_live_front() {
    let cluster = TestCluster::start(bench_spec(2)).await;
    let master = cluster.master_http.to_string();
    let mut client = within("gate", async {
        loop {
            match Client::connect_via_gate(&master, "arena", ClientOptions::default()).await {
                Ok(c) => return c,
                // The fronts register with the master asynchronously after start.
                Err(centrum_client::ClientError::Gate { status: 503, .. }) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("gate failed: {e}"),
            }
        }
    })
    .await;
    join(&mut client, "arena", &[]).await;
    match Client::connect_via_gate(&master, "nowhere", ClientOptions::default()).await {
        Err(centrum_client::ClientError::Gate { status, message }) => {
            assert_eq!(status, 404);
            assert!(message.contains("unknown channel"), "{message}");
        }
        other => panic!("expected a 404, got {other:?}"),
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_works_over_an_in_process_stream_as_over_tcp() {
    use centrum_protocol::{BackToFront, HANDSHAKE_FRAME_BYTES};
    let cluster = TestCluster::start(bench_spec(1)).await;
    // Let the real front-1 link first (a join through it proves it); the in-process
    // link then takes over as front-1's newer link.
    let mut client = cluster.connect(0).await;
    join(&mut client, "arena", &[]).await;
    let (front_side, back_side) = tokio::io::duplex(1 << 16);
    cluster.backs[0].link_stream(back_side);
    let mut link = centrum_net::framed(front_side, HANDSHAKE_FRAME_BYTES);
    let key = centrum_net::auth::ClusterKey::new(centrum_tests::CLUSTER_SECRET.as_bytes());
    let opener = centrum_net::LinkOpener {
        key: &key,
        front: "front-1",
        back: "back-1",
        instance: 1,
        max_frame_bytes: 1 << 20,
    };
    let welcome = within("welcome", opener.open(&mut link, Vec::new))
        .await
        .expect("the back welcomes a front of its cluster");
    assert_eq!(welcome.channels, vec!["arena".to_owned()]);
    // The link's first frame for the channel is its full state.
    let state = within("state", centrum_net::recv::<_, BackToFront>(&mut link))
        .await
        .expect("recv");
    assert!(
        matches!(state, Some(BackToFront::State(s)) if s.channel == 0 && s.sessions.is_empty() && !s.body.is_empty())
    );
    cluster.stop().await;
}

/// Connects to front `front`, presenting `token` to resume an earlier session.
async fn resume(cluster: &TestCluster, front: usize, token: &str) -> Client {
    let options = ClientOptions {
        resume: Some(token.to_owned()),
        ..ClientOptions::default()
    };
    within(
        "resume",
        Client::connect(&cluster.front_url(front), options),
    )
    .await
    .expect("resume")
}

/// How many arena players are called `name`.
fn players_named(mirror: &Mirror, name: &str) -> usize {
    mirror
        .entities()
        .keys()
        .filter(|&&id| matches!(mirror.field(id, "name"), Some((_, Value::Str(n))) if n == name))
        .count()
}

/// Ana joins on front 0, steers once and sees it acked. Returns her client, her
/// player's entity and her resume token.
async fn ana_plays_on_front_0(cluster: &TestCluster) -> (Client, EntityId, String) {
    let mut ana = cluster.connect(0).await;
    join(&mut ana, "arena", &named("ana")).await;
    ana.send_input("arena", &steer(1.0, 0.0))
        .await
        .expect("input");
    until(&mut ana, "ana's input is acked", |c, _| {
        c.ack("arena") == Seq(1)
    })
    .await;
    let id = player(ana.mirror("arena").expect("mirror"), "ana").expect("ana's player");
    let token = ana.resume_token().to_owned();
    assert!(!token.is_empty());
    (ana, id, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_client_resumes_on_another_front_as_the_same_player() {
    let cluster = TestCluster::start(ClusterSpec {
        fronts: 2,
        ..ClusterSpec::default()
    })
    .await;
    let (ana, id, token) = ana_plays_on_front_0(&cluster).await;
    let session = ana.session().to_owned();
    drop(ana);

    let mut again = resume(&cluster, 1, &token).await;
    assert_eq!(again.front(), "front-2");
    assert_eq!(again.session(), session, "a resumed session keeps its id");
    join(&mut again, "arena", &named("ana")).await;
    let mirror = again.mirror("arena").expect("mirror");
    assert_eq!(player(mirror, "ana"), Some(id), "the same player");
    assert_eq!(players_named(mirror, "ana"), 1, "and no second one");
    assert_eq!(again.ack("arena"), Seq(1), "the ack survives the move");

    // Inputs go on from the next seq, and are acked as such.
    let seq = again
        .send_input("arena", &steer(0.0, 1.0))
        .await
        .expect("input");
    assert_eq!(seq, Seq(2));
    until(
        &mut again,
        "the resumed session's input is acked",
        |c, _| c.ack("arena") == Seq(2),
    )
    .await;

    // A token used once is spent: the session now lives under the new one.
    let mut thief = resume(&cluster, 0, &token).await;
    join(&mut thief, "arena", &named("ana")).await;
    let mirror = thief.mirror("arena").expect("mirror");
    assert_ne!(player(mirror, "ana"), None);
    assert_eq!(players_named(mirror, "ana"), 2, "a fresh player, not ana's");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_of_a_stopped_front_resume_on_the_other() {
    let cluster = TestCluster::start(ClusterSpec {
        fronts: 2,
        ..ClusterSpec::default()
    })
    .await;
    let (mut ana, id, token) = ana_plays_on_front_0(&cluster).await;
    cluster.stop_front(0);
    // The front says goodbye (a close frame) before it goes.
    within("ana's connection ends", async {
        while ana.next_event().await.is_ok() {}
    })
    .await;

    let mut again = resume(&cluster, 1, &token).await;
    join(&mut again, "arena", &named("ana")).await;
    let mirror = again.mirror("arena").expect("mirror");
    assert_eq!(player(mirror, "ana"), Some(id));
    assert_eq!(players_named(mirror, "ana"), 1);
    assert_eq!(again.ack("arena"), Seq(1));
    cluster.stop().await;
}

/// Bo joins on front 1 and watches Ana play on front 0. Returns Bo, then as
/// [`ana_plays_on_front_0`].
async fn bo_watches_ana(cluster: &TestCluster) -> (Client, Client, EntityId, String) {
    let mut bo = cluster.connect(1).await;
    join(&mut bo, "arena", &named("bo")).await;
    let (ana, id, token) = ana_plays_on_front_0(cluster).await;
    until(&mut bo, "bo sees ana", |c, _| {
        c.mirror("arena")
            .is_some_and(|m| m.entities().contains_key(&id))
    })
    .await;
    (bo, ana, id, token)
}

/// Once Ana's connection is gone, Bo sees her player leave, and her token brings her
/// back as a new player, not as the old one.
async fn ana_left_for_good(cluster: &TestCluster, bo: &mut Client, id: EntityId, token: &str) {
    until(bo, "ana's player leaves", |c, _| {
        c.mirror("arena")
            .is_some_and(|m| !m.entities().contains_key(&id))
    })
    .await;
    let mut again = resume(cluster, 1, token).await;
    join(&mut again, "arena", &named("ana")).await;
    let mirror = again.mirror("arena").expect("mirror");
    // Entity ids are reused, so the fresh player is told apart by its ack.
    assert_eq!(players_named(mirror, "ana"), 1);
    assert_eq!(again.ack("arena"), Seq(0), "a new membership counts from 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_resuming_off_a_dropped_client_leaves_and_comes_back_as_a_new_player() {
    let mut spec = ClusterSpec {
        fronts: 2,
        ..ClusterSpec::default()
    };
    spec.limits.resume_grace_ms = 0;
    let cluster = TestCluster::start(spec).await;
    let (mut bo, ana, id, token) = bo_watches_ana(&cluster).await;
    drop(ana);
    ana_left_for_good(&cluster, &mut bo, id, &token).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_closes_its_connection_leaves_at_once() {
    let cluster = TestCluster::start(ClusterSpec {
        fronts: 2,
        ..ClusterSpec::default()
    })
    .await;
    let (mut bo, ana, id, token) = bo_watches_ana(&cluster).await;
    // A close frame is a goodbye: nothing is held for a resume (limits.resume_grace_ms
    // is 15 s here, far longer than this test waits).
    within("close", ana.close()).await.expect("close");
    ana_left_for_good(&cluster, &mut bo, id, &token).await;
    cluster.stop().await;
}
