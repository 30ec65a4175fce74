//! Liveness with real sockets: a front<->back link black-holed by a paused proxy (the
//! sockets stay open, nothing moves) is noticed by both ends within the link timeout;
//! clients are told `Unavailable`, refused new inputs, and served again after the path
//! heals, with nothing acknowledged lost and every acknowledged input applied once. A
//! client whose own connection is black-holed notices and resumes.

use std::time::{Duration, Instant};

use centrum_client::{Client, ClientOptions, Event};
use centrum_config::Limits;
use centrum_protocol::{EntityId, Seq, Value};
use centrum_tests::games::{Echo, Say};
use centrum_tests::{ClusterSpec, TestCluster, join, until, within};

const HEARTBEAT_MS: u32 = 200;
const LINK_TIMEOUT_MS: u32 = 1_000;

fn spec(link_grace_ms: u32) -> ClusterSpec {
    ClusterSpec {
        backs: vec![("echo".into(), "echo".into())],
        apps: centrum_games::registry().with("echo", Echo::default),
        proxied_links: true,
        limits: Limits {
            link_heartbeat_ms: HEARTBEAT_MS,
            link_timeout_ms: LINK_TIMEOUT_MS,
            link_grace_ms,
            ..Limits::default()
        },
        ..ClusterSpec::default()
    }
}

fn line(text: &str) -> Vec<u8> {
    rmp_serde::to_vec_named(&Say::Line { text: text.into() }).expect("encode")
}

/// The client's speaker and how many of its lines (inputs) the game applied.
fn speaker(client: &Client) -> Option<(EntityId, u32)> {
    let mirror = client.mirror("echo")?;
    let (&id, _) = mirror.entities().iter().next()?;
    match mirror.field(id, "lines") {
        Some((_, Value::Uint(n))) => Some((id, u32::try_from(*n).ok()?)),
        _ => None,
    }
}

/// Joins, sends `n` inputs and waits until all are acked.
async fn playing(cluster: &TestCluster, n: u32) -> Client {
    let mut client = cluster.connect(0).await;
    join(
        &mut client,
        "echo",
        &rmp_serde::to_vec(&Some("ada")).expect("encode"),
    )
    .await;
    for i in 0..n {
        client
            .send_input("echo", &line(&format!("before {i}")))
            .await
            .expect("input");
    }
    until(
        &mut client,
        "the inputs before the pause are acked",
        |c, _| c.ack("echo") == Seq(n) && speaker(c).is_some_and(|(_, lines)| lines == n),
    )
    .await;
    client
}

/// Black-holes the link and sends inputs into the hole; checks that the client is told
/// `Unavailable` within the link timeout (+1 s) and that an input is then refused.
/// Returns how many inputs it sent before it was told: they are in doubt.
async fn blackhole(cluster: &TestCluster, client: &mut Client) -> u32 {
    cluster.proxies[0].pause();
    let paused = Instant::now();
    let mut in_doubt = 0;
    for i in 0..3 {
        client
            .send_input("echo", &line(&format!("in doubt {i}")))
            .await
            .expect("input");
        in_doubt += 1;
    }
    until(
        client,
        "told the channel is unavailable",
        |_, e| matches!(e, Event::Unavailable { channel } if channel == "echo"),
    )
    .await;
    let noticed = paused.elapsed();
    println!(
        "unavailable {} ms after the link went silent",
        noticed.as_millis()
    );
    assert!(
        noticed <= Duration::from_millis(u64::from(LINK_TIMEOUT_MS) + 1_000),
        "unavailable after {noticed:?}"
    );
    // While unavailable an input is refused, never queued.
    client
        .send_input("echo", &line("refused"))
        .await
        .expect("send");
    let mut code = String::new();
    until(client, "the input is refused", |_, e| match e {
        Event::Error { code: c, .. } => {
            code.clone_from(c);
            true
        }
        _ => false,
    })
    .await;
    assert_eq!(code, "unavailable");
    in_doubt
}

/// A link black-holed for less than `link_grace_ms`: noticed within the link timeout,
/// and after the path heals the same player goes on with every acked input applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_link_within_the_grace_is_noticed_and_nothing_acked_is_lost() {
    let cluster = TestCluster::start(spec(4_000)).await;
    let mut client = playing(&cluster, 5).await;
    let (player, _) = speaker(&client).expect("a speaker");

    let started = Instant::now();
    let in_doubt = blackhole(&cluster, &mut client).await;
    // The path stays dead for 2 s in all, well within the back's 4 s grace.
    tokio::time::sleep_until((started + Duration::from_secs(2)).into()).await;
    cluster.proxies[0].resume();
    let healed = Instant::now();
    until(&mut client, "a fresh state after the relink", |_, e| {
        matches!(e, Event::State { .. })
    })
    .await;
    println!(
        "served again {} ms after the path healed",
        healed.elapsed().as_millis()
    );

    let ack = client.ack("echo");
    let (again, lines) = speaker(&client).expect("a speaker");
    assert_eq!(again, player, "the same player: the back held the session");
    assert!(
        ack.0 >= 5 && ack.0 <= 5 + in_doubt,
        "nothing acked is lost; the in-doubt inputs are either applied or not: ack {ack}"
    );
    assert_eq!(lines, ack.0, "every acked input applied exactly once");
    println!(
        "acked before 5, in doubt {in_doubt}, acked and applied after {}",
        ack.0
    );

    // And it goes on.
    let seq = client
        .send_input("echo", &line("after"))
        .await
        .expect("input");
    until(
        &mut client,
        "the input after the heal is applied",
        |c, _| c.ack("echo") == seq && speaker(c).is_some_and(|(_, l)| l == ack.0 + 1),
    )
    .await;
    cluster.stop().await;
}

/// A link black-holed for longer than `link_grace_ms`: the back ends the memberships
/// when the grace runs out (the game sees a leave), and after the path heals it joins
/// the front's clients again as new players: the client learns it from the State (ack
/// back to 0, an empty speaker) and plays on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_link_past_the_grace_is_noticed_and_clients_are_joined_again() {
    let cluster = TestCluster::start(spec(1_000)).await;
    let mut client = playing(&cluster, 5).await;
    let started = Instant::now();
    blackhole(&cluster, &mut client).await;
    // The back notices at ~1 s and lets the sessions go 1 s later; 3.5 s is past both.
    tokio::time::sleep_until((started + Duration::from_millis(3_500)).into()).await;
    cluster.proxies[0].resume();
    until(&mut client, "a fresh state after the relink", |_, e| {
        matches!(e, Event::State { .. })
    })
    .await;
    // A new player (the game may reuse the entity id): no lines, no ack.
    let (_, lines) = speaker(&client).expect("a speaker");
    assert_eq!((client.ack("echo"), lines), (Seq(0), 0));
    let seq = client
        .send_input("echo", &line("after"))
        .await
        .expect("input");
    until(
        &mut client,
        "the input after the heal is applied",
        |c, _| c.ack("echo") == seq && speaker(c).is_some_and(|(_, l)| l == 1),
    )
    .await;
    cluster.stop().await;
}

/// A front that falls silent under a client (its connection black-holed by a paused
/// proxy): the Rust SDK pings, hears nothing, ends the connection with `Closed` within
/// `ping_after + silence_timeout`, and a reconnect with the resume token gets the same
/// player back with its ack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_front_falls_silent_notices_and_resumes() {
    let cluster = TestCluster::start(ClusterSpec {
        proxied_links: false,
        ..spec(10_000)
    })
    .await;
    let proxy = centrum_tests::Proxy::start(cluster.fronts[0].local_addr()).await;
    let options = ClientOptions {
        ping_after: Duration::from_millis(200),
        silence_timeout: Duration::from_millis(500),
        ..ClientOptions::default()
    };
    let mut client = within(
        "connect through the proxy",
        Client::connect(&format!("ws://{}", proxy.addr), options.clone()),
    )
    .await
    .expect("connect");
    let name = rmp_serde::to_vec(&Some("ada")).expect("encode");
    join(&mut client, "echo", &name).await;
    for i in 0..3 {
        client
            .send_input("echo", &line(&format!("before {i}")))
            .await
            .expect("input");
    }
    until(&mut client, "3 inputs acked", |c, _| {
        c.ack("echo") == Seq(3)
    })
    .await;
    let token = client.resume_token().to_owned();

    proxy.pause();
    let paused = Instant::now();
    until(
        &mut client,
        "the silence ends the connection",
        |_, e| matches!(e, Event::Closed { reason } if reason.contains("sent nothing")),
    )
    .await;
    let noticed = paused.elapsed();
    println!(
        "silent front noticed {} ms after the pause",
        noticed.as_millis()
    );
    assert!(
        noticed <= Duration::from_millis(200 + 500 + 500),
        "after {noticed:?}"
    );

    let resume = ClientOptions {
        resume: Some(token),
        ..options
    };
    let mut again = within("reconnect", Client::connect(&cluster.front_url(0), resume))
        .await
        .expect("reconnect");
    assert!(again.resumed());
    join(&mut again, "echo", &name).await;
    assert_eq!(again.ack("echo"), Seq(3), "the ack survives");
    assert_eq!(speaker(&again).map(|(_, l)| l), Some(3), "the same player");
    let seq = again
        .send_input("echo", &line("after"))
        .await
        .expect("input");
    until(&mut again, "play goes on", |c, _| {
        c.ack("echo") == seq && speaker(c).is_some_and(|(_, l)| l == 4)
    })
    .await;
    cluster.stop().await;
}
