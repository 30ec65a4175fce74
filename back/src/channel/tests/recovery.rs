//! A channel that keeps a store, crashed (dropped mid-run) and brought back from it:
//! the same state and ids, the same game, every member held with its ack, the tick
//! going on; replays that agree with each other; a game that does not replay alike is
//! caught; a front that restarts leaves its clients' memberships waiting.

use centrum_games::Arena;
use centrum_store::{MemoryStore, Store};

use super::*;

fn policy(snapshots: bool) -> StorePolicy {
    StorePolicy {
        every: if snapshots {
            Duration::ZERO
        } else {
            Duration::from_secs(3600)
        },
        journal_bytes: u64::MAX,
        outage: Duration::from_secs(10),
    }
}

fn shared() -> Arc<ChannelShared> {
    Arc::new(ChannelShared {
        name: "arena".into(),
        app_name: "arena".into(),
        index: 0,
        inbox: Inbox::new(64),
        metrics: Arc::default(),
        room: None,
    })
}

fn recovered(store: &dyn Store, snapshots: bool) -> Channel {
    Channel::recover(
        shared(),
        Box::new(Arena::new()),
        options(),
        store,
        policy(snapshots),
        Instant::now(),
    )
    .expect("recovers")
}

/// One tick as `run` does it: step, write the record, then send.
async fn durable_tick(ch: &mut Channel) {
    ch.step(Instant::now());
    ch.commit(&centrum_net::Shutdown::new())
        .await
        .expect("committed");
    ch.release();
}

fn steer(link: &LinkHandle, session: SessionKey, seq: u32, dx: f64) -> Event {
    Event::Input {
        link: link.clone(),
        session,
        seq: Seq(seq),
        data: input(dx),
    }
}

/// What a channel is, as clients and the game see it: its full state and the game
/// itself, saved.
fn fingerprint(ch: &Channel) -> (Bytes, Vec<u8>) {
    (ch.full_state(), ch.game.app.save().expect("saves"))
}

/// Three players on front-1 move for a while (a snapshot on the way when asked), one
/// of them drops; returns the channel as it was when it "crashed".
async fn play(store: &dyn Store, snapshots: bool) -> Channel {
    let mut ch = recovered(store, snapshots);
    let (link, _rx) = LinkHandle::for_test("front-1", 1024);
    ch.shared.inbox.push(attach(&link)).unwrap();
    for session in 1..=3 {
        ch.shared.inbox.push(join(link.clone(), session)).unwrap();
    }
    durable_tick(&mut ch).await;
    for seq in 1..=30u32 {
        for session in 1..=3u64 {
            let dx = if (seq + session as u32).is_multiple_of(3) {
                -1.0
            } else {
                1.0
            };
            ch.shared
                .inbox
                .push(steer(&link, session, seq, dx))
                .unwrap();
        }
        durable_tick(&mut ch).await;
        if seq == 15
            && let Some(p) = &mut ch.persist
        {
            p.finish_snapshot().await;
        }
    }
    ch.shared
        .inbox
        .push(Event::Away {
            link: link.clone(),
            session: 3,
        })
        .unwrap();
    durable_tick(&mut ch).await;
    ch
}

#[tokio::test]
async fn a_recovered_channel_is_the_one_that_crashed() {
    let store = MemoryStore::new();
    let before = play(&store, true).await;
    assert!(
        before.shared.metrics.snapshots.load(Relaxed) > 0,
        "a snapshot was taken"
    );
    let tick = before.game.tick();
    let members = before.members.members();
    let expected = fingerprint(&before);
    drop(before); // the crash: nothing shuts down

    let mut after = recovered(&store, true);
    assert_eq!(
        after.game.tick(),
        tick,
        "the tick count goes on from the last durable tick"
    );
    assert_eq!(
        fingerprint(&after),
        expected,
        "the same state, ids and game"
    );

    assert_eq!(after.shared.metrics.replay_divergences.load(Relaxed), 0);

    // Front-1 relinks still holding its two connected clients: they go on with their
    // acks, as the same players.
    let (_, mut rx) = relink(&after, "front-1", 1, &[1, 2]);
    durable_tick(&mut after).await;
    assert_eq!(states(&mut rx), vec![(1, Seq(30)), (2, Seq(30))]);
    assert_eq!(
        after.members.members(),
        members,
        "every member, on its seat, with its ack"
    );
    assert_eq!(
        after.members.held_count(),
        1,
        "the third waits for its client"
    );
    let connected = |c| after.game.clients.is_connected(ClientId(c));
    assert_eq!(
        (connected(1), connected(2), connected(3)),
        (true, true, false),
        "the game sees who came back, and who is still away"
    );
    assert_eq!(after.game.tick(), Tick(tick.0 + 1));
    assert_eq!(
        after.game.state.len(),
        3 + 12,
        "three players and the coins"
    );
    // The third resumes from another front within the grace, with its ack.
    let (front2, mut rx3) = LinkHandle::for_test("front-2", 64);
    after.shared.inbox.push(attach(&front2)).unwrap();
    let claim = LinkResume {
        front: "front-1".into(),
        session: 3,
        secret: 3000,
    };
    after
        .shared
        .inbox
        .push(Event::Join {
            link: front2,
            session: 7,
            data: Bytes::new(),
            secret: 77,
            resume: Some(claim),
            identity: None,
            seat: None,
        })
        .unwrap();
    durable_tick(&mut after).await;
    assert_eq!(states(&mut rx3), vec![(7, Seq(30))]);
    assert_eq!(
        after.shared.metrics.joins.load(Relaxed),
        0,
        "nobody joined anew"
    );
}

#[tokio::test]
async fn a_journal_replays_the_same_with_or_without_a_snapshot_and_twice_alike() {
    let with_snapshots = MemoryStore::new();
    let journal_only = MemoryStore::new();
    let a = fingerprint(&play(&with_snapshots, true).await);
    let b = fingerprint(&play(&journal_only, false).await);
    assert_eq!(a, b, "the same play, whatever the snapshots");
    let first = recovered(&journal_only, false);
    let second = recovered(&journal_only, false);
    assert_eq!(first.game.tick(), Tick(32));
    assert_eq!(
        fingerprint(&first),
        b,
        "a whole journal replays to the state it recorded"
    );
    assert_eq!(fingerprint(&second), b, "and again");
}

/// A test game with one flaw: one counter per client, and `quirk`.
#[derive(Default, serde::Deserialize)]
struct Quirky {
    quirk: Quirk,
}

#[derive(Default, PartialEq, serde::Serialize, serde::Deserialize)]
enum Quirk {
    /// Its tick reads something outside its calls: a counter shared by the process.
    #[default]
    Drifts,
    /// Its saving fails.
    DoesNotSave,
}

static OUTSIDE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[derive(centrum_app::Kind)]
struct Counter {
    value: u64,
}

impl serde::Serialize for Quirky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.quirk {
            Quirk::DoesNotSave => Err(serde::ser::Error::custom("this game cannot be saved")),
            Quirk::Drifts => {
                use serde::ser::SerializeStruct;
                let mut fields = s.serialize_struct("Quirky", 1)?;
                fields.serialize_field("quirk", &self.quirk)?;
                fields.end()
            }
        }
    }
}

impl centrum_app::App for Quirky {
    type Join = ();
    type Input = ();
    type Call = centrum_app::NoCalls;
    type Reply = centrum_app::NoCalls;
    type Options = ();

    fn schema(&self) -> centrum_protocol::Schema {
        centrum_protocol::Schema::new().kind::<Counter>()
    }

    fn join(&mut self, ctx: &mut Ctx<'_>, _: ClientId, _: ()) -> Result<(), AppError> {
        ctx.state.spawn(Counter { value: 0 })?;
        Ok(())
    }

    fn leave(&mut self, _: &mut Ctx<'_>, _: ClientId) -> Result<(), AppError> {
        Ok(())
    }

    fn input(&mut self, _: &mut Ctx<'_>, _: ClientId, _: Seq, _: ()) -> Result<(), AppError> {
        Ok(())
    }

    fn tick(&mut self, ctx: &mut Ctx<'_>) -> Result<(), AppError> {
        if self.quirk != Quirk::Drifts {
            return Ok(());
        }
        let value = OUTSIDE.fetch_add(1, Relaxed);
        let ids: Vec<_> = ctx.state.entities().map(|(id, _, _)| id).collect();
        for id in ids {
            ctx.state
                .set_value(id, 0, centrum_protocol::Value::Uint(value))?;
        }
        Ok(())
    }
}

/// A durable channel of a [`Quirky`] game (snapshots when asked), with one client who
/// joined and three ticks played.
async fn quirky(store: &MemoryStore, quirk: Quirk, snapshots: bool) -> Channel {
    let mut ch = quirky_recovered(store, quirk, snapshots);
    let (link, _rx) = LinkHandle::for_test("front-1", 64);
    ch.shared.inbox.push(attach(&link)).unwrap();
    ch.shared.inbox.push(join(link, 1)).unwrap();
    for _ in 0..3 {
        durable_tick(&mut ch).await;
    }
    ch
}

fn quirky_recovered(store: &MemoryStore, quirk: Quirk, snapshots: bool) -> Channel {
    let shared = Arc::new(ChannelShared {
        app_name: "quirky".into(),
        ..Arc::into_inner(shared()).unwrap()
    });
    let game = Box::new(Quirky { quirk });
    Channel::recover(
        shared,
        game,
        options(),
        store,
        policy(snapshots),
        Instant::now(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_game_that_does_not_replay_alike_is_counted() {
    let store = MemoryStore::new();
    drop(quirky(&store, Quirk::Drifts, false).await);
    let again = quirky_recovered(&store, Quirk::Drifts, false);
    assert_eq!(again.shared.metrics.replay_divergences.load(Relaxed), 3);
}

#[tokio::test]
async fn a_snapshot_of_another_game_is_refused_by_name() {
    let store = MemoryStore::new();
    drop(play(&store, true).await);
    let err = Channel::recover(
        shared(),
        Box::new(BenchArena::new()),
        options(),
        &store,
        policy(true),
        Instant::now(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("memory:arena") && err.contains("schema"),
        "{err}"
    );
}

#[test]
fn a_restarted_front_leaves_its_clients_memberships_waiting() {
    let mut ch = channel();
    let (link, _rx) = playing(&mut ch, |l| vec![join(l.clone(), 1), join(l.clone(), 2)]);
    ch.shared.inbox.push(Event::Detach { link }).unwrap();
    tick(&mut ch);
    // A new process of front-1 links at once, knowing none of them.
    let (_, _rx) = relink(&ch, "front-1", 2, &[]);
    tick(&mut ch);
    assert_eq!(ch.game.state.len(), 2, "both players stay");
    assert_eq!(ch.shared.metrics.held.load(Relaxed), 2);
    assert_eq!(ch.shared.metrics.leaves.load(Relaxed), 0);
    let mut rx = resume_on(&mut ch, "front-1", 5, 1000);
    assert_eq!(states(&mut rx), vec![(5, Seq(0))]);
    assert_eq!(ch.shared.metrics.resumes.load(Relaxed), 1);
}

/// A journal that fails its next `failures` appends (a full disk), then works.
#[derive(Debug)]
struct Flaky {
    inner: Box<dyn centrum_store::Journal>,
    failures: Arc<std::sync::atomic::AtomicU32>,
}

impl centrum_store::Journal for Flaky {
    fn append(
        &mut self,
        step: u64,
        record: &[u8],
        durable: bool,
    ) -> Result<(), centrum_store::StoreError> {
        let left = self.failures.load(Relaxed);
        if left > 0 {
            self.failures.store(left - 1, Relaxed);
            return Err(centrum_store::StoreError::Io {
                path: "journal".into(),
                source: std::io::Error::from(std::io::ErrorKind::StorageFull),
            });
        }
        self.inner.append(step, record, durable)
    }

    fn cut(&mut self, step: u64) -> Result<(), centrum_store::StoreError> {
        self.inner.cut(step)
    }
}

/// A channel of `store` whose journal fails its next `failures` appends (the returned
/// count, to set more), with one member joined through the returned link.
fn flaky_channel(
    store: &MemoryStore,
    failures: u32,
) -> (
    Channel,
    Arc<std::sync::atomic::AtomicU32>,
    LinkHandle,
    mpsc::Receiver<Bytes>,
) {
    let mut ch = recovered(store, false);
    let failures = Arc::new(std::sync::atomic::AtomicU32::new(failures));
    let persist = ch.persist.as_mut().expect("durable");
    persist.wrap_journal(|inner| {
        Box::new(Flaky {
            inner,
            failures: failures.clone(),
        })
    });
    let (link, rx) = LinkHandle::for_test("front-1", 64);
    ch.shared.inbox.push(attach(&link)).unwrap();
    ch.shared.inbox.push(join(link.clone(), 1)).unwrap();
    (ch, failures, link, rx)
}

#[tokio::test(start_paused = true)]
async fn a_journal_that_cannot_be_written_holds_the_ack_back_until_it_can() {
    let store = MemoryStore::new();
    let (mut ch, failures, link, mut rx) = flaky_channel(&store, 0);
    durable_tick(&mut ch).await;
    frames(&mut rx);

    // The disk is full for three attempts: the tick that applied input 1 waits, its
    // patch (with the ack) is not sent, and the error is counted.
    failures.store(3, Relaxed);
    ch.shared.inbox.push(steer(&link, 1, 1, 1.0)).unwrap();
    ch.step(Instant::now());
    let shutdown = centrum_net::Shutdown::new();
    {
        let commit = ch.commit(&shutdown);
        tokio::pin!(commit);
        // Back-off between attempts runs on tokio's (paused) clock.
        assert!(
            tokio::time::timeout(Duration::from_millis(60), &mut commit)
                .await
                .is_err(),
            "not written yet, so not committed"
        );
        commit.await.expect("written once the disk has room");
    }
    ch.release();
    assert_eq!(
        acks(&mut rx),
        vec![(1, Seq(1))],
        "acknowledged once written"
    );
    assert_eq!(ch.shared.metrics.store_errors.load(Relaxed), 3);
    drop(ch);
    let again = recovered(&store, false);
    assert_eq!(again.game.tick(), Tick(2), "both ticks are in the journal");
}

#[tokio::test(start_paused = true)]
async fn a_journal_that_fails_past_the_outage_limit_stops_the_channel() {
    let store = MemoryStore::new();
    let (mut ch, _failures, _link, mut rx) = flaky_channel(&store, u32::MAX);
    ch.step(Instant::now());
    let started = tokio::time::Instant::now();
    let stopped = ch.commit(&centrum_net::Shutdown::new()).await;
    assert!(
        matches!(&stopped, Err(Stopped::Outage { limit, error }) if *limit == Duration::from_secs(10) && error.contains("journal")),
        "{stopped:?}"
    );
    // Retried with back-off for the whole limit, and not much longer.
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(16),
        "{waited:?}"
    );
    assert!(acks(&mut rx).is_empty(), "nothing acknowledged");
}

#[tokio::test]
async fn a_crash_in_the_middle_of_a_journal_write_recovers_to_the_last_whole_tick() {
    let dir = std::env::temp_dir().join(format!("centrum-torn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store =
        centrum_store::DiskStore::new(&dir, centrum_store::SyncPolicy::EveryRecord).unwrap();
    let before = play(&store, false).await;
    let tick = before.game.tick();
    let expected = fingerprint(&before);
    drop(before);
    // The crash: the next record was being written and only half of it made it.
    let journal = std::fs::read_dir(dir.join("arena"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .expect("a journal segment");
    let whole = std::fs::read(&journal).unwrap();
    let mut torn = whole.clone();
    torn.extend_from_slice(&whole[whole.len() - 40..whole.len() - 10]);
    std::fs::write(&journal, torn).unwrap();

    let after = recovered(&store, false);
    assert_eq!(after.game.tick(), tick, "back to the last whole tick");
    assert_eq!(fingerprint(&after), expected);
    assert_eq!(
        std::fs::read(&journal).unwrap(),
        whole,
        "the torn tail was cut off"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn after_a_restart_the_game_sees_every_client_away_until_it_is_back() {
    let store = MemoryStore::new();
    let before = play(&store, false).await;
    assert!(
        before.game.clients.is_connected(ClientId(1)),
        "connected at the crash"
    );
    drop(before);
    let mut after = recovered(&store, false);
    durable_tick(&mut after).await;
    for c in 1..=3 {
        assert!(
            after.game.clients.contains(ClientId(c)),
            "client {c} is still in"
        );
        assert!(
            !after.game.clients.is_connected(ClientId(c)),
            "client {c} is away"
        );
    }
    // And that is in the journal: a second restart agrees.
    let state = fingerprint(&after);
    drop(after);
    let again = recovered(&store, false);
    assert_eq!(fingerprint(&again), state);
    assert!(!again.game.clients.is_connected(ClientId(1)));
}

#[tokio::test]
async fn after_a_restart_a_client_that_resumed_elsewhere_is_evicted_from_its_old_front() {
    let store = MemoryStore::new();
    drop(play(&store, false).await);
    let mut after = recovered(&store, false);
    // Client 1 (front-1, session 1) resumes on front-2 before front-1 relinks...
    let (front2, mut rx2) = LinkHandle::for_test("front-2", 64);
    after.shared.inbox.push(attach(&front2)).unwrap();
    let claim = LinkResume {
        front: "front-1".into(),
        session: 1,
        secret: 1000,
    };
    let join = Event::Join {
        link: front2,
        session: 4,
        data: Bytes::new(),
        secret: 44,
        resume: Some(claim),
        identity: None,
        seat: None,
    };
    after.shared.inbox.push(join).unwrap();
    durable_tick(&mut after).await;
    assert_eq!(states(&mut rx2), vec![(4, Seq(30))]);
    // ...then front-1 relinks still listing it (a half-open connection): evicted, not
    // joined as a second player.
    let (_, mut rx1) = relink(&after, "front-1", 1, &[1, 2]);
    durable_tick(&mut after).await;
    assert_eq!(evicted(&mut rx1), vec![1]);
    assert_eq!(after.game.clients.len(), 3, "three players, no ghost");
    assert_eq!(after.shared.metrics.joins.load(Relaxed), 0);
}

#[tokio::test]
async fn without_resume_grace_a_restart_still_keeps_the_players_of_a_front_that_relinks() {
    let store = MemoryStore::new();
    drop(play(&store, false).await);
    let no_grace = ChannelOptions {
        resume_grace: Duration::ZERO,
        ..options()
    };
    let mut after = Channel::recover(
        shared(),
        Box::new(Arena::new()),
        no_grace,
        &store,
        policy(false),
        Instant::now(),
    )
    .unwrap();
    let (_, mut rx) = relink(&after, "front-1", 1, &[1, 2]);
    durable_tick(&mut after).await;
    assert_eq!(states(&mut rx), vec![(1, Seq(30)), (2, Seq(30))]);
    assert_eq!(
        after.shared.metrics.joins.load(Relaxed),
        0,
        "nobody joined anew"
    );
}

#[tokio::test]
async fn a_game_that_does_not_save_gets_no_snapshot_and_still_recovers_from_its_journal() {
    let store = MemoryStore::new();
    let ch = quirky(&store, Quirk::DoesNotSave, true).await;
    assert_eq!(ch.shared.metrics.snapshots.load(Relaxed), 0);
    assert!(ch.shared.metrics.store_errors.load(Relaxed) > 0, "counted");
    let expected = ch.full_state();
    drop(ch);
    let again = quirky_recovered(&store, Quirk::DoesNotSave, true);
    assert_eq!(again.full_state(), expected, "the whole journal replays");
}

/// Clients that joined with a token are the same people after a restart: the game
/// reads the same identity from the snapshot or from the journal's joins, and a
/// resume of the held one needs the same subject.
#[tokio::test]
async fn identities_survive_a_restart_from_a_snapshot_or_the_journal() {
    for snapshots in [true, false] {
        let store = MemoryStore::new();
        let mut ch = recovered(&store, snapshots);
        let (link, _rx) = LinkHandle::for_test("front-1", 64);
        ch.shared.inbox.push(attach(&link)).unwrap();
        let ann = Identity::new("user-1").with_claim("name", "Ann");
        for (session, identity) in [(1, Some(ann.clone())), (2, None)] {
            ch.shared
                .inbox
                .push(Event::Join {
                    link: link.clone(),
                    session,
                    data: Bytes::new(),
                    secret: session * 1000,
                    resume: None,
                    identity,
                    seat: None,
                })
                .unwrap();
        }
        durable_tick(&mut ch).await;
        if let Some(p) = &mut ch.persist {
            p.finish_snapshot().await;
        }
        durable_tick(&mut ch).await;
        drop(ch);

        let mut after = recovered(&store, snapshots);
        let clients = &after.game.clients;
        assert_eq!(
            clients.identity(ClientId(1)),
            Some(&ann),
            "snapshots: {snapshots}"
        );
        assert_eq!(clients.identity(ClientId(2)), None);
        // Client 1 is held after the restart (front-1 never relinks): another
        // subject cannot resume it, the same one can.
        let mallory = Identity::new("user-2");
        let (front2, mut rx2) = LinkHandle::for_test("front-2", 64);
        after.shared.inbox.push(attach(&front2)).unwrap();
        for (session, identity) in [(7, mallory), (8, ann.clone())] {
            after
                .shared
                .inbox
                .push(Event::Join {
                    link: front2.clone(),
                    session,
                    data: Bytes::new(),
                    secret: 77,
                    resume: Some(LinkResume {
                        front: "front-1".into(),
                        session: 1,
                        secret: 1000,
                    }),
                    identity: Some(identity),
                    seat: None,
                })
                .unwrap();
            durable_tick(&mut after).await;
        }
        let m = &after.shared.metrics;
        assert_eq!(
            (m.joins.load(Relaxed), m.resumes.load(Relaxed)),
            (1, 1),
            "user-2 joined as a new player; user-1 resumed its own"
        );
        let client_of = |ch: &mut Channel, session| ch.members.member(&front2, session).unwrap().0;
        assert_eq!(client_of(&mut after, 7), ClientId(3), "a new player");
        assert_eq!(client_of(&mut after, 8), ClientId(1), "the same player");
        assert_eq!(states(&mut rx2).len(), 2);
    }
}
