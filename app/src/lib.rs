//! The game API of centrum: what a game implements ([`App`]), what it gets on every
//! call ([`Ctx`]: the channel's change-tracked [`State`], its clock, messages to
//! clients), typed state ([`Kind`], derived) and the errors it returns. No I/O: a game
//! built on this crate alone can be unit-tested with [`Sandbox`], and runs on a
//! cluster through a binary made with `centrum::Cli`.
//!
//! A kind of entity is a struct; each field gets a typed handle, so a field is named
//! once and a value of the wrong type does not compile:
//!
//! ```
//! use centrum_app::{Kind, Schema, State};
//!
//! #[derive(Kind)]
//! struct Player {
//!     #[field(fixed = 100)] // sent as an integer, to 1/100
//!     x: f64,
//!     name: String,
//!     score: u32,
//! }
//!
//! let mut state = State::new(Schema::new().kind::<Player>());
//! let ann = state.spawn(Player { x: 1.5, name: "ann".into(), score: 0 })?;
//! state.set(ann, Player::SCORE, 3)?;
//! assert_eq!(state.get(ann, Player::X)?, 1.5);
//! # Ok::<(), centrum_app::StateError>(())
//! ```
//!
//! ```compile_fail,E0308
//! # use centrum_app::{Kind, Schema, State};
//! # #[derive(Kind)] struct Player { score: u32 }
//! # let mut state = State::new(Schema::new().kind::<Player>());
//! # let ann = state.spawn(Player { score: 0 }).unwrap();
//! state.set(ann, Player::SCORE, "three"); // a str is not a u32
//! ```

#![warn(missing_docs)]

mod app;
mod ctx;
mod dyn_app;
mod payload;
mod registry;
mod rng;
mod room;
mod sandbox;

pub use app::{App, AppError, ClientId};
pub use ctx::{Clients, Ctx, Outbox, Outgoing, Recipient, SendError};
pub use dyn_app::{CallFailure, DynApp};
pub use payload::{NoCalls, Payload, PayloadError, Raw};
pub use registry::Registry;
pub use rng::Rng;
pub use room::{MAX_METADATA_BYTES, Room};
pub use sandbox::Sandbox;

pub use bytes::Bytes;

pub use centrum_derive::Kind;
pub use centrum_protocol::{
    Entity, EntityId, Field, FieldDef, FieldType, FieldValue, Identity, Kind, SavedState, Schema,
    SchemaError, Seq, State, StateError, Tick, Value,
};

// The derive names this crate `::centrum_app`, which must resolve in its own doctests too.
extern crate self as centrum_app;

/// The derive's way to what it implements, whichever crate re-exports it.
#[doc(hidden)]
pub mod __private {
    pub use centrum_protocol::{Field, FieldDef, FieldValue, FixedPoint, Kind, Value};
}
