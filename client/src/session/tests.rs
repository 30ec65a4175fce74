//! The session with no network: server messages go in as bytes with the time they
//! arrived, what to send comes out as values.

use std::time::{Duration, Instant};

use bytes::Bytes;

use centrum_protocol::{
    ClientMsg, ErrorMsg, FieldType, FrontMsg, Hello, Input, Join, Leave, Left, PROTOCOL_VERSION,
    PatchMsg, Pong, Rejected, Schema, Seq, StateMsg, Tick, Unavailable, Welcome, WireValue, encode,
};

use super::{Due, MAX_PENDING_PINGS, Session};
use crate::fixtures::{ADA, Chat, game_message, patch_message, state_message, welcome, world};
use crate::{ClientError, Event};

fn session() -> Session {
    Session::welcome(&encode(&welcome(false)), Instant::now()).expect("a welcome")
}

fn apply(session: &mut Session, bytes: &[u8]) -> Result<Option<Event>, ClientError> {
    session.apply(bytes, Instant::now())
}

fn apply_msg(session: &mut Session, msg: FrontMsg) -> Result<Option<Event>, ClientError> {
    apply(session, &encode(&msg))
}

/// A session in `channel`, its mirror at tick 10 with ack 0.
fn joined(channel: &str) -> Session {
    let mut session = session();
    let state = apply(&mut session, &state_message(&world(), channel, 10, 0));
    assert!(matches!(state, Ok(Some(Event::State { .. }))), "{state:?}");
    session
}

fn seq_of_next_input(session: &mut Session, channel: &str) -> Seq {
    let (seq, msg) = session.input(channel, Bytes::from_static(b"in"));
    assert_eq!(
        msg,
        ClientMsg::Input(Input {
            channel: channel.into(),
            seq,
            data: Bytes::from_static(b"in"),
        })
    );
    seq
}

fn left(channel: &str, reason: &str) -> FrontMsg {
    FrontMsg::Left(Left {
        channel: channel.into(),
        reason: reason.into(),
    })
}

fn protocol_error(result: Result<Option<Event>, ClientError>) -> String {
    match result {
        Err(ClientError::Protocol(message)) => message,
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[test]
fn hello_carries_the_version_the_token_and_the_resume_token() {
    assert_eq!(
        Session::hello("secret", Some("resume-6")),
        ClientMsg::Hello(Hello {
            version: PROTOCOL_VERSION,
            token: "secret".into(),
            resume: Some("resume-6".into()),
        })
    );
    assert_eq!(
        Session::hello("", None),
        ClientMsg::Hello(Hello {
            version: PROTOCOL_VERSION,
            token: String::new(),
            resume: None,
        })
    );
}

#[test]
fn the_welcome_names_the_session_and_says_whether_it_resumed() {
    for resumed in [false, true] {
        let session =
            Session::welcome(&encode(&welcome(resumed)), Instant::now()).expect("a welcome");
        assert_eq!(session.id(), "front-1-7");
        assert_eq!(session.front(), "front-1");
        assert_eq!(session.resume_token(), "resume-7");
        assert_eq!(session.resumed(), resumed);
        assert!(
            !format!("{session:?}").contains("resume-7"),
            "the resume token is not printed"
        );
    }
}

#[test]
fn anything_but_a_welcome_of_this_version_is_refused() {
    let other_version = FrontMsg::Welcome(Welcome {
        version: PROTOCOL_VERSION + 1,
        session: "s".into(),
        resume: "r".into(),
        front: "f".into(),
        resumed: false,
    });
    match Session::welcome(&encode(&other_version), Instant::now()) {
        Err(ClientError::Handshake { code, message }) => {
            assert_eq!(code, "version");
            assert!(
                message.contains(&format!("{}", PROTOCOL_VERSION + 1)),
                "{message}"
            );
        }
        other => panic!("expected a handshake error, got {other:?}"),
    }
    let refused = FrontMsg::Error(ErrorMsg {
        code: "version".into(),
        message: "protocol version 3 is not supported; this server speaks 2".into(),
    });
    match Session::welcome(&encode(&refused), Instant::now()) {
        Err(ClientError::Handshake { code, message }) => {
            assert_eq!(code, "version");
            assert!(message.contains("not supported"), "{message}");
        }
        other => panic!("expected a handshake error, got {other:?}"),
    }
    let pong = FrontMsg::Pong(Pong { nonce: 1 });
    assert!(matches!(
        Session::welcome(&encode(&pong), Instant::now()),
        Err(ClientError::Protocol(m)) if m.contains("expected a Welcome, got Pong")
    ));
    assert!(matches!(
        Session::welcome(&[0xc1], Instant::now()),
        Err(ClientError::Protocol(m)) if m.contains("undecodable")
    ));
}

#[test]
fn a_state_fills_the_mirror_and_patches_update_it_and_the_ack() {
    let mut session = session();
    assert!(session.mirror("arena").is_none());
    let mut world = world();
    assert_eq!(
        apply(&mut session, &state_message(&world, "arena", 10, 0)).expect("state"),
        Some(Event::State {
            channel: "arena".into(),
            tick: Tick(10),
            ack: Seq(0),
        })
    );
    let mirror = session.mirror("arena").expect("a mirror after the state");
    assert_eq!(mirror.tick(), Tick(10));
    assert_eq!(mirror.number(ADA, "x"), Some(1.5));
    assert_eq!(session.ack("arena"), Seq::NONE);

    world.commit();
    world.set_number(ADA, 0, 2.5).expect("set");
    assert_eq!(
        apply(&mut session, &patch_message(&mut world, "arena", 11, 1)).expect("patch"),
        Some(Event::Patch {
            channel: "arena".into(),
            tick: Tick(11),
            ack: Seq(1),
        })
    );
    let mirror = session.mirror("arena").expect("mirror");
    assert_eq!(mirror.tick(), Tick(11));
    assert_eq!(mirror.number(ADA, "x"), Some(2.5));
    assert_eq!(session.ack("arena"), Seq(1));
    assert!(session.mirror("lobby").is_none());
    assert_eq!(session.ack("lobby"), Seq::NONE);
}

#[test]
fn inputs_are_numbered_per_channel_and_a_membership_starts_after_its_ack() {
    let mut session = session();
    // Before any state (the front refuses these with not_joined): numbered all the same.
    let early: Vec<_> = (0..3)
        .map(|_| seq_of_next_input(&mut session, "arena"))
        .collect();
    assert_eq!(early, [Seq(1), Seq(2), Seq(3)]);
    assert_eq!(seq_of_next_input(&mut session, "lobby"), Seq(1));

    // A fresh membership (ack 0) starts again from 1; other channels keep counting.
    apply(&mut session, &state_message(&world(), "arena", 1, 0)).expect("state");
    assert_eq!(seq_of_next_input(&mut session, "arena"), Seq(1));
    assert_eq!(seq_of_next_input(&mut session, "arena"), Seq(2));
    assert_eq!(seq_of_next_input(&mut session, "lobby"), Seq(2));

    // A later full state of the same membership (after Unavailable, or a slow client)
    // does not restart the count, even with a lower ack (PROTOCOL.md 7.3).
    apply(&mut session, &state_message(&world(), "arena", 5, 0)).expect("resync");
    assert_eq!(seq_of_next_input(&mut session, "arena"), Seq(3));

    // A resumed membership continues after the last input the back applied.
    apply(&mut session, &state_message(&world(), "resumed", 1, 17)).expect("state");
    assert_eq!(session.ack("resumed"), Seq(17));
    assert_eq!(seq_of_next_input(&mut session, "resumed"), Seq(18));
}

#[test]
fn the_seq_skips_zero_when_it_wraps() {
    let mut session = session();
    apply(
        &mut session,
        &state_message(&world(), "arena", 1, u32::MAX - 1),
    )
    .expect("state");
    let seqs: Vec<_> = (0..3)
        .map(|_| seq_of_next_input(&mut session, "arena"))
        .collect();
    assert_eq!(seqs, [Seq(u32::MAX), Seq(1), Seq(2)]);
}

#[test]
fn joining_a_channel_the_client_is_in_is_refused_and_sends_nothing() {
    let mut session = session();
    let data = Bytes::from_static(b"ada");
    assert_eq!(
        session.join("arena", data.clone(), None).expect("join"),
        ClientMsg::Join(Join {
            channel: "arena".into(),
            data: data.clone(),
            seat: None,
        })
    );
    apply(&mut session, &state_message(&world(), "arena", 1, 0)).expect("state");
    match session.join("arena", data.clone(), None) {
        Err(ClientError::AlreadyJoined(channel)) => assert_eq!(channel, "arena"),
        other => panic!("expected AlreadyJoined, got {other:?}"),
    }
    // A channel being left may be joined again at once.
    session.leave("arena");
    assert!(session.join("arena", data, None).is_ok());
}

#[test]
fn leaving_hides_the_channel_at_once_and_ignores_what_is_still_on_its_way() {
    let mut session = joined("arena");
    let mut world = world();
    world.commit();
    seq_of_next_input(&mut session, "arena");
    assert_eq!(
        session.leave("arena"),
        ClientMsg::Leave(Leave {
            channel: "arena".into()
        })
    );
    assert!(session.mirror("arena").is_none());
    assert_eq!(session.ack("arena"), Seq::NONE);

    // Queued before the Left: none of it is reported.
    world.set_number(ADA, 0, 5.0).expect("set");
    let stragglers = [
        patch_message(&mut world, "arena", 11, 1),
        state_message(&world, "arena", 12, 1),
        game_message("arena", 12, &Chat::new("bo", "bye")),
    ];
    for bytes in stragglers {
        assert_eq!(apply(&mut session, &bytes).expect("ignored"), None);
    }
    assert!(session.mirror("arena").is_none());
    assert_eq!(
        apply_msg(&mut session, left("arena", "left")).expect("left"),
        Some(Event::Left {
            channel: "arena".into(),
            reason: "left".into(),
        })
    );

    // The next membership: a new mirror, and inputs numbered from 1 again.
    world.set_number(ADA, 0, 6.0).expect("set");
    apply(&mut session, &state_message(&world, "arena", 13, 0)).expect("state");
    assert_eq!(
        session.mirror("arena").and_then(|m| m.number(ADA, "x")),
        Some(6.0)
    );
    assert_eq!(seq_of_next_input(&mut session, "arena"), Seq(1));
}

#[test]
fn a_left_the_client_did_not_ask_for_ends_the_membership() {
    let mut session = joined("arena");
    seq_of_next_input(&mut session, "arena");
    let reason = "the session resumed on another connection";
    assert_eq!(
        apply_msg(&mut session, left("arena", reason)).expect("left"),
        Some(Event::Left {
            channel: "arena".into(),
            reason: reason.into(),
        })
    );
    assert!(session.mirror("arena").is_none());
    assert!(!session.is_joined("arena"));
    assert_eq!(seq_of_next_input(&mut session, "arena"), Seq(1));
}

#[test]
fn a_rejection_after_unavailable_ends_the_membership() {
    let mut session = joined("arena");
    seq_of_next_input(&mut session, "arena");
    assert_eq!(
        apply_msg(
            &mut session,
            FrontMsg::Unavailable(Unavailable {
                channel: "arena".into()
            })
        )
        .expect("unavailable"),
        Some(Event::Unavailable {
            channel: "arena".into()
        })
    );
    assert!(
        session.mirror("arena").is_some(),
        "still in the channel, with a stale mirror"
    );
    assert_eq!(
        apply_msg(
            &mut session,
            FrontMsg::Rejected(Rejected {
                channel: "arena".into(),
                reason: "the arena is full".into(),
            })
        )
        .expect("rejected"),
        Some(Event::Rejected {
            channel: "arena".into(),
            reason: "the arena is full".into(),
        })
    );
    assert!(session.mirror("arena").is_none());
    apply(&mut session, &state_message(&world(), "arena", 9, 0)).expect("state");
    assert_eq!(seq_of_next_input(&mut session, "arena"), Seq(1));
}

#[test]
fn a_patch_that_does_not_fit_hides_the_mirror_until_the_next_state() {
    let mut session = joined("arena");
    let mut world = world();
    world.commit();
    // An update of entity 5, which does not exist.
    let bad = PatchMsg {
        ack: Seq(1),
        channel: "arena".into(),
        tick: Tick(11),
        removed: vec![],
        spawned: vec![],
        updated: vec![WireValue::Uint(5), WireValue::Uint(1), WireValue::Uint(3)],
    };
    let message = protocol_error(apply_msg(&mut session, FrontMsg::Patch(bad)));
    assert!(
        message.contains("\"arena\"") && message.contains("entity 5"),
        "{message}"
    );
    assert!(
        session.mirror("arena").is_none(),
        "a broken mirror is hidden"
    );
    assert!(session.is_joined("arena"), "but the client is still in");

    // Skipped without an event, though its ack counts.
    world.set_number(ADA, 0, 4.0).expect("set");
    assert_eq!(
        apply(&mut session, &patch_message(&mut world, "arena", 12, 2)).expect("skipped"),
        None
    );
    assert_eq!(session.ack("arena"), Seq(2));
    // The game's messages still come: the client is in the channel.
    assert!(matches!(
        apply(
            &mut session,
            &game_message("arena", 12, &Chat::new("bo", "hi"))
        ),
        Ok(Some(Event::Message { .. }))
    ));

    assert_eq!(
        apply(&mut session, &state_message(&world, "arena", 12, 2)).expect("state"),
        Some(Event::State {
            channel: "arena".into(),
            tick: Tick(12),
            ack: Seq(2),
        })
    );
    assert_eq!(
        session.mirror("arena").and_then(|m| m.number(ADA, "x")),
        Some(4.0)
    );
}

#[test]
fn a_patch_out_of_order_breaks_the_mirror() {
    let mut session = joined("arena");
    let mut world = world();
    world.commit();
    world.set_number(ADA, 0, 3.0).expect("set");
    // Tick 10 is the mirror's own tick: not after it.
    let message = protocol_error(apply(
        &mut session,
        &patch_message(&mut world, "arena", 10, 0),
    ));
    assert!(message.contains("\"arena\""), "{message}");
    assert!(session.mirror("arena").is_none());
}

#[test]
fn a_state_that_does_not_fit_its_schema_hides_the_mirror() {
    let mut session = joined("arena");
    let bad = StateMsg {
        ack: Seq(0),
        channel: "arena".into(),
        tick: Tick(20),
        schema: Schema::new().kind_plain("coin", &[("x", FieldType::Int)]),
        // Entity 0 of kind 3, which the schema does not have.
        entities: vec![WireValue::Uint(0), WireValue::Uint(3), WireValue::Int(1)],
    };
    let message = protocol_error(apply_msg(&mut session, FrontMsg::State(bad)));
    assert!(message.contains("\"arena\""), "{message}");
    assert!(session.mirror("arena").is_none());
    apply(&mut session, &state_message(&world(), "arena", 21, 0)).expect("state");
    assert!(
        session.mirror("arena").is_some(),
        "the next full state mends it"
    );
}

#[test]
fn a_patch_for_a_channel_the_client_is_not_in_is_a_protocol_error() {
    let mut session = session();
    let patch = PatchMsg {
        ack: Seq(0),
        channel: "lobby".into(),
        tick: Tick(1),
        removed: vec![],
        spawned: vec![],
        updated: vec![],
    };
    let message = protocol_error(apply_msg(&mut session, FrontMsg::Patch(patch)));
    assert!(message.contains("\"lobby\""), "{message}");
}

#[test]
fn undecodable_messages_and_a_second_welcome_are_protocol_errors_and_the_session_goes_on() {
    let mut session = joined("arena");
    for (bytes, want) in [
        (vec![0xc1], "undecodable"),
        (vec![0x92, 0x2a, 0x90], "unknown message type 42"),
        (encode(&welcome(false)), "second Welcome"),
    ] {
        let message = protocol_error(apply(&mut session, &bytes));
        assert!(message.contains(want), "{message:?} lacks {want:?}");
    }
    assert!(session.mirror("arena").is_some());
}

#[test]
fn a_bad_seq_error_is_an_event_and_changes_nothing() {
    let mut session = joined("arena");
    let bad_seq = FrontMsg::Error(ErrorMsg {
        code: "bad_seq".into(),
        message: "input 3 on \"arena\" is not after the ack 5; dropped".into(),
    });
    assert!(matches!(
        apply_msg(&mut session, bad_seq),
        Ok(Some(Event::Error { code, .. })) if code == "bad_seq"
    ));
    assert!(
        session.is_joined("arena"),
        "a non-fatal error changes nothing"
    );
}

#[test]
fn a_pong_reports_the_time_since_its_ping() {
    let mut session = session();
    let t0 = Instant::now();
    let ClientMsg::Ping(first) = session.ping(t0) else {
        panic!("expected a ping")
    };
    let ClientMsg::Ping(second) = session.ping(t0 + Duration::from_millis(5)) else {
        panic!("expected a ping")
    };
    assert_ne!(first.nonce, second.nonce);
    // Answered in any order, each with its own round trip.
    let pong = |nonce| encode(&FrontMsg::Pong(Pong { nonce }));
    assert_eq!(
        session
            .apply(&pong(second.nonce), t0 + Duration::from_millis(25))
            .expect("pong"),
        Some(Event::Pong {
            nonce: second.nonce,
            rtt: Duration::from_millis(20),
        })
    );
    assert_eq!(
        session
            .apply(&pong(first.nonce), t0 + Duration::from_millis(30))
            .expect("pong"),
        Some(Event::Pong {
            nonce: first.nonce,
            rtt: Duration::from_millis(30),
        })
    );
    // Each pong once; one no ping asked for is an error.
    let message = protocol_error(session.apply(&pong(first.nonce), t0));
    assert!(message.contains(&first.nonce.to_string()), "{message}");
    assert!(protocol_error(session.apply(&pong(999), t0)).contains("999"));
}

#[test]
fn only_the_latest_pings_are_remembered() {
    let mut session = session();
    let t0 = Instant::now();
    let nonces: Vec<u64> = (0..=MAX_PENDING_PINGS)
        .map(|_| match session.ping(t0) {
            ClientMsg::Ping(p) => p.nonce,
            other => panic!("expected a ping, got {other:?}"),
        })
        .collect();
    let pong = |nonce| encode(&FrontMsg::Pong(Pong { nonce }));
    protocol_error(session.apply(&pong(nonces[0]), t0));
    for &nonce in &nonces[1..] {
        assert!(matches!(
            session.apply(&pong(nonce), t0),
            Ok(Some(Event::Pong { nonce: n, .. })) if n == nonce
        ));
    }
}

#[test]
fn a_message_of_the_game_is_an_event_for_a_channel_the_client_is_in() {
    let mut session = joined("arena");
    let chat = Chat::new("bo", "gg");
    let event = apply(&mut session, &game_message("arena", 11, &chat))
        .expect("message")
        .expect("an event");
    let Event::Message {
        channel,
        tick,
        data,
    } = &event
    else {
        panic!("expected a message, got {event:?}")
    };
    assert_eq!((channel.as_str(), *tick), ("arena", Tick(11)));
    assert_eq!(&data[..], rmp_serde::to_vec_named(&chat).expect("encode"));
    assert_eq!(
        event.message::<Chat>().transpose().expect("a chat"),
        Some(chat)
    );
    assert_eq!(
        session.mirror("arena").map(|m| m.tick()),
        Some(Tick(10)),
        "a message leaves the mirror as it is"
    );
}

#[test]
fn a_message_while_leaving_or_for_another_channel_is_ignored() {
    let mut session = joined("arena");
    let chat = Chat::new("bo", "hi");
    // Never joined, or joining (its state has not come yet): nothing to report it to.
    assert_eq!(
        apply(&mut session, &game_message("lobby", 3, &chat)).expect("not an error"),
        None
    );
    session.leave("arena");
    assert_eq!(
        apply(&mut session, &game_message("arena", 11, &chat)).expect("not an error"),
        None
    );
    apply_msg(&mut session, left("arena", "left")).expect("left");
    // Left already: a message that crossed the Leave is not an error either.
    assert_eq!(
        apply(&mut session, &game_message("arena", 11, &chat)).expect("not an error"),
        None
    );
}

const PING_AFTER: Duration = Duration::from_secs(2);
const SILENCE: Duration = Duration::from_secs(4);

#[test]
fn a_talking_front_is_never_pinged() {
    let t0 = Instant::now();
    let mut session = Session::welcome(&encode(&welcome(false)), t0).expect("a welcome");
    for i in 1..=10 {
        let now = t0 + Duration::from_millis(1_500 * i);
        assert_eq!(
            session.liveness(now, PING_AFTER, SILENCE),
            Due::Wait(now - Duration::from_millis(1_500) + PING_AFTER)
        );
        let error = FrontMsg::Error(ErrorMsg {
            code: "bad_seq".into(),
            message: String::new(),
        });
        session.apply(&encode(&error), now).expect("an error event");
    }
}

#[test]
fn a_silent_front_is_pinged_then_declared_silent() {
    let t0 = Instant::now();
    let at = |ms| t0 + Duration::from_millis(ms);
    let mut session = Session::welcome(&encode(&welcome(false)), t0).expect("a welcome");
    assert_eq!(
        session.liveness(at(1_999), PING_AFTER, SILENCE),
        Due::Wait(at(2_000))
    );
    let Due::Ping(ClientMsg::Ping(probe)) = session.liveness(at(2_000), PING_AFTER, SILENCE) else {
        panic!("expected a ping after 2 s of silence")
    };
    // One ping at a time: then the wait for its answer.
    assert_eq!(
        session.liveness(at(3_000), PING_AFTER, SILENCE),
        Due::Wait(at(6_000))
    );
    assert_eq!(
        session.liveness(at(6_000), PING_AFTER, SILENCE),
        Due::Silent {
            silent: Duration::from_secs(6)
        }
    );
    // Had the pong come, it would not be an event, and the front would be alive.
    let mut session = Session::welcome(&encode(&welcome(false)), t0).expect("a welcome");
    let Due::Ping(ClientMsg::Ping(probe_again)) = session.liveness(at(2_000), PING_AFTER, SILENCE)
    else {
        panic!("expected a ping")
    };
    assert_eq!(probe_again.nonce, probe.nonce);
    let pong = encode(&FrontMsg::Pong(Pong { nonce: probe.nonce }));
    assert_eq!(
        session.apply(&pong, at(2_100)).expect("the probe's pong"),
        None
    );
    assert_eq!(
        session.liveness(at(4_000), PING_AFTER, SILENCE),
        Due::Wait(at(4_100))
    );
    // A control frame (the front's own WebSocket ping) counts as well.
    let Due::Ping(ClientMsg::Ping(next)) = session.liveness(at(4_100), PING_AFTER, SILENCE) else {
        panic!("expected a second probe")
    };
    assert_ne!(next.nonce, probe.nonce, "each probe has its own nonce");
    session.heard(at(5_000));
    assert_eq!(
        session.liveness(at(6_000), PING_AFTER, SILENCE),
        Due::Wait(at(7_000))
    );
}

#[test]
fn probes_do_not_disturb_the_pings_of_the_application() {
    let t0 = Instant::now();
    let mut session = Session::welcome(&encode(&welcome(false)), t0).expect("a welcome");
    let ClientMsg::Ping(mine) = session.ping(t0) else {
        panic!("expected a ping")
    };
    let Due::Ping(ClientMsg::Ping(probe)) = session.liveness(t0 + PING_AFTER, PING_AFTER, SILENCE)
    else {
        panic!("expected a probe")
    };
    let pong = |nonce| encode(&FrontMsg::Pong(Pong { nonce }));
    assert_eq!(
        session.apply(&pong(probe.nonce), t0 + PING_AFTER).unwrap(),
        None
    );
    assert!(matches!(
        session.apply(&pong(mine.nonce), t0 + PING_AFTER).unwrap(),
        Some(Event::Pong { nonce, .. }) if nonce == mine.nonce
    ));
}
