//! What an idle client connection costs a front: open M WebSocket sessions (upgrade,
//! hello, welcome; no channel), then compare the front process's resident memory with
//! what it was before.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::arena::raw::RawClient;
use crate::stats::round;
use crate::{BenchError, procfs};

/// The front to fill.
#[derive(Clone, Debug)]
pub struct IdleOptions {
    pub connections: usize,
    /// Connects in flight at once.
    pub concurrency: usize,
    /// ws:// URL of the front.
    pub front: String,
    /// The front's process id.
    pub front_pid: u32,
    pub progress: bool,
}

/// The measurement, one JSON object.
#[derive(Clone, Debug, Serialize)]
pub struct IdleReport {
    pub connections: usize,
    pub opened: usize,
    pub failures: usize,
    pub first_error: Option<String>,
    pub open_s: f64,
    pub front_rss_before_kib: u64,
    pub front_rss_after_kib: u64,
    pub front_rss_peak_kib: u64,
    /// (after - before) / opened: user-space memory per connection. Kernel socket
    /// buffers are not in RSS.
    pub kib_per_connection: Option<f64>,
}

/// Opens the connections, measures, closes them.
///
/// # Errors
/// When the front's process cannot be read.
pub async fn run(options: &IdleOptions) -> Result<IdleReport, BenchError> {
    let pid = options.front_pid;
    let unreadable = || BenchError::Setup(format!("cannot read the memory of process {pid}"));
    let before = procfs::rss_kib(pid).ok_or_else(unreadable)?;
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut opening = JoinSet::new();
    for i in 0..options.connections {
        // The semaphore is never closed, so acquiring cannot fail.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let url = options.front.clone();
        opening.spawn(async move {
            let conn = tokio::time::timeout(
                Duration::from_secs(30),
                RawClient::connect(&url, "", 0x5DEE_CE66 ^ i as u64),
            )
            .await;
            drop(permit);
            match conn {
                Ok(Ok(c)) => Ok(c),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("connect took over 30 s".to_owned()),
            }
        });
        if options.progress && (i + 1) % 2000 == 0 {
            eprintln!("[idle] {} connects started", i + 1);
        }
    }
    let mut open = Vec::with_capacity(options.connections);
    let mut failures = 0;
    let mut first_error = None;
    while let Some(done) = opening.join_next().await {
        match done {
            Ok(Ok(conn)) => open.push(conn),
            Ok(Err(e)) => {
                failures += 1;
                first_error.get_or_insert(e);
            }
            Err(e) => {
                failures += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let open_s = started.elapsed().as_secs_f64();
    let after = procfs::rss_kib(pid).ok_or_else(unreadable)?;
    let peak = procfs::rss_peak_kib(pid).ok_or_else(unreadable)?;
    if options.progress {
        eprintln!("[idle] {} open in {open_s:.1} s; closing", open.len());
    }
    let opened = open.len();
    crate::settle(
        open.into_iter().map(RawClient::close),
        Duration::from_secs(10),
    )
    .await;
    Ok(IdleReport {
        connections: options.connections,
        opened,
        failures,
        first_error,
        open_s: round(open_s, 2),
        front_rss_before_kib: before,
        front_rss_after_kib: after,
        front_rss_peak_kib: peak,
        kib_per_connection: (opened > 0)
            .then(|| round(after.saturating_sub(before) as f64 / opened as f64, 2)),
    })
}
