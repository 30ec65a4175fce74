//! The command line every centrum binary has. [`Cli`] collects what the binary hosts
//! (games, a default config, web pages), then parses the arguments and runs the
//! command; the role crates do the work.

use std::borrow::Cow;
use std::fmt::Display;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use centrum_app::{App, Registry};
use centrum_config::{Config, ConfigError, DEFAULT_TOML, FieldError};
use centrum_master::Page;
use centrum_net::Shutdown;

use crate::bench;

/// A centrum binary: the games it hosts and its commands.
///
/// [`Cli::new`] starts with the built-in games (`arena` and `bench-arena`, which
/// `centrum bench` uses); [`Cli::app`] adds yours; [`Cli::run`] runs the command the
/// arguments name. A mistake in what the binary was given (two games with one name, a
/// default config that does not validate) is reported when it runs, before anything
/// starts.
#[derive(Debug)]
pub struct Cli {
    apps: Registry,
    /// Names added with [`Cli::app`], to catch one added twice.
    added: Vec<String>,
    default_config: Cow<'static, str>,
    pages: Vec<Page>,
    problems: Vec<String>,
}

/// Paths the master serves itself; a game's page cannot take them.
const MASTER_ROUTES: &[&str] = &["/gate", "/status", "/metrics", "/admin"];

#[derive(Parser, Debug)]
#[command(version, about = "A state hub for real-time multiplayer games")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the whole cluster of this host: the master, and every front and back the
    /// config places on this host. Without FILE, the binary's default cluster.
    Up {
        /// Cluster config (TOML). Default: the one built into this binary.
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
    /// Validate a config file (application names, and the TLS certificates and keys
    /// it names, included) and print a summary.
    Check { file: PathBuf },
    /// Restart a node of a running `up` now, a failed one included (its failures start
    /// again from zero): `POST /nodes/ID/restart` on the config's master, with its admin
    /// token.
    Restart {
        /// The node's id in the config.
        node: String,
        /// Cluster config (TOML). Default: the one built into this binary.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Load generators: the arena benchmark, idle connections.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

#[derive(clap::Args, Debug)]
struct RoleArgs {
    /// Cluster config (TOML). Default: the one built into this binary.
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

impl Default for Cli {
    fn default() -> Self {
        Self::new()
    }
}

impl Cli {
    /// The stock binary: every command, the built-in games, the embedded default
    /// cluster (one master, `front-1`, `back-1` serving `arena`).
    pub fn new() -> Self {
        Self {
            apps: centrum_games::registry(),
            added: Vec::new(),
            default_config: Cow::Borrowed(DEFAULT_TOML),
            pages: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Hosts game `name`: a channel whose config says `app = "name"` runs a game made
    /// by `factory`, one per channel. A name of a built-in game replaces it.
    pub fn app<A, F>(mut self, name: &str, factory: F) -> Self
    where
        A: App,
        F: Fn() -> A + Send + Sync + 'static,
    {
        if self.added.iter().any(|n| n == name) {
            self.problems
                .push(format!("application {name:?} is added twice"));
        } else if !centrum_config::is_name(name) {
            self.problems.push(format!(
                "application name {name:?} {}",
                centrum_config::NAME_RULE
            ));
        }
        self.added.push(name.to_owned());
        self.apps.add(name, factory);
        self
    }

    /// The cluster config the binary uses when no file is given (`up` without FILE,
    /// `master`, `front` and `back` without `--config`), as TOML: usually your game's
    /// own, with `include_str!`.
    pub fn default_config(mut self, toml: &'static str) -> Self {
        self.default_config = Cow::Borrowed(toml);
        self
    }

    /// A web page of the game's own, served by the master (which also serves the
    /// JavaScript SDK at `/assets/centrum.js`): `Page::html("/", include_str!(...))`
    /// puts your game's client where the arena demo was.
    pub fn page(mut self, page: Page) -> Self {
        if !page.path.starts_with('/') {
            self.problems
                .push(format!("page path {:?} must start with '/'", page.path));
        } else if MASTER_ROUTES
            .iter()
            .any(|r| page.path == *r || page.path.starts_with(&format!("{r}/")))
            || page.path.starts_with("/assets/")
        {
            self.problems.push(format!(
                "page path {:?} is the master's own; pick another",
                page.path
            ));
        }
        self.pages.push(page);
        self
    }

    /// The games this binary hosts.
    pub fn apps(&self) -> &Registry {
        &self.apps
    }

    /// Parses the process's arguments and runs the command. Logs go to stderr
    /// (`RUST_LOG=debug` for more); a report goes to stdout, and a closed stdout
    /// (`centrum check FILE | head -2`) ends the command quietly.
    pub fn run(self) -> ExitCode {
        let args = Args::parse();
        if !self.problems.is_empty() {
            eprintln!("error: this binary is set up wrongly:");
            for problem in &self.problems {
                eprintln!("  - {problem}");
            }
            return ExitCode::from(2);
        }
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info".into()),
            )
            .with_target(false)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            // A log line that cannot be written is dropped. Reporting it would write to
            // the same stderr with `eprintln!`, which panics when that fails: a closed
            // stderr (`centrum up 2>&1 | tee`, its `tee` gone) would kill every task
            // that logs.
            .log_internal_errors(false)
            .init();
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("error: cannot start the async runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        match runtime.block_on(self.command(args.command)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if stdout_closed(&e) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    }

    async fn command(self, command: Command) -> Result<()> {
        match command {
            Command::Check { file } => self.check(&file),
            Command::Restart { node, config } => {
                let config = self.load(config.as_deref())?;
                crate::restart::restart(&config, &node).await
            }
            Command::Bench(command) => bench::run(command).await,
            Command::Up {
                file,
                host,
                in_process,
            } => crate::up::up(&self, file.as_deref(), host, in_process).await,
            Command::Master(args) => {
                let config = self.load(args.config.as_deref())?;
                let listeners = centrum_master::MasterListeners {
                    http: bind(config.master.http, "master.http").await?,
                    nodes: bind(config.master.nodes, "master.nodes").await?,
                };
                let nodes = config.master.nodes_address();
                check_dialable("the master", "master.advertise", &nodes).await?;
                let options = self.master_options();
                centrum_master::run_with(config, listeners, options, on_signal()).await?;
                Ok(())
            }
            Command::Front(args) => {
                let config = self.load(args.config.as_deref())?;
                let me = config
                    .front(&args.id)
                    .with_context(|| format!("no front {:?} in the config", args.id))?;
                let listener = bind(me.listen, &config.field_of(&args.id, "listen")).await?;
                centrum_front::run(config.clone(), &args.id, listener, on_signal()).await?;
                Ok(())
            }
            Command::Back(args) => {
                let config = self.load(args.config.as_deref())?;
                let me = config
                    .back(&args.id)
                    .with_context(|| format!("no back {:?} in the config", args.id))?;
                let field = config.field_of(&args.id, "listen");
                let listener = bind(me.listen, &field).await?;
                let field = config.field_of(&args.id, "advertise");
                check_dialable(&args.id, &field, &me.link_address()).await?;
                centrum_back::run(config.clone(), &self.apps, &args.id, listener, on_signal())
                    .await?;
                Ok(())
            }
        }
    }

    /// The config from `file`, or the binary's default; validated against the games
    /// this binary has.
    pub(crate) fn load(&self, file: Option<&Path>) -> Result<Arc<Config>> {
        let config = match file {
            Some(path) => Config::load(path)?,
            None => Config::parse(&self.default_config)
                .context("the default config built into this binary is invalid")?,
        };
        if let Err(problems) = centrum_back::check_apps(&config, &self.apps) {
            return Err(ConfigError::Invalid(problems).into());
        }
        Ok(Arc::new(config))
    }

    pub(crate) fn master_options(&self) -> centrum_master::MasterOptions {
        centrum_master::MasterOptions {
            pages: self.pages.clone(),
            supervisor: None,
        }
    }

    pub(crate) fn pages(&self) -> &[Page] {
        &self.pages
    }

    fn check(&self, file: &Path) -> Result<()> {
        let config = self.load(Some(file))?;
        check_tls(&config, None)?;
        say(format_args!("{}: ok", file.display()))?;
        let scheme = if config.master.tls.is_some() {
            "https"
        } else {
            "http"
        };
        say(format_args!(
            "  master  {scheme} {}  nodes {}  (host {})",
            config.master.http, config.master.nodes, config.master.host
        ))?;
        for f in &config.fronts {
            say(format_args!(
                "  front   {:<12} {}  (host {}){}",
                f.id,
                f.client_url(),
                f.host,
                ops_suffix(&f.host, f.ops)
            ))?;
        }
        for b in &config.backs {
            say(format_args!(
                "  back    {:<12} {}  {} Hz  channels: {}  (host {}){}",
                b.id,
                b.listen,
                b.tick_hz,
                channel_list(b),
                b.host,
                ops_suffix(&b.host, b.ops)
            ))?;
            for r in &b.rooms {
                say(format_args!(
                    "          rooms: type {} ({}), {} clients a room, at most {} rooms, disposed {} s after emptying",
                    r.kind, r.app, r.max_clients, r.max_rooms, r.empty_dispose_s
                ))?;
            }
        }
        let m = &config.matchmaker;
        if config.backs.iter().any(|b| !b.rooms.is_empty()) {
            say(format_args!(
                "  rooms   POST /v1/rooms/{{type}}/join-or-create on the master; seats last {} ms; {} room creations a minute per address",
                m.seat_ttl_ms,
                match m.creates_per_minute {
                    0 => "any number of".to_owned(),
                    n => n.to_string(),
                }
            ))?;
        }
        let calls = match &config.calls.server_key {
            Some(_) => format!(
                "on (POST /v1/channels/{{channel}}/call on any front; {} ms timeout)",
                config.calls.timeout_ms
            ),
            None => "off (no [calls] server_key)".into(),
        };
        say(format_args!("  calls   {calls}"))?;
        // The key is read as a front reads it when it starts.
        if let Err(problem) = centrum_front::check_auth(&config) {
            return Err(ConfigError::Invalid(vec![problem]).into());
        }
        // So is the store's URL, as a back reads it (never shown).
        if config.store.kind == centrum_config::StoreKind::Redis {
            if let Err(e) = config.store.url() {
                let problem = FieldError {
                    field: "store.url".into(),
                    reason: e.to_string(),
                };
                return Err(ConfigError::Invalid(vec![problem]).into());
            }
            say(format_args!(
                "  store   redis (keys {}:{{<back id>}}:..., lease {} ms, fsync {:?})",
                config.store.prefix, config.store.lease_ms, config.store.fsync
            ))?;
        }
        let auth = match &config.auth {
            Some(auth) => {
                let anonymous: Vec<&str> = config
                    .backs
                    .iter()
                    .flat_map(|b| &b.channels)
                    .filter(|c| c.anonymous)
                    .map(|c| c.name.as_str())
                    .collect();
                format!(
                    "JWT {:?}; without a token: {}",
                    auth.algorithm,
                    if anonymous.is_empty() {
                        "refused".to_owned()
                    } else {
                        anonymous.join(", ")
                    }
                )
            }
            None => "off (no [auth]: tokens are ignored, every channel is open)".into(),
        };
        say(format_args!("  auth    {auth}"))?;
        Ok(())
    }
}

/// Whether the certificate and key of every node on `host` (every node, for `None`)
/// can be used, before anything starts: `fronts[0].tls.key: no private key in ...`.
///
/// # Errors
/// [`ConfigError::Invalid`] listing each unusable file.
pub(crate) fn check_tls(config: &Config, host: Option<&str>) -> Result<(), ConfigError> {
    let on_host = |h: &str| host.is_none_or(|host| host == h);
    let master =
        (on_host(&config.master.host)).then(|| ("master".to_owned(), config.master.tls.as_ref()));
    let fronts = config
        .fronts
        .iter()
        .enumerate()
        .filter(|(_, front)| on_host(&front.host))
        .map(|(i, front)| (format!("fronts[{i}]"), front.tls.as_ref()));
    let problems: Vec<FieldError> = master
        .into_iter()
        .chain(fronts)
        .filter_map(|(at, tls)| {
            let tls = tls?;
            let e = centrum_net::ServerTls::check(&tls.cert, &tls.key).err()?;
            Some(FieldError {
                field: e.field(&at),
                reason: e.reason,
            })
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// Where a node's ops port is reached from its host: `http://` and the address, with
/// `host` for a wildcard IP.
pub(crate) fn ops_url(host: &str, ops: SocketAddr) -> String {
    format!("http://{}", centrum_config::dial_address(host, ops))
}

/// `  ops http://...` after a node's line in `check`, when it has an ops port.
fn ops_suffix(host: &str, ops: Option<SocketAddr>) -> String {
    ops.map(|ops| format!("  ops {}", ops_url(host, ops)))
        .unwrap_or_default()
}

/// `arena (arena), bench (bench-arena)`.
pub(crate) fn channel_list(back: &centrum_config::BackConfig) -> String {
    back.channels
        .iter()
        .map(|c| format!("{} ({})", c.name, c.app))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line of a command's report on stdout.
///
/// # Errors
/// When stdout is closed or failing; [`Cli::run`] ends quietly on a closed one.
pub(crate) fn say(line: impl Display) -> Result<()> {
    writeln!(std::io::stdout().lock(), "{line}").context("writing to stdout")?;
    Ok(())
}

/// Whether `e` is stdout's reader going away (`| head`), which is not a failure.
fn stdout_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Binds the socket the config sets in `field` (`backs[0].listen`), saying what to do
/// when it cannot be bound.
pub(crate) async fn bind(addr: SocketAddr, field: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrNotAvailable => format!(
                ": {} is not an address of this machine; is this the host the config places it \
                 on (`centrum up --host H` starts only the processes of host H)? Bind an address \
                 of this machine, or 0.0.0.0 with `advertise` (or `public_url`) for the address \
                 others dial",
                addr.ip()
            ),
            std::io::ErrorKind::AddrInUse => {
                ": another process holds it (another `centrum up` of this cluster?)".into()
            }
            std::io::ErrorKind::PermissionDenied if addr.port() < 1024 => {
                ": ports below 1024 need privileges; choose a higher port".into()
            }
            _ => String::new(),
        };
        anyhow::anyhow!("{field}: cannot listen on {addr}: {e}{hint}")
    })
}

/// Other nodes dial `address` to reach the socket node `id` just bound (set by `field`,
/// or made from its host and port): it must at least be reachable from the node's own
/// machine, or they would retry forever against the wrong place.
pub(crate) async fn check_dialable(id: &str, field: &str, address: &str) -> Result<()> {
    const WITHIN: std::time::Duration = std::time::Duration::from_secs(3);
    let why = match tokio::time::timeout(WITHIN, tokio::net::TcpStream::connect(address)).await {
        // Closed at once: the node's accept loop sees a connection that never says hello.
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {} s", WITHIN.as_secs()),
    };
    anyhow::bail!(
        "{field}: other nodes dial {id} at {address}, which cannot be reached from {id}'s own \
         machine ({why}); set {field} to an address of this machine that the others reach"
    )
}

/// A shutdown signal cancelled by Ctrl-C or SIGTERM.
pub(crate) fn on_signal() -> Shutdown {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistakes_in_what_the_binary_hosts_are_collected() {
        let cli = Cli::new()
            .app("arena", centrum_games::Arena::new)
            .app("tag", centrum_games::Arena::new)
            .app("tag", centrum_games::Arena::new)
            .app("bad name", centrum_games::Arena::new)
            .page(Page::html("/", "<p>mine</p>"))
            .page(Page::html("/gate", "x"))
            .page(Page::html("/assets/centrum.js", "x"))
            .page(Page::html("lobby", "x"));
        assert_eq!(
            cli.problems,
            [
                "application \"tag\" is added twice",
                "application name \"bad name\" must be 1-64 characters of a-z, A-Z, 0-9, '-' or '_'",
                "page path \"/gate\" is the master's own; pick another",
                "page path \"/assets/centrum.js\" is the master's own; pick another",
                "page path \"lobby\" must start with '/'",
            ]
        );
        assert_eq!(
            cli.apps().names().collect::<Vec<_>>(),
            ["arena", "bad name", "bench-arena", "tag"],
            "a built-in name may be replaced"
        );
    }

    #[test]
    fn unknown_applications_are_named_by_field_with_what_the_binary_has() {
        let dir = std::env::temp_dir().join(format!("centrum-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tagg.toml");
        std::fs::write(
            &path,
            DEFAULT_TOML.replace(
                r#"channels = [{ name = "arena", app = "arena" }]"#,
                r#"channels = [{ name = "arena", app = "arena" }, { name = "t", app = "tagg" }]"#,
            ),
        )
        .unwrap();
        let cli = Cli::new().app("tag", centrum_games::Arena::new);
        let err = cli.load(Some(&path)).unwrap_err().to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            err,
            "invalid config:\n  - backs[0].channels[1].app: unknown application \"tagg\" (this binary has: arena, bench-arena, tag)"
        );
    }
}
