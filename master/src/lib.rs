//! The centrum master: the cluster's control plane. It keeps the registry of live nodes
//! (at most one live instance per id), tells clients which front to use, serves
//! `/status` and Prometheus `/metrics`, and supervises the processes of its host.
//!
//! Layers: `nodes` (control links) -> `registry` <- `http` (`metrics` renders text);
//! `supervise` runs the processes and knows nothing of the rest; `http` reads its
//! [`SupervisorHandle`] when there is one. The master is never in the data path.

mod conn;
mod http;
mod login_limit;
mod matchmaker;
mod metrics;
mod nodes;
mod registry;
mod sessions;
mod supervise;
mod web;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{error, info};

use centrum_config::Config;
use centrum_net::{ServerTls, Shutdown};

pub use supervise::{
    ChildSpec, ChildState, ChildStatus, RunDir, STDERR_TAIL_BYTES, SuperviseError, Supervisor,
    SupervisorHandle, SupervisorOptions, supervise,
};
pub use web::Page;

use centrum_net::auth::ClusterKey;
use http::HttpState;
use login_limit::LoginLimiter;
use nodes::NodesContext;
use registry::Registry;
use sessions::Sessions;

/// How long [`run`] waits for its tasks after the shutdown signal.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A node silent for this many heartbeat periods is dropped.
const MISSED_HEARTBEATS: u32 = 3;

/// The sockets the master serves, bound by the caller (so tests can use port 0).
#[derive(Debug)]
pub struct MasterListeners {
    /// The HTTP API: `/gate`, `/status`, `/metrics`.
    pub http: TcpListener,
    /// Control links from fronts and backs.
    pub nodes: TcpListener,
}

/// What a master serves besides its own API.
#[derive(Debug, Clone, Default)]
pub struct MasterOptions {
    /// A game's own web pages: served at their path when no route of the master's
    /// own has it, `/` included (where they replace the arena demo).
    pub pages: Vec<Page>,
    /// The processes of this host, when the master runs under `centrum up`: shown on
    /// `/status`, `/metrics` and the dashboard, and restarted by `POST /nodes/{id}/restart`.
    pub supervisor: Option<SupervisorHandle>,
}

/// Why the master stopped other than by shutdown.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("a master task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The cluster secret is missing or unreadable.
    #[error(transparent)]
    Secret(#[from] centrum_config::SecretError),
    /// The certificate or key named by `field` cannot be used.
    #[error("{field}: {source}")]
    Tls {
        field: String,
        #[source]
        source: centrum_net::TlsError,
    },
}

/// Serves node links and the HTTP API until `shutdown`, then stops accepting, closes
/// every node link and waits (at most 5 s) for every task it started.
///
/// # Errors
/// [`MasterError::Io`] when a listener's address cannot be read;
/// [`MasterError::Task`] when one of its tasks panicked. Either stops the master.
/// [`MasterError::Tls`] when `master.tls` names files it cannot use: it does not start.
pub async fn run(
    config: Arc<Config>,
    listeners: MasterListeners,
    shutdown: Shutdown,
) -> Result<(), MasterError> {
    run_with(config, listeners, MasterOptions::default(), shutdown).await
}

/// [`run`], serving `options.pages` too.
///
/// # Errors
/// As [`run`].
pub async fn run_with(
    config: Arc<Config>,
    listeners: MasterListeners,
    options: MasterOptions,
    shutdown: Shutdown,
) -> Result<(), MasterError> {
    let key = ClusterKey::new(config.cluster.secret()?.expose().as_bytes());
    let nodes_metrics = Arc::new(nodes::NodesMetrics::default());
    let http_addr = listeners.http.local_addr()?;
    let nodes_addr = listeners.nodes.local_addr()?;
    let tls = match &config.master.tls {
        None => None,
        Some(files) => Some(
            ServerTls::load(&files.cert, &files.key, Arc::default()).map_err(|source| {
                MasterError::Tls {
                    field: source.field("master"),
                    source,
                }
            })?,
        ),
    };
    let registry = Registry::new(
        config.limits.heartbeat() * MISSED_HEARTBEATS,
        config.matchmaker.seat_ttl(),
    );
    let matchmaker = matchmaker::Matchmaker::new(config.clone(), key.clone(), registry.clone());
    // A failing task stops the master's own tasks, not whatever else the caller's
    // signal governs (e.g. the nodes of `centrum up --in-process`).
    let stop = shutdown.child_token();
    let mut tasks: JoinSet<Result<(), MasterError>> = JoinSet::new();
    let ctx = NodesContext {
        config: config.clone(),
        registry: registry.clone(),
        http: http_addr,
        key,
        metrics: nodes_metrics.clone(),
        matchmaker: matchmaker.clone(),
    };
    tasks.spawn({
        let stop = stop.clone();
        async move {
            nodes::accept_loop(listeners.nodes, ctx, stop).await;
            Ok(())
        }
    });
    let limits = config.master.limits;
    let state = HttpState {
        registry,
        matchmaker,
        http: http_addr,
        nodes: nodes_addr,
        started: Instant::now(),
        pages: Arc::new(options.pages),
        supervisor: options.supervisor,
        nodes_metrics,
        sessions: Arc::new(Sessions::new(
            limits.session(),
            usize::try_from(limits.max_sessions).unwrap_or(usize::MAX),
        )),
        logins: Arc::new(LoginLimiter::new(limits.login_attempts_per_minute)),
        counters: Arc::default(),
        // Over https the admin cookie must never go out in clear.
        secure_cookies: tls.is_some(),
        tls: tls.clone(),
        config,
    };
    if let Some(tls) = tls {
        let watch = tls.watch(stop.clone());
        tasks.spawn(async move {
            watch.await;
            Ok(())
        });
    }
    tasks.spawn({
        let stop = stop.clone();
        async move {
            http::serve(listeners.http, state, stop).await;
            Ok(())
        }
    });
    info!(http = %http_addr, nodes = %nodes_addr, "master started");

    let mut result = Ok(());
    tokio::select! {
        _ = stop.cancelled() => {}
        Some(joined) = tasks.join_next() => {
            // Every task runs until the signal, so one ending early is a failure.
            result = flatten(joined);
            if let Err(e) = &result {
                error!(error = %e, "master stopping");
            }
        }
    }
    stop.cancel();
    let drained = tokio::time::timeout(STOP_TIMEOUT, async {
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = flatten(joined) {
                error!(error = %e, "master task failed while stopping");
            }
        }
    })
    .await;
    if drained.is_err() {
        error!(
            timeout_s = STOP_TIMEOUT.as_secs(),
            "master tasks did not stop in time; aborting them"
        );
    }
    info!("master stopped");
    result
}

fn flatten(
    joined: Result<Result<(), MasterError>, tokio::task::JoinError>,
) -> Result<(), MasterError> {
    joined?
}
