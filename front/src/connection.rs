//! One client connection after its WebSocket upgrade: the handshake (`handshake`:
//! hello and welcome), then one task with one `select!` over shutdown, its outbound
//! queue, its socket and its liveness timer (a WebSocket ping after
//! `limits.client_ping_ms` of silence, a close after `limits.client_timeout_ms`).
//! Outbound messages are written in batches with vectored writes: header and
//! per-client prefix from a small buffer, the shared body straight from its `Bytes`.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{debug, trace};

use centrum_net::{Beat, Liveness, ServerStream, ServerTls, Shutdown};
use centrum_protocol::{
    ClientMsg, ErrorMsg, FrontMsg, LinkResume, Pong, Rejected, SessionKey, decode, encode,
};

use crate::access::IpSlot;
use crate::auth;
use crate::close::{End, binary_only, finish, ws_code};
use crate::handshake::{self, Welcomed};
use crate::http;
use crate::hub::{ClientHandle, Hub, Refusal};
use crate::outbox::{Event, HEAD_MAX, Kill, Outbound, Outbox, Refused};
use crate::rate::{Budget, Flood, Verdict};
use crate::ws::{self, FrameReader, MAX_HEADER, WsEvent};

/// At most this many queued messages go into one vectored write.
const BATCH: usize = 32;

/// A WebSocket ping without payload.
const PING: &[u8] = &[0x80 | ws::OP_PING, 0];

/// Serves one accepted connection to the end: with `tls`, its TLS handshake; its first
/// request (`http`: a call is served there), then, for a WebSocket upgrade, the
/// client's Hello, all by the same deadline, and its messages.
///
/// `slot` counts the connection against its address (`access`) while it lasts; `None`
/// for a trusted proxy's connection, admitted once its request names the client.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    mut slot: Option<IpSlot>,
    hub: Arc<Hub>,
    tls: Option<ServerTls>,
    shutdown: Shutdown,
) {
    let limits = hub.config.limits;
    // TLS, the upgrade and the client's Hello share one deadline (PROTOCOL.md §4).
    let deadline = tokio::time::Instant::now() + limits.handshake_timeout();
    let stream = match tls {
        None => ServerStream::Plain(stream),
        Some(tls) => {
            let handshake = tokio::select! {
                _ = shutdown.cancelled() => return,
                handshake = Box::pin(tls.accept(stream, deadline)) => handshake,
            };
            match handshake {
                Some(stream) => ServerStream::Tls(Box::new(stream)),
                None => return,
            }
        }
    };
    // Boxed, so that the first request's state is freed once it is done: a client
    // connection lives for hours and should carry only what it needs.
    let Some((mut stream, rest)) = Box::pin(http::first_request(
        stream, peer, &mut slot, &hub, &shutdown, deadline,
    ))
    .await
    else {
        return;
    };
    let max_message = limits.max_message_bytes as usize;
    // Until the Hello is accepted only a small message is read: a frame claiming more
    // is refused from its header, before its payload is buffered.
    let mut reader = FrameReader::new(limits.hello_max() as usize, Budget::new(&limits));
    // Whatever followed the upgrade request (rarely anything) moves to the reader's own
    // small buffer: the request's buffer grew to read the head, and an idle connection
    // should not keep that.
    reader.buf.extend_from_slice(&rest);
    drop(rest);
    // Boxed, as every rarely taken await below: a future's size is that of its largest
    // await, and a connection's task is held for as long as the client stays.
    let hello = match Box::pin(handshake::read_hello(
        &mut stream,
        &mut reader,
        deadline,
        max_message,
    ))
    .await
    {
        Ok(hello) => hello,
        Err(end) => {
            hub.metrics.handshake_failures.fetch_add(1, Relaxed);
            if matches!(end, Some(End::Close { code: 1009, .. })) {
                hub.metrics.hello_too_large.fetch_add(1, Relaxed);
            }
            match end {
                Some(end) => Box::pin(finish(&mut stream, end)).await,
                None => debug!(%peer, "no hello before the handshake timeout"),
            }
            return;
        }
    };
    reader.set_max_message(max_message);
    let grant = match auth::admit(&hub, &hello.token) {
        Ok(grant) => grant,
        Err(end) => {
            hub.metrics.handshake_failures.fetch_add(1, Relaxed);
            return Box::pin(finish(&mut stream, end)).await;
        }
    };
    let Welcomed {
        key,
        resume,
        secret,
        welcome,
    } = handshake::welcome(&hub, &hello);
    let outbox = Arc::new(Outbox::new(limits.client_queue as usize));
    // A plain socket is shared with the fan-out, which writes into it directly.
    let (mut stream, socket) = stream.share();
    if let Some(socket) = socket {
        outbox.set_socket(socket);
    }
    let handle = ClientHandle {
        outbox: outbox.clone(),
        secret,
        grant: Arc::new(grant),
    };
    let mut conn = Conn {
        hub: hub.clone(),
        key,
        resume,
        handle: handle.clone(),
        flood: Flood::new(&limits),
        active_at: tokio::time::Instant::now(),
    };
    if conn
        .reply(Outbound::Message(Bytes::from(encode(&welcome))))
        .is_err()
    {
        outbox.close();
        return;
    }
    hub.add_client(key, handle.clone());
    // Messages that arrived in the same read as the Hello are already buffered.
    let pending = conn.drain_frames(&mut reader);

    let end = if let Err(end) = pending {
        end
    } else {
        // Anything read from the client counts as life (messages, pongs, its own pings).
        let mut live = Liveness::when_silent(
            tokio::time::Instant::now(),
            limits.client_ping(),
            limits.client_timeout(),
        );
        let timer = tokio::time::sleep_until(live.deadline());
        tokio::pin!(timer);
        // Checked when it fires: the client may have sent something, or be in a channel.
        let idle_after = limits.client_idle();
        let idle = tokio::time::sleep_until(conn.active_at + idle_after.unwrap_or_default());
        tokio::pin!(idle);
        loop {
            tokio::select! {
                () = &mut idle, if idle_after.is_some() => {
                    let after = idle_after.unwrap_or_default();
                    let now = tokio::time::Instant::now();
                    if now < conn.active_at + after {
                        idle.as_mut().reset(conn.active_at + after);
                    } else if hub.in_any_channel(key) {
                        // Watching a channel is not idling.
                        conn.active_at = now;
                        idle.as_mut().reset(now + after);
                    } else {
                        hub.metrics.idle_closes.fetch_add(1, Relaxed);
                        debug!(idle_ms = after.as_millis(), "idle client closed");
                        break End::Close {
                            code: 1000,
                            error: Some((
                                "idle",
                                format!(
                                    "no channel joined and no message in {} ms",
                                    after.as_millis()
                                ),
                            )),
                        };
                    }
                }
                () = &mut timer => {
                    match live.poll(tokio::time::Instant::now()) {
                        Beat::Wait => {}
                        Beat::Send => {
                            // Two bytes, queued behind what waits; a client that cannot
                            // take them is as slow as one that cannot take a patch.
                            if conn.reply(Outbound::Control(Bytes::from_static(PING))).is_err() {
                                hub.metrics.client_timeouts.fetch_add(1, Relaxed);
                                break End::Abort;
                            }
                            trace!("pinged a silent client");
                        }
                        // This process may be the one that was stopped: bytes that
                        // arrived meanwhile and wait unread are a sign of life.
                        Beat::Dead { silent } => match stream.try_read_buf(&mut reader.buf) {
                            Ok(0) => break End::Gone,
                            Ok(_) => {
                                live.heard(tokio::time::Instant::now());
                                if let Err(end) = conn.drain_frames(&mut reader) {
                                    break end;
                                }
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                hub.metrics.client_timeouts.fetch_add(1, Relaxed);
                                debug!(silent_ms = silent.as_millis(), "client silent; closing, held for resume");
                                break End::TimedOut;
                            }
                            Err(_) => break End::Gone,
                        },
                    }
                    timer.as_mut().reset(live.deadline());
                }
                event = outbox.event() => {
                    let kill = match event {
                        Event::Kill(kill) => kill,
                        // Only when a direct write could not take it all.
                        Event::Write => match Box::pin(conn.flush(&mut stream)).await {
                            Ok(()) => continue,
                            Err(end) => break end,
                        },
                    };
                    let code = match kill {
                        Kill::Shutdown => 1001,
                        Kill::Slow => 1008,
                    };
                    break End::Close { code, error: None };
                }
                read = stream.read_some(&mut reader.buf) => {
                    match read {
                        Ok(0) | Err(_) => break End::Gone,
                        Ok(_) => live.heard(tokio::time::Instant::now()),
                    }
                    match conn.drain_frames(&mut reader) {
                        Ok(()) => {}
                        Err(end) => break end,
                    }
                }
            }
        }
    };
    // Only a client that said goodbye leaves now; a dropped one may still resume.
    hub.remove_client(key, matches!(end, End::Goodbye));
    // A message cut off part way cannot be followed by a close frame.
    let end = if outbox.close() && !matches!(end, End::Gone) {
        End::Abort
    } else {
        end
    };
    let slow = matches!(end, End::Close { code: 1008, .. } | End::Abort);
    Box::pin(finish(&mut stream, end)).await;
    debug!(slow, "connection closed");
}

/// A connection's working state.
struct Conn {
    hub: Arc<Hub>,
    key: SessionKey,
    /// The session this connection resumes, claimed in each of its joins.
    resume: Option<LinkResume>,
    handle: ClientHandle,
    /// Frames dropped over the client's budget, and when to tell or close it.
    flood: Flood,
    /// The client's last message other than `Ping`, for `limits.client_idle_ms`.
    active_at: tokio::time::Instant,
}

impl Conn {
    /// Writes what waits in the outbox until it is empty. A client that stops reading
    /// blocks this write for good, so a kill (the slow-client policy, shutdown) cuts
    /// it, and so does the client's timeout: a write that cannot finish within it is
    /// to a client that reads nothing, as gone as one that says nothing.
    async fn flush(&mut self, stream: &mut ServerStream) -> Result<(), End> {
        let outbox = self.handle.outbox.clone();
        let timeout = self.hub.config.limits.client_timeout();
        // Messages taken off the queue while they are written; allocated only here, so
        // an idle connection holds none.
        let mut batch = Vec::new();
        loop {
            let sent = outbox.take(&mut batch, BATCH);
            if batch.is_empty() {
                return Ok(());
            }
            // Biased: the write nearly always completes at once, and only a pending
            // one needs to look at the kill.
            let written = tokio::select! {
                biased;
                written = self.write(stream, &batch, sent) => Some(written),
                _ = outbox.killed() => None,
                () = tokio::time::sleep(timeout) => {
                    self.hub.metrics.client_timeouts.fetch_add(1, Relaxed);
                    None
                }
            };
            batch.clear();
            outbox.written();
            match written {
                Some(Ok(())) => {}
                Some(Err(_)) => return Err(End::Gone),
                None => return Err(End::Abort),
            }
        }
    }

    /// Writes at most [`BATCH`] messages with vectored writes, retrying partial writes,
    /// after the first `sent` bytes (which a direct write put on the socket already).
    async fn write(
        &self,
        stream: &mut ServerStream,
        batch: &[Outbound],
        sent: usize,
    ) -> std::io::Result<()> {
        debug_assert!(batch.len() <= BATCH);
        // Frame headers and per-client prefixes, one after the other.
        let mut heads = [0; BATCH * HEAD_MAX];
        // Where each message's head ends in `heads`.
        let mut ends = [0usize; BATCH];
        let mut len = 0;
        for (item, end) in batch.iter().zip(&mut ends) {
            let mut head = [0; HEAD_MAX];
            let n = item.head(&mut head);
            heads[len..len + n].copy_from_slice(&head[..n]);
            len += n;
            *end = len;
        }
        let mut slices = [IoSlice::new(&[]); 2 * BATCH];
        let mut count = 0;
        let mut start = 0;
        for (item, &end) in batch.iter().zip(&ends) {
            if end > start {
                slices[count] = IoSlice::new(&heads[start..end]);
                count += 1;
            }
            start = end;
            let body = item.body();
            if !body.is_empty() {
                slices[count] = IoSlice::new(body);
                count += 1;
            }
        }
        let mut slices = &mut slices[..count];
        IoSlice::advance_slices(&mut slices, sent);
        while !slices.is_empty() {
            let n = stream.write_vectored(slices).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut slices, n);
        }
        // Nothing for TCP; TLS may hold the end of the batch until told.
        stream.flush().await?;
        let now = Instant::now();
        for item in batch {
            item.count_sent(&self.hub.metrics, now);
        }
        Ok(())
    }

    /// Handles every complete frame in the read buffer.
    fn drain_frames(&mut self, reader: &mut FrameReader) -> Result<(), End> {
        loop {
            let event = match reader.next_event() {
                Ok(Some(e)) => e,
                Ok(None) => return Ok(()),
                Err(e) => {
                    self.hub.metrics.protocol_errors.fetch_add(1, Relaxed);
                    if matches!(e, ws::WsError::TooManyFragments { .. }) {
                        self.hub.metrics.fragment_closes.fetch_add(1, Relaxed);
                    }
                    return Err(End::Close {
                        code: e.close_code(),
                        error: Some((ws_code(&e), e.to_string())),
                    });
                }
            };
            match event {
                WsEvent::Binary(bytes) => self.handle(&bytes)?,
                WsEvent::Text => {
                    self.hub.metrics.protocol_errors.fetch_add(1, Relaxed);
                    return Err(binary_only());
                }
                WsEvent::Ping(payload) => {
                    let mut head = [0; MAX_HEADER];
                    let n = ws::header(ws::OP_PONG, payload.len(), &mut head);
                    let mut pong = head[..n].to_vec();
                    pong.extend_from_slice(&payload);
                    self.reply(Outbound::Control(Bytes::from(pong)))?;
                }
                WsEvent::Pong => {}
                WsEvent::Close => return Err(End::Goodbye),
                WsEvent::Dropped => self.dropped()?,
            }
        }
    }

    /// A frame over the client's budget was dropped: tell the client at most once a
    /// second, and close it once it has kept on for `limits.client_flood_close_ms`.
    fn dropped(&mut self) -> Result<(), End> {
        let metrics = &self.hub.metrics;
        metrics.rate_limited.fetch_add(1, Relaxed);
        let limits = &self.hub.config.limits;
        // Only when the client is told: a dropped frame costs no allocation.
        let rates = || {
            format!(
                "{} messages/s and {} bytes/s",
                limits.client_messages_per_s, limits.client_bytes_per_s
            )
        };
        match self.flood.dropped(tokio::time::Instant::now()) {
            Verdict::Quiet => Ok(()),
            Verdict::Notify(n) => {
                trace!(dropped = n, "client over its rate limits");
                self.reply(Hub::error(
                    "rate_limited".into(),
                    format!("over the limits of {}: {n} messages dropped", rates()),
                ))
            }
            Verdict::Close => {
                metrics.rate_limit_closes.fetch_add(1, Relaxed);
                debug!("client closed for flooding");
                Err(End::Close {
                    code: 1008,
                    error: Some((
                        "rate_limited",
                        format!("over the limits of {} for too long", rates()),
                    )),
                })
            }
        }
    }

    /// One client message. A refusal is answered; only malformed input ends the connection.
    fn handle(&mut self, bytes: &[u8]) -> Result<(), End> {
        let hub = &self.hub;
        hub.metrics.messages_in.fetch_add(1, Relaxed);
        let msg = match decode::<ClientMsg>(bytes, hub.config.limits.max_message_bytes as usize) {
            Ok(m) => m,
            Err(e) => {
                hub.metrics.protocol_errors.fetch_add(1, Relaxed);
                return Err(End::Close {
                    code: 1007,
                    error: Some(("malformed", e.to_string())),
                });
            }
        };
        if !matches!(msg, ClientMsg::Ping(_)) {
            self.active_at = tokio::time::Instant::now();
        }
        let (channel, result) = match msg {
            ClientMsg::Hello(_) => (
                String::new(),
                Err(Refusal::Error(
                    "already_welcomed",
                    "this connection already has a session".into(),
                )),
            ),
            ClientMsg::Join(j) => {
                let r = hub.join(
                    self.key,
                    &self.handle,
                    &j.channel,
                    j.data,
                    self.resume.as_ref(),
                    j.seat,
                );
                (j.channel, r)
            }
            ClientMsg::Leave(l) => match hub.leave(self.key, &l.channel) {
                Ok(()) => return self.reply(Hub::left(&l.channel)),
                Err(r) => (l.channel, Err(r)),
            },
            ClientMsg::Input(i) => {
                let r = hub.input(self.key, &i.channel, i.seq, i.data);
                (i.channel, r)
            }
            ClientMsg::Ping(p) => {
                return self.reply(Outbound::Message(Bytes::from(encode(&FrontMsg::Pong(
                    Pong { nonce: p.nonce },
                )))));
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err(Refusal::Reject(reason)) => self.reply(Outbound::Message(Bytes::from(encode(
                &FrontMsg::Rejected(Rejected { channel, reason }),
            )))),
            Err(Refusal::Error(code, message)) => {
                hub.metrics.protocol_errors.fetch_add(1, Relaxed);
                self.reply(Outbound::Message(Bytes::from(encode(&FrontMsg::Error(
                    ErrorMsg {
                        code: code.into(),
                        message,
                    },
                )))))
            }
        }
    }

    /// Sends a reply behind whatever is already queued, so replies keep their order
    /// relative to patches. A client too slow to take a reply is disconnected.
    fn reply(&self, item: Outbound) -> Result<(), End> {
        match self.handle.outbox.push(item, &self.hub.metrics) {
            Ok(()) => Ok(()),
            Err(Refused::Full) => {
                self.hub
                    .metrics
                    .slow_client_disconnects
                    .fetch_add(1, Relaxed);
                Err(End::Close {
                    code: 1008,
                    error: None,
                })
            }
            Err(Refused::Closed) => Err(End::Gone),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::SinkExt;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpSocket};
    use tokio::sync::mpsc;
    use tokio::time::timeout;
    use tokio_tungstenite::tungstenite::Message;

    use centrum_config::{Config, SlowClientPolicy};
    use centrum_protocol::{
        FrontToBack, Hello, Join, LinkPatch, LinkState, PROTOCOL_VERSION, Seq, Tick, decode, encode,
    };

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    /// A client that stops reading in the middle of a long write is still closed by
    /// the disconnect policy: the kill must cut the blocked write, or the connection,
    /// its queue and its socket buffers would be held until the peer goes away.
    /// A front (its hub linked to a back whose frames land in the returned receiver)
    /// serving the one connection it accepts on the returned address.
    async fn front_serving_one(
        config: Config,
    ) -> (
        Arc<Hub>,
        SocketAddr,
        tokio::task::JoinHandle<()>,
        mpsc::Receiver<Bytes>,
    ) {
        let hub = Arc::new(Hub::new("front-1", Arc::new(config), None));
        let (link_tx, link_rx) = mpsc::channel(16);
        hub.link_up(0, &["arena".to_owned()], &link_tx, &Shutdown::new());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn({
            let hub = hub.clone();
            async move {
                let (stream, peer) = listener.accept().await.unwrap();
                serve(stream, peer, None, hub, None, Shutdown::new()).await;
                drop(link_tx);
            }
        });
        (hub, addr, server, link_rx)
    }

    /// A client joined through a front over a socket with a small fixed receive buffer,
    /// sent an 8 MiB state, that read the first 64 KiB of it and then reads nothing more:
    /// the front's write to it is blocked.
    struct Stalled {
        hub: Arc<Hub>,
        server: tokio::task::JoinHandle<()>,
        link_rx: mpsc::Receiver<Bytes>,
        ws: tokio_tungstenite::WebSocketStream<TcpStream>,
    }

    /// A front serving one client whose socket has a small, fixed receive buffer (no
    /// autotuning), so that large writes cannot fit in the kernel's buffers on either
    /// side; the client has said hello and joined `arena`, and the back has its join.
    async fn small_buffer_client(
        config: Config,
    ) -> (
        Arc<Hub>,
        tokio::task::JoinHandle<()>,
        mpsc::Receiver<Bytes>,
        tokio_tungstenite::WebSocketStream<TcpStream>,
        SessionKey,
    ) {
        let (hub, addr, server, mut link_rx) = front_serving_one(config).await;
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), stream)
            .await
            .unwrap();
        for msg in [
            ClientMsg::Hello(Hello {
                version: PROTOCOL_VERSION,
                token: String::new(),
                resume: None,
            }),
            ClientMsg::Join(Join {
                channel: "arena".into(),
                data: Bytes::new(),
                seat: None,
            }),
        ] {
            ws.send(Message::Binary(encode(&msg).into())).await.unwrap();
        }
        let frame = timeout(WAIT, link_rx.recv()).await.unwrap().unwrap();
        let FrontToBack::Join(join) = decode(&frame, usize::MAX).unwrap() else {
            panic!("the front sent the back something other than the join");
        };
        (hub, server, link_rx, ws, join.session)
    }

    /// The back's first state of `arena` for `session`, at tick 1.
    fn first_state(hub: &Hub, session: SessionKey, body: Bytes) {
        hub.on_state(
            "arena",
            LinkState {
                channel: 0,
                tick: Tick(1),
                sessions: vec![(session, Seq(0))],
                body,
            },
        );
    }

    async fn stalled_client(config: Config) -> Stalled {
        let (hub, server, link_rx, mut ws, session) = small_buffer_client(config).await;
        // An 8 MiB state: its write starts, and blocks once the buffers are full.
        first_state(&hub, session, Bytes::from(vec![0; 8 << 20]));
        // Bytes of it reaching the client prove the write has begun; then the client
        // reads nothing more.
        let raw = ws.get_mut();
        let mut received = 0;
        let mut buf = vec![0; 16 << 10];
        while received < 64 << 10 {
            let n = timeout(WAIT, raw.read(&mut buf)).await.unwrap().unwrap();
            assert!(n > 0, "the front closed before the state was written");
            received += n;
        }
        Stalled {
            hub,
            server,
            link_rx,
            ws,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_stops_reading_is_cut_off_mid_write() {
        let mut config = Config::embedded_default();
        config.limits.client_queue = 2;
        config.limits.slow_client = SlowClientPolicy::Disconnect;
        let Stalled {
            hub,
            server,
            link_rx: _,
            ws: _ws,
        } = stalled_client(config).await;

        // Patches fill the two queue slots behind the blocked write; the next one
        // finds the queue full and the policy disconnects the client.
        let metrics = &hub.metrics;
        for tick in 2..10 {
            hub.on_patch(
                "arena",
                LinkPatch {
                    channel: 0,
                    tick: Tick(tick),
                    changed: true,
                    acks: Vec::new(),
                    body: Bytes::from_static(b"patch"),
                },
            );
            if metrics.slow_client_disconnects.load(Relaxed) > 0 {
                break;
            }
        }
        assert_eq!(metrics.slow_client_disconnects.load(Relaxed), 1);
        timeout(WAIT, server)
            .await
            .expect("the connection is still held in its blocked write")
            .unwrap();
        assert_eq!(hub.client_count(), 0);
    }

    /// A front whose client pings (100 ms) and timeout (300 ms) are short, serving one
    /// connection; returns the hub, the link's receiving end, the server task and a
    /// WebSocket client that has had its welcome and joined `arena`.
    async fn short_timeouts() -> (
        Arc<Hub>,
        mpsc::Receiver<Bytes>,
        tokio::task::JoinHandle<()>,
        tokio_tungstenite::WebSocketStream<TcpStream>,
    ) {
        let mut config = Config::embedded_default();
        config.limits.client_ping_ms = 100;
        config.limits.client_timeout_ms = 300;
        let (hub, addr, server, mut link_rx) = front_serving_one(config).await;
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), stream)
            .await
            .unwrap();
        let hello = ClientMsg::Hello(Hello {
            version: PROTOCOL_VERSION,
            token: String::new(),
            resume: None,
        });
        ws.send(Message::Binary(encode(&hello).into()))
            .await
            .unwrap();
        let welcome = timeout(WAIT, futures_util::StreamExt::next(&mut ws))
            .await
            .unwrap();
        assert!(
            matches!(welcome, Some(Ok(Message::Binary(_)))),
            "{welcome:?}"
        );
        let join = ClientMsg::Join(Join {
            channel: "arena".into(),
            data: Bytes::new(),
            seat: None,
        });
        ws.send(Message::Binary(encode(&join).into()))
            .await
            .unwrap();
        let frame = timeout(WAIT, link_rx.recv()).await.unwrap().unwrap();
        let FrontToBack::Join(join) = decode(&frame, usize::MAX).unwrap() else {
            panic!("the front sent the back something other than the join");
        };
        first_state(&hub, join.session, Bytes::from_static(b"state"));
        (hub, link_rx, server, ws)
    }

    /// A client that answers nothing gets pings, then a close (1001, `timeout`) once
    /// it has been silent for `client_timeout_ms`; the front treats it as a drop (an
    /// Away to the back: the membership is held for a resume), not a leave.
    #[tokio::test]
    async fn a_silent_client_is_pinged_then_closed_as_a_drop() {
        let (hub, mut link_rx, server, mut ws) = short_timeouts().await;
        let silent_from = Instant::now();
        // Raw reads: tungstenite would answer the pings.
        let raw = ws.get_mut();
        let mut bytes = Vec::new();
        let mut buf = [0; 1024];
        loop {
            let n = timeout(WAIT, raw.read(&mut buf)).await.unwrap().unwrap();
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..n]);
        }
        let closed_after = silent_from.elapsed();
        timeout(WAIT, server).await.unwrap().unwrap();
        // The state (opcode 2), then pings (0x89 0x00), then the close.
        let close = [&[0x88, 9, 0x03, 0xe9][..], b"timeout"].concat();
        assert!(bytes.ends_with(&close), "{bytes:02x?}");
        let pings = bytes.windows(2).filter(|w| w == &[0x89, 0x00]).count();
        assert!((1..=3).contains(&pings), "{pings} pings in {bytes:02x?}");
        assert!(
            closed_after >= Duration::from_millis(250) && closed_after < Duration::from_secs(2),
            "closed after {closed_after:?}"
        );
        assert_eq!(hub.metrics.client_timeouts.load(Relaxed), 1);
        assert_eq!(hub.client_count(), 0);
        let away = timeout(WAIT, link_rx.recv()).await.unwrap().unwrap();
        assert!(
            matches!(decode(&away, usize::MAX).unwrap(), FrontToBack::Away(_)),
            "a drop, held for resume"
        );
    }

    /// A client that answers the pings stays connected well past the timeout.
    #[tokio::test]
    async fn a_client_that_answers_pings_stays() {
        let (hub, _link_rx, server, mut ws) = short_timeouts().await;
        let until = tokio::time::Instant::now() + Duration::from_millis(1_200);
        let mut pings = 0;
        // tungstenite answers each ping while it reads.
        while let Ok(msg) =
            tokio::time::timeout_at(until, futures_util::StreamExt::next(&mut ws)).await
        {
            match msg {
                Some(Ok(Message::Ping(_))) => pings += 1,
                Some(Ok(_)) => {}
                other => panic!("the connection ended: {other:?}"),
            }
        }
        assert!(pings >= 3, "only {pings} pings in 1.2 s of silence");
        assert_eq!(hub.metrics.client_timeouts.load(Relaxed), 0);
        assert_eq!(hub.client_count(), 1);
        server.abort();
    }

    /// A client that stops reading in the middle of a long write, with nothing more
    /// queued for it (so the slow-client policy never comes into play), is cut off
    /// once the write has been blocked for `client_timeout_ms`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_blocked_for_the_client_timeout_ends_the_connection() {
        let mut config = Config::embedded_default();
        config.limits.client_ping_ms = 100;
        config.limits.client_timeout_ms = 300;
        let Stalled {
            hub,
            server,
            mut link_rx,
            ws: _ws,
        } = stalled_client(config).await;
        let stopped = Instant::now();
        timeout(WAIT, server)
            .await
            .expect("the connection is still held in its blocked write")
            .unwrap();
        let held = stopped.elapsed();
        assert!(held < Duration::from_secs(3), "cut off after {held:?}");
        assert_eq!(hub.metrics.client_timeouts.load(Relaxed), 1);
        assert_eq!(hub.metrics.slow_client_disconnects.load(Relaxed), 0);
        assert_eq!(hub.client_count(), 0);
        let away = timeout(WAIT, link_rx.recv()).await.unwrap().unwrap();
        assert!(
            matches!(decode(&away, usize::MAX).unwrap(), FrontToBack::Away(_)),
            "a drop, held for resume"
        );
    }

    /// An idle connection is its task and little else (`centrum bench idle` measures
    /// the whole): the rarely taken awaits (TLS, the handshake, a blocked write, the
    /// close) are boxed, so the task's future stays small.
    #[tokio::test]
    async fn a_connection_task_is_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let hub = Arc::new(Hub::new(
            "front-1",
            Arc::new(Config::embedded_default()),
            None,
        ));
        let task = serve(stream, peer, None, hub, None, Shutdown::new());
        let size = size_of_val(&task);
        assert!(size <= 2048, "the connection's future takes {size} bytes");
    }

    /// Patches too large for the socket's buffers go partly straight into the socket
    /// and partly through the client's queue: the client, reading only once all are
    /// sent, gets every one whole and in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn patches_larger_than_the_socket_arrive_whole_and_in_order() {
        let mut config = Config::embedded_default();
        // More than the kernel's buffers hold on both sides (a loopback send buffer grows
        // to 4 MiB), all of it within the client's queue.
        config.limits.client_queue = 1024;
        let (hub, _server, _link_rx, mut ws, session) = small_buffer_client(config).await;
        first_state(&hub, session, Bytes::from_static(b"state"));
        let patches = 200u8;
        for tick in 0..patches {
            let split = hub.on_patch(
                "arena",
                LinkPatch {
                    channel: 0,
                    tick: Tick(u32::from(tick) + 2),
                    changed: true,
                    acks: Vec::new(),
                    body: Bytes::from(vec![tick; 48 << 10]),
                },
            );
            assert!(split.is_none());
        }
        assert!(
            hub.metrics.writes_queued.load(Relaxed) > 0,
            "the socket took everything at once: the test proves nothing"
        );
        let mut bodies = Vec::new();
        while bodies.len() < usize::from(patches) {
            let msg = timeout(WAIT, futures_util::StreamExt::next(&mut ws))
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let Message::Binary(bytes) = msg else {
                panic!("unexpected {msg:?}");
            };
            // The welcome and the state are small; a patch ends with its body.
            if bytes.len() > 48 << 10 {
                bodies.push(bytes[bytes.len() - (48 << 10)..].to_vec());
            }
        }
        for (tick, body) in (0..patches).zip(&bodies) {
            assert!(
                body.iter().all(|b| *b == tick),
                "patch {tick} garbled or out of order"
            );
        }
        assert_eq!(hub.metrics.slow_client_resyncs.load(Relaxed), 0);
    }
}
