//! The front's links to its backs: one task per configured back that connects with
//! back-off, runs the handshake (each end proves it holds the cluster secret; then the
//! front names the sessions it still holds), then feeds patches and
//! states to the hub while a writer drains the bounded outbound queue. A heartbeat
//! goes out every `limits.link_heartbeat_ms`; a back silent for `limits.link_timeout_ms`
//! is taken for gone: the link closes and its channels are unavailable until a relink.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span, warn};

use centrum_net::auth::ClusterKey;
use centrum_net::{Backoff, FrameError, LinkError, LinkOpener, LiveFrames, Shutdown, framed};
use centrum_protocol::{
    BackToFront, ChannelIndex, FrontToBack, HANDSHAKE_FRAME_BYTES, LinkHeartbeat, decode, encode,
};

use crate::hub::{Hub, SplitPatch};

/// Keeps the link to back number `back` (its index in the config) up until shutdown.
pub(crate) async fn maintain(hub: Arc<Hub>, back: usize, key: ClusterKey, shutdown: Shutdown) {
    let config = &hub.config.backs[back];
    let span = info_span!("link", back = %config.id, addr = %config.link_address());
    async {
        // Capped low: a back that restarts is relinked within half a second of being up.
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
        let mut last_refusal = String::new();
        loop {
            let result = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = session(&hub, back, &key, &mut backoff, &shutdown) => r,
            };
            hub.link_down(back);
            match result {
                Ok(()) => info!("link closed"),
                // Told once per reason, not on every retry: the cause may take a while
                // to pass (a back being restarted with the new secret).
                Err(e @ (LinkError::Refused(_) | LinkError::Unproven(_))) => {
                    hub.metrics.link_failures.fetch_add(1, Relaxed);
                    let reason = e.to_string();
                    if reason != last_refusal {
                        warn!(error = %reason, "link refused; retrying");
                        last_refusal = reason;
                    }
                }
                Err(LinkError::Frame(FrameError::Silent(silent))) => {
                    hub.metrics.link_failures.fetch_add(1, Relaxed);
                    hub.metrics.link_timeouts.fetch_add(1, Relaxed);
                    warn!(
                        silent_ms = silent.as_millis(),
                        "the back fell silent; link closed, relinking"
                    );
                }
                // Not reaching a back that is (re)starting is ordinary; a frame over
                // the limit (InvalidData) is not.
                Err(LinkError::Frame(FrameError::Io(e)))
                    if e.kind() != std::io::ErrorKind::InvalidData =>
                {
                    hub.metrics.link_failures.fetch_add(1, Relaxed);
                    debug!(error = %e, "link failed");
                }
                // Anything else is a fault an operator must hear of, once per reason.
                Err(e) => {
                    hub.metrics.link_failures.fetch_add(1, Relaxed);
                    let reason = e.to_string();
                    if reason != last_refusal {
                        warn!(error = %reason, "link failed; retrying");
                        last_refusal = reason;
                    }
                }
            }
            if shutdown.is_cancelled() {
                break;
            }
            let delay = backoff.next_delay();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
    .instrument(span)
    .await;
}

/// One link, from connect to close.
async fn session(
    hub: &Arc<Hub>,
    back: usize,
    key: &ClusterKey,
    backoff: &mut Backoff,
    shutdown: &Shutdown,
) -> Result<(), LinkError> {
    let limits = hub.config.limits;
    let addr = hub.config.backs[back].link_address();
    let deadline = tokio::time::Instant::now() + limits.handshake_timeout();
    // A DNS name is looked up at each connection: a back that moved is found again.
    let stream = tokio::time::timeout_at(deadline, TcpStream::connect(addr.as_str()))
        .await
        .map_err(|_| LinkError::HandshakeTimeout("connection"))?
        .map_err(FrameError::from)?;
    let _ = stream.set_nodelay(true);
    if let Err(e) = centrum_net::keepalive(&stream) {
        debug!(error = %e, "no tcp keepalive on the link");
    }
    let tls = hub
        .link_tls
        .as_ref()
        .filter(|_| hub.config.backs[back].tls.is_some());
    let Some(tls) = tls else {
        return run(hub, back, stream, key, backoff, shutdown).await;
    };
    // The back's certificate must name the host dialled and chain to `cluster.ca`.
    let host = centrum_config::split_dial_address(&addr).map_or(addr.as_str(), |(host, _)| host);
    let stream = tokio::time::timeout_at(deadline, tls.connect(host, stream))
        .await
        .map_err(|_| LinkError::HandshakeTimeout("TLS handshake"))?
        .map_err(FrameError::from)?;
    run(hub, back, stream, key, backoff, shutdown).await
}

/// A link over `stream` (TCP, or TLS over it), from its handshake to its close.
async fn run<S>(
    hub: &Arc<Hub>,
    back: usize,
    stream: S,
    key: &ClusterKey,
    backoff: &mut Backoff,
    shutdown: &Shutdown,
) -> Result<(), LinkError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let limits = hub.config.limits;
    // Small frames until the back has proved it belongs to the cluster.
    let mut link = framed(stream, HANDSHAKE_FRAME_BYTES);
    let opener = LinkOpener {
        key,
        front: &hub.id,
        back: &hub.config.backs[back].id,
        instance: hub.instance,
        max_frame_bytes: limits.max_frame_bytes,
    };
    let mut held = 0;
    let sessions = || {
        let sessions = hub.sessions_of_back(back);
        held = sessions.len();
        sessions
    };
    let welcome =
        tokio::time::timeout(limits.handshake_timeout(), opener.open(&mut link, sessions))
            .await
            .map_err(|_| LinkError::HandshakeTimeout("welcome"))??;
    backoff.reset();
    let expected: Vec<&str> = hub.config.backs[back]
        .channels
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    if welcome
        .channels
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        != expected
    {
        warn!(serves = ?welcome.channels, configured = ?expected, "back serves other channels than the config says");
    }

    let (tx, mut rx) = mpsc::channel::<Bytes>(limits.link_queue as usize);
    let close = shutdown.child_token();
    hub.link_up(back, &welcome.channels, &tx, &close);
    hub.metrics.links.fetch_add(1, Relaxed);
    info!(back = %welcome.back, sessions = held, "linked");

    let (mut sink, stream) = link.split();
    // The writer has a task of its own: the reader fans each patch out to every
    // client itself, which takes a while with thousands of them, and inputs must keep
    // flowing to the back meanwhile.
    let linger = limits.link_linger();
    let writer =
        tokio::spawn(async move { centrum_net::write_queued(&mut sink, &mut rx, linger).await });
    let abort_writer = writer.abort_handle();
    // Any frame is a sign of life; a stopped back, or a path that carries nothing while
    // the sockets stay open, is found within the timeout.
    let heartbeats = tx.clone();
    let reader = async {
        let mut frames = LiveFrames::new(stream, limits.link_heartbeat(), limits.link_timeout());
        // A full queue already carries frames for the back; a heartbeat that does not
        // fit is not needed.
        let beat = |since| {
            let _ = heartbeats.try_send(heartbeat(since));
        };
        let mut names = ChannelNames {
            config: &welcome.channels,
            rooms: HashMap::new(),
        };
        while let Some(frame) = frames.next(beat).await {
            let msg: BackToFront = decode(&frame?, usize::MAX)?;
            // A patch for many members is written on every core, and done before the
            // next frame.
            if let Some(split) = route(hub, back, &mut names, msg)? {
                split.write(hub).await;
            }
        }
        Ok::<_, LinkError>(())
    };
    let result = tokio::select! {
        _ = close.cancelled() => Ok(()),
        r = writer => match r {
            Ok(written) => written.map_err(|e| LinkError::Frame(e.into())),
            Err(e) => Err(LinkError::Frame(FrameError::Io(std::io::Error::other(format!(
                "link writer failed: {e}"
            ))))),
        },
        r = reader => r,
    };
    abort_writer.abort();
    hub.metrics.links.fetch_sub(1, Relaxed);
    drop(tx);
    result
}

/// A heartbeat frame, `since_open` after the link opened.
fn heartbeat(since_open: Duration) -> Bytes {
    let sent_ms = u64::try_from(since_open.as_millis()).unwrap_or(u64::MAX);
    Bytes::from(encode(&FrontToBack::Heartbeat(LinkHeartbeat { sent_ms })))
}

/// The channels of one link by number: those of the config, by their place in the
/// welcome, and the rooms the back announced.
struct ChannelNames<'a> {
    config: &'a [String],
    rooms: HashMap<ChannelIndex, String>,
}

impl ChannelNames<'_> {
    fn name(&self, index: ChannelIndex) -> Result<&str, LinkError> {
        let found = match usize::try_from(index).ok().and_then(|i| self.config.get(i)) {
            Some(name) => Some(name),
            None => self.rooms.get(&index),
        };
        found
            .map(String::as_str)
            .ok_or(LinkError::UnknownChannel(index))
    }
}

/// Hands one message from the back to the hub; a patch too large for this task alone
/// comes back for the caller to write (`Hub::on_patch`).
fn route(
    hub: &Hub,
    back: usize,
    names: &mut ChannelNames<'_>,
    msg: BackToFront,
) -> Result<Option<SplitPatch>, LinkError> {
    let name = |index| names.name(index);
    match msg {
        BackToFront::Patch(p) => return Ok(hub.on_patch(name(p.channel)?, p)),
        BackToFront::State(s) => hub.on_state(name(s.channel)?, s),
        BackToFront::JoinRejected(r) => hub.on_join_rejected(&r.channel, r.session, r.reason),
        BackToFront::Notice(n) => hub.on_notice(n.session, n.code, n.message),
        BackToFront::Evicted(e) => hub.on_evicted(name(e.channel)?, e.session, e.reason),
        BackToFront::Message(m) => hub.on_message(name(m.channel)?, m),
        BackToFront::Reply(r) => hub.on_reply(back, r),
        // Its arrival is all it says; the reader has noted it.
        BackToFront::Heartbeat(_) => {}
        BackToFront::Welcome(_) | BackToFront::Refused(_) => {
            return Err(LinkError::Repeated("welcome"));
        }
        BackToFront::Challenge(_) => return Err(LinkError::Repeated("challenge")),
        BackToFront::Opened(o) => {
            hub.room_opened(back, &o.name, o.channel);
            names.rooms.insert(o.channel, o.name);
        }
        BackToFront::Closed(c) => {
            // A room closed before this link was told of it has nothing here.
            if let Some(name) = names.rooms.remove(&c.channel) {
                hub.room_closed(back, &name, &c.reason);
            }
        }
    }
    Ok(None)
}
