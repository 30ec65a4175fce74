//! The tick loop driven event by event, with links whose frames land in a queue.

use centrum_app::{ClientId, Ctx};
use centrum_games::BenchArena;
use centrum_protocol::{BackToFront, Identity, LinkSession, decode};
use tokio::sync::mpsc;

use super::*;

fn options() -> ChannelOptions {
    ChannelOptions {
        period: Duration::from_millis(50),
        link_grace: Duration::from_secs(10),
        resume_grace: Duration::from_secs(15),
        max_game_message_bytes: 1 << 16,
        max_game_messages: 64,
        max_frame_bytes: 1 << 20,
        epoch: Instant::now(),
    }
}

#[test]
fn every_channel_ticks_on_the_backs_grid_in_its_phase() {
    let o = options();
    let at = |us: u64| o.epoch + Duration::from_micros(us);
    assert_eq!(o.next_tick(at(0), 0), at(0));
    assert_eq!(o.next_tick(at(1), 0), at(50_000));
    assert_eq!(o.next_tick(at(50_000), 0), at(50_000));
    assert_eq!(o.next_tick(at(1_234_000), 0), at(1_250_000));
    // Channels 1, 2 and 3 tick a quarter, a half and three quarters of a period later;
    // channel 4 with channel 0.
    assert_eq!(o.next_tick(at(1), 1), at(12_500));
    assert_eq!(o.next_tick(at(1), 2), at(25_000));
    assert_eq!(o.next_tick(at(26_000), 3), at(37_500));
    assert_eq!(o.next_tick(at(38_000), 3), at(87_500));
    assert_eq!(o.next_tick(at(1), 4), at(50_000));
}

fn channel_with(app: Box<dyn DynApp>) -> Channel {
    let shared = Arc::new(ChannelShared {
        name: "arena".into(),
        app_name: "test".into(),
        index: 0,
        inbox: Inbox::new(4),
        metrics: Arc::default(),
        room: None,
    });
    Channel::new(shared, app, options())
}

fn channel() -> Channel {
    channel_with(Box::new(BenchArena::new()))
}

/// One tick now, its frames sent at once (no store to wait for).
fn tick(ch: &mut Channel) {
    tick_at(ch, Instant::now());
}

fn tick_at(ch: &mut Channel, now: Instant) {
    ch.step(now);
    ch.release();
}

/// A link attaching with no sessions listed.
fn attach(link: &LinkHandle) -> Event {
    Event::Attach {
        link: link.clone(),
        instance: 1,
        sessions: vec![],
    }
}

fn join(link: LinkHandle, session: SessionKey) -> Event {
    Event::Join {
        link,
        session,
        data: Bytes::new(),
        secret: session * 1000,
        resume: None,
        identity: None,
        seat: None,
    }
}

/// `front-1` links, the events `joins` makes for it are applied in one tick, and what
/// that tick sent is read and dropped: a channel with players, ready for a test.
fn playing(
    ch: &mut Channel,
    joins: impl FnOnce(&LinkHandle) -> Vec<Event>,
) -> (LinkHandle, mpsc::Receiver<Bytes>) {
    let (link, mut rx) = LinkHandle::for_test("front-1", 64);
    ch.shared.inbox.push(attach(&link)).unwrap();
    for event in joins(&link) {
        ch.shared.inbox.push(event).unwrap();
    }
    tick(ch);
    let _ = frames(&mut rx);
    (link, rx)
}

fn listed(session: SessionKey) -> LinkSession {
    LinkSession {
        session,
        channel: "arena".into(),
        data: Bytes::new(),
        secret: session * 1000,
        identity: None,
    }
}

fn frames(rx: &mut mpsc::Receiver<Bytes>) -> Vec<BackToFront> {
    std::iter::from_fn(|| rx.try_recv().ok())
        .map(|f| decode(&f, usize::MAX).unwrap())
        .collect()
}

fn input(dx: f64) -> Bytes {
    #[derive(serde::Serialize)]
    struct Move {
        dx: f64,
        dy: f64,
    }
    Bytes::from(rmp_serde::to_vec_named(&Move { dx, dy: 0.0 }).unwrap())
}

#[test]
fn joins_get_a_shared_state_after_the_patch_and_inputs_are_acked() {
    let mut ch = channel();
    let (link, mut rx) = LinkHandle::for_test("front-1", 64);
    let inbox = &ch.shared.inbox;
    inbox.push(attach(&link)).unwrap();
    inbox.push(join(link.clone(), 1)).unwrap();
    inbox.push(join(link.clone(), 2)).unwrap();
    tick(&mut ch);
    let out = frames(&mut rx);
    // One full state, after the patch: the link's first, shared by both joiners.
    let [BackToFront::Patch(p), BackToFront::State(s)] = &out[..] else {
        panic!("got {out:?}")
    };
    assert_eq!((p.tick, s.tick), (Tick(1), Tick(1)));
    assert_eq!(s.sessions, vec![(1, Seq(0)), (2, Seq(0))]);

    ch.shared
        .inbox
        .push(Event::Input {
            link: link.clone(),
            session: 1,
            seq: Seq(7),
            data: input(0.25),
        })
        .unwrap();
    ch.shared
        .inbox
        .push(Event::Input {
            link: link.clone(),
            session: 9,
            seq: Seq(1),
            data: input(0.25),
        })
        .unwrap();
    tick(&mut ch);
    let out = frames(&mut rx);
    let [BackToFront::Patch(p)] = &out[..] else {
        panic!("got {out:?}")
    };
    assert!(p.changed);
    assert_eq!(p.acks, vec![(1, Seq(7))]);
    assert_eq!(
        ch.shared.metrics.inputs_dropped_left.load(Relaxed),
        1,
        "input of an unknown session is dropped"
    );

    // Nothing happened: no patch at all.
    tick(&mut ch);
    assert!(frames(&mut rx).is_empty());
}

#[test]
fn a_new_link_gets_the_full_state_first_even_without_sessions() {
    let mut ch = channel();
    let (link, mut rx) = LinkHandle::for_test("front-2", 64);
    ch.shared
        .inbox
        .push(Event::Attach {
            link,
            instance: 1,
            sessions: vec![],
        })
        .unwrap();
    tick(&mut ch);
    let out = frames(&mut rx);
    let [BackToFront::State(s)] = &out[..] else {
        panic!("got {out:?}")
    };
    assert!(s.sessions.is_empty());
    assert!(!s.body.is_empty());
}

#[test]
fn the_inbox_shares_its_capacity_between_sessions() {
    let ch = channel();
    let (link, _rx) = LinkHandle::for_test("front-1", 64);
    let input = |session: SessionKey, seq: u32| Event::Input {
        link: link.clone(),
        session,
        seq: Seq(seq),
        data: Bytes::new(),
    };
    // Capacity 4: a session alone may take half, so that others still get in.
    let inbox = &ch.shared.inbox;
    assert!(inbox.push(input(1, 1)).is_ok() && inbox.push(input(1, 2)).is_ok());
    assert_eq!(
        inbox.push(input(1, 3)),
        Err(crate::inbox::Full),
        "a flooder's share is used up"
    );
    assert!(
        inbox.push(input(2, 1)).is_ok(),
        "another client still gets in"
    );
    assert!(inbox.push(input(3, 1)).is_ok());
    assert_eq!(
        inbox.push(input(4, 1)),
        Err(crate::inbox::Full),
        "the capacity holds"
    );
    assert!(
        inbox
            .push(Event::Leave {
                link: link.clone(),
                session: 1
            })
            .is_ok(),
        "leaves are still queued"
    );
    // A tick takes the queue: the shares start afresh.
    drop(inbox.take(Vec::new()));
    assert!(inbox.push(input(1, 3)).is_ok());
}

#[test]
fn a_relinking_front_keeps_listed_sessions_and_loses_the_rest() {
    let mut ch = channel();
    let (old, _old_rx) = LinkHandle::for_test("front-1", 64);
    ch.shared.inbox.push(attach(&old)).unwrap();
    for session in [1, 2] {
        ch.shared.inbox.push(join(old.clone(), session)).unwrap();
    }
    ch.shared
        .inbox
        .push(Event::Detach { link: old.clone() })
        .unwrap();
    tick(&mut ch);
    assert_eq!(
        ch.game.state.len(),
        2,
        "sessions outlive the link for the grace period"
    );

    let (new, mut rx) = LinkHandle::for_test("front-1", 64);
    // Session 1 is still held by the front; 3 is one the back never saw (re-joined).
    ch.shared
        .inbox
        .push(Event::Attach {
            link: new.clone(),
            instance: 1,
            sessions: vec![listed(1), listed(3)],
        })
        .unwrap();
    // A stale event from the old link is ignored.
    ch.shared
        .inbox
        .push(Event::Leave {
            link: old,
            session: 1,
        })
        .unwrap();
    tick(&mut ch);
    assert_eq!(ch.game.state.len(), 2);
    let out = frames(&mut rx);
    let Some(BackToFront::State(s)) = out.last() else {
        panic!("got {out:?}")
    };
    assert_eq!(
        s.sessions.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        vec![1, 3]
    );
}

#[test]
fn a_newer_link_from_the_same_front_closes_the_older_one() {
    let mut ch = channel();
    let (old, _old_rx) = LinkHandle::for_test("front-1", 64);
    let (new, mut rx) = LinkHandle::for_test("front-1", 64);
    ch.shared.inbox.push(attach(&old)).unwrap();
    tick(&mut ch);
    ch.shared.inbox.push(attach(&new)).unwrap();
    tick(&mut ch);
    assert!(old.is_closed());
    assert!(!new.is_closed());
    assert!(matches!(frames(&mut rx)[..], [BackToFront::State(_)]));
}

#[test]
fn a_full_link_queue_closes_the_link_instead_of_waiting() {
    let mut ch = channel();
    let (link, _rx) = LinkHandle::for_test("front-1", 1);
    ch.shared.inbox.push(attach(&link)).unwrap();
    ch.shared.inbox.push(join(link.clone(), 1)).unwrap();
    tick(&mut ch);
    assert!(link.is_closed());
}

/// Front-1's client (session 1) joins, sends input 5, and its connection closes.
fn held_after_input() -> (Channel, LinkHandle, mpsc::Receiver<Bytes>) {
    let mut ch = channel();
    let (front1, rx1) = LinkHandle::for_test("front-1", 64);
    let inbox = &ch.shared.inbox;
    inbox.push(attach(&front1)).unwrap();
    inbox.push(join(front1.clone(), 1)).unwrap();
    tick(&mut ch);
    let input = Event::Input {
        link: front1.clone(),
        session: 1,
        seq: Seq(5),
        data: input(0.5),
    };
    ch.shared.inbox.push(input).unwrap();
    tick(&mut ch);
    ch.shared
        .inbox
        .push(Event::Away {
            link: front1.clone(),
            session: 1,
        })
        .unwrap();
    tick(&mut ch);
    (ch, front1, rx1)
}

fn resume_on(
    ch: &mut Channel,
    front: &str,
    session: SessionKey,
    claim_secret: u64,
) -> mpsc::Receiver<Bytes> {
    let (link, rx) = LinkHandle::for_test(front, 64);
    let inbox = &ch.shared.inbox;
    inbox.push(attach(&link)).unwrap();
    inbox
        .push(Event::Join {
            link,
            session,
            data: Bytes::new(),
            secret: 77,
            resume: Some(LinkResume {
                front: "front-1".into(),
                session: 1,
                secret: claim_secret,
            }),
            identity: None,
            seat: None,
        })
        .unwrap();
    tick(ch);
    rx
}

/// The acks of every patch received.
fn acks(rx: &mut mpsc::Receiver<Bytes>) -> Vec<(SessionKey, Seq)> {
    frames(rx)
        .into_iter()
        .filter_map(|f| match f {
            BackToFront::Patch(p) => Some(p.acks),
            _ => None,
        })
        .flatten()
        .collect()
}

/// The sessions evicted.
fn evicted(rx: &mut mpsc::Receiver<Bytes>) -> Vec<SessionKey> {
    frames(rx)
        .into_iter()
        .filter_map(|f| match f {
            BackToFront::Evicted(e) => Some(e.session),
            _ => None,
        })
        .collect()
}

/// A new link of `front`, from process `instance`, listing `sessions`: queued in the
/// channel's inbox; what the channel sends on it lands in the returned receiver.
fn relink(
    ch: &Channel,
    front: &str,
    instance: u64,
    sessions: &[SessionKey],
) -> (LinkHandle, mpsc::Receiver<Bytes>) {
    let (link, rx) = LinkHandle::for_test(front, 64);
    let attach = Event::Attach {
        link: link.clone(),
        instance,
        sessions: sessions.iter().map(|&s| listed(s)).collect(),
    };
    ch.shared.inbox.push(attach).unwrap();
    (link, rx)
}

fn states(rx: &mut mpsc::Receiver<Bytes>) -> Vec<(SessionKey, Seq)> {
    frames(rx)
        .into_iter()
        .filter_map(|f| match f {
            BackToFront::State(s) => Some(s.sessions),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn a_disconnected_client_resumes_on_another_front_as_the_same_player() {
    let (mut ch, _front1, _rx1) = held_after_input();
    assert_eq!(
        ch.game.state.len(),
        1,
        "the player stays while its client is away"
    );
    assert_eq!(ch.shared.metrics.held.load(Relaxed), 1);

    let mut rx2 = resume_on(&mut ch, "front-2", 9, 1000);
    assert_eq!(ch.game.state.len(), 1, "no second player");
    assert_eq!(states(&mut rx2), vec![(9, Seq(5))], "the ack survives");
    let m = &ch.shared.metrics;
    assert_eq!(
        (m.joins.load(Relaxed), m.leaves.load(Relaxed)),
        (1, 0),
        "the application saw neither a leave nor a second join"
    );
    assert_eq!(m.resumes.load(Relaxed), 1);
    assert_eq!(m.held.load(Relaxed), 0);

    // Inputs now flow from the new front's session.
    ch.shared
        .inbox
        .push(Event::Input {
            link: ch.members.link_of("front-2").unwrap(),
            session: 9,
            seq: Seq(6),
            data: input(0.5),
        })
        .unwrap();
    tick(&mut ch);
    assert_eq!(acks(&mut rx2), vec![(9, Seq(6))]);
}

#[test]
fn a_wrong_secret_joins_afresh_and_the_held_player_stays_until_the_grace_ends() {
    let (mut ch, _front1, _rx1) = held_after_input();
    let mut rx2 = resume_on(&mut ch, "front-2", 9, 999);
    assert_eq!(states(&mut rx2), vec![(9, Seq(0))]);
    assert_eq!(
        ch.game.state.len(),
        2,
        "a new player; the held one is not handed over"
    );
    assert_eq!(ch.shared.metrics.resumes.load(Relaxed), 0);

    // The grace runs out.
    let later = Instant::now() + ch.options.resume_grace;
    tick_at(&mut ch, later);
    assert_eq!(ch.game.state.len(), 1);
    let m = &ch.shared.metrics;
    assert_eq!(m.resumes_expired.load(Relaxed), 1);
    assert_eq!(m.leaves.load(Relaxed), 1);
    assert_eq!(m.held.load(Relaxed), 0);
}

#[test]
fn resuming_while_the_old_connection_is_still_linked_evicts_it() {
    let mut ch = channel();
    let (_front1, mut rx1) = playing(&mut ch, |l| vec![join(l.clone(), 1)]);

    let mut rx2 = resume_on(&mut ch, "front-2", 9, 1000);
    assert_eq!(states(&mut rx2), vec![(9, Seq(0))]);
    assert_eq!(ch.game.state.len(), 1);
    assert_eq!(evicted(&mut rx1), vec![1]);
}

#[test]
fn a_session_that_moved_while_its_front_was_away_is_evicted_when_it_relinks() {
    let mut ch = channel();
    let (front1, _rx1) = LinkHandle::for_test("front-1", 64);
    ch.shared.inbox.push(attach(&front1)).unwrap();
    ch.shared.inbox.push(join(front1.clone(), 1)).unwrap();
    ch.shared
        .inbox
        .push(Event::Detach { link: front1 })
        .unwrap();
    tick(&mut ch);

    let _rx2 = resume_on(&mut ch, "front-2", 9, 1000);
    let (again, mut rx1) = LinkHandle::for_test("front-1", 64);
    ch.shared
        .inbox
        .push(Event::Attach {
            link: again,
            instance: 1,
            sessions: vec![listed(1)],
        })
        .unwrap();
    tick(&mut ch);
    assert_eq!(ch.game.state.len(), 1, "not joined a second time");
    let out = frames(&mut rx1);
    assert!(
        out.iter()
            .any(|f| matches!(f, BackToFront::Evicted(e) if e.session == 1)),
        "got {out:?}"
    );
}

/// A small game for the tests below: it greets joiners, broadcasts what clients say,
/// answers calls with its client count, and fails where told to.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Echo {
    fail_ticks: bool,
}

#[derive(serde::Deserialize)]
enum EchoCall {
    Count,
    Refuse,
}

impl centrum_app::App for Echo {
    type Join = Option<String>;
    type Input = String;
    type Call = EchoCall;
    type Reply = u64;
    type Options = ();

    fn schema(&self) -> centrum_protocol::Schema {
        centrum_protocol::Schema::new()
    }

    fn join(
        &mut self,
        ctx: &mut Ctx<'_>,
        client: ClientId,
        name: Option<String>,
    ) -> Result<(), AppError> {
        let name = name.unwrap_or_default();
        ctx.send(client, &format!("welcome {name}"))?;
        if name == "nobody" {
            return Err(AppError::new("nobody may join"));
        }
        Ok(())
    }

    fn leave(&mut self, _: &mut Ctx<'_>, _: ClientId) -> Result<(), AppError> {
        Ok(())
    }

    fn input(
        &mut self,
        ctx: &mut Ctx<'_>,
        _: ClientId,
        _: Seq,
        text: String,
    ) -> Result<(), AppError> {
        if text == "fail" {
            self.fail_ticks = true;
            return Err(AppError::new("you asked for it"));
        }
        Ok(ctx.broadcast(&text)?)
    }

    fn tick(&mut self, _: &mut Ctx<'_>) -> Result<(), AppError> {
        if self.fail_ticks {
            return Err(AppError::new("tick failed"));
        }
        Ok(())
    }

    fn call(&mut self, ctx: &mut Ctx<'_>, call: EchoCall) -> Result<u64, AppError> {
        match call {
            EchoCall::Count => Ok(ctx.clients().count() as u64),
            EchoCall::Refuse => Err(AppError::new("not today")),
        }
    }
}

fn echo() -> Channel {
    channel_with(Box::new(Echo::default()))
}

fn named_join(link: &LinkHandle, session: SessionKey, name: &str) -> Event {
    Event::Join {
        link: link.clone(),
        session,
        data: Bytes::from(rmp_serde::to_vec(name).unwrap()),
        secret: 1,
        resume: None,
        identity: None,
        seat: None,
    }
}

fn said(link: &LinkHandle, session: SessionKey, seq: u32, text: &str) -> Event {
    Event::Input {
        link: link.clone(),
        session,
        seq: Seq(seq),
        data: Bytes::from(rmp_serde::to_vec(text).unwrap()),
    }
}

/// `(to, data)` of a link's message frame; the body is a whole client Message.
fn message(frame: &BackToFront) -> Option<(Option<Vec<SessionKey>>, String)> {
    let BackToFront::Message(m) = frame else {
        return None;
    };
    let centrum_protocol::FrontMsg::Message(msg) = decode(&m.body, usize::MAX).unwrap() else {
        panic!("the body of a link message is a client Message");
    };
    assert_eq!(msg.channel, "arena");
    Some((m.to.clone(), rmp_serde::from_slice(&msg.data).unwrap()))
}

#[test]
fn messages_follow_the_patch_and_the_states_of_their_tick() {
    let mut ch = echo();
    let (link, mut rx) = LinkHandle::for_test("front-1", 64);
    ch.shared.inbox.push(attach(&link)).unwrap();
    ch.shared.inbox.push(named_join(&link, 1, "ann")).unwrap();
    ch.shared
        .inbox
        .push(named_join(&link, 2, "nobody"))
        .unwrap();
    tick(&mut ch);
    let out = frames(&mut rx);
    // The rejected joiner's greeting never leaves: it never got a state.
    let kinds: Vec<&str> = out.iter().map(|f| f.name()).collect();
    assert_eq!(kinds, ["JoinRejected", "State", "Message"], "{out:?}");
    assert_eq!(
        message(&out[2]),
        Some((Some(vec![1]), "welcome ann".into()))
    );
    assert_eq!(ch.shared.metrics.messages_undelivered.load(Relaxed), 1);

    ch.shared.inbox.push(said(&link, 1, 1, "hello")).unwrap();
    tick(&mut ch);
    let out = frames(&mut rx);
    let kinds: Vec<&str> = out.iter().map(|f| f.name()).collect();
    assert_eq!(
        kinds,
        ["Patch", "Message"],
        "the ack's patch first: {out:?}"
    );
    assert_eq!(message(&out[1]), Some((None, "hello".into())), "to all");
    assert_eq!(ch.shared.metrics.messages.load(Relaxed), 3);
}

#[test]
fn a_message_to_a_client_that_is_away_is_counted_not_sent() {
    let mut ch = echo();
    let (link, mut rx) = playing(&mut ch, |l| {
        vec![named_join(l, 1, "ann"), named_join(l, 2, "bo")]
    });
    ch.shared
        .inbox
        .push(Event::Away {
            link: link.clone(),
            session: 2,
        })
        .unwrap();
    tick(&mut ch);
    assert!(
        ch.game.clients.contains(ClientId(2)),
        "held, still in the game"
    );
    let mut outbox = Outbox::new(64, 4);
    let mut ctx = Ctx::new(
        &mut ch.game.state,
        "arena",
        Tick(9),
        Duration::from_millis(50),
        &ch.game.clients,
        &mut outbox,
        &mut ch.game.rng,
    );
    assert!(!ctx.is_connected(ClientId(2)));
    ctx.send(ClientId(2), "lost").unwrap();
    ctx.send(ClientId(1), "kept").unwrap();
    ch.game.outbox = outbox;
    tick(&mut ch);
    let sent: Vec<_> = frames(&mut rx).iter().filter_map(message).collect();
    assert_eq!(sent, [(Some(vec![1]), "kept".to_owned())]);
    assert_eq!(ch.shared.metrics.messages_undelivered.load(Relaxed), 1);
}

#[test]
fn inputs_that_do_not_follow_the_ack_are_refused_and_the_ack_never_goes_back() {
    let mut ch = channel();
    let (link, mut rx) = playing(&mut ch, |l| vec![join(l.clone(), 1)]);
    let step_with = |ch: &mut Channel, rx: &mut mpsc::Receiver<Bytes>, seq: u32| {
        ch.shared
            .inbox
            .push(Event::Input {
                link: link.clone(),
                session: 1,
                seq: Seq(seq),
                data: input(0.5),
            })
            .unwrap();
        tick(ch);
        frames(rx)
    };
    assert!(
        matches!(&step_with(&mut ch, &mut rx, 5)[..], [BackToFront::Patch(p)] if p.acks == [(1, Seq(5))])
    );
    for stale in [5, 3, 0] {
        let out = step_with(&mut ch, &mut rx, stale);
        let [BackToFront::Notice(n)] = &out[..] else {
            panic!("seq {stale}: expected only a notice, got {out:?}")
        };
        assert_eq!(n.code, "bad_seq");
        assert!(
            n.message.starts_with(&format!("input {stale} dropped")),
            "{}",
            n.message
        );
    }
    assert_eq!(ch.shared.metrics.inputs_bad_seq.load(Relaxed), 3);
    assert_eq!(
        ch.shared.metrics.inputs.load(Relaxed),
        1,
        "none of them applied"
    );
    assert!(
        matches!(&step_with(&mut ch, &mut rx, 6)[..], [BackToFront::Patch(p)] if p.acks == [(1, Seq(6))])
    );
}

#[test]
fn calls_are_answered_after_the_patch_with_the_reply_or_why_not() {
    let mut ch = echo();
    let (link, mut rx) = playing(&mut ch, |l| vec![named_join(l, 1, "ann")]);
    let call = |ch: &Channel, call: u64, data: Vec<u8>| {
        ch.shared
            .inbox
            .push(Event::Call {
                link: link.clone(),
                call,
                data: Bytes::from(data),
            })
            .unwrap();
    };
    call(&ch, 1, rmp_serde::to_vec("Count").unwrap());
    call(&ch, 2, rmp_serde::to_vec("Refuse").unwrap());
    call(&ch, 3, rmp_serde::to_vec("Dance").unwrap());
    call(&ch, 4, vec![0xc1]);
    tick(&mut ch);
    let replies: Vec<_> = frames(&mut rx)
        .into_iter()
        .filter_map(|f| match f {
            BackToFront::Reply(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(replies.len(), 4);
    assert_eq!((replies[0].call, replies[0].outcome), (1, CallOutcome::Ok));
    assert_eq!(rmp_serde::from_slice::<u64>(&replies[0].data).unwrap(), 1);
    assert_eq!(
        (replies[1].outcome, replies[1].message.as_str()),
        (CallOutcome::Refused, "not today")
    );
    assert_eq!(replies[2].outcome, CallOutcome::BadCall);
    assert!(
        replies[2].message.contains("Dance"),
        "{}",
        replies[2].message
    );
    assert_eq!(replies[3].outcome, CallOutcome::BadCall);
    assert_eq!(ch.shared.metrics.calls_failed.load(Relaxed), 3);

    // A game that takes no calls says so.
    let mut bench = channel();
    let (link, mut rx) = LinkHandle::for_test("front-1", 64);
    bench.shared.inbox.push(attach(&link)).unwrap();
    bench
        .shared
        .inbox
        .push(Event::Call {
            link: link.clone(),
            call: 7,
            data: Bytes::new(),
        })
        .unwrap();
    tick(&mut bench);
    let out = frames(&mut rx);
    assert!(
        out.iter()
            .any(|f| matches!(f, BackToFront::Reply(r) if r.call == 7 && r.outcome == CallOutcome::NoCalls)),
        "{out:?}"
    );
}

#[test]
fn errors_of_the_game_are_counted_and_the_channel_goes_on() {
    let mut ch = echo();
    let (link, mut rx) = playing(&mut ch, |l| vec![named_join(l, 1, "ann")]);
    ch.shared.inbox.push(said(&link, 1, 1, "fail")).unwrap();
    tick(&mut ch);
    let out = frames(&mut rx);
    assert!(
        out.iter().any(|f| matches!(f, BackToFront::Notice(n) if n.code == "input_refused" && n.message == "you asked for it")),
        "{out:?}"
    );
    tick(&mut ch);
    assert_eq!(
        ch.shared.metrics.app_errors.load(Relaxed),
        2,
        "two failed ticks"
    );
    ch.shared
        .inbox
        .push(said(&link, 1, 2, "still here"))
        .unwrap();
    tick(&mut ch);
    assert!(frames(&mut rx).iter().any(|f| message(f).is_some()));
}

#[test]
fn a_restarted_fronts_new_session_under_an_old_key_leaves_the_held_one_claimable() {
    let (mut ch, _front1, _rx1) = held_after_input();
    // front-1 restarts and numbers its sessions from 1 again, with a new secret.
    let (again, _rx) = playing(&mut ch, |l| {
        vec![Event::Join {
            link: l.clone(),
            session: 1,
            data: Bytes::new(),
            secret: 4242,
            resume: None,
            identity: None,
            seat: None,
        }]
    });
    assert_eq!(ch.game.state.len(), 2, "the held player and the new one");
    ch.shared
        .inbox
        .push(Event::Away {
            link: again,
            session: 1,
        })
        .unwrap();
    tick(&mut ch);
    assert_eq!(
        ch.game.state.len(),
        2,
        "both held, each under its own secret"
    );
    assert_eq!(ch.shared.metrics.held.load(Relaxed), 2);
    let mut rx = resume_on(&mut ch, "front-2", 9, 1000);
    assert_eq!(
        states(&mut rx),
        vec![(9, Seq(5))],
        "the first one resumes with its ack"
    );
}

mod recovery;

/// A channel whose state has outgrown the cluster's frames refuses joins, and never
/// sends a frame that would close the link.
#[test]
fn joins_that_would_outgrow_a_frame_are_refused_and_no_frame_is_too_large() {
    const MAX_FRAME: usize = 4096;
    let shared = Arc::new(ChannelShared {
        name: "arena".into(),
        app_name: "test".into(),
        index: 0,
        inbox: Inbox::new(1024),
        metrics: Arc::default(),
        room: None,
    });
    let options = ChannelOptions {
        max_frame_bytes: MAX_FRAME,
        ..options()
    };
    let mut ch = Channel::new(shared, Box::new(BenchArena::new()), options);
    let (link, mut rx) = LinkHandle::for_test("front-1", 4096);
    ch.shared.inbox.push(attach(&link)).unwrap();
    let name = "n".repeat(60);
    let (mut rejected, mut sizes) = (Vec::new(), Vec::new());
    for session in 1..=200u64 {
        #[derive(serde::Serialize)]
        struct Join<'a> {
            name: &'a str,
        }
        let data = rmp_serde::to_vec_named(&Join { name: &name }).unwrap();
        ch.shared
            .inbox
            .push(Event::Join {
                link: link.clone(),
                session,
                data: Bytes::from(data),
                secret: session,
                resume: None,
                identity: None,
                seat: None,
            })
            .unwrap();
        if session % 10 == 0 {
            tick(&mut ch);
            while let Ok(frame) = rx.try_recv() {
                sizes.push(frame.len());
                if let BackToFront::JoinRejected(r) = decode(&frame, usize::MAX).unwrap() {
                    rejected.push((r.session, r.reason));
                }
            }
        }
    }
    assert!(sizes.iter().all(|&len| len <= MAX_FRAME), "{sizes:?}");
    assert!(
        !rejected.is_empty(),
        "the state outgrew a frame, yet every join got in"
    );
    assert!(
        rejected[0]
            .1
            .contains("is full: its state would not fit the cluster's 4096 byte frames"),
        "{:?}",
        rejected[0]
    );
    assert!(!link.is_closed(), "the link stays");
    assert_eq!(
        ch.shared.metrics.joins_too_large.load(Relaxed) as usize,
        rejected.len()
    );
}
