//! Links from fronts: the accept loop and one task per link. The handshake admits only
//! a front of this cluster (it proves it holds the cluster secret); the reader then routes each forwarded message into its channel's inbox, sends a
//! heartbeat every `limits.link_heartbeat_ms` and closes a front silent for
//! `limits.link_timeout_ms`; the writer drains the link's bounded queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{Instrument, debug, info, info_span, warn};

use centrum_net::auth::{self, Proof, nonce};
use centrum_net::{
    Acceptor, FrameError, LinkError, LiveFrames, Pending, PendingSlot, ServerTls, Shutdown, framed,
    recv, send, shown,
};
use centrum_protocol::{
    BackToFront, CLUSTER_VERSION, ChannelIndex, FrontToBack, HANDSHAKE_FRAME_BYTES, LinkChallenge,
    LinkHeartbeat, LinkHello, LinkRefused, LinkSession, LinkWelcome, SessionKey, decode, encode,
};

use crate::Shared;
use crate::inbox::{Event, Full};

/// A link as the channels see it: where to send frames, and how to close it.
#[derive(Clone, Debug)]
pub(crate) struct LinkHandle(Arc<LinkInner>);

#[derive(Debug)]
struct LinkInner {
    id: u64,
    front: Arc<str>,
    /// The front's process (`LinkHello::instance`).
    instance: u64,
    /// Bounded by `limits.link_queue`. When full the front is too slow to keep up
    /// with the ticks: the link is closed (never waited on), and the front relinks
    /// and resynchronises its clients with full states.
    tx: mpsc::Sender<Bytes>,
    close: Shutdown,
    overflows: Arc<crate::metrics::BackMetrics>,
}

static NEXT_LINK: AtomicU64 = AtomicU64::new(1);

impl LinkHandle {
    pub(crate) fn id(&self) -> u64 {
        self.0.id
    }

    pub(crate) fn front(&self) -> &str {
        &self.0.front
    }

    pub(crate) fn instance(&self) -> u64 {
        self.0.instance
    }

    pub(crate) fn front_arc(&self) -> Arc<str> {
        self.0.front.clone()
    }

    /// A link whose frames land in the returned receiver, for tests of the tick loop.
    #[cfg(test)]
    pub(crate) fn for_test(front: &str, capacity: usize) -> (LinkHandle, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(capacity);
        let inner = LinkInner {
            id: NEXT_LINK.fetch_add(1, Relaxed),
            front: Arc::from(front),
            instance: 1,
            tx,
            close: Shutdown::new(),
            overflows: Arc::default(),
        };
        (LinkHandle(Arc::new(inner)), rx)
    }

    /// Closes the link; its task ends and every channel hears of the detach.
    pub(crate) fn close(&self) {
        self.0.close.cancel();
    }

    #[cfg(test)]
    pub(crate) fn is_closed(&self) -> bool {
        self.0.close.is_cancelled()
    }

    /// Queues a frame without waiting; closes the link when its queue is full.
    pub(crate) fn send(&self, frame: Bytes) {
        match self.0.tx.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.0.close.is_cancelled() {
                    self.0.overflows.link_overflows.fetch_add(1, Relaxed);
                    warn!(front = %self.0.front, "link queue full; closing the link so the front resyncs");
                    self.0.close.cancel();
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Links in their handshake at once; at the cap the oldest is closed to make room. A
/// cluster's fronts need one each, and they prove themselves within a round trip.
pub(crate) const PENDING_LINKS: usize = 64;

/// Accepts links until shutdown; waits for every link task before returning.
/// With `tls`, each connection's TLS handshake runs first, in its own task, under the
/// handshake timeout.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<ServerTls>,
    shutdown: Shutdown,
) {
    let mut listener = Acceptor::new(listener);
    let pending = Pending::new(PENDING_LINKS);
    let mut tasks = JoinSet::new();
    shared.accepting.store(true, Relaxed);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept(&shared.metrics.accept_errors) => a,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let _ = stream.set_nodelay(true);
        if let Err(e) = centrum_net::keepalive(&stream) {
            debug!(error = %e, %peer, "no tcp keepalive on a link");
        }
        let (slot, evicted) = pending.admit();
        if evicted {
            shared.metrics.handshakes_evicted.fetch_add(1, Relaxed);
        }
        let span = info_span!("link", %peer, front = tracing::field::Empty);
        let (shared, tls, stop) = (shared.clone(), tls.clone(), shutdown.child_token());
        let served = async move {
            let Some(tls) = tls else {
                return serve_link(stream, shared, Some(slot), stop).await;
            };
            let timeout = shared.config.limits.handshake_timeout();
            let deadline = tokio::time::Instant::now() + timeout;
            let handshake = tokio::select! {
                stream = tls.accept(stream, deadline) => stream,
                () = slot.evicted() => None,
            };
            if let Some(stream) = handshake {
                serve_link(stream, shared, Some(slot), stop).await;
            }
        };
        tasks.spawn(served.instrument(span));
    }
    shared.accepting.store(false, Relaxed);
    while tasks.join_next().await.is_some() {}
}

/// Serves one link over any byte stream (TCP between processes, a duplex in one).
/// `slot` is its place among the links in their handshake, if they are capped: the
/// handshake ends when a newer link takes it.
pub(crate) async fn serve_link<S>(
    stream: S,
    shared: Arc<Shared>,
    slot: Option<PendingSlot>,
    shutdown: Shutdown,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = &shared.config.limits;
    // Small frames until the front has proved it belongs to the cluster.
    let mut link = framed(stream, HANDSHAKE_FRAME_BYTES);
    let evicted = async {
        match &slot {
            Some(slot) => slot.evicted().await,
            None => std::future::pending().await,
        }
    };
    let opened = tokio::select! {
        _ = shutdown.cancelled() => return,
        () = evicted => return debug!("link handshake closed to make room for a newer one"),
        opened = tokio::time::timeout(limits.handshake_timeout(), handshake(&shared, &mut link)) => opened,
    };
    drop(slot);
    let (hello, sessions) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(Handshake::Refuse(reason))) => return refuse(&shared, &mut link, reason).await,
        Ok(Err(Handshake::Failed(e))) => return debug!(error = %e, "link failed in its handshake"),
        Err(_) => return debug!("link handshake timed out"),
    };
    let (tx, mut rx) = mpsc::channel::<Bytes>(limits.link_queue as usize);
    let close = shutdown.child_token();
    let handle = LinkHandle(Arc::new(LinkInner {
        id: NEXT_LINK.fetch_add(1, Relaxed),
        front: Arc::from(hello.front.as_str()),
        instance: hello.instance,
        tx,
        close: close.clone(),
        overflows: shared.metrics.clone(),
    }));
    // Every channel learns of the link, with the sessions the front holds in it; each
    // answers with its full state at its next tick, before any patch.
    // Sessions in channels the back no longer has (rooms disposed while the link was
    // down) are left out; the front hears nothing of them and drops them.
    shared.directory.link_opened(&handle, |channel| {
        let sessions: Vec<LinkSession> = sessions
            .iter()
            .filter(|s| s.channel == channel.name)
            .cloned()
            .collect();
        let _ = channel.inbox.push(Event::Attach {
            link: handle.clone(),
            instance: hello.instance,
            sessions,
        });
    });
    // Sessions of rooms disposed of while the link was down: their members have left.
    for s in &sessions {
        if shared.directory.named(&s.channel).is_none() {
            reject_join(&handle, s.session, s.channel.clone(), "disposed".into());
        }
    }
    shared.metrics.links.fetch_add(1, Relaxed);
    shared.metrics.links_opened.fetch_add(1, Relaxed);
    info!(sessions = sessions.len(), "front linked");

    let (mut sink, stream) = link.split();
    // Patches and states leave as soon as a tick makes them: no linger this way.
    let writer = centrum_net::write_queued(&mut sink, &mut rx, std::time::Duration::ZERO);
    // Any frame is a sign of life. A front that is stopped, or a path that carries
    // nothing while the sockets stay open, is found within the timeout and treated as
    // a dropped link: its sessions are held for `link_grace_ms`.
    let reader = async {
        let mut frames = LiveFrames::new(stream, limits.link_heartbeat(), limits.link_timeout());
        while let Some(frame) = frames.next(|since| handle.send(heartbeat(since))).await {
            dispatch(&shared, &handle, &frame?)?;
        }
        Ok::<_, LinkError>(())
    };
    let result = tokio::select! {
        _ = close.cancelled() => Ok(()),
        r = writer => r.map_err(|e| LinkError::Frame(e.into())),
        r = reader => r,
    };
    if let Err(e) = result {
        shared.metrics.link_errors.fetch_add(1, Relaxed);
        if matches!(e, LinkError::Frame(FrameError::Silent(_))) {
            shared.metrics.link_timeouts.fetch_add(1, Relaxed);
        }
        warn!(error = %e, "link closed on error");
    } else {
        info!("link closed");
    }
    shared.metrics.links.fetch_sub(1, Relaxed);
    shared.directory.link_closed(&handle, |channel| {
        let _ = channel.inbox.push(Event::Detach {
            link: handle.clone(),
        });
    });
}

fn reject_join(link: &LinkHandle, session: SessionKey, channel: String, reason: String) {
    let msg = centrum_protocol::LinkJoinRejected {
        session,
        channel,
        reason,
    };
    link.send(Bytes::from(encode(&BackToFront::JoinRejected(msg))));
}

/// A heartbeat frame, `since_open` after the link opened.
fn heartbeat(since_open: std::time::Duration) -> Bytes {
    let sent_ms = u64::try_from(since_open.as_millis()).unwrap_or(u64::MAX);
    Bytes::from(encode(&BackToFront::Heartbeat(LinkHeartbeat { sent_ms })))
}

/// How a handshake did not open a link.
enum Handshake {
    /// The front is told why, then the link closes.
    Refuse(String),
    /// The link broke, or the front broke the protocol.
    Failed(LinkError),
}

impl From<LinkError> for Handshake {
    fn from(e: LinkError) -> Self {
        Handshake::Failed(e)
    }
}

impl From<FrameError> for Handshake {
    fn from(e: FrameError) -> Self {
        Handshake::Failed(e.into())
    }
}

/// The link's handshake (PROTOCOL.md section 14): the front's hello, this back's
/// challenge with its proof, the front's proof, the welcome, and the sessions the front
/// holds here. Returns the hello and those sessions; the frame limit is the cluster's
/// from the welcome on.
async fn handshake<S>(
    shared: &Shared,
    link: &mut centrum_net::Framed<S>,
) -> Result<(LinkHello, Vec<LinkSession>), Handshake>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let hello = match recv::<_, FrontToBack>(link).await? {
        Some(FrontToBack::Hello(h)) => h,
        Some(other) => {
            return Err(Handshake::Refuse(format!(
                "expected a hello, got {}",
                other.name()
            )));
        }
        None => return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()).into()),
    };
    tracing::Span::current().record("front", shown(&hello.front));
    if hello.version != CLUSTER_VERSION {
        return Err(Handshake::Refuse(format!(
            "cluster version {} is not supported; this back speaks {CLUSTER_VERSION} (every process of a cluster must run the same release)",
            hello.version
        )));
    }
    if shared.config.front(&hello.front).is_none() {
        return Err(Handshake::Refuse(format!(
            "unknown front id {:?}",
            shown(&hello.front)
        )));
    }
    let mine = nonce().map_err(FrameError::from)?;
    let proofs = auth::Handshake {
        opener: &hello.front,
        acceptor: &shared.id,
        opener_nonce: &hello.nonce,
        acceptor_nonce: &mine,
    };
    let challenge = LinkChallenge {
        back: shared.id.clone(),
        nonce: mine.clone(),
        proof: shared.key.prove(Proof::Back, &proofs),
    };
    send(link, &BackToFront::Challenge(challenge)).await?;
    let auth = match recv::<_, FrontToBack>(link).await? {
        Some(FrontToBack::Auth(a)) => a,
        Some(other) => {
            return Err(LinkError::Unexpected {
                expected: "auth",
                got: other.name(),
            }
            .into());
        }
        None => return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()).into()),
    };
    if !shared.key.verify(Proof::Front, &proofs, &auth.proof) {
        shared.metrics.links_unauthenticated.fetch_add(1, Relaxed);
        return Err(Handshake::Refuse(
            "the front did not prove it holds the cluster secret (another cluster, or a wrong secret on one side)".into(),
        ));
    }
    link.codec_mut()
        .set_max_frame_length(shared.config.limits.max_frame_bytes as usize);
    let welcome = BackToFront::Welcome(LinkWelcome {
        version: CLUSTER_VERSION,
        back: shared.id.clone(),
        channels: shared.static_channels.clone(),
    });
    send(link, &welcome).await?;
    match recv::<_, FrontToBack>(link).await? {
        Some(FrontToBack::Sessions(s)) => Ok((hello, s.sessions)),
        Some(other) => Err(LinkError::Unexpected {
            expected: "sessions",
            got: other.name(),
        }
        .into()),
        None => Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()).into()),
    }
}

async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    link: &mut centrum_net::Framed<S>,
    reason: String,
) {
    shared.metrics.links_refused.fetch_add(1, Relaxed);
    warn!(%reason, "refusing link");
    let _ = send(link, &BackToFront::Refused(LinkRefused { reason })).await;
}

/// Routes one frame from a front to its channel's inbox.
fn dispatch(shared: &Shared, link: &LinkHandle, frame: &[u8]) -> Result<(), LinkError> {
    let msg: FrontToBack = decode(frame, usize::MAX)?;
    // A number the back never gave is a protocol violation; one of a room disposed
    // of since the front sent the frame is not, and the frame is dropped.
    let channel_of = |index: ChannelIndex| match shared.directory.get(index) {
        Some(channel) => Ok(Some(channel)),
        None if shared.directory.was_given(index) => Ok(None),
        None => Err(LinkError::UnknownChannel(index)),
    };
    match msg {
        FrontToBack::Hello(_) => return Err(LinkError::Repeated("hello")),
        FrontToBack::Auth(_) => return Err(LinkError::Repeated("auth")),
        FrontToBack::Sessions(_) => return Err(LinkError::Repeated("sessions")),
        FrontToBack::Join(j) => {
            let Some(channel) = shared.directory.named(&j.channel) else {
                let reason = format!(
                    "no_such_room: this back has no channel or room {:?}",
                    j.channel
                );
                reject_join(link, j.session, j.channel, reason);
                return Ok(());
            };
            let pushed = channel.inbox.push(Event::Join {
                link: link.clone(),
                session: j.session,
                data: j.data,
                secret: j.secret,
                resume: j.resume,
                identity: j.identity,
                seat: j.seat,
            });
            if pushed == Err(Full) {
                channel.metrics.joins_rejected.fetch_add(1, Relaxed);
                let reason = if channel.inbox.is_closed() {
                    format!("no_such_room: room {:?} was disposed of", channel.name)
                } else {
                    format!(
                        "channel {:?} is too busy to take joins; try again",
                        channel.name
                    )
                };
                reject_join(link, j.session, j.channel, reason);
            }
        }
        FrontToBack::Leave(l) => {
            let Some(channel) = channel_of(l.channel)? else {
                return Ok(());
            };
            channel
                .inbox
                .push(Event::Leave {
                    link: link.clone(),
                    session: l.session,
                })
                .map_err(|_| LinkError::Overloaded)?;
        }
        FrontToBack::Away(a) => {
            let Some(channel) = channel_of(a.channel)? else {
                return Ok(());
            };
            channel
                .inbox
                .push(Event::Away {
                    link: link.clone(),
                    session: a.session,
                })
                .map_err(|_| LinkError::Overloaded)?;
        }
        FrontToBack::Input(i) => {
            let Some(channel) = channel_of(i.channel)? else {
                return Ok(());
            };
            let event = Event::Input {
                link: link.clone(),
                session: i.session,
                seq: i.seq,
                data: i.data,
            };
            if channel.inbox.push(event) == Err(Full) {
                channel.metrics.inputs_dropped_full.fetch_add(1, Relaxed);
                let message = format!(
                    "input {} dropped: channel {:?} has its {} inputs queued, or this client its share of them",
                    i.seq, channel.name, shared.config.limits.channel_inputs
                );
                let notice = centrum_protocol::LinkNotice {
                    session: i.session,
                    code: "input_dropped".into(),
                    message,
                };
                link.send(Bytes::from(encode(&BackToFront::Notice(notice))));
            }
        }
        FrontToBack::Call(c) => {
            let Some(channel) = channel_of(c.channel)? else {
                let reply = crate::channel::reply_failed(
                    c.call,
                    centrum_protocol::CallOutcome::Failed,
                    "the room was disposed of".into(),
                );
                link.send(Bytes::from(encode(&BackToFront::Reply(reply))));
                return Ok(());
            };
            let event = Event::Call {
                link: link.clone(),
                call: c.call,
                data: c.data,
            };
            if channel.inbox.push(event) == Err(Full) {
                channel.metrics.calls_failed.fetch_add(1, Relaxed);
                let message = format!(
                    "channel {:?} has {} inputs and calls queued; try again",
                    channel.name, shared.config.limits.channel_inputs
                );
                let reply = crate::channel::reply_failed(
                    c.call,
                    centrum_protocol::CallOutcome::Overloaded,
                    message,
                );
                link.send(Bytes::from(encode(&BackToFront::Reply(reply))));
            }
        }
        // Its arrival is all it says; the reader has noted it.
        FrontToBack::Heartbeat(_) => {}
        FrontToBack::Resync(r) => {
            let Some(channel) = channel_of(r.channel)? else {
                return Ok(());
            };
            channel
                .inbox
                .push(Event::Resync {
                    link: link.clone(),
                    sessions: r.sessions,
                })
                .map_err(|_| LinkError::Overloaded)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use centrum_config::Config;
    use centrum_net::LinkOpener;
    use centrum_net::auth::ClusterKey;
    use centrum_protocol::LinkHello;

    use super::*;

    /// A back with no channels: enough to exercise a link's handshake and liveness.
    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            id: "back-1".into(),
            config: Arc::new(Config::embedded_default()),
            static_channels: Vec::new(),
            directory: Arc::default(),
            rooms: None,
            metrics: Arc::default(),
            store: None,
            key: key(),
            accepting: Default::default(),
        })
    }

    fn key() -> ClusterKey {
        ClusterKey::new(b"the back's tests share this secret")
    }

    /// Opens a link over an in-memory pipe as front-1; returns the front's end.
    async fn linked(shared: &Arc<Shared>) -> centrum_net::Framed<tokio::io::DuplexStream> {
        let (front, back) = tokio::io::duplex(1 << 16);
        link_over(shared, front, back).await
    }

    /// Links front-1 over `front` and `back`, the two ends of one pipe (the back's end
    /// possibly wrapped); returns the front's end once welcomed.
    async fn link_over<S>(
        shared: &Arc<Shared>,
        front: tokio::io::DuplexStream,
        back: S,
    ) -> centrum_net::Framed<tokio::io::DuplexStream>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        tokio::spawn(serve_link(back, shared.clone(), None, Shutdown::new()));
        let mut front = framed(front, HANDSHAKE_FRAME_BYTES);
        let opener = LinkOpener {
            key: &key(),
            front: "front-1",
            back: "back-1",
            instance: 1,
            max_frame_bytes: 1 << 20,
        };
        let welcome = opener.open(&mut front, Vec::new).await;
        assert!(welcome.is_ok(), "{welcome:?}");
        // The link counts once the back has read the sessions that end the handshake.
        tokio::time::timeout(Duration::from_secs(5), async {
            while shared.metrics.links.load(Relaxed) == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the back takes the link");
        front
    }

    /// Opens a link as front-1 with `key`; returns how the handshake ended.
    async fn open_with(shared: &Arc<Shared>, key: &ClusterKey) -> Result<(), LinkError> {
        let (front, back) = tokio::io::duplex(1 << 16);
        tokio::spawn(serve_link(back, shared.clone(), None, Shutdown::new()));
        let mut front = framed(front, HANDSHAKE_FRAME_BYTES);
        let opener = LinkOpener {
            key,
            front: "front-1",
            back: "back-1",
            instance: 1,
            max_frame_bytes: 1 << 20,
        };
        opener.open(&mut front, Vec::new).await.map(drop)
    }

    #[tokio::test]
    async fn only_a_front_with_the_cluster_secret_is_linked_and_it_checks_the_back_too() {
        let shared = shared();
        let stranger = ClusterKey::new(b"a secret of some other cluster");
        // The back proves itself first: a front with another secret finds it unproven
        // and says nothing about its clients.
        let end = open_with(&shared, &stranger).await;
        assert!(
            matches!(&end, Err(LinkError::Unproven(who)) if who == "back \"back-1\""),
            "{end:?}"
        );
        // A stranger that skips the check still cannot prove itself.
        let (front, back) = tokio::io::duplex(1 << 16);
        tokio::spawn(serve_link(back, shared.clone(), None, Shutdown::new()));
        let mut front = framed(front, HANDSHAKE_FRAME_BYTES);
        let hello = LinkHello {
            version: CLUSTER_VERSION,
            front: "front-1".into(),
            instance: 1,
            nonce: nonce().unwrap(),
        };
        send(&mut front, &FrontToBack::Hello(hello)).await.unwrap();
        let challenge = recv::<_, BackToFront>(&mut front).await.unwrap();
        assert!(
            matches!(challenge, Some(BackToFront::Challenge(_))),
            "{challenge:?}"
        );
        let guess = centrum_protocol::LinkAuth {
            proof: Bytes::from_static(&[0; 32]),
        };
        send(&mut front, &FrontToBack::Auth(guess)).await.unwrap();
        let refused = recv::<_, BackToFront>(&mut front).await.unwrap();
        assert!(
            matches!(&refused, Some(BackToFront::Refused(r)) if r.reason.contains("did not prove it holds the cluster secret")),
            "{refused:?}"
        );
        assert_eq!(shared.metrics.links_unauthenticated.load(Relaxed), 1);
        assert_eq!(shared.metrics.links.load(Relaxed), 0, "nothing was linked");
        assert!(open_with(&shared, &key()).await.is_ok());
    }

    #[tokio::test]
    async fn before_its_proof_a_front_can_send_only_small_frames() {
        let shared = shared();
        let (front, back) = tokio::io::duplex(1 << 16);
        tokio::spawn(serve_link(back, shared.clone(), None, Shutdown::new()));
        let mut front = framed(front, 1 << 20);
        let hello = LinkHello {
            version: CLUSTER_VERSION,
            front: "x".repeat(HANDSHAKE_FRAME_BYTES as usize),
            instance: 1,
            nonce: nonce().unwrap(),
        };
        send(&mut front, &FrontToBack::Hello(hello)).await.unwrap();
        let end = tokio::time::timeout(Duration::from_secs(5), recv::<_, BackToFront>(&mut front))
            .await
            .expect("the back closes the link at once");
        assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_front_gets_heartbeats_then_is_closed_at_the_timeout() {
        let shared = shared();
        let start = Instant::now();
        let mut front = linked(&shared).await;
        let mut beats = Vec::new();
        // The front says nothing more: the back beats, then closes the link.
        let end = loop {
            let frame = tokio::time::timeout(Duration::from_secs(5), recv(&mut front)).await;
            match frame.expect("a heartbeat or the end within 5 s") {
                Ok(Some(BackToFront::Heartbeat(h))) => {
                    beats.push((Instant::now() - start).as_millis());
                    assert_eq!(u128::from(h.sent_ms), beats[beats.len() - 1]);
                }
                other => break other,
            }
        };
        assert!(matches!(end, Ok(None)), "the link ends cleanly: {end:?}");
        assert_eq!(beats, [500, 1000, 1500, 2000]);
        assert_eq!((Instant::now() - start).as_millis(), 2_500);
        assert_eq!(shared.metrics.link_timeouts.load(Relaxed), 1);
        assert_eq!(shared.metrics.links.load(Relaxed), 0);
    }

    /// A front that breaks the link protocol loses that link, and only that link.
    #[tokio::test]
    async fn a_protocol_violation_closes_the_link_with_its_reason() {
        let violations = [
            FrontToBack::Hello(LinkHello {
                version: CLUSTER_VERSION,
                front: "front-1".into(),
                instance: 1,
                nonce: Bytes::from_static(&[7; 32]),
            }),
            FrontToBack::Leave(centrum_protocol::LinkLeave {
                session: 1,
                channel: 7,
            }),
        ];
        for (i, violation) in violations.into_iter().enumerate() {
            let shared = shared();
            let mut front = linked(&shared).await;
            send(&mut front, &violation).await.unwrap();
            let end = loop {
                let frame = tokio::time::timeout(Duration::from_secs(5), recv(&mut front)).await;
                match frame.expect("the back closes the link") {
                    Ok(Some(BackToFront::Heartbeat(_))) => continue,
                    other => break other,
                }
            };
            assert!(matches!(end, Ok(None)), "violation {i}: {end:?}");
            assert_eq!(shared.metrics.link_errors.load(Relaxed), 1, "violation {i}");
        }
        assert_eq!(
            LinkError::Repeated("hello").to_string(),
            "a second hello on a link"
        );
        assert_eq!(
            LinkError::UnknownChannel(7).to_string(),
            "no channel with index 7"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_front_that_beats_stays_linked() {
        let shared = shared();
        let mut front = linked(&shared).await;
        let beat = FrontToBack::Heartbeat(LinkHeartbeat { sent_ms: 0 });
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            send(&mut front, &beat).await.unwrap();
            // Drain what the back sent meanwhile: only heartbeats.
            while let Ok(frame) =
                tokio::time::timeout(Duration::ZERO, recv::<_, BackToFront>(&mut front)).await
            {
                assert!(
                    matches!(frame, Ok(Some(BackToFront::Heartbeat(_)))),
                    "{frame:?}"
                );
            }
        }
        assert_eq!(
            shared.metrics.links.load(Relaxed),
            1,
            "still linked after 10 s"
        );
        assert_eq!(shared.metrics.link_timeouts.load(Relaxed), 0);
    }

    /// The back's end of a pipe that, once `stall` is set, answers one read with
    /// Pending and no wake-up: the frames that come next wait unread, as they do in
    /// the kernel for a process that is stopped.
    struct Stalling {
        inner: tokio::io::DuplexStream,
        stall: Arc<std::sync::atomic::AtomicBool>,
    }

    impl AsyncRead for Stalling {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if self.stall.swap(false, Relaxed) {
                return std::task::Poll::Pending;
            }
            std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Stalling {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
        }

        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// A back that was stopped (SIGSTOP) for longer than the timeout finds, when it
    /// runs again, its timer expired and the front's frames waiting unread: those are
    /// life, and the link stays.
    #[tokio::test(start_paused = true)]
    async fn a_back_that_was_stopped_reads_what_waits_before_judging_the_front() {
        let shared = shared();
        let (front, back) = tokio::io::duplex(1 << 16);
        let stall = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let back = Stalling {
            inner: back,
            stall: stall.clone(),
        };
        let mut front = link_over(&shared, front, back).await;

        // Which of the timer and the frame the back looks at first is random; 16
        // rounds make a back that judges before it reads fail all but surely.
        let beat = FrontToBack::Heartbeat(LinkHeartbeat { sent_ms: 0 });
        for round in 0..16 {
            stall.store(true, Relaxed);
            send(&mut front, &beat).await.unwrap();
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            assert!(!stall.load(Relaxed), "the back looked, and saw nothing");
            // "Stopped" for 3 s: only the timer wakes the back, and finds the timeout past.
            tokio::time::advance(Duration::from_secs(3)).await;
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            assert_eq!(
                shared.metrics.links.load(Relaxed),
                1,
                "round {round}: the link stays"
            );
            while let Ok(frame) =
                tokio::time::timeout(Duration::ZERO, recv::<_, BackToFront>(&mut front)).await
            {
                assert!(
                    matches!(frame, Ok(Some(BackToFront::Heartbeat(_)))),
                    "{frame:?}"
                );
            }
        }
        assert_eq!(shared.metrics.link_timeouts.load(Relaxed), 0);
        // And the back still judges silence that is real.
        tokio::time::advance(Duration::from_secs(3)).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(shared.metrics.link_timeouts.load(Relaxed), 1);
    }
}
