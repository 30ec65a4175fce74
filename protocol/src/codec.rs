//! The one MessagePack encode/decode pair every boundary goes through, and the
//! `[type, body]` envelope that every message enum uses on the wire.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a received message could not be understood. The peer that sent it is at fault.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not MessagePack of the expected shape (includes unknown message types).
    #[error("malformed message: {0}")]
    Malformed(#[from] rmp_serde::decode::Error),
    /// The message is larger than the configured limit; it was not decoded.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// Decoded, but left bytes over: a message is exactly one MessagePack value.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
}

/// Encodes a message as MessagePack, structs as arrays (fields in declaration order).
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_into(msg, &mut out);
    out
}

/// Like [`encode`], appending to `out`.
pub fn encode_into<T: Serialize>(msg: &T, out: &mut Vec<u8>) {
    // Our message types hold only plain data (no maps with non-string keys, no
    // fallible custom impls), and writing to a Vec cannot fail.
    rmp_serde::encode::write(out, msg).expect("protocol messages always encode");
}

/// Decodes one message, refusing anything over `limit` bytes before looking at it.
///
/// # Errors
/// [`DecodeError`] when the bytes are oversized, malformed, or not exactly one message.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    let mut rest = bytes;
    let msg = rmp_serde::decode::from_read(&mut rest)?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing(rest.len()));
    }
    Ok(msg)
}

/// Declares a message enum that travels as the two-element array `[type, body]`,
/// `type` a small unsigned integer and `body` the variant's struct (itself an array).
/// Decoding an unknown `type` is an error naming it.
macro_rules! tagged_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident($body:ty) = $code:literal, )* }
    ) => {
        $(#[$meta])*
        pub enum $name { $( $(#[$vmeta])* $variant($body), )* }

        impl $name {
            /// The message's type number on the wire.
            pub fn code(&self) -> u8 {
                match self { $( Self::$variant(_) => $code, )* }
            }

            /// The message's name, for logs and errors.
            pub fn name(&self) -> &'static str {
                match self { $( Self::$variant(_) => stringify!($variant), )* }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeTuple;
                let mut t = s.serialize_tuple(2)?;
                match self { $( Self::$variant(body) => { t.serialize_element(&$code)?; t.serialize_element(body)?; } )* }
                t.end()
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl<'de> serde::de::Visitor<'de> for Visitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(f, "a [type, body] array")
                    }
                    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<$name, A::Error> {
                        use serde::de::Error;
                        let code: u8 = seq.next_element()?.ok_or_else(|| A::Error::invalid_length(0, &self))?;
                        let msg = match code {
                            $( $code => $name::$variant(seq.next_element()?.ok_or_else(|| A::Error::invalid_length(1, &self))?), )*
                            other => return Err(A::Error::custom(format!("unknown message type {other}"))),
                        };
                        Ok(msg)
                    }
                }
                d.deserialize_tuple(2, Visitor)
            }
        }
    };
}

pub(crate) use tagged_enum;
