//! Messages between a game client and a front, one per WebSocket binary message.
//!
//! `State` and `Patch` are special on the sending side: the back encodes their body
//! once, and the front prepends a few bytes per client ([`SharedPrefix`]) that carry
//! that client's ack. A client decodes them like any other message.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::codec::tagged_enum;
use crate::mirror::WireValue;
use crate::{Schema, Seq, Tick};

tagged_enum! {
    /// Client to front.
    #[derive(Debug, Clone, PartialEq)]
    pub enum ClientMsg {
        Hello(Hello) = 0,
        Join(Join) = 1,
        Leave(Leave) = 2,
        Input(Input) = 3,
        Ping(Ping) = 4,
    }
}

tagged_enum! {
    /// Front to client.
    #[derive(Debug, Clone, PartialEq)]
    pub enum FrontMsg {
        Welcome(Welcome) = 0,
        State(StateMsg) = 1,
        Patch(PatchMsg) = 2,
        Rejected(Rejected) = 3,
        Left(Left) = 4,
        Unavailable(Unavailable) = 5,
        Error(ErrorMsg) = 6,
        Pong(Pong) = 7,
        Message(MessageMsg) = 8,
    }
}

/// The first message on a connection. A front refuses any other protocol version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    /// Authentication token; empty when the cluster does not require one.
    pub token: String,
    /// A resume token from an earlier `Welcome`, or nil.
    pub resume: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Join {
    pub channel: String,
    /// Application data for the join (MessagePack the application defines), may be empty.
    pub data: Bytes,
    /// For a room: the seat token the matchmaker handed out. A Join of two elements
    /// (no seat) is valid: static channels need none, and a Join without one is sent so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leave {
    pub channel: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    pub channel: String,
    /// Per client and channel, increasing; acked back in `State` and `Patch`.
    pub seq: Seq,
    /// The application's input (MessagePack the application defines).
    pub data: Bytes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ping {
    pub nonce: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    pub version: u32,
    pub session: String,
    /// Present this in a later `Hello` to resume the session.
    pub resume: String,
    /// The id of the front that serves this connection.
    pub front: String,
    /// True when the `Hello` carried a resume token of this cluster: the session keeps
    /// its id and each join on this connection claims the old membership, which the
    /// channel's back restores if it still holds it. False: a new session.
    pub resumed: bool,
}

/// A channel's full state: the reply to a join, and a resynchronisation later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateMsg {
    /// The last of this client's inputs on this channel that the back has applied.
    pub ack: Seq,
    pub channel: String,
    pub tick: Tick,
    pub schema: Schema,
    /// Flat: `id, kind, value*` for each entity, as many values as the kind has fields.
    pub entities: Vec<WireValue>,
}

/// Everything that changed in a channel at one tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchMsg {
    pub ack: Seq,
    pub channel: String,
    pub tick: Tick,
    /// Ids of removed entities.
    pub removed: Vec<u32>,
    /// Flat: `id, kind, value*` for each new entity.
    pub spawned: Vec<WireValue>,
    /// Flat: `id_delta, mask, value*` for each changed entity (see PROTOCOL.md).
    pub updated: Vec<WireValue>,
}

/// The channel refused the join.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    pub channel: String,
    pub reason: String,
}

/// The client is no longer in the channel (it left, or the server removed it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Left {
    pub channel: String,
    pub reason: String,
}

/// The channel's back cannot be reached; a `State` follows when it is back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unavailable {
    pub channel: String,
}

/// Something the client sent was refused. Codes are listed in PROTOCOL.md; a fatal
/// one is followed by a WebSocket close.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorMsg {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pong {
    pub nonce: u64,
}

/// A message from the channel's game to this client (sent to it alone, or to every
/// client of the channel): not state, just an event such as a chat line. Sent during
/// `tick`, it arrives after that tick's `State` or `Patch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageMsg {
    pub channel: String,
    pub tick: Tick,
    /// The game's value (MessagePack the game defines).
    pub data: Bytes,
}

/// The per-client bytes in front of a shared `State` or `Patch` body: the envelope's
/// array headers, the type and the client's ack. At most 9 bytes.
#[derive(Clone, Copy, Debug)]
pub struct SharedPrefix {
    bytes: [u8; 9],
    len: u8,
}

/// Which shared message a prefix starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedKind {
    State,
    Patch,
}

impl SharedPrefix {
    /// `[type, [ack, ` followed by the shared body's remaining elements. Built in place:
    /// it is made once per client per patch, so it allocates nothing.
    pub fn new(kind: SharedKind, ack: Seq) -> Self {
        // The body holds the rest of the inner array: 4 more values for State
        // (channel, tick, schema, entities), 5 for Patch.
        let (code, inner_len) = match kind {
            SharedKind::State => (1, 5),
            SharedKind::Patch => (2, 6),
        };
        let mut bytes = [0; 9];
        bytes[..3].copy_from_slice(&[0x92, code, 0x90 | inner_len]);
        let mut rest = &mut bytes[3..];
        // A u32 takes at most 5 bytes in MessagePack and 6 are left, so this cannot fail.
        let _ = rmp::encode::write_uint(&mut rest, u64::from(ack.0));
        let len = (9 - rest.len()) as u8;
        Self { bytes, len }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}
