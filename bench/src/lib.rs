//! centrum's load generator. [`arena`] runs the arena workload of shared/bench/ARENA.md
//! against a cluster it starts ([`cluster`]) or one already running, with the Colyseus
//! reference's metrics; [`idle`] measures what an idle client connection costs a
//! front; [`flood`] what flooding clients cost honest ones; [`rooms`] the workload in
//! many small rooms, declared or made by the matchmaker, and what idle rooms cost.

pub mod arena;
pub mod cluster;
mod error;
pub mod flood;
pub mod idle;
mod plot;
mod procfs;
pub mod rooms;
mod runner;
mod scrape;
mod stats;

pub use error::BenchError;

/// Waits for every future (each on a task of its own) for at most `limit`; what is
/// still running then is abandoned. For closing many connections at once.
pub(crate) async fn settle<F>(futures: impl IntoIterator<Item = F>, limit: std::time::Duration)
where
    F: Future<Output = ()> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for f in futures {
        set.spawn(f);
    }
    let _ = tokio::time::timeout(limit, async { while set.join_next().await.is_some() {} }).await;
    set.abort_all();
}
pub use procfs::raise_open_files_limit;
pub use runner::{Target, arena_series, layout_name, write_report};
