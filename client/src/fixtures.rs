//! What the session and driver tests share: a small world, and the server's messages
//! built the way the real front builds them (a per-client prefix before a body that
//! `centrum_protocol::State` encoded).

use centrum_protocol::{
    EntityId, FieldDef, FieldType, FrontMsg, MessageMsg, PROTOCOL_VERSION, Schema, Seq, SharedKind,
    SharedPrefix, State, Tick, Value, Welcome, encode,
};
use serde::Serialize;

/// The player `ada` of [`world`].
pub(crate) const ADA: EntityId = EntityId(0);

/// A world of players with a fixed-point `x` (1/100) and a `name`; `ada` at x 1.5.
pub(crate) fn world() -> State {
    let schema = Schema::new().kind_with(
        "player",
        vec![
            FieldDef::fixed("x", 100),
            FieldDef::new("name", FieldType::Str),
        ],
    );
    let mut state = State::new(schema);
    let ada = state
        .spawn_with(0, vec![Value::Fixed(150), Value::Str("ada".into())])
        .expect("spawn");
    assert_eq!(ada, ADA);
    state
}

/// The welcome of session `front-1-7` on `front-1`.
pub(crate) fn welcome(resumed: bool) -> FrontMsg {
    FrontMsg::Welcome(Welcome {
        version: PROTOCOL_VERSION,
        session: "front-1-7".into(),
        resume: "resume-7".into(),
        front: "front-1".into(),
        resumed,
    })
}

/// A full state as the front sends it: this client's prefix, then the shared body.
pub(crate) fn state_message(state: &State, channel: &str, tick: u32, ack: u32) -> Vec<u8> {
    let mut out = SharedPrefix::new(SharedKind::State, Seq(ack))
        .as_bytes()
        .to_vec();
    state.encode_full(channel, Tick(tick), &mut out);
    out
}

/// The changes since the last commit, as the front sends them.
pub(crate) fn patch_message(state: &mut State, channel: &str, tick: u32, ack: u32) -> Vec<u8> {
    let mut out = SharedPrefix::new(SharedKind::Patch, Seq(ack))
        .as_bytes()
        .to_vec();
    assert!(
        state.commit_patch(channel, Tick(tick), &mut out),
        "no changes"
    );
    out
}

/// A game's message carrying `value` as a map with field names, as a game written in
/// Rust or JavaScript sends it.
pub(crate) fn game_message<T: Serialize>(channel: &str, tick: u32, value: &T) -> Vec<u8> {
    encode(&FrontMsg::Message(MessageMsg {
        channel: channel.into(),
        tick: Tick(tick),
        data: rmp_serde::to_vec_named(value).expect("encode").into(),
    }))
}

/// A line of chat, the kind of thing a game sends as a message.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub(crate) struct Chat {
    pub(crate) from: String,
    pub(crate) text: String,
}

impl Chat {
    pub(crate) fn new(from: &str, text: &str) -> Self {
        Self {
            from: from.into(),
            text: text.into(),
        }
    }
}
