//! What an application observes on a connection, one event per server message, in
//! arrival order.

use std::time::Duration;

use centrum_protocol::{Seq, Tick};

/// One thing that happened on the connection. State and patches are already applied
/// to the channel's mirror ([`Client::mirror`](crate::Client::mirror)) when their
/// event is returned.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The channel's mirror was replaced by a full state: a join was accepted, or the
    /// server resynchronised the client (after the back came back, or after the client
    /// fell behind).
    State {
        channel: String,
        tick: Tick,
        ack: Seq,
    },
    /// The channel's mirror was updated to `tick`; `ack` is the last input of this
    /// client the back has applied.
    Patch {
        channel: String,
        tick: Tick,
        ack: Seq,
    },
    /// A join was refused, or, after `Unavailable`, the back refused to take the
    /// client back: either way it is not in the channel. [`Client::join`](crate::Client::join)
    /// reports its own channel's refusal as an error; this event is for any other.
    Rejected { channel: String, reason: String },
    /// The client is no longer in the channel; its mirror and ack are forgotten.
    Left { channel: String, reason: String },
    /// The channel's back is unreachable; a `State` follows when it is back.
    Unavailable { channel: String },
    /// The server refused something; fatal only when `Closed` follows.
    Error { code: String, message: String },
    /// The answer to [`Client::ping`](crate::Client::ping), with the round-trip time.
    Pong { nonce: u64, rtt: Duration },
    /// The connection ended; nothing follows.
    Closed { reason: String },
}
