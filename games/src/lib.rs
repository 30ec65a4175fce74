//! The games built into the stock `centrum` binary, written on the public game API
//! (`centrum-app`) and nothing else, as a game of your own would be.
//!
//! - [`arena`]: the demo game (players steer and collect coins); the browser demo plays it.
//! - [`bench_arena`]: exactly the arena benchmark workload of shared/bench/ARENA.md.

pub mod arena;
pub mod bench_arena;

pub use arena::Arena;
pub use bench_arena::BenchArena;

use centrum_app::Registry;

/// A registry holding both built-in games, under the names configs use:
/// `arena` and `bench-arena`.
pub fn registry() -> Registry {
    Registry::new()
        .with("arena", Arena::new)
        .with("bench-arena", BenchArena::new)
}
