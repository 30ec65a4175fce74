//! The Rust client of centrum: connect to a front (directly or through the master's
//! gate), join channels, keep a mirror of each channel's state, send inputs and see
//! them acknowledged. README.md shows a whole session.

mod client;
mod error;
mod event;
mod gate;

pub use centrum_protocol::{EntityId, Mirror, MirrorEntity, Seq, Tick, Value};
pub use client::{Client, ClientOptions};
pub use error::{BoxError, ClientError};
pub use event::Event;

#[cfg(test)]
mod tests;

// Compiles the README's example, so that it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
