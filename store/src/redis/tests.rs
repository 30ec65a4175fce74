//! The Redis store against a real `redis-server` per test: what the disk store's tests
//! ask of recovery and pruning, plus the lease (one writer per back id), a server
//! killed and restarted, and a server that does not fsync every write.

use super::*;
use crate::RedisServer;

/// A lease short enough for a test to see one end.
const SHORT: Duration = Duration::from_millis(1000);

fn options(server: &RedisServer, lease: Duration) -> RedisOptions {
    RedisOptions {
        url: server.url(),
        prefix: "test".into(),
        back: "back-1".into(),
        lease,
        sync: SyncPolicy::EveryRecord,
    }
}

fn store(server: &RedisServer) -> RedisStore {
    RedisStore::new(options(server, Duration::from_secs(10))).unwrap()
}

fn steps(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.step).collect()
}

/// A connection of the test's own, to look at and damage what the store keeps.
fn raw(server: &RedisServer) -> Connection {
    redis::Client::open(server.url())
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap()
}

#[test]
fn records_and_snapshots_come_back_and_old_ones_are_pruned() {
    let Some(server) = RedisServer::start("roundtrip") else {
        return;
    };
    let s = store(&server);
    let mut opened = s.open("arena").unwrap();
    assert!(opened.recovered.snapshot.is_none() && opened.recovered.records.is_empty());
    for step in 1..=5 {
        opened
            .journal
            .append(step, format!("r{step}").as_bytes(), true)
            .unwrap();
    }
    let skipped = opened.journal.append(7, b"skips", true).unwrap_err();
    assert!(matches!(skipped, StoreError::Gap { .. }), "{skipped}");
    opened.journal.cut(5).unwrap();
    opened.snapshots.write(5, b"s5").unwrap();
    for step in 6..=8 {
        opened.journal.append(step, b"r", step == 8).unwrap();
    }
    drop(opened);

    let mut opened = s.open("arena").unwrap();
    let rec = &opened.recovered;
    assert_eq!(
        rec.snapshot.as_ref().map(|s| (s.step, s.bytes.clone())),
        Some((5, b"s5".to_vec()))
    );
    assert_eq!(steps(&rec.records), vec![6, 7, 8]);
    assert!(rec.repairs.is_empty(), "{:?}", rec.repairs);

    // Two more snapshots: the first one goes, and the journal up to the older of the
    // two kept (8): only the record of 9 is left.
    opened.journal.cut(8).unwrap();
    opened.snapshots.write(8, b"s8").unwrap();
    opened.journal.append(9, b"r9", true).unwrap();
    opened.journal.cut(9).unwrap();
    opened.snapshots.write(9, b"s9").unwrap();
    let mut con = raw(&server);
    let mut kept: Vec<u64> = redis::cmd("HKEYS")
        .arg("test:{back-1}:arena:snaps")
        .query(&mut con)
        .unwrap();
    kept.sort_unstable();
    assert_eq!(kept, [8, 9]);
    let journal: Vec<(Vec<u8>, u64)> = redis::cmd("ZRANGE")
        .arg("test:{back-1}:arena:journal")
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut con)
        .unwrap();
    assert_eq!(journal.iter().map(|j| j.1).collect::<Vec<_>>(), [9]);
    drop(opened);
    let opened = s.open("arena").unwrap();
    assert_eq!(opened.recovered.snapshot.as_ref().map(|s| s.step), Some(9));
    assert!(opened.recovered.records.is_empty());
}

#[test]
fn a_damaged_record_is_corrupt_and_a_missing_one_a_gap() {
    let Some(server) = RedisServer::start("corrupt") else {
        return;
    };
    let s = store(&server);
    let mut opened = s.open("arena").unwrap();
    for step in 1..=3 {
        opened.journal.append(step, b"payload", true).unwrap();
    }
    drop(opened);
    let key = "test:{back-1}:arena:journal";
    let mut con = raw(&server);
    let members: Vec<Vec<u8>> = redis::cmd("ZRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    // A flipped bit in the payload of step 2: its checksum no longer matches.
    let mut flipped = members[1].clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    let _: () = redis::pipe()
        .atomic()
        .cmd("ZREM")
        .arg(key)
        .arg(&members[1])
        .ignore()
        .cmd("ZADD")
        .arg(key)
        .arg(2)
        .arg(&flipped)
        .ignore()
        .query(&mut con)
        .unwrap();
    let err = s.open("arena").unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(key) && text.contains("after step 1"),
        "names the key and where: {text}"
    );

    // Without it: steps 1 and 3, a gap.
    let _: () = redis::cmd("ZREM")
        .arg(key)
        .arg(&flipped)
        .query(&mut con)
        .unwrap();
    let err = s.open("arena").unwrap_err();
    assert!(
        matches!(err, StoreError::Gap { .. }) && err.to_string().contains("from step 1 to step 3"),
        "{err}"
    );
    // A value that is no record at all is damage too, not a panic.
    let _: () = redis::cmd("ZADD")
        .arg(key)
        .arg(2)
        .arg("x")
        .query(&mut con)
        .unwrap();
    let err = s.open("arena").unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[test]
fn a_damaged_snapshot_is_set_aside_for_the_one_before_it() {
    let Some(server) = RedisServer::start("fallback") else {
        return;
    };
    let s = store(&server);
    crate::test_log::snapshots_at_2_and_4_then_step_5(&s);
    let key = "test:{back-1}:arena:snaps";
    let mut con = raw(&server);
    let mut newest: Vec<u8> = redis::cmd("HGET").arg(key).arg(4).query(&mut con).unwrap();
    let mid = newest.len() - 2;
    newest[mid] ^= 1;
    let _: () = redis::cmd("HSET")
        .arg(key)
        .arg(4)
        .arg(&newest)
        .query(&mut con)
        .unwrap();

    let mut opened = s.open("arena").unwrap();
    let rec = &opened.recovered;
    assert_eq!(rec.snapshot.as_ref().unwrap().bytes, b"s2");
    assert_eq!(
        steps(&rec.records),
        vec![3, 4, 5],
        "the journal since the older snapshot is still there"
    );
    let [repair] = &rec.repairs[..] else {
        panic!("{:?}", rec.repairs)
    };
    assert!(repair.contains("falling back"), "{repair}");
    let aside: Vec<u64> = redis::cmd("HKEYS")
        .arg("test:{back-1}:arena:damaged")
        .query(&mut con)
        .unwrap();
    assert_eq!(aside, [4], "kept, but never counted as one of the two");
    // The channel goes on from there.
    opened.journal.append(6, b"r", true).unwrap();
}

#[test]
fn a_removed_channel_is_gone_whole_and_channels_lists_the_others() {
    let Some(server) = RedisServer::start("remove") else {
        return;
    };
    let s = store(&server);
    let mut opened = s.open("arena").unwrap();
    opened.journal.append(1, b"r", true).unwrap();
    opened.snapshots.write(1, b"s1").unwrap();
    drop(opened);
    s.open("duel.abc.back-1").unwrap();
    let mut listed = s.channels().unwrap();
    listed.sort();
    assert_eq!(listed, ["arena", "duel.abc.back-1"]);
    s.remove("arena").unwrap();
    s.remove("arena").unwrap();
    assert_eq!(s.channels().unwrap(), ["duel.abc.back-1"]);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("test:{back-1}:arena:*")
        .query(&mut raw(&server))
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
    let reopened = s.open("arena").unwrap();
    assert!(reopened.recovered.records.is_empty() && reopened.recovered.snapshot.is_none());
}

#[test]
fn a_back_id_is_written_by_one_process_and_the_old_one_is_fenced() {
    let Some(server) = RedisServer::start("fencing") else {
        return;
    };
    let a = RedisStore::new(options(&server, SHORT)).unwrap();
    let mut journal_a = a.open("arena").unwrap().journal;
    journal_a.append(1, b"from a", true).unwrap();

    // Renewed every third of the lease: B is refused for longer than a lease.
    let refused_until = Instant::now() + SHORT * 6 / 5;
    while Instant::now() < refused_until {
        let err = RedisStore::new(options(&server, SHORT)).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, StoreError::Leased { .. })
                && text.contains("back back-1 is running elsewhere")
                && text.contains("ms more"),
            "{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    journal_a.append(2, b"from a", true).unwrap();

    // A is cut off: no renewal reaches the server. Its lease ends, on its clock first.
    a.pause_renewal(true);
    let deadline = Instant::now() + SHORT * 5;
    let b = loop {
        match RedisStore::new(options(&server, SHORT)) {
            Ok(b) => break b,
            Err(StoreError::Leased { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("B could not take over: {e}"),
        }
    };
    let token = |s: &RedisStore| s.token().parse::<u64>().unwrap();
    assert!(token(&b) > token(&a), "a new token");
    let err = journal_a.append(3, b"from a, too late", true).unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    assert!(a.health().is_err() && b.health().is_ok());

    let mut opened = b.open("arena").unwrap();
    assert_eq!(steps(&opened.recovered.records), [1, 2], "A's log, intact");
    opened.journal.append(3, b"from b", true).unwrap();

    // Even were A's clock wrong, the server refuses it: a write needs the current token.
    a.inner.state.lock().lost = None;
    a.inner.state.lock().ends = Instant::now() + SHORT;
    let err = a.open("arena").unwrap_err().to_string();
    assert!(err.contains("another process took the back over"), "{err}");
    let records = b.open("arena").unwrap().recovered.records;
    assert_eq!(records[2].bytes, b"from b");
}

#[test]
fn a_dropped_store_releases_its_lease_at_once() {
    let Some(server) = RedisServer::start("release") else {
        return;
    };
    let a = store(&server);
    let opened = a.open("arena").unwrap();
    drop(a);
    let err = RedisStore::new(options(&server, SHORT)).unwrap_err();
    assert!(
        matches!(err, StoreError::Leased { .. }),
        "a writer still holds it: {err}"
    );
    drop(opened);
    assert!(RedisStore::new(options(&server, SHORT)).is_ok());
}

#[test]
fn a_killed_server_keeps_everything_acknowledged() {
    let Some(mut server) = RedisServer::start("restart") else {
        return;
    };
    let s = store(&server);
    let mut opened = s.open("arena").unwrap();
    for step in 1..=20 {
        opened
            .journal
            .append(step, &[step as u8; 100], true)
            .unwrap();
    }
    opened.snapshots.write(20, b"s20").unwrap();
    server.kill();
    let err = opened.journal.append(21, b"r", true).unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err}");
    assert!(s.failures() > 0);
    server.restart();
    // The lease came back with the rest: the same store goes on.
    opened.journal.append(21, b"r", true).unwrap();
    drop(opened);
    let opened = s.open("arena").unwrap();
    assert_eq!(opened.recovered.snapshot.as_ref().map(|s| s.step), Some(20));
    assert_eq!(steps(&opened.recovered.records), [21]);
    drop((opened, s));
    // And so does a new one, from the journal alone.
    server.kill();
    server.restart();
    let again = store(&server).open("arena").unwrap();
    assert_eq!(steps(&again.recovered.records), [21]);
}

#[test]
fn tick_is_refused_on_a_server_that_does_not_fsync_every_write() {
    let Some(server) = RedisServer::start("everysec") else {
        return;
    };
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendfsync")
        .arg("everysec")
        .query(&mut raw(&server))
        .unwrap();
    let err = RedisStore::new(options(&server, SHORT)).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, StoreError::Durability { .. })
            && text.contains("appendfsync everysec")
            && text.contains("`appendfsync always`"),
        "{text}"
    );
    let interval = RedisOptions {
        sync: SyncPolicy::Interval(Duration::from_millis(100)),
        ..options(&server, SHORT)
    };
    assert!(RedisStore::new(interval).is_ok());
}

#[test]
fn an_unreachable_server_or_a_bad_url_is_a_clear_error_without_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = RedisStore::new(RedisOptions {
        url: format!("redis://:hunter2@127.0.0.1:{port}/"),
        prefix: "test".into(),
        back: "back-1".into(),
        lease: SHORT,
        sync: SyncPolicy::EveryRecord,
    })
    .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, StoreError::Unreachable { .. })
            && text.contains(&format!("127.0.0.1:{port}"))
            && !text.contains("hunter2"),
        "{text}"
    );
    let err = RedisStore::new(RedisOptions {
        url: "http://:hunter2@example".into(),
        prefix: "test".into(),
        back: "back-1".into(),
        lease: SHORT,
        sync: SyncPolicy::EveryRecord,
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("store.url: ") && !err.contains("hunter2"),
        "{err}"
    );
}
