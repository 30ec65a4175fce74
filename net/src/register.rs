//! A node's side of the control link: register with the master (each proving to the
//! other that it holds the cluster secret), then heartbeat its stats. The master is not
//! in the data path, so while it is away or refuses for a cause that can pass, the node
//! keeps serving and keeps retrying; only a final refusal stops the node.

use std::time::Duration;

use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use centrum_protocol::{
    CONTROL_FRAME_BYTES, HANDSHAKE_FRAME_BYTES, Heartbeat, MasterToNode, NodeStats, NodeToMaster,
    Prove, Refused, Register, Registered,
};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::auth::{ClusterKey, Handshake, Proof, nonce};
use crate::{Backoff, FrameError, Framed, LinkError, Shutdown, framed, recv, send};

/// The master refused this node for a cause that will not pass; it must stop.
#[derive(Debug, thiserror::Error)]
#[error("the master refused registration: {0}")]
pub struct RegisterError(pub String);

/// What a node needs to stay registered. `register.nonce` is made afresh for each
/// connection.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The master's `nodes` address as nodes dial it (`host:port`; a DNS name is looked
    /// up at each connection, so a master that moves is found again).
    pub master: String,
    pub register: Register,
    pub heartbeat: Duration,
    pub max_frame_bytes: u32,
    pub key: ClusterKey,
}

/// What a node tells the master besides its heartbeat, and how it answers the
/// master's requests (a back makes rooms for the matchmaker).
pub trait Control: Send + Sync {
    /// The node's stats, for each heartbeat.
    fn stats(&self) -> NodeStats;

    /// Messages to send after a heartbeat: `all` right after a registration (the
    /// master may be new and know nothing), else only what changed.
    fn reports(&self, all: bool) -> Vec<NodeToMaster> {
        let _ = all;
        Vec::new()
    }

    /// The answer to a request of the master, or None for a message the node does
    /// not take.
    fn request(&self, msg: MasterToNode) -> Option<NodeToMaster> {
        let _ = msg;
        None
    }
}

/// A node that only reports its stats.
impl<F: Fn() -> NodeStats + Send + Sync> Control for F {
    fn stats(&self) -> NodeStats {
        self()
    }
}

/// The id the master signs its proofs with.
pub const MASTER_ID: &str = "master";

/// How a registration did not get in, or a registered link ended.
#[derive(Debug, thiserror::Error)]
pub enum Unregistered {
    /// The link closed; the master may be restarting.
    #[error("the master closed the link")]
    Closed,
    /// The master refused; `retry` when the cause can pass.
    #[error("refused: {reason}")]
    Refused { reason: String, retry: bool },
    /// The link broke, the master broke the protocol, or did not prove itself.
    #[error(transparent)]
    Link(#[from] LinkError),
}

impl From<FrameError> for Unregistered {
    fn from(e: FrameError) -> Self {
        Unregistered::Link(e.into())
    }
}

/// The registration handshake on `link` (limited to `HANDSHAKE_FRAME_BYTES` until the
/// master proves itself): `register` with a fresh nonce, the master's challenge checked,
/// this node's proof, the master's answer.
///
/// # Errors
/// [`Unregistered`]: refused, closed, or the link failed ([`LinkError::Unproven`] when
/// the master's proof does not verify).
pub async fn register<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut Framed<S>,
    register: &Register,
    key: &ClusterKey,
) -> Result<Registered, Unregistered> {
    let mine = nonce().map_err(FrameError::from)?;
    let register = Register {
        nonce: mine.clone(),
        ..register.clone()
    };
    send(link, &NodeToMaster::Register(register.clone())).await?;
    let challenge = match next(link).await? {
        MasterToNode::Challenge(c) => c,
        MasterToNode::Refused(r) => return Err(refused(r)),
        other => return Err(unexpected("a challenge", &other)),
    };
    let handshake = Handshake {
        opener: &register.id,
        acceptor: MASTER_ID,
        opener_nonce: &mine,
        acceptor_nonce: &challenge.nonce,
    };
    if !key.verify(Proof::Master, &handshake, &challenge.proof) {
        return Err(LinkError::Unproven("the master".into()).into());
    }
    let proof = key.prove(Proof::Node, &handshake);
    send(link, &NodeToMaster::Prove(Prove { proof })).await?;
    match next(link).await? {
        MasterToNode::Registered(r) => Ok(r),
        MasterToNode::Refused(r) => Err(refused(r)),
        other => Err(unexpected("registered", &other)),
    }
}

async fn next<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut Framed<S>,
) -> Result<MasterToNode, Unregistered> {
    recv::<_, MasterToNode>(link)
        .await?
        .ok_or(Unregistered::Closed)
}

fn refused(r: Refused) -> Unregistered {
    Unregistered::Refused {
        reason: r.reason,
        retry: r.retry,
    }
}

fn unexpected(expected: &'static str, got: &MasterToNode) -> Unregistered {
    LinkError::Unexpected {
        expected,
        got: got.name(),
    }
    .into()
}

/// Keeps the node registered until `shutdown`. Returns `Err` only when the master
/// refuses the node for good (another cluster version).
///
/// # Errors
/// [`RegisterError`] with the master's reason.
pub async fn register_and_heartbeat<C: Control>(
    reg: Registration,
    control: C,
    shutdown: Shutdown,
) -> Result<(), RegisterError> {
    // At most a second apart: a master that comes back (a new `centrum up` taking its
    // nodes over) has every node registered within about a second; one connection
    // attempt a second per node costs nothing.
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
    // A refusal is logged when it first comes and when its reason changes, not once a
    // second for as long as it lasts.
    let mut last_refusal = String::new();
    loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = session(&reg, &control, &mut backoff) => r,
        };
        match attempt {
            Unregistered::Refused {
                reason,
                retry: false,
            } => return Err(RegisterError(reason)),
            refusal @ (Unregistered::Refused { .. }
            | Unregistered::Link(LinkError::Unproven(_))) => {
                let reason = refusal.to_string();
                if reason != last_refusal {
                    warn!(%reason, master = %reg.master, "registration failed; retrying");
                    last_refusal = reason;
                }
            }
            Unregistered::Closed => {
                last_refusal.clear();
                debug!("master link closed")
            }
            Unregistered::Link(e) => debug!(error = %e, master = %reg.master, "master unreachable"),
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// One connection to the master: the handshake, then heartbeats until it ends.
async fn session<C: Control>(
    reg: &Registration,
    control: &C,
    backoff: &mut Backoff,
) -> Unregistered {
    let stream = match TcpStream::connect(reg.master.as_str()).await {
        Ok(stream) => stream,
        Err(e) => return FrameError::from(e).into(),
    };
    if let Err(e) = crate::keepalive(&stream) {
        debug!(error = %e, "no tcp keepalive on the master link");
    }
    // Small frames until the master has proved itself: a stranger listening on the
    // master's address cannot make this node buffer much.
    let mut link = framed(stream, HANDSHAKE_FRAME_BYTES);
    match register(&mut link, &reg.register, &reg.key).await {
        Ok(r) => info!(master = %r.master, id = %reg.register.id, "registered with master"),
        Err(e) => return e,
    }
    link.codec_mut()
        .set_max_frame_length(reg.max_frame_bytes.max(CONTROL_FRAME_BYTES) as usize);
    backoff.reset();
    let mut ticker = tokio::time::interval(reg.heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first reports after a registration tell everything: the master may be new.
    let mut all = true;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let beat = NodeToMaster::Heartbeat(Heartbeat { stats: control.stats() });
                if let Err(e) = send(&mut link, &beat).await {
                    return e.into();
                }
                for report in control.reports(std::mem::take(&mut all)) {
                    if let Err(e) = send(&mut link, &report).await {
                        return e.into();
                    }
                }
            }
            msg = next(&mut link) => match msg {
                Ok(msg) => {
                    let name = msg.name();
                    match control.request(msg) {
                        Some(answer) => {
                            if let Err(e) = send(&mut link, &answer).await {
                                return e.into();
                            }
                        }
                        None => warn!(message = name, "unexpected message from the master after registration"),
                    }
                }
                Err(ended) => return ended,
            },
        }
    }
}
