//! A node's side of the control link: register with the master, then heartbeat its
//! stats. The master is not in the data path, so while it is away the node keeps
//! serving and keeps retrying; only an explicit refusal stops the node.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use centrum_protocol::{Heartbeat, MasterToNode, NodeStats, NodeToMaster, Register};

use crate::{Backoff, FrameError, Shutdown, framed, recv, send};

/// The master refused this node; it must stop.
#[derive(Debug, thiserror::Error)]
#[error("the master refused registration: {0}")]
pub struct RegisterError(pub String);

/// What a node needs to stay registered.
#[derive(Debug, Clone)]
pub struct Registration {
    pub master: SocketAddr,
    pub register: Register,
    pub heartbeat: Duration,
    pub max_frame_bytes: u32,
}

/// Keeps the node registered until `shutdown`. Returns `Err` only when the master
/// refuses the node (for example, the same back id is already live).
///
/// # Errors
/// [`RegisterError`] with the master's reason.
pub async fn register_and_heartbeat<F>(
    reg: Registration,
    stats: F,
    shutdown: Shutdown,
) -> Result<(), RegisterError>
where
    F: Fn() -> NodeStats + Send,
{
    // At most a second apart: a master that comes back (a new `centrum up` taking its
    // nodes over) has every node registered within about a second; one connection
    // attempt a second per node costs nothing.
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
    loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = session(&reg, &stats, &mut backoff) => r,
        };
        match attempt {
            Ok(Some(reason)) => return Err(RegisterError(reason)),
            Ok(None) => debug!("master link closed"),
            Err(e) => debug!(error = %e, master = %reg.master, "master unreachable"),
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// One connection to the master. `Ok(Some(reason))` when refused, `Ok(None)` when the
/// master went away.
async fn session<F: Fn() -> NodeStats>(
    reg: &Registration,
    stats: &F,
    backoff: &mut Backoff,
) -> Result<Option<String>, FrameError> {
    let stream = TcpStream::connect(reg.master).await?;
    if let Err(e) = crate::keepalive(&stream) {
        debug!(error = %e, "no tcp keepalive on the master link");
    }
    let mut link = framed(stream, reg.max_frame_bytes);
    send(&mut link, &NodeToMaster::Register(reg.register.clone())).await?;
    match recv::<_, MasterToNode>(&mut link).await? {
        Some(MasterToNode::Registered(r)) => {
            info!(master = %r.master, id = %reg.register.id, "registered with master")
        }
        Some(MasterToNode::Refused(r)) => return Ok(Some(r.reason)),
        None => return Ok(None),
    }
    backoff.reset();
    let mut ticker = tokio::time::interval(reg.heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => send(&mut link, &NodeToMaster::Heartbeat(Heartbeat { stats: stats() })).await?,
            msg = recv::<_, MasterToNode>(&mut link) => match msg? {
                Some(MasterToNode::Refused(r)) => return Ok(Some(r.reason)),
                Some(MasterToNode::Registered(_)) => warn!("unexpected second registration reply"),
                None => return Ok(None),
            },
        }
    }
}
