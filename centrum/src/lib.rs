//! centrum, the platform: a state hub for real-time multiplayer games. A game is a
//! crate of its own that implements [`App`] and runs with its own binary:
//!
//! ```no_run
//! # use centrum::{App, AppError, ClientId, Ctx, NoCalls, Schema, Seq};
//! # #[derive(Default, serde::Serialize, serde::Deserialize)] struct Tag;
//! # impl App for Tag {
//! #     type Join = (); type Input = (); type Call = NoCalls; type Reply = NoCalls; type Options = ();
//! #     fn schema(&self) -> Schema { Schema::new() }
//! #     fn join(&mut self, _: &mut Ctx<'_>, _: ClientId, _: ()) -> Result<(), AppError> { Ok(()) }
//! #     fn leave(&mut self, _: &mut Ctx<'_>, _: ClientId) -> Result<(), AppError> { Ok(()) }
//! #     fn input(&mut self, _: &mut Ctx<'_>, _: ClientId, _: Seq, _: ()) -> Result<(), AppError> { Ok(()) }
//! #     fn tick(&mut self, _: &mut Ctx<'_>) -> Result<(), AppError> { Ok(()) }
//! # }
//! fn main() -> std::process::ExitCode {
//!     centrum::Cli::new().app("tag", Tag::default).run()
//! }
//! ```
//!
//! That binary has every command of the stock `centrum` (`up`, `master`, `front`,
//! `back`, `check`, `restart`, `bench`), with the game registered beside the built-in
//! `arena` and `bench-arena`. The game API itself is re-exported from `centrum-app`, which a
//! game's logic can depend on alone (no I/O, quick to build, tested with [`Sandbox`]).
//! docs/GUIDE.md walks through a whole game.

mod bench;
mod cli;
mod restart;
mod up;

pub use centrum_app::*;
pub use centrum_master::Page;
pub use cli::Cli;
