//! The Rust client of centrum: connect to a front (directly or through the master's
//! gate), join channels, keep a mirror of each channel's state, send inputs and see
//! them acknowledged, receive the game's messages. README.md shows a whole session.

mod client;
mod data;
mod error;
mod event;
mod gate;
mod matchmaker;
mod session;
mod tls;
mod token;

pub use centrum_protocol::{EntityId, Mirror, MirrorEntity, Seq, Tick, Value};
pub use client::{Client, ClientOptions};
pub use error::{BoxError, ClientError};
pub use event::Event;
pub use matchmaker::{Matchmaker, RoomListing, SeatReservation};
pub use token::Token;

#[cfg(test)]
mod fixtures;

// Compiles the README's example, so that it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
