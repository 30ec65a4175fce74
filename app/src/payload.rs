//! How the bytes a client or caller sent become the value a game declared: any serde
//! type, decoded from MessagePack; [`Raw`] for the bytes themselves; [`NoCalls`] for
//! a game that takes no calls.

use std::fmt;

use bytes::Bytes;
use centrum_protocol::DecodeError;
use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};

/// A value a game receives from outside: join data, an input, a call.
///
/// Every serde type is one, decoded from MessagePack: structs from maps (field names)
/// or arrays (field order), enums externally tagged (`{"Move": {"dx": 1}}`, or just
/// `"Stop"` for a unit variant). Empty data decodes as `nil`.
pub trait Payload: Sized {
    /// Decodes the value from what the client or caller sent.
    ///
    /// # Errors
    /// [`PayloadError`] when the bytes are not a value of this type.
    fn decode(bytes: &Bytes) -> Result<Self, PayloadError>;
}

/// The bytes as they came, for a game that decodes them itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Raw(pub Bytes);

/// The `Call` and `Reply` of a game that takes no calls: no value of it exists, so
/// every call is answered HTTP 501 before the game sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoCalls {}

/// Bytes that are not a value of the type a game declared.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Not MessagePack of that type; `reason` says why, as the decoder saw it.
    #[error("does not decode as {expected}: {reason}")]
    Invalid {
        /// The type the bytes were meant to be, without its module path.
        expected: String,
        /// Why they are not, as the decoder saw it.
        reason: String,
    },
    /// The game accepts no value here at all ([`NoCalls`]).
    #[error("this game takes no calls")]
    NotAccepted,
}

/// MessagePack `nil`: what empty data decodes as.
const NIL: &[u8] = &[0xc0];

impl<T: DeserializeOwned> Payload for T {
    fn decode(bytes: &Bytes) -> Result<Self, PayloadError> {
        let bytes: &[u8] = if bytes.is_empty() { NIL } else { bytes };
        // No size limit here: the front and the link already bounded the message.
        centrum_protocol::decode(bytes, usize::MAX).map_err(|e| PayloadError::Invalid {
            expected: short_type_name::<T>(),
            reason: match e {
                DecodeError::Malformed(e) => e.to_string(),
                DecodeError::Trailing(n) => format!("{n} bytes left after the value"),
                e @ DecodeError::TooLarge { .. } => e.to_string(),
            },
        })
    }
}

impl Payload for Raw {
    fn decode(bytes: &Bytes) -> Result<Self, PayloadError> {
        Ok(Raw(bytes.clone()))
    }
}

impl Payload for NoCalls {
    fn decode(_: &Bytes) -> Result<Self, PayloadError> {
        Err(PayloadError::NotAccepted)
    }
}

impl Serialize for NoCalls {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        match *self {}
    }
}

impl fmt::Display for NoCalls {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

/// `Option<Join>` for `core::option::Option<my_game::Join>`: a type's name without its
/// module paths, for error messages that reach clients.
fn short_type_name<T>() -> String {
    strip_paths(std::any::type_name::<T>())
}

fn strip_paths(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    let mut segment = String::new();
    for c in full.chars() {
        if c.is_alphanumeric() || c == '_' {
            segment.push(c);
        } else if c == ':' {
            // `path::` — drop the segment before it.
            segment.clear();
        } else {
            out.push_str(&segment);
            segment.clear();
            out.push(c);
        }
    }
    out.push_str(&segment);
    out
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Join {
        name: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    enum Input {
        Move { dx: f64 },
        Stop,
    }

    fn named<T: Serialize>(value: &T) -> Bytes {
        Bytes::from(rmp_serde::to_vec_named(value).unwrap())
    }

    #[test]
    fn serde_types_decode_from_maps_and_empty_data_is_nil() {
        #[derive(Serialize)]
        struct J<'a> {
            name: &'a str,
        }
        assert_eq!(
            Join::decode(&named(&J { name: "ana" })),
            Ok(Join { name: "ana".into() })
        );
        assert_eq!(<Option<Join>>::decode(&Bytes::new()), Ok(None));
        assert_eq!(<()>::decode(&Bytes::new()), Ok(()));
        assert_eq!(Input::decode(&named(&"Stop")), Ok(Input::Stop));
    }

    #[test]
    fn what_does_not_decode_says_which_type_it_expected() {
        let err = Join::decode(&Bytes::new()).unwrap_err();
        assert!(
            err.to_string().starts_with("does not decode as Join: "),
            "{err}"
        );
        let err = <Option<Join>>::decode(&Bytes::from_static(b"\x07")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("does not decode as Option<Join>: "),
            "{err}"
        );
        #[derive(Serialize)]
        enum Other {
            Fly,
        }
        let err = Input::decode(&named(&Other::Fly)).unwrap_err();
        assert!(err.to_string().contains("Fly"), "{err}");
        let err = <()>::decode(&Bytes::from_static(b"\xc0\xc0")).unwrap_err();
        assert!(err.to_string().contains("1 bytes left"), "{err}");
    }

    #[test]
    fn raw_keeps_the_bytes_and_no_calls_accepts_nothing() {
        let bytes = Bytes::from_static(b"\xc1 not msgpack");
        assert_eq!(Raw::decode(&bytes), Ok(Raw(bytes.clone())));
        assert_eq!(NoCalls::decode(&bytes), Err(PayloadError::NotAccepted));
    }

    #[test]
    fn type_names_lose_their_paths() {
        assert_eq!(
            strip_paths("core::option::Option<my_game::input::Steer>"),
            "Option<Steer>"
        );
        assert_eq!(strip_paths("(alloc::string::String, u32)"), "(String, u32)");
    }
}
