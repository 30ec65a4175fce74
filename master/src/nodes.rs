//! The control links from fronts and backs: the accept loop, and one task per link that
//! admits the node (protocol version, configured id, at most one live instance per id),
//! then records its heartbeats until the link closes or the node falls silent.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{Instrument, debug, field, info, info_span, trace, warn};

use centrum_config::Config;
use centrum_net::{FrameError, Framed, Shutdown, framed, recv, send};
use centrum_protocol::{
    CLUSTER_VERSION, MasterToNode, NodeToMaster, Refused, Register, Registered, Role,
};

use crate::registry::{Registry, role_name};

/// Control links served at once; more wait in the kernel's backlog. A cluster has a
/// handful of nodes, so this only bounds what a misbehaving peer can open.
pub(crate) const MAX_NODE_LINKS: usize = 1024;

/// Longest node id quoted back in a refusal or a log line (config ids are at most 64).
const SHOWN_ID_CHARS: usize = 64;

/// What every link task needs.
#[derive(Debug, Clone)]
pub(crate) struct NodesContext {
    pub(crate) config: Arc<Config>,
    pub(crate) registry: Registry,
    /// The master's HTTP address, told to each registered node.
    pub(crate) http: SocketAddr,
}

/// Accepts control links until shutdown, then waits for every link task (each closes its
/// link on the same signal).
pub(crate) async fn accept_loop(listener: TcpListener, ctx: NodesContext, shutdown: Shutdown) {
    let limit = Arc::new(Semaphore::new(MAX_NODE_LINKS));
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
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                if let Err(e) = centrum_net::keepalive(&stream) {
                    debug!(error = %e, %peer, "no tcp keepalive on a node link");
                }
                let span = info_span!("node", %peer, id = field::Empty, role = field::Empty);
                let (ctx, stop) = (ctx.clone(), shutdown.clone());
                tasks.spawn(
                    async move {
                        serve_link(stream, ctx, stop).await;
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            Err(e) => {
                // Accept errors (out of file descriptors, a connection reset while queued)
                // are transient: pause so a persistent one does not spin, then go on.
                warn!(error = %e, "accepting a node link failed");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                }
            }
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Serves one control link over any byte stream until it closes, the node falls silent,
/// or shutdown.
pub(crate) async fn serve_link<S>(stream: S, ctx: NodesContext, shutdown: Shutdown)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limits = &ctx.config.limits;
    let mut link = framed(stream, limits.max_frame_bytes);
    let first = tokio::select! {
        _ = shutdown.cancelled() => return,
        first = tokio::time::timeout(limits.handshake_timeout(), recv::<_, NodeToMaster>(&mut link)) => first,
    };
    let reg = match first {
        Ok(Ok(Some(NodeToMaster::Register(reg)))) => reg,
        Ok(Ok(Some(NodeToMaster::Heartbeat(_)))) => {
            warn!("heartbeat before register; closing the link");
            return refuse(&mut link, "the first message must be Register".into()).await;
        }
        Ok(Ok(None)) => return debug!("node link closed before registering"),
        Ok(Err(e)) => return log_link_error(&e, "handshake"),
        Err(_) => {
            return warn!(
                timeout_ms = limits.handshake_timeout_ms,
                "no register within the handshake timeout; closing the link"
            );
        }
    };
    let span = tracing::Span::current();
    span.record("id", shown(&reg.id));
    span.record("role", role_name(reg.role));

    if let Err(reason) = check(&ctx.config, &reg) {
        warn!(%reason, "registration refused");
        return refuse(&mut link, reason).await;
    }
    let registered_at = Instant::now();
    let key = match ctx.registry.insert(&reg, registered_at) {
        Ok(key) => key,
        Err(live) => {
            let reason = live.to_string();
            warn!(%reason, pid = reg.pid, "registration refused: the id is live");
            return refuse(&mut link, reason).await;
        }
    };
    let id = reg.id;
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
    loop {
        tokio::select! {
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
                Ok(Some(NodeToMaster::Register(_))) => {
                    warn!("second register on a registered link; closing it");
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
    if ctx.registry.remove(&id, key) {
        info!("node removed");
    }
}

/// Checks what the config decides: the protocol version and that the id is one of its
/// nodes of that role. The reason is sent to the node verbatim.
fn check(config: &Config, reg: &Register) -> Result<(), String> {
    if reg.version != CLUSTER_VERSION {
        return Err(format!(
            "cluster version {} is not supported; this master speaks {CLUSTER_VERSION} (every process of a cluster must run the same release)",
            reg.version
        ));
    }
    let configured: Vec<&str> = match reg.role {
        Role::Front => config.fronts.iter().map(|f| f.id.as_str()).collect(),
        Role::Back => config.backs.iter().map(|b| b.id.as_str()).collect(),
    };
    if configured.contains(&reg.id.as_str()) {
        return Ok(());
    }
    let role = role_name(reg.role);
    Err(format!(
        "unknown {role} id {:?}; the config declares {role}s: {}",
        shown(&reg.id),
        configured.join(", ")
    ))
}

/// Sends the refusal and closes the link; the node is expected to stop.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(link: &mut Framed<S>, reason: String) {
    if let Err(e) = send(link, &MasterToNode::Refused(Refused { reason })).await {
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

/// At most [`SHOWN_ID_CHARS`] of a peer-chosen id, so a huge one cannot flood a reply or log.
fn shown(id: &str) -> &str {
    match id.char_indices().nth(SHOWN_ID_CHARS) {
        Some((end, _)) => &id[..end],
        None => id,
    }
}
