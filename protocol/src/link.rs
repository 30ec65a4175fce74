//! Messages on a link between a front and a back: length-prefixed frames over TCP
//! (or an in-memory pipe), each frame one message.
//!
//! A front opens the link with `LinkHello`; the back proves it holds the cluster secret
//! (`LinkChallenge`), the front proves it too (`LinkAuth`), the back answers
//! `LinkWelcome`, the front names the sessions it holds (`LinkSessions`), and the back
//! sends one `State` per channel before any `Patch` of that channel.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::codec::tagged_enum;
use crate::{Identity, Seq, Tick};

/// A front's own number for one of its client connections; unique within that front.
pub type SessionKey = u64;

/// A channel's number on a link: its position in the back's `LinkWelcome::channels`
/// for a channel of the config, or the number a `LinkOpened` gave a room. A back never
/// gives one number to two channels while it runs, so a frame that names a disposed
/// room cannot reach another one.
pub type ChannelIndex = u32;

/// The largest frame either side of a link or a control link takes before the peer has
/// proved it holds the cluster secret: enough for every handshake message, too little
/// to make a stranger's connection cost anything.
pub const HANDSHAKE_FRAME_BYTES: u32 = 4096;

/// The length of a handshake nonce.
pub const NONCE_BYTES: usize = 32;

tagged_enum! {
    /// Front to back.
    #[derive(Debug, Clone, PartialEq)]
    pub enum FrontToBack {
        Hello(LinkHello) = 0,
        Join(LinkJoin) = 1,
        Leave(LinkLeave) = 2,
        Input(LinkInput) = 3,
        Resync(LinkResync) = 4,
        Away(LinkAway) = 5,
        Call(LinkCall) = 6,
        Heartbeat(LinkHeartbeat) = 7,
        Auth(LinkAuth) = 8,
        Sessions(LinkSessions) = 9,
    }
}

tagged_enum! {
    /// Back to front.
    #[derive(Debug, Clone, PartialEq)]
    pub enum BackToFront {
        Welcome(LinkWelcome) = 0,
        Refused(LinkRefused) = 1,
        State(LinkState) = 2,
        Patch(LinkPatch) = 3,
        JoinRejected(LinkJoinRejected) = 4,
        Notice(LinkNotice) = 5,
        Evicted(LinkEvicted) = 6,
        Message(LinkMessage) = 7,
        Reply(LinkReply) = 8,
        Heartbeat(LinkHeartbeat) = 9,
        Challenge(LinkChallenge) = 10,
        Opened(LinkOpened) = 11,
        Closed(LinkClosed) = 12,
    }
}

/// Opens a link. Nothing else is read from the front until it has proved, in
/// [`LinkAuth`], that it holds the cluster secret; until then a back takes frames of at
/// most [`HANDSHAKE_FRAME_BYTES`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkHello {
    pub version: u32,
    pub front: String,
    /// Random per front process: tells a relink apart from a restarted front.
    pub instance: u64,
    /// Fresh random bytes ([`NONCE_BYTES`] of them) for this link's proofs.
    pub nonce: Bytes,
}

/// The back's answer to a hello: its id, its own nonce, and its proof that it holds the
/// cluster secret (PROTOCOL.md, "Cluster authentication"). A front that cannot verify
/// the proof closes the link before it sends anything about its clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkChallenge {
    pub back: String,
    pub nonce: Bytes,
    pub proof: Bytes,
}

/// The front's proof that it holds the cluster secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkAuth {
    pub proof: Bytes,
}

/// The front's first message after `LinkWelcome`, exactly once per link. `sessions` are
/// the front's clients already in channels of this back (after a relink): the back
/// keeps, restores or re-joins exactly these. Of the other sessions it had from this
/// front, it removes those of the same `instance` (they ended while the link was down)
/// and holds for resume those of another one (the front restarted; its clients are
/// reconnecting).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkSessions {
    pub sessions: Vec<LinkSession>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkSession {
    pub session: SessionKey,
    pub channel: String,
    /// The data of the client's original join, for a back that must join it again.
    pub data: Bytes,
    /// The session's resume secret, as in its `LinkJoin`.
    pub secret: u64,
    /// The client's identity, as in its `LinkJoin`.
    #[serde(default)]
    pub identity: Option<Identity>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkWelcome {
    pub version: u32,
    pub back: String,
    /// The channels this back serves; their index is their `ChannelIndex`.
    pub channels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkRefused {
    pub reason: String,
}

/// A client joins a channel. `secret` is what a later resume of this session must
/// present. With `resume`, the client had a session before (on this front or another):
/// if the back still holds that session's membership and the secret matches, the
/// membership moves to `session` as it was (same player, same ack) and the
/// application's `join` is not called; otherwise this is an ordinary join.
/// `identity` is what the client's token proved (none for an anonymous client): a
/// resume is granted only to the same subject (or to anonymous for anonymous).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkJoin {
    pub session: SessionKey,
    /// By name: a room may be new to the front, which learns its index from the
    /// `LinkOpened` that comes before the room's first frame to it.
    pub channel: String,
    pub data: Bytes,
    pub secret: u64,
    pub resume: Option<LinkResume>,
    pub identity: Option<Identity>,
    /// The seat token the matchmaker gave the client, for a room.
    pub seat: Option<String>,
}

/// The session a client resumes: the front that held it, its key there, its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkResume {
    pub front: String,
    pub session: SessionKey,
    pub secret: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkLeave {
    pub session: SessionKey,
    pub channel: ChannelIndex,
}

/// The client's connection closed without a leave: the back keeps its membership for
/// `limits.resume_grace_ms` so that it may resume, then it leaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkAway {
    pub session: SessionKey,
    pub channel: ChannelIndex,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkInput {
    pub session: SessionKey,
    pub channel: ChannelIndex,
    pub seq: Seq,
    pub data: Bytes,
}

/// Asks for a fresh full state for `sessions` (clients that fell behind).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkResync {
    pub channel: ChannelIndex,
    pub sessions: Vec<SessionKey>,
}

/// A channel's full state at `tick`, for the listed sessions with their acks (joiners,
/// resyncs, and after a link opens every session of the front in that channel).
/// `body` is the shared body of a client `State` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkState {
    pub channel: ChannelIndex,
    pub tick: Tick,
    pub sessions: Vec<(SessionKey, Seq)>,
    pub body: Bytes,
}

/// A channel's changes at `tick`, the same `body` for every front; `acks` lists this
/// front's sessions whose last applied input changed at this tick. When `changed` is
/// false the body is an empty patch that only carries acks: a front sends it only to
/// the sessions in `acks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkPatch {
    pub channel: ChannelIndex,
    pub tick: Tick,
    pub changed: bool,
    pub acks: Vec<(SessionKey, Seq)>,
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkJoinRejected {
    pub session: SessionKey,
    /// By name, as in the join.
    pub channel: String,
    pub reason: String,
}

/// A room's number on this link, sent before anything else about the room: when the
/// room is made (to every link), and to a link that opens while it exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkOpened {
    pub channel: ChannelIndex,
    pub name: String,
}

/// A room is gone (disposed): its members on this front have left it, and its
/// number names nothing from now on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkClosed {
    pub channel: ChannelIndex,
    pub reason: String,
}

/// The back ended this session's membership: it resumed on another connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkEvicted {
    pub session: SessionKey,
    pub channel: ChannelIndex,
    pub reason: String,
}

/// Something about one session's message that its client should hear (an input
/// dropped because the channel's queue was full, or refused by the application).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkNotice {
    pub session: SessionKey,
    pub code: String,
    pub message: String,
}

/// A request to a channel's game from outside the game (an HTTP call to a front),
/// answered by one [`LinkReply`] with the same `call` number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkCall {
    /// The front's number for this call, unique among its calls in flight.
    pub call: u64,
    pub channel: ChannelIndex,
    /// The call's value (MessagePack the game defines).
    pub data: Bytes,
}

/// Messages of a channel's game to clients of this front. `body` is a whole client
/// `Message` (`FrontMsg::Message`), encoded once by the back and sent unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkMessage {
    pub channel: ChannelIndex,
    /// The sessions to send it to; `None`: every client of the channel on this front.
    pub to: Option<Vec<SessionKey>>,
    pub body: Bytes,
}

/// The answer to a [`LinkCall`]: how it ended, `message` for people, and for
/// [`CallOutcome::Ok`] the game's reply in `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkReply {
    pub call: u64,
    pub outcome: CallOutcome,
    pub message: String,
    pub data: Bytes,
}

/// Sent by each side of a link every `limits.link_heartbeat_ms`, whatever else it
/// sends, so that the other side can tell a silent peer from an idle one: a side that
/// receives no frame at all (heartbeat or other) for `limits.link_timeout_ms` closes
/// the link. Not answered. `sent_ms`: milliseconds since the sender opened this link,
/// for logs only; a receiver must not compare it with its own clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkHeartbeat {
    pub sent_ms: u64,
}

/// How a call ended. On the wire, its name as a str (`ok`, `bad_call`, ...); a name
/// this version does not know does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The game replied.
    Ok,
    /// The data does not decode as the game's call type.
    BadCall,
    /// The game returned an error.
    Refused,
    /// The game takes no calls.
    NoCalls,
    /// The channel's queue was full.
    Overloaded,
    /// The reply does not encode, or is too large for a frame.
    Failed,
}

impl CallOutcome {
    const ALL: [CallOutcome; 6] = [
        CallOutcome::Ok,
        CallOutcome::BadCall,
        CallOutcome::Refused,
        CallOutcome::NoCalls,
        CallOutcome::Overloaded,
        CallOutcome::Failed,
    ];

    /// The name it travels as.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::BadCall => "bad_call",
            CallOutcome::Refused => "refused",
            CallOutcome::NoCalls => "no_calls",
            CallOutcome::Overloaded => "overloaded",
            CallOutcome::Failed => "failed",
        }
    }
}

impl Serialize for CallOutcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CallOutcome {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        CallOutcome::ALL
            .into_iter()
            .find(|o| o.as_str() == name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown call outcome {name:?}")))
    }
}
