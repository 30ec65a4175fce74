//! A series of arena runs, one per N, each against a fresh cluster (or the running
//! one given), and the files `--out` asks for.

use std::path::{Path, PathBuf};

use crate::arena::{self, ArenaOptions, ArenaResult, Server};
use crate::cluster::{Cluster, ClusterOptions, Layout};
use crate::{BenchError, plot, procfs};

/// Where the load goes.
#[derive(Clone, Debug)]
pub enum Target {
    /// Start a fresh cluster for every N, as the reference starts a fresh server.
    Start(ClusterOptions),
    /// A cluster that is already running.
    Running(Server),
}

/// Runs the workload for each N in turn and hands each result to `each` as it comes.
///
/// # Errors
/// When a cluster cannot be started; a run that goes wrong is reported in its result.
pub async fn arena_series(
    ns: &[usize],
    base: &ArenaOptions,
    target: &Target,
    mut each: impl FnMut(&ArenaResult),
) -> Result<Vec<ArenaResult>, BenchError> {
    procfs::raise_open_files_limit();
    let mut results = Vec::new();
    for &n in ns {
        let options = ArenaOptions { n, ..base.clone() };
        let result = match target {
            Target::Running(server) => arena::run(&options, server).await?,
            Target::Start(cluster_options) => {
                let cluster_options = ClusterOptions {
                    dir: cluster_options.dir.join(format!("n{n}")),
                    ..cluster_options.clone()
                };
                if options.progress {
                    eprintln!(
                        "[arena n={n}] starting a cluster (logs in {})",
                        cluster_options.dir.display()
                    );
                }
                let cluster = Cluster::start(&cluster_options).await?;
                let server = Server {
                    fronts: cluster.fronts.clone(),
                    master: Some(cluster.master_http),
                    pids: cluster.pids(),
                    layout: layout_name(cluster_options.layout).into(),
                    store: if cluster_options.durable {
                        "disk"
                    } else {
                        "memory"
                    }
                    .into(),
                };
                let result = arena::run(&options, &server).await;
                cluster.stop().await;
                result?
            }
        };
        each(&result);
        results.push(result);
    }
    Ok(results)
}

pub fn layout_name(layout: Layout) -> &'static str {
    match layout {
        Layout::Processes => "processes",
        Layout::OneProcess => "one-process",
    }
}

/// Writes `results.json` and `arena.svg` into `dir`; returns their paths.
///
/// # Errors
/// When the directory or a file cannot be written.
pub fn write_report(dir: &Path, results: &[ArenaResult]) -> Result<Vec<PathBuf>, BenchError> {
    std::fs::create_dir_all(dir)
        .map_err(BenchError::io(format!("cannot create {}", dir.display())))?;
    let json_path = dir.join("results.json");
    let json = serde_json::to_string_pretty(results)
        .map_err(|e| BenchError::Setup(format!("cannot encode the results: {e}")))?;
    std::fs::write(&json_path, json + "\n").map_err(BenchError::io(format!(
        "cannot write {}",
        json_path.display()
    )))?;
    let svg_path = dir.join("arena.svg");
    plot::write_svg(&svg_path, results)?;
    Ok(vec![json_path, svg_path])
}
