//! `centrum bench`: the command line of the load generator (centrum-bench does the work).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};

use centrum_bench::arena::{ArenaOptions, Decode, Server};
use centrum_bench::cluster::{Cluster, ClusterOptions, Layout, RoomType};
use centrum_bench::flood::FloodOptions;
use centrum_bench::idle::IdleOptions;
use centrum_bench::rooms::{self, IdleRoomsOptions, RoomsOptions};
use centrum_bench::{Target, arena_series, write_report};

use crate::cli::say;

#[derive(Subcommand, Debug)]
pub(crate) enum BenchCommand {
    /// The arena workload (shared/bench/ARENA.md): N clients move players at 20 Hz.
    /// Prints one JSON line per N on stdout; progress goes to stderr.
    Arena(ArenaArgs),
    /// Opens idle client connections on one front and reports its memory per connection.
    Idle(IdleArgs),
    /// Honest clients play the arena workload through one front while flooders send
    /// inputs as fast as they can; prints one JSON line on stdout.
    Flood(FloodArgs),
    /// The arena workload in R rooms of M clients each (one JSON line per R, a fresh
    /// cluster each), the rooms declared in the config or made by the matchmaker; or,
    /// with --idle N, what N rooms that nobody joins cost their back.
    Rooms(RoomsArgs),
}

#[derive(clap::Args, Debug)]
pub(crate) struct RoomsArgs {
    /// Room counts, one run (and one fresh cluster) each.
    rooms: Vec<usize>,
    /// Clients per room.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Rooms made by the master's matchmaker: every client takes a seat with
    /// join-or-create and joins its room with it. Without it the config declares
    /// the rooms (`room-1` .. `room-R`).
    #[arg(long)]
    matchmaker: bool,
    /// Instead of play: make N rooms through the matchmaker, join none, and report
    /// the back's memory and CPU without them and with them.
    #[arg(long, value_name = "N", conflicts_with = "rooms")]
    idle: Option<usize>,
    /// `all`: every client decodes and measures; `probe:K`: K clients do.
    #[arg(long, default_value = "probe:20")]
    decode: Decode,
    /// Seconds of inputs before the window.
    #[arg(long, default_value_t = 5.0)]
    warmup: f64,
    /// Seconds measured (default 20; with --idle, each of the two windows: 10).
    #[arg(long)]
    window: Option<f64>,
    /// Seconds of inputs after the window.
    #[arg(long, default_value_t = 2.0)]
    tail: f64,
    /// Joins (with --idle: room creations) in flight at once.
    #[arg(long, default_value_t = 25)]
    join_concurrency: usize,
    /// Where the back keeps its channels and rooms: `memory` (nowhere, the default
    /// here: hundreds of journals synced every tick would measure the disk) or `disk`.
    #[arg(long, value_enum, default_value_t = StoreArg::Memory)]
    store: StoreArg,
    /// No progress on stderr.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(clap::Args, Debug)]
pub(crate) struct FloodArgs {
    /// Honest clients.
    #[arg(long, default_value_t = 20)]
    honest: usize,
    /// Flooding clients; each connects again whenever it is closed.
    #[arg(long, default_value_t = 1)]
    flooders: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of play (and flood) before the measurement.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// No progress on stderr.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ArenaArgs {
    /// Client counts, one run (and one fresh cluster) each.
    #[arg(default_values_t = [100])]
    n: Vec<usize>,
    /// `all`: every client decodes and measures; `probe:K`: K clients do, the rest
    /// only count bytes (the server does the same work).
    #[arg(long, default_value = "all")]
    decode: Decode,
    /// Seconds of inputs before the window.
    #[arg(long, default_value_t = 5.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 20.0)]
    window: f64,
    /// Seconds of inputs after the window, so late samples can still resolve.
    #[arg(long, default_value_t = 2.0)]
    tail: f64,
    /// How to run the cluster this command starts.
    #[arg(long, value_enum, default_value_t = ClusterLayout::Processes)]
    cluster: ClusterLayout,
    /// Fronts in the cluster this command starts; clients are spread over them.
    #[arg(long, default_value_t = 1)]
    fronts: usize,
    /// Load a running cluster instead: a front's ws:// URL (repeat for several).
    #[arg(long = "front", value_name = "URL")]
    front_urls: Vec<String>,
    /// With --front: the master's HTTP address, for the back's own counters.
    #[arg(long)]
    master: Option<SocketAddr>,
    /// With --front: a process of the cluster to measure (repeat for each).
    #[arg(long = "pid")]
    pids: Vec<u32>,
    /// The channel served by the `bench-arena` application.
    #[arg(long, default_value = "arena")]
    channel: String,
    /// Where the back of the cluster this command starts keeps its channel: `disk`
    /// (journal and snapshots, as every cluster does by default) or `memory` (nowhere).
    #[arg(long, value_enum, default_value_t = StoreArg::Disk)]
    store: StoreArg,
    /// Joins in flight at once.
    #[arg(long, default_value_t = 25)]
    join_concurrency: usize,
    /// Also write results.json and arena.svg (CPU, latency, bytes against N) here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress on stderr.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(clap::Args, Debug)]
pub(crate) struct IdleArgs {
    /// Connections to open.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Connects in flight at once.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum StoreArg {
    Disk,
    Memory,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ClusterLayout {
    /// The master, the back and each front in their own process.
    Processes,
    /// Every role in one process.
    OneProcess,
}

pub(crate) async fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Arena(args) => arena(args).await,
        BenchCommand::Idle(args) => idle(args).await,
        BenchCommand::Flood(args) => flood(args).await,
        BenchCommand::Rooms(args) => rooms(args).await,
    }
}

fn seconds(what: &str, s: f64) -> Result<Duration> {
    if !(0.0..=3600.0).contains(&s) {
        bail!("--{what} must be between 0 and 3600 seconds, not {s}");
    }
    Ok(Duration::from_secs_f64(s))
}

/// Where the cluster's config and logs go: under --out, or a fresh temporary folder.
fn work_dir(out: Option<&PathBuf>) -> PathBuf {
    match out {
        Some(dir) => dir.join("logs"),
        None => std::env::temp_dir().join(format!("centrum-bench-{}", std::process::id())),
    }
}

fn cluster_options(
    layout: Layout,
    fronts: usize,
    channel: &str,
    dir: PathBuf,
    durable: bool,
) -> Result<ClusterOptions> {
    Ok(ClusterOptions {
        program: std::env::current_exe().context("cannot find the centrum executable")?,
        layout,
        fronts,
        tick_hz: 20,
        channel: channel.to_owned(),
        dir,
        durable,
        more_channels: Vec::new(),
        room_type: None,
    })
}

async fn arena(args: ArenaArgs) -> Result<()> {
    if args.n.contains(&0) {
        bail!("every N must be at least 1");
    }
    if !(1..=64).contains(&args.fronts) {
        bail!("--fronts must be between 1 and 64");
    }
    let options = ArenaOptions {
        decode: args.decode,
        warmup: seconds("warmup", args.warmup)?,
        window: seconds("window", args.window)?,
        tail: seconds("tail", args.tail)?,
        join_concurrency: args.join_concurrency.max(1),
        channel: args.channel.clone(),
        progress: !args.quiet,
        ..ArenaOptions::new(0)
    };
    if options.window.is_zero() {
        bail!("--window must be more than 0 seconds");
    }
    let target = if args.front_urls.is_empty() {
        if args.master.is_some() || !args.pids.is_empty() {
            bail!("--master and --pid describe a running cluster: give its --front too");
        }
        let layout = match args.cluster {
            ClusterLayout::Processes => Layout::Processes,
            ClusterLayout::OneProcess => Layout::OneProcess,
        };
        Target::Start(cluster_options(
            layout,
            args.fronts,
            &args.channel,
            work_dir(args.out.as_ref()),
            args.store == StoreArg::Disk,
        )?)
    } else {
        Target::Running(Server {
            fronts: args.front_urls.clone(),
            master: args.master,
            pids: args.pids.clone(),
            layout: "external".into(),
            store: "unknown".into(),
        })
    };
    // A reader that goes away (`| head -1`) stops the printing; the error ends the
    // command quietly once the series has stopped its clusters.
    let mut printed = Ok(());
    let results = arena_series(&args.n, &options, &target, |result| {
        if printed.is_ok() {
            // A result is plain data; serialising it cannot fail.
            printed = say(serde_json::to_string(result).unwrap_or_default());
        }
    })
    .await?;
    if let Some(dir) = &args.out {
        for path in write_report(dir, &results)? {
            eprintln!("wrote {}", path.display());
        }
    }
    printed
}

async fn idle(args: IdleArgs) -> Result<()> {
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let limit = centrum_bench::raise_open_files_limit();
    if limit < args.connections as u64 + 64 {
        bail!(
            "this process may open {limit} files, too few for {} connections; raise `ulimit -n`",
            args.connections
        );
    }
    let dir = work_dir(None).join("idle");
    let cluster =
        Cluster::start(&cluster_options(Layout::Processes, 1, "arena", dir, false)?).await?;
    let front_pid = cluster
        .front_pid(0)
        .context("the front has no process id")?;
    let options = IdleOptions {
        connections: args.connections,
        concurrency: args.concurrency.max(1),
        front: cluster.fronts[0].clone(),
        front_pid,
        progress: true,
    };
    let report = centrum_bench::idle::run(&options).await;
    cluster.stop().await;
    say(serde_json::to_string(&report?).unwrap_or_default())
}

async fn flood(args: FloodArgs) -> Result<()> {
    if !(1..=10_000).contains(&args.honest) {
        bail!("--honest must be between 1 and 10000");
    }
    if args.flooders > 1_000 {
        bail!("--flooders must be at most 1000");
    }
    let options = FloodOptions {
        honest: args.honest,
        flooders: args.flooders,
        window: seconds("duration", args.duration)?,
        warmup: seconds("warmup", args.warmup)?,
        progress: !args.quiet,
    };
    if options.window.is_zero() {
        bail!("--duration must be more than 0 seconds");
    }
    centrum_bench::raise_open_files_limit();
    let dir = work_dir(None).join("flood");
    let cluster =
        Cluster::start(&cluster_options(Layout::Processes, 1, "arena", dir, false)?).await?;
    let server = Server {
        fronts: cluster.fronts.clone(),
        master: Some(cluster.master_http),
        pids: cluster.pids(),
        layout: centrum_bench::layout_name(Layout::Processes).into(),
        store: "memory".into(),
    };
    let result = centrum_bench::flood::run(&options, &server).await;
    cluster.stop().await;
    say(serde_json::to_string(&result?).unwrap_or_default())
}

async fn rooms(args: RoomsArgs) -> Result<()> {
    if !(1..=10_000).contains(&args.clients) {
        bail!("--clients must be between 1 and 10000");
    }
    let window = seconds(
        "window",
        args.window
            .unwrap_or(if args.idle.is_some() { 10.0 } else { 20.0 }),
    )?;
    if window.is_zero() {
        bail!("--window must be more than 0 seconds");
    }
    centrum_bench::raise_open_files_limit();
    let dir = work_dir(None).join("rooms");
    let durable = args.store == StoreArg::Disk;
    let room_type = |max_rooms: usize| RoomType {
        kind: rooms::ROOM_TYPE.into(),
        max_clients: args.clients,
        max_rooms,
        // Longer than any run: no room is disposed while it is measured.
        empty_dispose_s: 86_400,
    };
    if let Some(n) = args.idle {
        if !(1..=100_000).contains(&n) {
            bail!("--idle must be between 1 and 100000");
        }
        let options = ClusterOptions {
            room_type: Some(room_type(n)),
            ..cluster_options(Layout::Processes, 1, "arena", dir.join("idle"), durable)?
        };
        let cluster = Cluster::start(&options).await?;
        let back_pid = cluster.back_pid().context("the back has no process id")?;
        let idle = IdleRoomsOptions {
            rooms: n,
            concurrency: args.join_concurrency.max(1),
            window,
            master: cluster.master_http,
            back_pid,
            progress: !args.quiet,
        };
        let report = rooms::idle(&idle).await;
        cluster.stop().await;
        return say(serde_json::to_string(&report?).unwrap_or_default());
    }
    if args.rooms.is_empty() {
        bail!("give one or more room counts (R), or --idle N");
    }
    if args.rooms.iter().any(|r| !(1..=50_000).contains(r)) {
        bail!("every room count must be between 1 and 50000");
    }
    if args.rooms.iter().any(|r| r * args.clients > 100_000) {
        bail!("rooms × clients must be at most 100000");
    }
    let arena = ArenaOptions {
        decode: args.decode,
        warmup: seconds("warmup", args.warmup)?,
        window,
        tail: seconds("tail", args.tail)?,
        join_concurrency: args.join_concurrency.max(1),
        progress: !args.quiet,
        ..ArenaOptions::new(0)
    };
    for &r in &args.rooms {
        let mode = if args.matchmaker {
            "matchmaker"
        } else {
            "declared"
        };
        let base = cluster_options(
            Layout::Processes,
            1,
            "arena",
            dir.join(format!("{mode}-{r}")),
            durable,
        )?;
        let options = if args.matchmaker {
            ClusterOptions {
                room_type: Some(room_type(2 * r)),
                ..base
            }
        } else {
            ClusterOptions {
                more_channels: rooms::declared_rooms(r),
                ..base
            }
        };
        if !args.quiet {
            eprintln!(
                "[rooms] {r} rooms of {} ({mode}): starting a cluster (logs in {})",
                args.clients,
                options.dir.display()
            );
        }
        let cluster = Cluster::start(&options).await?;
        let server = Server {
            fronts: cluster.fronts.clone(),
            master: Some(cluster.master_http),
            pids: cluster.pids(),
            layout: centrum_bench::layout_name(Layout::Processes).into(),
            store: if durable { "disk" } else { "memory" }.into(),
        };
        let run = RoomsOptions {
            rooms: r,
            clients: args.clients,
            matchmaker: args.matchmaker,
            arena: arena.clone(),
        };
        let result = rooms::run(&run, &server).await;
        cluster.stop().await;
        // A reader that went away ends the command quietly.
        say(serde_json::to_string(&result?).unwrap_or_default())?;
    }
    Ok(())
}
