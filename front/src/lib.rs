//! A centrum front: the WebSocket server game clients connect to. It forwards their
//! joins and inputs to the back that owns each channel, and fans every patch out to
//! the channel's clients as the same bytes. It keeps no game state.
//!
//! Layers: accept loop (here) -> `connection` (one task per connection: its first
//! request, read by `http`, is a WebSocket upgrade, then a client with `ws` framing, or
//! a call, served by `call`) -> `hub` (routing and fan-out) <- `link` (one task per back).

mod access;
mod auth;
mod call;
mod close;
mod connection;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod handshake;
mod http;
mod hub;
mod link;
mod metrics;
mod outbox;
mod rate;
mod resume;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{Instrument, info};

use centrum_config::Config;
use centrum_net::auth::ClusterKey;
use centrum_net::ops::OpsNode;
use centrum_net::{Acceptor, Registration, ServerStream, ServerTls, Shutdown};
use centrum_protocol::{CLUSTER_VERSION, NodeStats, Register, Role};

use hub::Hub;

pub use auth::check as check_auth;

/// Why a front could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    #[error("no front with id {0:?} in the config")]
    UnknownId(String),
    /// The `[auth]` key cannot be read or used.
    #[error("{0}")]
    Auth(centrum_config::FieldError),
    #[error(transparent)]
    Refused(#[from] centrum_net::RegisterError),
    /// The cluster secret is missing or unreadable.
    #[error(transparent)]
    Secret(#[from] centrum_config::SecretError),
    #[error(transparent)]
    Ops(#[from] centrum_net::ops::BindError),
    /// The certificate or key named by `field` cannot be used.
    #[error("{field}: {source}")]
    Tls {
        field: String,
        #[source]
        source: centrum_net::TlsError,
    },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// A running front.
#[derive(Debug)]
pub struct Front {
    hub: Arc<Hub>,
    local_addr: SocketAddr,
    /// Where the ops port is bound, when `ops` is set.
    ops_addr: Option<SocketAddr>,
    client_url: String,
    tasks: JoinSet<Result<(), FrontError>>,
    shutdown: Shutdown,
}

impl Front {
    /// Starts front `id` of `config` on `listener`: it accepts clients at once, links
    /// to every back (retrying until each is up) and registers with the master.
    ///
    /// # Errors
    /// [`FrontError::UnknownId`] when `id` is not a front of the config,
    /// [`FrontError::Tls`] when its certificate or key cannot be used.
    /// [`FrontError::Auth`] when the key of its `[auth]` cannot be read or used,
    /// [`FrontError::Ops`] when its `ops` address cannot be bound.
    pub fn start(
        config: Arc<Config>,
        id: &str,
        listener: TcpListener,
        shutdown: Shutdown,
    ) -> Result<Front, FrontError> {
        let index = (config.front_index(id)).ok_or_else(|| FrontError::UnknownId(id.to_owned()))?;
        let me = config.fronts[index].clone();
        let key = ClusterKey::new(config.cluster.secret()?.expose().as_bytes());
        let local_addr = listener.local_addr()?;
        // With port 0 in the config, the URL must name the port actually bound.
        let client_url = if me.public_url.is_none() && me.listen.port() == 0 {
            format!("{}://{local_addr}", me.scheme())
        } else {
            me.client_url()
        };
        let auth = auth::Verifier::from_config(&config).map_err(FrontError::Auth)?;
        let mut hub = Hub::new(id, config.clone(), auth);
        if config.backs.iter().any(|b| b.tls.is_some())
            && let Some(ca) = &config.cluster.ca
        {
            let connector = centrum_net::link_connector(ca).map_err(|source| FrontError::Tls {
                field: "cluster.ca".into(),
                source,
            })?;
            hub.link_tls = Some(connector);
        }
        let hub = Arc::new(hub);
        let tls = match &me.tls {
            None => None,
            Some(files) => Some(
                ServerTls::load(&files.cert, &files.key, hub.metrics.tls.clone()).map_err(
                    |source| FrontError::Tls {
                        field: source.field(&format!("fronts[{index}]")),
                        source,
                    },
                )?,
            ),
        };
        let mut tasks = JoinSet::new();
        let ops_addr = match me.ops {
            None => None,
            Some(addr) => {
                let token = config.master.admin_token.clone();
                let counters = hub.metrics.ops.clone();
                let at = (format!("fronts[{index}].ops"), addr);
                let (ops, bound) =
                    centrum_net::ops::start(at, counters, token, &mut tasks, &shutdown)?;
                ops.set_node(Arc::new(FrontOps {
                    hub: hub.clone(),
                    linked_once: AtomicBool::new(false),
                }));
                Some(bound)
            }
        };
        if let Some(tls) = &tls {
            let watch = tls.clone().watch(shutdown.clone());
            tasks.spawn(async move {
                watch.await;
                Ok(())
            });
        }
        for back in 0..config.backs.len() {
            let (hub, key, stop) = (hub.clone(), key.clone(), shutdown.clone());
            tasks.spawn(async move {
                link::maintain(hub, back, key, stop).await;
                Ok(())
            });
        }
        tasks.spawn({
            let (hub, stop) = (hub.clone(), shutdown.clone());
            async move {
                accept_loop(listener, hub, tls, stop).await;
                Ok(())
            }
        });
        tasks.spawn(register(hub.clone(), local_addr, key, shutdown.clone()));
        let ops = ops_addr.map(|a| a.to_string()).unwrap_or_default();
        info!(front = id, listen = %local_addr, url = %client_url, ops, "front started");
        Ok(Front {
            hub,
            local_addr,
            ops_addr,
            client_url,
            tasks,
            shutdown,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where the ops port (`/healthz`, `/readyz`, `/metrics`) is bound, when `ops` is set.
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops_addr
    }

    /// The URL clients use to reach this front.
    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    /// Connected clients.
    pub fn clients(&self) -> usize {
        self.hub.client_count()
    }

    /// Waits until the front stops, and for its tasks (at most 5 s after the signal).
    ///
    /// # Errors
    /// [`FrontError::Refused`] when the master refused this front.
    pub async fn wait(mut self) -> Result<(), FrontError> {
        centrum_net::wait_tasks(&mut self.tasks, &self.shutdown).await
    }
}

/// Runs front `id` until `shutdown`.
///
/// # Errors
/// As [`Front::start`] and [`Front::wait`].
pub async fn run(
    config: Arc<Config>,
    id: &str,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), FrontError> {
    Front::start(config, id, listener, shutdown)?.wait().await
}

/// Refused connections answered (429) at once; beyond that they are closed without an
/// answer, so that a flood of them holds no connection permit and no unbounded tasks.
const REFUSALS_ANSWERED: usize = 64;

/// Accepts clients up to `limits.max_connections`: a permit is taken before each
/// accept and moved into the connection's task. A connection over its address's limits
/// gives its permit back at once.
async fn accept_loop(
    listener: TcpListener,
    hub: Arc<Hub>,
    tls: Option<ServerTls>,
    shutdown: Shutdown,
) {
    let mut listener = Acceptor::new(listener);
    let permits = Arc::new(Semaphore::new(hub.config.limits.max_connections as usize));
    let answering = Arc::new(Semaphore::new(REFUSALS_ANSWERED));
    let mut tasks = JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            p = permits.clone().acquire_owned() => p,
        };
        let Ok(permit) = permit else { break };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept(&hub.metrics.accept_errors) => a,
        };
        if let Err(e) = centrum_net::keepalive(&stream) {
            tracing::debug!(error = %e, %peer, "no tcp keepalive on a client connection");
        }
        hub.metrics.connections_total.fetch_add(1, Relaxed);
        // A trusted proxy's connections are admitted once their request names the client.
        let direct = peer.ip().to_canonical();
        let slot = if hub.access.is_trusted(direct) {
            None
        } else {
            match hub.access.admit(direct) {
                Ok(slot) => Some(slot),
                Err(refused) => {
                    drop(permit);
                    let Ok(answer) = answering.clone().try_acquire_owned() else {
                        http::count_refusal(&hub, &refused);
                        hub.metrics.refusals_unanswered.fetch_add(1, Relaxed);
                        continue;
                    };
                    let hub = hub.clone();
                    let span = tracing::info_span!("refused", %peer);
                    tasks.spawn(
                        async move {
                            // In clear even on a TLS port: the refusal is not worth a
                            // handshake, and a TLS client sees its connection fail.
                            let mut stream = ServerStream::Plain(stream);
                            http::refuse(&mut stream, &hub, &refused).await;
                            drop(answer);
                        }
                        .instrument(span),
                    );
                    continue;
                }
            }
        };
        let (hub, tls, stop) = (hub.clone(), tls.clone(), shutdown.clone());
        // At debug level: entered on every wake-up of the connection, it costs only when
        // debug logging is on, and nothing at info logs from inside it.
        let span = tracing::debug_span!("client", %peer, session = tracing::field::Empty);
        tasks.spawn(
            async move {
                connection::serve(stream, peer, slot, hub, tls, stop).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
    // The connections' tasks do not watch `shutdown` (it would cost a lock on every
    // wake-up): the hub closes them.
    hub.close_all();
    while tasks.join_next().await.is_some() {}
}

async fn register(
    hub: Arc<Hub>,
    listen: SocketAddr,
    key: ClusterKey,
    shutdown: Shutdown,
) -> Result<(), FrontError> {
    let limits = hub.config.limits;
    let reg = Registration {
        master: hub.config.master.nodes_address(),
        register: Register {
            version: CLUSTER_VERSION,
            role: Role::Front,
            id: hub.id.clone(),
            pid: std::process::id(),
            listen: listen.to_string(),
            // Made afresh for each connection by the registration loop.
            nonce: bytes::Bytes::new(),
        },
        heartbeat: limits.heartbeat(),
        max_frame_bytes: limits.max_frame_bytes,
        key,
    };
    let stats = move || {
        let clients = hub.client_count();
        NodeStats {
            clients: clients as u32,
            links: hub.metrics.links.load(Relaxed) as u32,
            channels: Vec::new(),
            metrics: hub.metrics.metrics(clients, true),
        }
    };
    centrum_net::register_and_heartbeat(reg, stats, shutdown).await?;
    Ok(())
}

/// What the ops port asks of a front.
struct FrontOps {
    hub: Arc<Hub>,
    /// Every back was linked at some moment since the front started.
    linked_once: AtomicBool,
}

impl OpsNode for FrontOps {
    fn metrics(&self) -> Vec<centrum_protocol::Metric> {
        self.hub.metrics.metrics(self.hub.client_count(), false)
    }

    /// Ready once it has been linked to every back: before, some channels would refuse
    /// joins. A back away later leaves it ready: that back's clients are told its
    /// channels are unavailable, and everyone else plays on. Taking every front out of
    /// its load balancer for one back would cut them all off.
    fn ready(&self) -> Result<(), String> {
        if self.linked_once.load(Relaxed) {
            return Ok(());
        }
        let unlinked = self.hub.unlinked();
        if unlinked.is_empty() {
            self.linked_once.store(true, Relaxed);
            return Ok(());
        }
        let backs = &self.hub.config.backs;
        let ids: Vec<&str> = unlinked
            .iter()
            .filter_map(|&i| backs.get(i).map(|b| b.id.as_str()))
            .collect();
        Err(format!("no link to back {}", ids.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_front_is_ready_once_it_has_linked_every_back_and_stays_so() {
        let hub = Arc::new(Hub::new(
            "front-1",
            Arc::new(Config::embedded_default()),
            None,
        ));
        let ops = FrontOps {
            hub: hub.clone(),
            linked_once: AtomicBool::new(false),
        };
        assert_eq!(ops.ready(), Err("no link to back back-1".into()));
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        hub.link_up(0, &["arena".to_owned()], &tx, &Shutdown::new());
        assert_eq!(ops.ready(), Ok(()));
        // A back away later: its clients are told, the front stays in its load balancer.
        hub.link_down(0);
        assert_eq!(ops.ready(), Ok(()));
    }
}
