//! centrum's wire protocol: every message between client and front, front and back,
//! node and master; the channel state with change tracking and its encodings; the
//! client-side mirror. No I/O: everything here is plain data and bytes.
//!
//! PROTOCOL.md at the repository root is the specification this crate implements.

mod client;
mod codec;
mod control;
mod identity;
mod ids;
mod kind;
mod link;
mod mirror;
mod schema;
mod state;
mod wire;

pub use client::*;
pub use codec::{DecodeError, decode, encode, encode_into};
pub use control::*;
pub use identity::Identity;
pub use ids::{EntityId, FieldId, IdHasher, IdMap, KindId, Seq, Tick};
pub use kind::{Entity, Field, FieldValue, FixedPoint, Kind};
pub use link::*;
pub use mirror::{Mirror, MirrorEntity, MirrorError, WireValue};
pub use schema::{FieldDef, FieldType, KindDef, MAX_FIELDS, Schema, SchemaError, Value};
pub use state::{SavedState, State, StateError, encode_empty_patch};

/// The protocol version carried in every hello; peers with another version are refused.
pub const PROTOCOL_VERSION: u32 = 2;

/// The version of what the processes of a cluster say to each other: links (front ↔
/// back, PROTOCOL.md section 14) and registration (node ↔ master, section 15). Clients
/// never see it, so it moves without making them upgrade; every process of a cluster
/// must have the same.
pub const CLUSTER_VERSION: u32 = 5;

#[cfg(test)]
mod tests;
