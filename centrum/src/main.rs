//! The `centrum` command. It parses the command line, installs logging and calls the
//! role crates; everything else lives in them.

mod bench;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use centrum_config::Config;
use centrum_net::Shutdown;

#[derive(Parser, Debug)]
#[command(
    name = "centrum",
    version,
    about = "A state hub for real-time multiplayer games"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the whole cluster of this host: the master, and every front and back the
    /// config places on this host. Without FILE, the embedded default cluster.
    Up {
        /// Cluster config (TOML). Default: the embedded one-front, one-back cluster.
        file: Option<PathBuf>,
        /// Which host this is; nodes whose `host` differs are left to their own host.
        #[arg(long)]
        host: Option<String>,
        /// Run every role in this process instead of one supervised process per node.
        #[arg(long)]
        in_process: bool,
    },
    /// Run the master alone.
    Master(RoleArgs),
    /// Run one front.
    Front(NodeArgs),
    /// Run one back.
    Back(NodeArgs),
    /// Validate a config file and print a summary.
    Check { file: PathBuf },
    /// Load generators: the arena benchmark, idle connections.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

#[derive(clap::Args, Debug)]
struct RoleArgs {
    /// Cluster config (TOML). Default: the embedded cluster.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct NodeArgs {
    #[arg(long)]
    config: Option<PathBuf>,
    /// The node's id in the config.
    #[arg(long)]
    id: String,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Check { file } => check(&file),
        Command::Bench(command) => bench::run(command).await,
        Command::Up {
            file,
            host,
            in_process,
        } => up(file.as_deref(), host, in_process).await,
        Command::Master(args) => {
            let config = load(args.config.as_deref())?;
            let shutdown = on_signal();
            let listeners = centrum_master::MasterListeners {
                http: bind(config.master.http, "master http").await?,
                nodes: bind(config.master.nodes, "master nodes").await?,
            };
            centrum_master::run(config, listeners, shutdown).await?;
            Ok(())
        }
        Command::Front(args) => {
            let config = load(args.config.as_deref())?;
            let me = config
                .front(&args.id)
                .with_context(|| format!("no front {:?} in the config", args.id))?;
            let listener = bind(me.listen, &args.id).await?;
            centrum_front::run(config.clone(), &args.id, listener, on_signal()).await?;
            Ok(())
        }
        Command::Back(args) => {
            let config = load(args.config.as_deref())?;
            let me = config
                .back(&args.id)
                .with_context(|| format!("no back {:?} in the config", args.id))?;
            let listener = bind(me.listen, &args.id).await?;
            centrum_back::run(config.clone(), &args.id, listener, on_signal()).await?;
            Ok(())
        }
    }
}

/// The config from `file`, or the embedded default; validated, applications included.
fn load(file: Option<&Path>) -> Result<Arc<Config>> {
    let config = match file {
        Some(path) => Config::load(path)?,
        None => Config::embedded_default(),
    };
    if let Err(problems) = centrum_back::apps::check(&config) {
        bail!("invalid config:\n{problems}");
    }
    Ok(Arc::new(config))
}

fn check(file: &Path) -> Result<()> {
    let config = load(Some(file))?;
    println!("{}: ok", file.display());
    println!(
        "  master  http {}  nodes {}  (host {})",
        config.master.http, config.master.nodes, config.master.host
    );
    for f in &config.fronts {
        println!(
            "  front   {:<12} {}  (host {})",
            f.id,
            f.client_url(),
            f.host
        );
    }
    for b in &config.backs {
        let channels: Vec<String> = b
            .channels
            .iter()
            .map(|c| format!("{} ({})", c.name, c.app))
            .collect();
        println!(
            "  back    {:<12} {}  {} Hz  channels: {}  (host {})",
            b.id,
            b.listen,
            b.tick_hz,
            channels.join(", "),
            b.host
        );
    }
    Ok(())
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for {what}"))
}

/// A shutdown signal cancelled by Ctrl-C or SIGTERM.
fn on_signal() -> Shutdown {
    let shutdown = Shutdown::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let terminated = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminated => {}
        }
        tracing::info!("stopping");
        trigger.cancel();
    });
    shutdown
}

async fn up(file: Option<&Path>, host: Option<String>, in_process: bool) -> Result<()> {
    let config = load(file)?;
    let host = host.unwrap_or_else(|| config.master.host.clone());
    let shutdown = on_signal();
    let mut tasks = tokio::task::JoinSet::new();

    let mut lines = Vec::new();
    if config.master.host == host {
        let listeners = centrum_master::MasterListeners {
            http: bind(config.master.http, "master http").await?,
            nodes: bind(config.master.nodes, "master nodes").await?,
        };
        let http = config.master.http;
        // The demo plays the first channel running the arena game.
        let arena = config
            .backs
            .iter()
            .flat_map(|b| &b.channels)
            .find(|c| c.app == "arena");
        if let Some(arena) = arena {
            let query = match arena.name.as_str() {
                "arena" => String::new(),
                name => format!("?channel={name}"),
            };
            lines.push(format!(
                "  play     http://{http}/{query}   (the arena demo: open it in two tabs)"
            ));
        }
        lines.push(format!("  admin    http://{http}/admin   (the dashboard)"));
        lines.push(format!(
            "  master   http://{http}   gate: /gate?channel=C   status: /status   metrics: /metrics"
        ));
        let (config, stop) = (config.clone(), shutdown.clone());
        tasks.spawn(async move {
            centrum_master::run(config, listeners, stop)
                .await
                .map_err(anyhow::Error::from)
        });
    }
    let fronts: Vec<_> = config.fronts.iter().filter(|f| f.host == host).collect();
    let backs: Vec<_> = config.backs.iter().filter(|b| b.host == host).collect();
    for f in &fronts {
        lines.push(format!(
            "  {:<8} {}   (clients connect here)",
            f.id,
            f.client_url()
        ));
    }
    for b in &backs {
        let channels: Vec<String> = b
            .channels
            .iter()
            .map(|c| format!("{} ({})", c.name, c.app))
            .collect();
        lines.push(format!(
            "  {:<8} {}   {} Hz   channels: {}",
            b.id,
            b.listen,
            b.tick_hz,
            channels.join(", ")
        ));
    }
    if lines.is_empty() {
        bail!(
            "nothing in the config runs on host {host:?} (hosts named: master {:?})",
            config.master.host
        );
    }

    let mut supervisor = None;
    if in_process {
        for b in &backs {
            let listener = bind(b.listen, &b.id).await?;
            let back =
                centrum_back::Back::start(config.clone(), &b.id, listener, shutdown.clone())?;
            tasks.spawn(async move { back.wait().await.map_err(anyhow::Error::from) });
        }
        for f in &fronts {
            let listener = bind(f.listen, &f.id).await?;
            let front =
                centrum_front::Front::start(config.clone(), &f.id, listener, shutdown.clone())?;
            tasks.spawn(async move { front.wait().await.map_err(anyhow::Error::from) });
        }
    } else {
        let program =
            std::env::current_exe().context("cannot find the centrum executable to start nodes")?;
        let mut children = Vec::new();
        let config_args: Vec<String> = match file {
            Some(path) => vec!["--config".into(), path.display().to_string()],
            None => Vec::new(),
        };
        for (role, id) in backs
            .iter()
            .map(|b| ("back", &b.id))
            .chain(fronts.iter().map(|f| ("front", &f.id)))
        {
            let mut args = vec![role.to_owned(), "--id".to_owned(), id.clone()];
            args.extend(config_args.iter().cloned());
            children.push(centrum_master::ChildSpec {
                name: id.clone(),
                program: program.clone(),
                args,
            });
        }
        supervisor = Some(centrum_master::Supervisor::start(
            children,
            centrum_master::SupervisorOptions::default(),
            shutdown.clone(),
        ));
    }

    let source = file
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "embedded default".into());
    let mode = if in_process {
        "one process"
    } else {
        "one process per node"
    };
    println!("centrum is up on host {host} ({source}, {mode}):");
    for line in &lines {
        println!("{line}");
    }
    println!("Ctrl-C stops the cluster.");

    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        if let Ok(Err(e)) = joined {
            result = Err(e);
            shutdown.cancel();
        }
    }
    if let Some(supervisor) = supervisor {
        shutdown.cancel();
        supervisor.wait().await?;
    }
    result
}
