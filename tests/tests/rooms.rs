//! Rooms on demand, end to end: three backs offering one room type, the master's
//! matchmaker, real clients joining with their seats. Rooms spread over the backs, a
//! burst fills them exactly, the game locks, tags and ends its room, an empty room
//! goes, a restarted master rebuilds its view, a dead back's rooms leave the listing,
//! and every bad seat or request gets its documented error.

use std::collections::{BTreeMap, BTreeSet};

use centrum_client::{
    Client, ClientError, ClientOptions, Event, Matchmaker, RoomListing, SeatReservation,
};
use centrum_config::{Limits, MatchmakerConfig, RoomTypeConfig};
use centrum_net::auth::ClusterKey;
use centrum_net::seat::{Seat, unix_ms};
use centrum_tests::games::{Match, MatchOptions, Order};
use centrum_tests::{CLUSTER_SECRET, ClusterSpec, TestCluster, until, within};
use serde_json::json;

fn room_type(kind: &str, max_clients: u32, max_rooms: u32, empty_dispose_s: u32) -> RoomTypeConfig {
    RoomTypeConfig {
        kind: kind.into(),
        app: "match".into(),
        max_clients,
        max_rooms,
        empty_dispose_s,
        anonymous: false,
    }
}

/// Three backs (each with a channel of the config too) offering `rooms`, two fronts.
async fn cluster(rooms: Vec<RoomTypeConfig>, matchmaker: MatchmakerConfig) -> TestCluster {
    let cluster = TestCluster::start(ClusterSpec {
        fronts: 2,
        backs: (1..=3)
            .map(|i| (format!("arena-{i}"), "arena".to_owned()))
            .collect(),
        apps: centrum_games::registry().with("match", Match::default),
        rooms,
        matchmaker,
        limits: Limits {
            heartbeat_ms: 100,
            // Every test client comes from 127.0.0.1.
            connections_per_ip_per_s: 0,
            max_connections_per_ip: 0,
            ..Limits::default()
        },
        ..ClusterSpec::default()
    })
    .await;
    // Every back is registered with the master: until then rooms cannot spread.
    let mm = matchmaker_of(&cluster);
    within("every back can make rooms", async {
        let mut made = BTreeSet::new();
        while made.len() < 3 {
            match mm.create("probe", &()).await {
                Ok(seat) => {
                    made.insert(back_of(&seat.room).to_owned());
                }
                Err(ClientError::Matchmaker { status: 503, .. }) => {}
                Err(e) => panic!("probe room: {e}"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    cluster
}

fn no_limit() -> MatchmakerConfig {
    MatchmakerConfig {
        creates_per_minute: 0,
        ..MatchmakerConfig::default()
    }
}

fn matchmaker_of(cluster: &TestCluster) -> Matchmaker {
    Matchmaker::new(&cluster.master_http.to_string())
}

fn back_of(room: &str) -> &str {
    room.rsplit('.').next().expect("a room id names its back")
}

/// A client on the seat's front, in the seat's room.
async fn seated(seat: &SeatReservation) -> Client {
    let mut client = within(
        "connect",
        Client::connect(&seat.front, ClientOptions::default()),
    )
    .await
    .expect("connect");
    within("join the room", client.join_room(seat, &()))
        .await
        .expect("join the room");
    client
}

async fn rejection(seat: &SeatReservation, token: &str) -> String {
    let forged = SeatReservation {
        seat: token.to_owned(),
        ..seat.clone()
    };
    let mut client = within(
        "connect",
        Client::connect(&seat.front, ClientOptions::default()),
    )
    .await
    .expect("connect");
    match within("join", client.join_room(&forged, &())).await {
        Err(ClientError::Rejected { reason, .. }) => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn code(e: ClientError) -> (u16, String) {
    match e {
        ClientError::Matchmaker { status, code, .. } => (status, code),
        other => panic!("expected a matchmaker error, got {other}"),
    }
}

async fn listing(mm: &Matchmaker, kind: &str) -> Vec<RoomListing> {
    within("listing", mm.rooms(Some(kind)))
        .await
        .expect("listing")
}

/// Waits until the listing of `kind` satisfies `done`.
async fn listed(mm: &Matchmaker, kind: &str, what: &str, done: impl Fn(&[RoomListing]) -> bool) {
    within(what, async {
        while !done(&listing(mm, kind).await) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_joins_fills_rooms_spread_over_the_backs_exactly() {
    let cluster = cluster(
        vec![room_type("probe", 1, 10, 0), room_type("duel", 4, 1000, 30)],
        no_limit(),
    )
    .await;
    let mm = matchmaker_of(&cluster);
    let any = serde_json::Map::new();
    let seats = within(
        "200 joinOrCreate at once",
        futures_util::future::join_all((0..200).map(|_| mm.join_or_create("duel", &(), &any))),
    )
    .await;
    let seats: Vec<SeatReservation> = seats
        .into_iter()
        .map(|s| s.expect("every client gets a seat"))
        .collect();
    let mut per_room: BTreeMap<&str, usize> = BTreeMap::new();
    for seat in &seats {
        *per_room.entry(&seat.room).or_default() += 1;
    }
    assert_eq!(per_room.len(), 50, "200 seats make 50 rooms of 4");
    assert!(per_room.values().all(|&n| n == 4), "{per_room:?}");
    let backs: BTreeSet<&str> = per_room.keys().map(|r| back_of(r)).collect();
    assert_eq!(backs.len(), 3, "rooms spread over every back: {backs:?}");
    // Seats count toward a front's load at once: the burst is split between the fronts.
    let mut per_front: BTreeMap<&str, usize> = BTreeMap::new();
    for seat in &seats {
        *per_front.entry(&seat.front).or_default() += 1;
    }
    assert_eq!(per_front.len(), 2, "{per_front:?}");
    assert!(
        per_front.values().all(|&n| (90..=110).contains(&n)),
        "{per_front:?}"
    );

    // Every seat is taken by a real client: all 200 join, so no room is over 4.
    let clients = within(
        "200 clients join",
        futures_util::future::join_all(seats.iter().map(seated)),
    )
    .await;
    listed(&mm, "duel", "the backs report every room full", |rooms| {
        rooms.len() == 50 && rooms.iter().all(|r| r.clients == 4 && r.max == 4)
    })
    .await;
    // The gate takes a room's id too (a client reconnecting to its room).
    let gate = centrum_tests::http::request(
        cluster.master_http,
        &format!(
            "GET /gate?channel={} HTTP/1.1\r\nHost: x\r\n\r\n",
            seats[0].room
        ),
        b"",
    )
    .await;
    assert_eq!(gate.status, 200, "{}", gate.error());
    // The gate counts the clients it sent since a front's last heartbeat, too: a burst
    // of 80 is split between the fronts, not sent to the emptier one.
    let mut per_front: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..80 {
        let gate = centrum_tests::http::request(
            cluster.master_http,
            "GET /gate?channel=arena-1 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"",
        )
        .await;
        *per_front
            .entry(gate.json()["front"].to_string())
            .or_default() += 1;
    }
    assert!(per_front.values().all(|&n| n >= 30), "{per_front:?}");
    // The rooms' counters are summed per type on /metrics (a back may have thousands).
    let joins: f64 = within("the back reports its rooms' joins", async {
        loop {
            let metrics = centrum_tests::http::request(
                cluster.master_http,
                "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                b"",
            )
            .await;
            let text = String::from_utf8_lossy(&metrics.body).into_owned();
            let joins: f64 = text
                .lines()
                .filter(|l| {
                    l.starts_with("centrum_back_joins_total{") && l.contains("room_type=\"duel\"")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            if joins >= 200.0 {
                return joins;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(joins, 200.0);
    // A full room takes no one by id.
    let full = seats[0].room.clone();
    assert_eq!(
        code(mm.join_by_id(&full).await.expect_err("full")),
        (409, "room_full".into())
    );
    drop(clients);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_game_tags_locks_and_ends_its_room_and_an_empty_room_goes() {
    let cluster = cluster(
        vec![room_type("probe", 1, 10, 0), room_type("duel", 2, 100, 30)],
        no_limit(),
    )
    .await;
    let mm = matchmaker_of(&cluster);
    let ranked = MatchOptions {
        mode: "ranked".into(),
    };
    let seat = mm.create("duel", &ranked).await.expect("create");
    let room = seat.room.clone();
    // Listed with the metadata its game set at once, before any report of its back.
    let listed_now = listing(&mm, "duel").await;
    let new = listed_now.iter().find(|r| r.id == room).expect("listed");
    assert_eq!(
        (&new.metadata, new.locked, new.clients),
        (&json!({"mode": "ranked"}), false, 1)
    );
    let mut ann = seated(&seat).await;

    // joinOrCreate filters on metadata.
    let casual = mm
        .join_or_create("duel", &(), &json!({"mode": "casual"}))
        .await
        .expect("casual");
    assert_ne!(casual.room, room, "no casual room yet: a new one");
    let same = mm
        .join_or_create("duel", &(), &json!({"mode": "ranked"}))
        .await
        .expect("ranked");
    assert_eq!(same.room, room, "the ranked room has a place");

    // A locked room is offered to nobody.
    ann.send_value(&room, &Order::Lock).await.expect("lock");
    listed(&mm, "duel", "the room shows locked", |rooms| {
        rooms.iter().any(|r| r.id == room && r.locked)
    })
    .await;
    let other = mm
        .join_or_create("duel", &ranked, &json!({"mode": "ranked"}))
        .await
        .expect("ranked again");
    assert_ne!(other.room, room, "the locked room is not offered");
    assert_eq!(
        code(mm.join_by_id(&room).await.expect_err("locked")),
        (409, "room_locked".into())
    );
    ann.send_value(&room, &Order::Unlock).await.expect("unlock");
    listed(&mm, "duel", "the room shows unlocked", |rooms| {
        rooms.iter().any(|r| r.id == room && !r.locked)
    })
    .await;

    // The game ends the room: its members hear the game's last word, then leave it.
    ann.send_value(&room, &Order::End).await.expect("end");
    let mut last_word = false;
    until(&mut ann, "ann leaves the disposed room", |_, e| {
        if matches!(e, Event::Message { channel, .. } if *channel == room) {
            last_word = true;
        }
        matches!(e, Event::Left { channel, reason } if *channel == room && reason == "disposed")
    })
    .await;
    assert!(last_word, "the game's dispose message came first");
    listed(&mm, "duel", "the room leaves the listing", |rooms| {
        rooms.iter().all(|r| r.id != room)
    })
    .await;
    assert_eq!(
        code(mm.join_by_id(&room).await.expect_err("disposed")),
        (404, "no_such_room".into())
    );

    // A room of a type with empty_dispose_s = 0 goes when its last member leaves.
    let probe = mm.create("probe", &()).await.expect("probe");
    let mut bob = seated(&probe).await;
    bob.leave(&probe.room).await.expect("leave");
    listed(&mm, "probe", "the empty room goes", |rooms| {
        rooms.iter().all(|r| r.id != probe.room)
    })
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_seats_and_requests_get_their_documented_errors() {
    let cluster = cluster(
        vec![room_type("probe", 1, 1, 0), room_type("duel", 2, 100, 30)],
        no_limit(),
    )
    .await;
    let mm = matchmaker_of(&cluster);
    assert_eq!(
        code(mm.create("nope", &()).await.expect_err("unknown type")),
        (404, "unknown_type".into())
    );
    let refuse = MatchOptions {
        mode: "refuse".into(),
    };
    assert_eq!(
        code(
            mm.create("duel", &refuse)
                .await
                .expect_err("refused options")
        ),
        (400, "bad_options".into())
    );
    assert_eq!(
        code(
            mm.create("duel", &json!({"mode": 5}))
                .await
                .expect_err("options that do not decode")
        ),
        (400, "bad_options".into())
    );
    assert_eq!(
        code(
            mm.join_by_id("duel.nothere.back-1")
                .await
                .expect_err("no room")
        ),
        (404, "no_such_room".into())
    );
    // Each back has its one probe room (made by `cluster`): no fourth.
    assert_eq!(
        code(mm.create("probe", &()).await.expect_err("max_rooms")),
        (503, "no_capacity".into())
    );

    let seat = mm.create("duel", &()).await.expect("create");
    let key = ClusterKey::new(CLUSTER_SECRET.as_bytes());
    // The last digit of the signature changed.
    let last = if seat.seat.ends_with('0') { "1" } else { "0" };
    let forged = format!("{}{last}", &seat.seat[..seat.seat.len() - 1]);
    let reason = rejection(&seat, &forged).await;
    assert!(reason.starts_with("seat_invalid"), "{reason}");
    let elsewhere = Seat {
        room: "duel.other.back-1".into(),
        number: 1,
        expires_ms: unix_ms() + 60_000,
    };
    let reason = rejection(&seat, &elsewhere.token(&key)).await;
    assert!(
        reason.starts_with("seat_invalid"),
        "another room's seat: {reason}"
    );
    let expired = Seat {
        room: seat.room.clone(),
        number: 2,
        expires_ms: unix_ms() - 1,
    };
    let reason = rejection(&seat, &expired.token(&key)).await;
    assert!(reason.starts_with("seat_expired"), "{reason}");

    // A seat is good once.
    let _ann = seated(&seat).await;
    let reason = rejection(&seat, &seat.seat).await;
    assert!(reason.starts_with("seat_used"), "{reason}");
    // No seat at all: a room is not a channel of the config.
    let mut bare = within(
        "connect",
        Client::connect(&seat.front, ClientOptions::default()),
    )
    .await
    .expect("connect");
    match within("join", bare.join(&seat.room, &[])).await {
        Err(ClientError::Rejected { reason, .. }) => {
            assert!(reason.starts_with("seat_required"), "{reason}")
        }
        other => panic!("expected seat_required, got {other:?}"),
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_make_rooms_faster_than_the_limit() {
    let cluster = cluster(
        vec![room_type("probe", 1, 10, 0), room_type("duel", 2, 100, 30)],
        MatchmakerConfig {
            creates_per_minute: 5,
            ..MatchmakerConfig::default()
        },
    )
    .await;
    let mm = matchmaker_of(&cluster);
    // `cluster` made three probe rooms already; two more fit the minute's five.
    let mut refused = None;
    for _ in 0..3 {
        if let Err(e) = mm.create("duel", &()).await {
            refused = Some(code(e));
            break;
        }
    }
    assert_eq!(refused, Some((429, "rate_limited".into())));
    // Joining an open room is not creating one.
    let open = listing(&mm, "duel").await;
    let room = &open.first().expect("a duel room").id;
    mm.join_by_id(room).await.expect("a join is not limited");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_master_rebuilds_its_rooms_and_a_dead_backs_rooms_go() {
    let mut cluster = cluster(
        vec![room_type("probe", 1, 10, 0), room_type("duel", 2, 100, 30)],
        no_limit(),
    )
    .await;
    let mm = matchmaker_of(&cluster);
    let mut made = Vec::new();
    for _ in 0..6 {
        made.push(mm.create("duel", &()).await.expect("create"));
    }
    let mut ann = seated(&made[0]).await;
    let ids: BTreeSet<String> = made.iter().map(|s| s.room.clone()).collect();

    cluster.restart_master().await;
    listed(&mm, "duel", "the new master hears of every room", |rooms| {
        ids.iter().all(|id| rooms.iter().any(|r| &r.id == id))
    })
    .await;
    // It goes on placing rooms, never one it already has.
    let next = within("create after the restart", async {
        loop {
            match mm.create("duel", &()).await {
                Ok(seat) => return seat,
                Err(ClientError::Matchmaker { status: 503, .. }) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("create: {e}"),
            }
        }
    })
    .await;
    assert!(!ids.contains(&next.room));
    let _bob = seated(&mm.join_by_id(&made[0].room).await.expect("by id")).await;

    // A back that dies takes its rooms off the listing; its members are told.
    let dead = back_of(&made[0].room).to_owned();
    let index: usize = dead
        .trim_start_matches("back-")
        .parse::<usize>()
        .expect("back-N")
        - 1;
    cluster.stop_back(index);
    until(
        &mut ann,
        "ann hears her room's back is gone",
        |_, e| matches!(e, Event::Unavailable { channel } if *channel == made[0].room),
    )
    .await;
    listed(
        &mm,
        "duel",
        "the dead back's rooms leave the listing",
        |rooms| !rooms.is_empty() && rooms.iter().all(|r| back_of(&r.id) != dead),
    )
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_client_resumes_its_room_on_another_front() {
    let cluster = cluster(
        vec![room_type("probe", 1, 10, 0), room_type("duel", 2, 100, 30)],
        no_limit(),
    )
    .await;
    let mm = matchmaker_of(&cluster);
    let seat = mm.create("duel", &()).await.expect("create");
    let ann = seated(&seat).await;
    let token = ann.resume_token().to_owned();
    let front = ann.front().to_owned();
    let players = ann.mirror(&seat.room).expect("mirror").entities().len();
    assert_eq!(players, 1);
    drop(ann);

    // The other front, the same seat (used, and soon expired): the back restores the
    // membership it holds and does not look at the seat.
    let other = (0..2)
        .map(|i| cluster.front_url(i))
        .find(|url| *url != seat.front)
        .expect("another front");
    let options = ClientOptions {
        resume: Some(token),
        ..ClientOptions::default()
    };
    let mut again = within("resume", Client::connect(&other, options))
        .await
        .expect("resume");
    assert_ne!(again.front(), front);
    within("rejoin", again.join_room(&seat, &()))
        .await
        .expect("the room takes its member back");
    let mirror = again.mirror(&seat.room).expect("mirror");
    assert_eq!(
        mirror.entities().len(),
        1,
        "the same player, not a second one"
    );
    cluster.stop().await;
}
