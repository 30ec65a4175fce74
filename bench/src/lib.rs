//! centrum's load generator. [`arena`] runs the arena workload of
//! shared/bench/ARENA.md against a cluster it starts ([`cluster`]) or one already
//! running, and reports the same metrics as the Colyseus reference; [`idle`] measures
//! what an idle client connection costs a front.

pub mod arena;
pub mod cluster;
mod error;
pub mod idle;
mod plot;
mod procfs;
mod runner;
mod scrape;
mod stats;

pub use error::BenchError;
pub use procfs::raise_open_files_limit;
pub use runner::{Target, arena_series, layout_name, write_report};
