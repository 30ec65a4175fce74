//! The control links from fronts and backs: the accept loop, and one task per link that
//! admits the node (protocol version, configured id, proof of the cluster secret, at most
//! one live instance per id), then records its heartbeats until the link closes or the
//! node falls silent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{Instrument, debug, field, info, info_span, trace, warn};

use centrum_config::Config;
use centrum_net::auth::{ClusterKey, Handshake, Proof, nonce};
use centrum_net::{
    Acceptor, FrameError, Framed, MASTER_ID, Pending, PendingSlot, Shutdown, framed, recv, send,
    shown,
};
use centrum_protocol::{
    CLUSTER_VERSION, CONTROL_FRAME_BYTES, Challenge, HANDSHAKE_FRAME_BYTES, MasterToNode, Metric,
    NodeToMaster, Refused, Register, Registered, Role,
};

use crate::matchmaker::Matchmaker;
use crate::registry::{Registry, role_name};

/// Control links served at once; more wait in the kernel's backlog. A cluster has a
/// handful of nodes, so this only bounds what a misbehaving peer can open.
pub(crate) const MAX_NODE_LINKS: usize = 1024;

/// Links in their handshake at once; at the cap the oldest is closed to make room, so
/// that strangers holding connections open cannot lock out a node.
pub(crate) const PENDING_NODE_LINKS: usize = 64;

/// What the nodes port counts, for /metrics.
#[derive(Debug, Default)]
pub(crate) struct NodesMetrics {
    /// Registrations refused (any reason), and of those the ones without a valid proof.
    pub(crate) refused: AtomicU64,
    pub(crate) unauthenticated: AtomicU64,
    /// Handshakes closed to make room for newer ones.
    pub(crate) handshakes_evicted: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
}

impl NodesMetrics {
    /// The counters, as the master's own metrics on /metrics.
    pub(crate) fn metrics(&self) -> Vec<Metric> {
        use crate::metrics::counter;
        vec![
            counter(
                "centrum_master_registrations_refused_total",
                "Registrations refused: another cluster version, an unknown id, an id that is live, or no proof of the cluster secret.",
                &self.refused,
            ),
            counter(
                "centrum_master_registrations_unauthenticated_total",
                "Registrations whose node did not prove it holds the cluster secret (also counted in registrations_refused).",
                &self.unauthenticated,
            ),
            counter(
                "centrum_master_node_handshakes_evicted_total",
                "Node links closed in their handshake to make room for newer ones (at most 64 at once).",
                &self.handshakes_evicted,
            ),
            counter(
                "centrum_master_node_accept_errors_total",
                "Failed accepts on the nodes port (out of file descriptors, for example); each is waited out.",
                &self.accept_errors,
            ),
        ]
    }
}

/// What every link task needs.
#[derive(Debug, Clone)]
pub(crate) struct NodesContext {
    pub(crate) config: Arc<Config>,
    pub(crate) registry: Registry,
    /// The master's HTTP address, told to each registered node.
    pub(crate) http: SocketAddr,
    /// Signs the master's proofs and checks the nodes'.
    pub(crate) key: ClusterKey,
    pub(crate) metrics: Arc<NodesMetrics>,
    /// Hears the backs' rooms and sends them the matchmaker's requests.
    pub(crate) matchmaker: Matchmaker,
}

/// Accepts control links until shutdown, then waits for every link task (each closes its
/// link on the same signal).
pub(crate) async fn accept_loop(listener: TcpListener, ctx: NodesContext, shutdown: Shutdown) {
    let mut listener = Acceptor::new(listener);
    let limit = Arc::new(Semaphore::new(MAX_NODE_LINKS));
    let pending = Pending::new(PENDING_NODE_LINKS);
    let mut tasks = JoinSet::new();
    loop {
        // The permit is taken before accepting, so at the cap new links wait in the backlog.
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                // The semaphore is never closed.
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept(&ctx.metrics.accept_errors) => accepted,
        };
        let _ = stream.set_nodelay(true);
        if let Err(e) = centrum_net::keepalive(&stream) {
            debug!(error = %e, %peer, "no tcp keepalive on a node link");
        }
        let (slot, evicted) = pending.admit();
        if evicted {
            ctx.metrics.handshakes_evicted.fetch_add(1, Relaxed);
        }
        let span = info_span!("node", %peer, id = field::Empty, role = field::Empty);
        let (ctx, stop) = (ctx.clone(), shutdown.clone());
        tasks.spawn(
            async move {
                serve_link(stream, ctx, Some(slot), stop).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
    while tasks.join_next().await.is_some() {}
}

/// Serves one control link over any byte stream until it closes, the node falls silent,
/// or shutdown. `slot` is its place among the links in their handshake, if they are
/// capped: the handshake ends when a newer link takes it.
pub(crate) async fn serve_link<S>(
    stream: S,
    ctx: NodesContext,
    slot: Option<PendingSlot>,
    shutdown: Shutdown,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limits = &ctx.config.limits;
    // Small frames until the node has proved it belongs to the cluster.
    let mut link = framed(stream, HANDSHAKE_FRAME_BYTES);
    let evicted = async {
        match &slot {
            Some(slot) => slot.evicted().await,
            None => std::future::pending().await,
        }
    };
    let admitted = tokio::select! {
        _ = shutdown.cancelled() => return,
        () = evicted => return debug!("node handshake closed to make room for a newer one"),
        admitted = tokio::time::timeout(limits.handshake_timeout(), admit(&ctx, &mut link)) => admitted,
    };
    drop(slot);
    let reg = match admitted {
        Ok(Ok(reg)) => reg,
        Ok(Err(Admission::Refuse { reason, retry })) => {
            ctx.metrics.refused.fetch_add(1, Relaxed);
            warn!(%reason, "registration refused");
            return refuse(&mut link, reason, retry).await;
        }
        // Closed without a word: a port probe (a node checking its advertised address,
        // a load balancer's health check), not a node lost.
        Ok(Err(Admission::Failed(FrameError::Io(e))))
            if e.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            return debug!("a connection closed before it registered");
        }
        Ok(Err(Admission::Failed(e))) => return log_link_error(&e, "handshake"),
        Err(_) => {
            return warn!(
                timeout_ms = limits.handshake_timeout_ms,
                "no registration within the handshake timeout; closing the link"
            );
        }
    };
    link.codec_mut()
        .set_max_frame_length(limits.max_frame_bytes.max(CONTROL_FRAME_BYTES) as usize);
    let registered_at = Instant::now();
    let key = match ctx.registry.insert(&reg, registered_at) {
        Ok(key) => key,
        Err(live) => {
            // It may be the instance this one replaces, not yet found gone: the node
            // retries, and gets in once the master drops the old one.
            let reason = live.to_string();
            ctx.metrics.refused.fetch_add(1, Relaxed);
            warn!(%reason, pid = reg.pid, "registration refused: the id is live");
            return refuse(&mut link, reason, true).await;
        }
    };
    let (id, role) = (reg.id, reg.role);
    let reply = MasterToNode::Registered(Registered {
        master: ctx.http.to_string(),
    });
    if let Err(e) = send(&mut link, &reply).await {
        ctx.registry.remove(&id, key);
        return debug!(error = %e, "node link failed while registering");
    }
    info!(pid = reg.pid, listen = %reg.listen, "node registered");

    let stale_after = ctx.registry.stale_after();
    let silence = tokio::time::sleep_until(registered_at + stale_after);
    tokio::pin!(silence);
    // The matchmaker's requests for a back; a front gets none.
    let mut requests = (role == Role::Back).then(|| ctx.matchmaker.back_linked(&id, key));
    loop {
        tokio::select! {
            Some(request) = async { requests.as_mut()?.recv().await } => {
                if let Err(e) = send(&mut link, &request).await {
                    log_link_error(&e, "registered");
                    break;
                }
            }
            _ = shutdown.cancelled() => {
                debug!("closing the node link: the master is stopping");
                break;
            }
            () = &mut silence => {
                warn!(
                    silent_ms = stale_after.as_millis() as u64,
                    "node silent for three heartbeat periods; dropping it and closing its link"
                );
                break;
            }
            msg = recv::<_, NodeToMaster>(&mut link) => match msg {
                Ok(Some(NodeToMaster::Heartbeat(hb))) => {
                    let now = Instant::now();
                    trace!(clients = hb.stats.clients, "heartbeat");
                    if !ctx.registry.heartbeat(&id, key, hb.stats, now) {
                        warn!("registration replaced by a newer instance; closing the link");
                        break;
                    }
                    silence.as_mut().reset(now + stale_after);
                }
                Ok(Some(NodeToMaster::Rooms(report))) => {
                    ctx.matchmaker.report(&id, report, Instant::now());
                }
                Ok(Some(NodeToMaster::RoomCreated(answer))) => ctx.matchmaker.created(answer),
                Ok(Some(other @ (NodeToMaster::Register(_) | NodeToMaster::Prove(_)))) => {
                    warn!(message = other.name(), "handshake message on a registered link; closing it");
                    break;
                }
                Ok(None) => {
                    info!("node link closed");
                    break;
                }
                Err(e) => {
                    log_link_error(&e, "registered");
                    break;
                }
            },
        }
    }
    if requests.is_some() {
        ctx.matchmaker.back_gone(&id, key);
    }
    if ctx.registry.remove(&id, key) {
        info!("node removed");
    }
}

/// How a registration did not get in.
enum Admission {
    /// The node is told why; with `retry` the cause can pass.
    Refuse { reason: String, retry: bool },
    /// The link broke, or the node broke the protocol.
    Failed(FrameError),
}

impl From<FrameError> for Admission {
    fn from(e: FrameError) -> Self {
        Admission::Failed(e)
    }
}

/// The registration handshake (PROTOCOL.md section 15): the node's `Register`, checked
/// against the config; the master's challenge and proof; the node's proof.
async fn admit<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &NodesContext,
    link: &mut Framed<S>,
) -> Result<Register, Admission> {
    let refuse = |reason: String| Admission::Refuse {
        reason,
        retry: false,
    };
    let reg = match recv::<_, NodeToMaster>(link).await? {
        Some(NodeToMaster::Register(reg)) => reg,
        Some(other) => {
            return Err(refuse(format!(
                "the first message must be Register, not {}",
                other.name()
            )));
        }
        None => return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()).into()),
    };
    let span = tracing::Span::current();
    span.record("id", shown(&reg.id));
    span.record("role", role_name(reg.role));
    check(&ctx.config, &reg).map_err(|(reason, retry)| Admission::Refuse { reason, retry })?;
    let mine = nonce().map_err(FrameError::from)?;
    let handshake = Handshake {
        opener: &reg.id,
        acceptor: MASTER_ID,
        opener_nonce: &reg.nonce,
        acceptor_nonce: &mine,
    };
    let challenge = Challenge {
        nonce: mine.clone(),
        proof: ctx.key.prove(Proof::Master, &handshake),
    };
    send(link, &MasterToNode::Challenge(challenge)).await?;
    let proof = match recv::<_, NodeToMaster>(link).await? {
        Some(NodeToMaster::Prove(p)) => p.proof,
        Some(other) => {
            return Err(refuse(format!(
                "expected Prove after the challenge, got {}",
                other.name()
            )));
        }
        None => return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()).into()),
    };
    if !ctx.key.verify(Proof::Node, &handshake, &proof) {
        ctx.metrics.unauthenticated.fetch_add(1, Relaxed);
        // Retried: the secret may be being rotated, one process at a time.
        return Err(Admission::Refuse {
            reason: "the node did not prove it holds the cluster secret (another cluster, or a wrong secret on one side)".into(),
            retry: true,
        });
    }
    Ok(reg)
}

/// Checks what the config decides: the protocol version and that the id is one of its
/// nodes of that role. The reason is sent to the node verbatim, with whether to retry:
/// another version never passes; an unknown id may, once the master runs the new config.
fn check(config: &Config, reg: &Register) -> Result<(), (String, bool)> {
    if reg.version != CLUSTER_VERSION {
        let reason = format!(
            "cluster version {} is not supported; this master speaks {CLUSTER_VERSION} (every process of a cluster must run the same release)",
            reg.version
        );
        return Err((reason, false));
    }
    let known = match reg.role {
        Role::Front => config.front(&reg.id).is_some(),
        Role::Back => config.back(&reg.id).is_some(),
    };
    if known {
        return Ok(());
    }
    let configured: Vec<String> = match reg.role {
        Role::Front => (config.fronts.iter())
            .map(|f| match f.pool {
                true => format!("{}-* (a pool)", f.id),
                false => f.id.clone(),
            })
            .collect(),
        Role::Back => config.backs.iter().map(|b| b.id.clone()).collect(),
    };
    let role = role_name(reg.role);
    let reason = format!(
        "unknown {role} id {:?}; the config declares {role}s: {}",
        shown(&reg.id),
        configured.join(", ")
    );
    Err((reason, true))
}

/// Sends the refusal and closes the link.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut Framed<S>,
    reason: String,
    retry: bool,
) {
    if let Err(e) = send(link, &MasterToNode::Refused(Refused { reason, retry })).await {
        debug!(error = %e, "could not send the refusal");
    }
}

/// A peer's bad frame is worth a warning; a broken connection is an ordinary disconnect.
fn log_link_error(e: &FrameError, stage: &str) {
    match e {
        FrameError::Decode(_) => warn!(error = %e, stage, "bad frame from node; closing its link"),
        // The codec reports an oversized frame as `InvalidData`.
        FrameError::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            warn!(error = %e, stage, "bad frame from node; closing its link")
        }
        FrameError::Io(_) | FrameError::Silent(_) => info!(error = %e, stage, "node link lost"),
    }
}
