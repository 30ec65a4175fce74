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
    // The slice decoder hands strings and binaries over in place (a reader over
    // `&[u8]` copies each into a buffer of its own first), but cannot say where it
    // stopped: the first value's length, found beforehand, says it. A broken first
    // value is decoded whole, for the decoder's own account of what is wrong.
    let end = first_value_len(bytes).unwrap_or(bytes.len());
    let msg = rmp_serde::from_slice(&bytes[..end])?;
    if end < bytes.len() {
        return Err(DecodeError::Trailing(bytes.len() - end));
    }
    Ok(msg)
}

/// The length in bytes of the first MessagePack value in `bytes`; None when it is
/// cut short or holds a byte that starts no value. One pass, no recursion: it counts
/// the values still to skip, so no nesting depth can overflow the stack.
pub(crate) fn first_value_len(bytes: &[u8]) -> Option<usize> {
    let mut at = 0usize;
    let mut pending = 1usize;
    while pending > 0 {
        // Every value takes at least one byte: more values owed than bytes left
        // cannot end well (and bounds a claimed array of four billion).
        if pending > bytes.len() - at {
            return None;
        }
        pending -= 1;
        let marker = bytes[at];
        let uint = |from: usize, width: usize| -> Option<usize> {
            let b = bytes.get(from..from + width)?;
            Some(
                b.iter()
                    .fold(0usize, |n, &byte| (n << 8) | usize::from(byte)),
            )
        };
        // (bytes of the value itself, values that follow it as its elements)
        let (size, elements) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (1, 0),
            0x80..=0x8f => (1, 2 * usize::from(marker & 0x0f)),
            0x90..=0x9f => (1, usize::from(marker & 0x0f)),
            0xa0..=0xbf => (1 + usize::from(marker & 0x1f), 0),
            0xc4 | 0xd9 => (2 + uint(at + 1, 1)?, 0),
            0xc5 | 0xda => (3 + uint(at + 1, 2)?, 0),
            0xc6 | 0xdb => (5 + uint(at + 1, 4)?, 0),
            0xc7 => (3 + uint(at + 1, 1)?, 0),
            0xc8 => (4 + uint(at + 1, 2)?, 0),
            0xc9 => (6 + uint(at + 1, 4)?, 0),
            0xcc | 0xd0 => (2, 0),
            0xcd | 0xd1 => (3, 0),
            0xca | 0xce | 0xd2 => (5, 0),
            0xcb | 0xcf | 0xd3 => (9, 0),
            0xd4 => (3, 0),
            0xd5 => (4, 0),
            0xd6 => (6, 0),
            0xd7 => (10, 0),
            0xd8 => (18, 0),
            0xdc => (3, uint(at + 1, 2)?),
            0xdd => (5, uint(at + 1, 4)?),
            0xde => (3, 2 * uint(at + 1, 2)?),
            0xdf => (5, uint(at + 1, 4)?.checked_mul(2)?),
            0xc1 => return None,
        };
        at = at.checked_add(size).filter(|&end| end <= bytes.len())?;
        pending = pending.checked_add(elements)?;
    }
    Some(at)
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;

    /// Every MessagePack format, each at the edges of its size classes.
    fn samples() -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        for n in [
            0u64,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            u64::from(u32::MAX) + 1,
        ] {
            out.push(encode(&n));
        }
        for n in [-1i64, -32, -33, -128, -129, -32_769, i64::MIN] {
            out.push(encode(&n));
        }
        out.push(encode(&1.5f32));
        out.push(encode(&1.5f64));
        out.push(encode(&()));
        out.push(encode(&true));
        for len in [0, 31, 32, 255, 256, 65_535, 65_536] {
            out.push(encode(&"x".repeat(len)));
            out.push(encode(&Bytes::from(vec![7; len])));
            out.push(encode(&vec![1u8; len]));
        }
        let map: BTreeMap<String, Vec<Option<i32>>> = (0..20)
            .map(|i| (format!("k{i}"), vec![Some(i), None]))
            .collect();
        out.push(encode(&map));
        out.push(encode(&(map.clone(), vec![map.clone(); 3], "tail")));
        // Ext formats, which serde never writes: fixext 1, 2, 4, 8, 16; ext 8, 16, 32.
        for (head, body) in [
            (vec![0xd4, 1], 1),
            (vec![0xd5, 1], 2),
            (vec![0xd6, 1], 4),
            (vec![0xd7, 1], 8),
            (vec![0xd8, 1], 16),
            (vec![0xc7, 3, 1], 3),
            (vec![0xc8, 0, 3, 1], 3),
            (vec![0xc9, 0, 0, 0, 3, 1], 3),
        ] {
            let mut v = head;
            v.extend(std::iter::repeat_n(9, body));
            out.push(v);
        }
        out
    }

    #[test]
    fn the_first_value_ends_where_its_encoding_ends() {
        for value in samples() {
            assert_eq!(first_value_len(&value), Some(value.len()), "{value:x?}");
            let mut longer = value.clone();
            longer.extend_from_slice(&[0xc0, 0x91]);
            assert_eq!(first_value_len(&longer), Some(value.len()), "{value:x?}");
            for cut in 0..value.len().min(40) {
                assert_eq!(
                    first_value_len(&value[..cut]),
                    None,
                    "{value:x?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn a_byte_that_starts_no_value_or_a_huge_claim_is_refused_at_once() {
        assert_eq!(first_value_len(&[0xc1]), None);
        assert_eq!(first_value_len(&[0x91, 0xc1]), None);
        assert_eq!(first_value_len(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0]), None);
        assert_eq!(first_value_len(&[0xdf, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(first_value_len(&[0xc6, 0xff, 0xff, 0xff, 0xff, 0]), None);
    }

    #[test]
    fn trailing_bytes_and_broken_values_keep_their_errors() {
        let mut bytes = encode(&(1u8, "two"));
        assert_eq!(
            decode::<(u8, String)>(&bytes, 100).unwrap(),
            (1, "two".into())
        );
        bytes.push(0xc0);
        assert!(matches!(
            decode::<(u8, String)>(&bytes, 100),
            Err(DecodeError::Trailing(1))
        ));
        assert!(matches!(
            decode::<(u8, String)>(&[0x92, 1], 100),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode::<(u8, String)>(&bytes, 3),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    proptest! {
        /// Whatever the bytes, the length found is the length MessagePack's own decoder
        /// reads for one value, and there is one exactly when that decoder finds one.
        #[test]
        fn the_length_is_what_the_decoder_reads(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut rest = &bytes[..];
            let decoded: Result<serde::de::IgnoredAny, _> = rmp_serde::decode::from_read(&mut rest);
            let read = decoded.ok().map(|_| bytes.len() - rest.len());
            prop_assert_eq!(first_value_len(&bytes), read);
        }
    }
}
