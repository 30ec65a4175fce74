//! Wire-level tests: golden bytes that pin the encoding, the shared-body messages a
//! front assembles, refusal of bad input, and the convergence property.

use bytes::Bytes;
use proptest::prelude::*;

use crate::*;

const LIMIT: usize = 1 << 20;

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The example schema of PROTOCOL.md: bench-arena's, without its `name` field.
fn arena_schema() -> Schema {
    Schema::new().kind_with(
        "player",
        vec![
            FieldDef::fixed("x", 1000),
            FieldDef::fixed("y", 1000),
            FieldDef::new("seq", FieldType::Uint),
        ],
    )
}

/// Assembles what a front sends: the per-client prefix, then the shared body.
fn assemble(kind: SharedKind, ack: Seq, body: &[u8]) -> Vec<u8> {
    let mut msg = SharedPrefix::new(kind, ack).as_bytes().to_vec();
    msg.extend_from_slice(body);
    msg
}

#[test]
fn golden_client_hello() {
    let hello = ClientMsg::Hello(Hello {
        version: PROTOCOL_VERSION,
        token: String::new(),
        resume: None,
    });
    let bytes = encode(&hello);
    assert_eq!(hex(&bytes), "92 00 93 02 a0 c0");
    assert_eq!(decode::<ClientMsg>(&bytes, LIMIT).unwrap(), hello);
}

#[test]
fn golden_welcome() {
    let welcome = FrontMsg::Welcome(Welcome {
        version: PROTOCOL_VERSION,
        session: "front-1-42".into(),
        resume: "front-1.2a.9f3c51e07d2a4c81.front-1-42".into(),
        front: "front-1".into(),
        resumed: false,
    });
    let bytes = encode(&welcome);
    assert_eq!(
        hex(&bytes),
        "92 00 95 02 aa 66 72 6f 6e 74 2d 31 2d 34 32 d9 26 66 72 6f 6e 74 2d 31 2e 32 61 2e 39 66 33 63 35 31 65 30 37 64 32 61 34 63 38 31 2e 66 72 6f 6e 74 2d 31 2d 34 32 a7 66 72 6f 6e 74 2d 31 c2"
    );
    assert_eq!(decode::<FrontMsg>(&bytes, LIMIT).unwrap(), welcome);
}

/// A game's message: `{"tagged_by": "ann"}` to one client, sent at tick 42.
#[test]
fn golden_message() {
    let data = [
        0x81, 0xa9, b't', b'a', b'g', b'g', b'e', b'd', b'_', b'b', b'y', 0xa3, b'a', b'n', b'n',
    ];
    let msg = FrontMsg::Message(MessageMsg {
        channel: "tag".into(),
        tick: Tick(42),
        data: Bytes::copy_from_slice(&data),
    });
    let bytes = encode(&msg);
    assert_eq!(
        hex(&bytes),
        "92 08 93 a3 74 61 67 2a c4 0f 81 a9 74 61 67 67 65 64 5f 62 79 a3 61 6e 6e"
    );
    assert_eq!(decode::<FrontMsg>(&bytes, LIMIT).unwrap(), msg);
}

#[test]
fn golden_client_join_and_input() {
    let join = ClientMsg::Join(Join {
        channel: "arena".into(),
        data: Bytes::new(),
        seat: None,
    });
    assert_eq!(hex(&encode(&join)), "92 01 92 a5 61 72 65 6e 61 c4 00");
    // A room's join carries the seat token as a third element.
    let room = ClientMsg::Join(Join {
        channel: "d.x.b".into(),
        data: Bytes::new(),
        seat: Some("t".into()),
    });
    assert_eq!(
        hex(&encode(&room)),
        "92 01 93 a5 64 2e 78 2e 62 c4 00 a1 74"
    );
    assert_eq!(decode::<ClientMsg>(&encode(&room), LIMIT).unwrap(), room);
    // Input data is the application's MessagePack: here the map {"dx": 0.25, "dy": -0.25}
    // written with float32 values.
    let data = [
        0x82, 0xa2, b'd', b'x', 0xca, 0x3e, 0x80, 0, 0, 0xa2, b'd', b'y', 0xca, 0xbe, 0x80, 0, 0,
    ];
    let input = ClientMsg::Input(Input {
        channel: "arena".into(),
        seq: Seq(7),
        data: Bytes::copy_from_slice(&data),
    });
    assert_eq!(
        hex(&encode(&input)),
        "92 03 93 a5 61 72 65 6e 61 07 c4 11 82 a2 64 78 ca 3e 80 00 00 a2 64 79 ca be 80 00 00"
    );
}

#[test]
fn golden_state_and_patch() {
    let mut state = State::new(arena_schema());
    let a = state.spawn_kind(0).unwrap();
    state.set_number(a, 0, 0.1).unwrap();
    state.set_number(a, 1, 0.1).unwrap();
    let b = state.spawn_kind(0).unwrap();
    state.set_number(b, 0, 0.1).unwrap();
    state.set_number(b, 1, 0.1).unwrap();
    state.commit();

    let mut body = Vec::new();
    state.encode_full("arena", Tick(41), &mut body);
    let joined = assemble(SharedKind::State, Seq(0), &body);
    assert_eq!(
        hex(&joined),
        "92 01 95 00 a5 61 72 65 6e 61 29 91 92 a6 70 6c 61 79 65 72 93 93 a1 78 a5 66 69 78 65 64 cd 03 e8 \
         93 a1 79 a5 66 69 78 65 64 cd 03 e8 93 a3 73 65 71 a4 75 69 6e 74 00 9a 00 00 64 64 00 01 00 64 64 00"
    );
    let FrontMsg::State(msg) = decode(&joined, LIMIT).unwrap() else {
        panic!("not a state")
    };
    assert_eq!(
        (msg.channel.as_str(), msg.tick, msg.ack),
        ("arena", Tick(41), Seq(0))
    );

    // Tick 42: player b moved by (+0.25, -0.25) and applied its input 1.
    state.set_number(b, 0, 0.35).unwrap();
    state.set_number(b, 1, -0.15).unwrap();
    state.set_value(b, 2, Value::Uint(1)).unwrap();
    let mut body = Vec::new();
    assert!(state.commit_patch("arena", Tick(42), &mut body));
    let patch = assemble(SharedKind::Patch, Seq(1), &body);
    assert_eq!(
        hex(&patch),
        "92 02 96 01 a5 61 72 65 6e 61 2a 90 90 95 01 07 cd 01 5e d1 ff 6a 01"
    );
    let FrontMsg::Patch(msg) = decode(&patch, LIMIT).unwrap() else {
        panic!("not a patch")
    };
    assert_eq!(msg.updated.len(), 5);
    assert!(
        !state.commit_patch("arena", Tick(43), &mut Vec::new()),
        "no change, no patch"
    );
}

#[test]
fn unknown_type_and_garbage_are_refused() {
    let err = decode::<ClientMsg>(&[0x92, 0x09, 0x90], LIMIT).unwrap_err();
    assert!(err.to_string().contains("unknown message type 9"), "{err}");
    assert!(matches!(
        decode::<ClientMsg>(&[0xc1, 0xff], LIMIT),
        Err(DecodeError::Malformed(_))
    ));
    assert!(matches!(
        decode::<ClientMsg>(&[], LIMIT),
        Err(DecodeError::Malformed(_))
    ));
    let big = vec![0u8; 100];
    assert!(matches!(
        decode::<ClientMsg>(&big, 99),
        Err(DecodeError::TooLarge {
            size: 100,
            limit: 99
        })
    ));
    let mut two = encode(&ClientMsg::Ping(Ping { nonce: 1 }));
    two.push(0xc0);
    assert!(matches!(
        decode::<ClientMsg>(&two, LIMIT),
        Err(DecodeError::Trailing(1))
    ));
}

#[test]
fn every_message_round_trips() {
    let msgs = [
        encode(&FrontToBack::Sessions(LinkSessions {
            sessions: vec![LinkSession {
                session: 3,
                channel: "c".into(),
                data: Bytes::from_static(b"x"),
                secret: 0xfeed,
                identity: Some(Identity::new("ann").with_claim("name", "Ann")),
            }],
        })),
        encode(&BackToFront::Patch(LinkPatch {
            channel: 1,
            tick: Tick(9),
            changed: true,
            acks: vec![(3, Seq(4))],
            body: Bytes::from_static(b"\x01"),
        })),
        encode(&NodeToMaster::Register(Register {
            version: 1,
            role: Role::Back,
            id: "b".into(),
            pid: 7,
            listen: "127.0.0.1:1".into(),
            nonce: Bytes::from_static(&[1; 32]),
        })),
    ];
    assert!(
        matches!(decode::<FrontToBack>(&msgs[0], LIMIT).unwrap(), FrontToBack::Sessions(s) if s.sessions[0].session == 3)
    );
    assert!(
        matches!(decode::<BackToFront>(&msgs[1], LIMIT).unwrap(), BackToFront::Patch(p) if p.acks == vec![(3, Seq(4))])
    );
    assert!(
        matches!(decode::<NodeToMaster>(&msgs[2], LIMIT).unwrap(), NodeToMaster::Register(r) if r.role == Role::Back)
    );
    // The messages that carry a resume, compared whole.
    let join = FrontToBack::Join(LinkJoin {
        session: 4,
        channel: "arena".into(),
        data: Bytes::from_static(b"j"),
        secret: u64::MAX,
        resume: Some(LinkResume {
            front: "f".into(),
            session: 3,
            secret: 0xfeed,
        }),
        identity: Some(Identity::new("ann").with_claim("channels", &["a", "m-*"])),
        seat: Some("duel.abc.back-1:1:2:00".into()),
    });
    let away = FrontToBack::Away(LinkAway {
        session: 4,
        channel: 0,
    });
    let call = FrontToBack::Call(LinkCall {
        call: 9,
        channel: 1,
        data: Bytes::from_static(b"\xc0"),
    });
    for msg in [join, away, call] {
        assert_eq!(decode::<FrontToBack>(&encode(&msg), LIMIT).unwrap(), msg);
    }
    let evicted = BackToFront::Evicted(LinkEvicted {
        session: 3,
        channel: 0,
        reason: "resumed".into(),
    });
    let message = BackToFront::Message(LinkMessage {
        channel: 0,
        to: Some(vec![3, 4]),
        body: Bytes::from_static(b"m"),
    });
    let broadcast = BackToFront::Message(LinkMessage {
        channel: 0,
        to: None,
        body: Bytes::from_static(b"m"),
    });
    let reply = BackToFront::Reply(LinkReply {
        call: 9,
        outcome: CallOutcome::Ok,
        message: String::new(),
        data: Bytes::from_static(b"\x01"),
    });
    for msg in [evicted, message, broadcast, reply] {
        assert_eq!(decode::<BackToFront>(&encode(&msg), LIMIT).unwrap(), msg);
    }
}

#[test]
fn golden_link_heartbeats() {
    let beat = LinkHeartbeat { sent_ms: 1500 };
    let from_front = encode(&FrontToBack::Heartbeat(beat));
    assert_eq!(hex(&from_front), "92 07 91 cd 05 dc");
    assert_eq!(
        decode::<FrontToBack>(&from_front, LIMIT).unwrap(),
        FrontToBack::Heartbeat(beat)
    );
    let from_back = encode(&BackToFront::Heartbeat(beat));
    assert_eq!(hex(&from_back), "92 09 91 cd 05 dc");
    assert_eq!(
        decode::<BackToFront>(&from_back, LIMIT).unwrap(),
        BackToFront::Heartbeat(beat)
    );
    // A heartbeat without its field is malformed, not a default.
    assert!(decode::<BackToFront>(&[0x92, 0x09, 0x90], LIMIT).is_err());
}

#[test]
fn call_outcomes_travel_as_their_names_and_unknown_ones_do_not_decode() {
    let reply = |outcome| {
        encode(&BackToFront::Reply(LinkReply {
            call: 1,
            outcome,
            message: String::new(),
            data: Bytes::new(),
        }))
    };
    let bytes = reply(CallOutcome::BadCall);
    assert!(
        hex(&bytes).contains("a8 62 61 64 5f 63 61 6c 6c"),
        "\"bad_call\" as a str"
    );
    let renamed = hex(&bytes).replace("a8 62 61 64 5f 63 61 6c 6c", "a8 62 61 64 5f 63 61 6c 6d");
    let renamed: Vec<u8> = renamed
        .split(' ')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    let err = decode::<BackToFront>(&renamed, LIMIT).unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown call outcome \"bad_calm\""),
        "{err}"
    );
}

#[test]
fn schema_limits_are_checked() {
    let fields: Vec<_> = (0..65)
        .map(|i| FieldDef::new(&format!("f{i}"), FieldType::Bool))
        .collect();
    assert!(matches!(
        Schema::new().kind_with("k", fields).validate(),
        Err(SchemaError::TooManyFields { count: 65, .. })
    ));
    let zero = Schema::new().kind_with("k", vec![FieldDef::fixed("x", 0)]);
    assert!(matches!(
        zero.validate(),
        Err(SchemaError::ZeroScale { .. })
    ));
    let twice = Schema::new().kind_plain("k", &[]).kind_plain("k", &[]);
    assert_eq!(
        twice.validate().unwrap_err().to_string(),
        "two kinds are called \"k\""
    );
    let same_field =
        Schema::new().kind_plain("k", &[("x", FieldType::Int), ("x", FieldType::Bool)]);
    assert_eq!(
        same_field.validate().unwrap_err().to_string(),
        "kind \"k\" has two fields called \"x\""
    );
    let mut state = State::new(arena_schema());
    let id = state.spawn_kind(0).unwrap();
    assert_eq!(
        state.set_value(id, 2, Value::Str("no".into())),
        Err(StateError::WrongType { kind: 0, field: 2 })
    );
    assert_eq!(
        state.set_value(id, 9, Value::Uint(1)),
        Err(StateError::NoField { kind: 0, field: 9 })
    );
    assert_eq!(state.spawn_kind(3), Err(StateError::NoKind(3)));
}

/// One step of a random history of a channel's state.
#[derive(Debug, Clone)]
enum Op {
    Spawn(KindId),
    Set {
        pick: usize,
        field: FieldId,
        value: i64,
    },
    Remove {
        pick: usize,
    },
    Commit,
}

fn mixed_schema() -> Schema {
    Schema::new()
        .kind_with(
            "player",
            vec![
                FieldDef::fixed("x", 100),
                FieldDef::new("name", FieldType::Str),
                FieldDef::new("score", FieldType::Uint),
                FieldDef::new("alive", FieldType::Bool),
            ],
        )
        .kind_with(
            "shot",
            vec![
                FieldDef::new("v", FieldType::F32),
                FieldDef::new("w", FieldType::F64),
                FieldDef::new("t", FieldType::Int),
                FieldDef::new("b", FieldType::Bytes),
            ],
        )
}

fn value_for(def: &FieldDef, v: i64) -> Value {
    match def.ty {
        FieldType::Bool => Value::Bool(v % 2 == 0),
        FieldType::Int => Value::Int(v * 1_000_003),
        FieldType::Uint => Value::Uint(v.unsigned_abs()),
        FieldType::F32 => Value::F32(v as f32 / 3.0),
        FieldType::F64 => Value::F64(v as f64 / 7.0),
        FieldType::Fixed => Value::Fixed(v),
        FieldType::Str => Value::Str(format!("p{v}")),
        FieldType::Bytes => {
            Value::Bytes(v.to_le_bytes()[..(v.unsigned_abs() % 9) as usize].to_vec())
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..2u16).prop_map(Op::Spawn),
        6 => (any::<usize>(), 0..4u8, -70_000i64..70_000).prop_map(|(pick, field, value)| Op::Set { pick, field, value }),
        2 => any::<usize>().prop_map(|pick| Op::Remove { pick }),
        2 => Just(Op::Commit),
    ]
}

fn full_mirror(state: &State, tick: Tick) -> Mirror {
    let mut body = Vec::new();
    state.encode_full("c", tick, &mut body);
    let FrontMsg::State(msg) = decode(&assemble(SharedKind::State, Seq(0), &body), LIMIT).unwrap()
    else {
        panic!("not a state")
    };
    let mut mirror = Mirror::new();
    mirror.apply_state(&msg).unwrap();
    mirror
}

fn apply_patch(mirror: Option<&mut Mirror>, body: &[u8]) {
    if let Some(m) = mirror {
        let FrontMsg::Patch(p) = decode(&assemble(SharedKind::Patch, Seq(1), body), LIMIT).unwrap()
        else {
            panic!("not a patch")
        };
        m.apply_patch(&p).unwrap();
    }
}

proptest! {
    /// A mirror built from a full state plus every later patch equals a full state
    /// encoded at the same tick, and both equal the authoritative state.
    #[test]
    fn mirror_converges(ops in proptest::collection::vec(op(), 1..200), join_at in 0usize..200) {
        let schema = mixed_schema();
        let mut state = State::new(schema.clone());
        let mut tick = Tick(u32::MAX - 5); // exercise wrap-around too
        let mut mirror: Option<Mirror> = None;
        for (i, op) in ops.iter().enumerate() {
            if i == join_at.min(ops.len() - 1) && mirror.is_none() {
                state.commit_patch("c", tick, &mut Vec::new());
                mirror = Some(full_mirror(&state, tick));
            }
            let live: Vec<_> = state.entities().map(|(id, _, _)| id).collect();
            match *op {
                Op::Spawn(kind) => { state.spawn_kind(kind).unwrap(); }
                Op::Set { pick, field, value } if !live.is_empty() => {
                    let id = live[pick % live.len()];
                    let kind = state.kind_of(id).unwrap();
                    let def = schema.kinds[usize::from(kind)].fields[usize::from(field)].clone();
                    state.set_value(id, field, value_for(&def, value)).unwrap();
                }
                Op::Remove { pick } if !live.is_empty() => { state.remove(live[pick % live.len()]); }
                Op::Commit => {
                    tick = tick.next();
                    let mut body = Vec::new();
                    if state.commit_patch("c", tick, &mut body) {
                        apply_patch(mirror.as_mut(), &body);
                    }
                }
                _ => {}
            }
        }
        tick = tick.next();
        let mut body = Vec::new();
        if state.commit_patch("c", tick, &mut body) {
            apply_patch(mirror.as_mut(), &body);
        }
        let mirror = mirror.unwrap_or_else(|| full_mirror(&state, tick));
        let fresh = full_mirror(&state, mirror.tick());
        prop_assert_eq!(mirror.entities(), fresh.entities());
        let authoritative: Vec<_> = state.entities().map(|(id, kind, v)| (id, kind, v.to_vec())).collect();
        let mirrored: Vec<_> = mirror.entities().iter().map(|(id, e)| (*id, e.kind, e.values.clone())).collect();
        prop_assert_eq!(authoritative, mirrored);
    }
}

#[test]
fn shared_prefixes_encode_every_ack_size_like_the_serde_encoder() {
    for ack in [0, 127, 128, 255, 256, 65_535, 65_536, u32::MAX] {
        for kind in [SharedKind::State, SharedKind::Patch] {
            let prefix = SharedPrefix::new(kind, Seq(ack));
            let code = if kind == SharedKind::State { 1 } else { 2 };
            let mut expected = vec![0x92, code, if code == 1 { 0x95 } else { 0x96 }];
            rmp::encode::write_uint(&mut expected, u64::from(ack)).expect("vec");
            assert_eq!(prefix.as_bytes(), &expected[..], "ack {ack}");
        }
    }
}
