//! The game's own data inside joins, inputs and messages: serde values to and from
//! MessagePack. The one place the client encodes and decodes what a game defines.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ClientError;

/// Encodes `value` with named fields (structs as maps), as the JavaScript client and
/// PROTOCOL.md's examples do, so a game reads it whichever client sent it.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, ClientError> {
    Ok(rmp_serde::to_vec_named(value)?)
}

/// Decodes exactly one value from `bytes`. Structs may arrive as maps (named fields)
/// or as arrays (fields in order).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ClientError> {
    // The bytes came in one WebSocket message, which the socket has already bounded.
    centrum_protocol::decode(bytes, usize::MAX).map_err(ClientError::Decode)
}
