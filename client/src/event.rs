//! What an application observes on a connection, one event per server message, in
//! arrival order.

use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use centrum_protocol::{Seq, Tick};

use crate::{ClientError, data};

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
    /// A message from the channel's game to this client (to it alone or to the whole
    /// channel), sent during `tick`: it comes after that tick's `State` or `Patch`.
    /// `data` is MessagePack the game defines; [`Event::message`] decodes it. Only
    /// channels this client is in and not leaving report messages.
    Message {
        channel: String,
        tick: Tick,
        data: Bytes,
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

impl Event {
    /// The data of an [`Event::Message`] decoded as `T`; `None` for any other event.
    /// `T` may be a struct (sent as a map with field names, or as an array), an enum,
    /// a string: whatever the game sends.
    ///
    /// ```
    /// use centrum_client::{Event, Tick};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Debug, PartialEq, Serialize, Deserialize)]
    /// struct Chat {
    ///     from: String,
    ///     text: String,
    /// }
    ///
    /// let chat = Chat { from: "bo".into(), text: "gg".into() };
    /// let event = Event::Message {
    ///     channel: "arena".into(),
    ///     tick: Tick(7),
    ///     data: rmp_serde::to_vec_named(&chat)?.into(),
    /// };
    /// assert_eq!(event.message::<Chat>().transpose()?, Some(chat));
    /// // Another type is an error, another event is None.
    /// assert!(event.message::<u64>().is_some_and(|r| r.is_err()));
    /// assert!(Event::Unavailable { channel: "arena".into() }.message::<Chat>().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Some(Err(`[`ClientError::Decode`]`))` when the data is not a `T`.
    pub fn message<T: DeserializeOwned>(&self) -> Option<Result<T, ClientError>> {
        match self {
            Event::Message { data, .. } => Some(data::decode(data)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use centrum_protocol::{Seq, Tick};

    use crate::fixtures::Chat;
    use crate::{ClientError, Event};

    fn message(data: Vec<u8>) -> Event {
        Event::Message {
            channel: "arena".into(),
            tick: Tick(3),
            data: data.into(),
        }
    }

    #[test]
    fn message_decodes_a_struct_sent_as_a_map_or_as_an_array() {
        let chat = Chat::new("bo", "gg");
        let named = rmp_serde::to_vec_named(&chat).expect("encode");
        let positional = rmp_serde::to_vec(&chat).expect("encode");
        assert_ne!(named, positional);
        for data in [named, positional] {
            let decoded = message(data).message::<Chat>();
            assert_eq!(decoded.transpose().expect("a chat"), Some(chat.clone()));
        }
    }

    #[test]
    fn message_is_an_error_for_another_shape_and_none_for_another_event() {
        let data = rmp_serde::to_vec_named(&Chat::new("bo", "gg")).expect("encode");
        assert!(matches!(
            message(data.clone()).message::<u64>(),
            Some(Err(ClientError::Decode(_)))
        ));
        let mut trailing = data;
        trailing.push(0xc0);
        assert!(matches!(
            message(trailing).message::<Chat>(),
            Some(Err(ClientError::Decode(_)))
        ));
        let patch = Event::Patch {
            channel: "arena".into(),
            tick: Tick(3),
            ack: Seq(1),
        };
        assert!(patch.message::<Chat>().is_none());
    }
}
