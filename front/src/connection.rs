//! One client connection: WebSocket handshake, hello and welcome, then one task with
//! one `select!` over shutdown, its outbox (when a queue has formed) and its socket.
//! Outbound messages mostly bypass the task: the [`Outbox`] writes them through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::debug;

use centrum_net::Shutdown;
use centrum_protocol::{
    ClientMsg, ErrorMsg, FrontMsg, PROTOCOL_VERSION, Pong, Rejected, SessionKey, Welcome, decode,
    encode,
};

use crate::hub::{ClientHandle, Hub, Outbound, Refusal};
use crate::outbox::Outbox;
use crate::ws::{self, FrameReader, MAX_HEADER, WsEvent};

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Why a connection ends; anything but `Gone` is told to the client before the close.
enum End {
    /// The peer closed or the socket failed: nothing more to say.
    Gone,
    /// Close with a WebSocket close code, after an optional Error message.
    Close {
        code: u16,
        error: Option<(&'static str, String)>,
    },
}

/// Serves one accepted TCP connection to the end.
pub(crate) async fn serve(stream: TcpStream, peer: SocketAddr, hub: Arc<Hub>, shutdown: Shutdown) {
    let limits = hub.config.limits;
    let _ = stream.set_nodelay(true);
    let max_message = limits.max_message_bytes as usize;
    let handshake = async {
        let mut config = WebSocketConfig::default();
        config.max_message_size = Some(max_message);
        config.max_frame_size = Some(max_message);
        let ws = tokio_tungstenite::accept_async_with_config(stream, Some(config))
            .await
            .ok()?;
        // After the 101 response the stream carries plain frames, which we read and
        // write ourselves. A client may not send frames before the 101 (RFC 6455
        // §4.1), so tungstenite holds no buffered frame bytes here.
        let mut stream = ws.into_inner();
        let mut reader = FrameReader::new(max_message);
        let first = loop {
            match reader.next_event() {
                Ok(Some(event)) => break Ok(event),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            if stream.read_buf(&mut reader.buf).await.ok()? == 0 {
                return None;
            }
        };
        Some((stream, reader, first))
    };
    let Ok(Some((stream, mut reader, first))) =
        tokio::time::timeout(limits.handshake_timeout(), handshake).await
    else {
        hub.metrics.handshake_failures.fetch_add(1, Relaxed);
        debug!(%peer, "handshake failed or timed out");
        return;
    };

    let hello = match first {
        Ok(WsEvent::Binary(bytes)) => match decode::<ClientMsg>(&bytes, max_message) {
            Ok(ClientMsg::Hello(h)) => Ok(h),
            Ok(other) => Err(End::Close {
                code: 1002,
                error: Some((
                    "hello_required",
                    format!("the first message must be Hello, not {}", other.name()),
                )),
            }),
            Err(e) => Err(End::Close {
                code: 1007,
                error: Some(("malformed", e.to_string())),
            }),
        },
        Ok(WsEvent::Text) => Err(binary_only()),
        Ok(_) => Err(End::Close {
            code: 1002,
            error: Some(("hello_required", "the first message must be Hello".into())),
        }),
        Err(e) => Err(End::Close {
            code: e.close_code(),
            error: Some((ws_code(&e), e.to_string())),
        }),
    };
    let hello = match hello.and_then(|h| {
        if h.version == PROTOCOL_VERSION {
            Ok(h)
        } else {
            let message = format!(
                "protocol version {} is not supported; this server speaks {PROTOCOL_VERSION}",
                h.version
            );
            Err(End::Close {
                code: 1002,
                error: Some(("version", message)),
            })
        }
    }) {
        Ok(h) => h,
        Err(end) => {
            hub.metrics.handshake_failures.fetch_add(1, Relaxed);
            finish(&stream, end).await;
            return;
        }
    };

    let key: SessionKey = NEXT_SESSION.fetch_add(1, Relaxed);
    let session = format!("{}-{key}", hub.id);
    tracing::Span::current().record("session", session.as_str());
    // Version 1 does not resume sessions: any resume token starts a new session.
    let welcome = FrontMsg::Welcome(Welcome {
        version: PROTOCOL_VERSION,
        session: session.clone(),
        resume: resume_token(key),
        front: hub.id.clone(),
    });
    debug!(
        resumed = false,
        asked_resume = hello.resume.is_some(),
        "welcome"
    );
    let stream = Arc::new(stream);
    let outbox = Outbox::new(limits.client_queue as usize, hub.metrics.clone());
    outbox.attach(stream.clone());
    let handle = ClientHandle {
        out: outbox.clone(),
        kill: shutdown.child_token(),
    };
    let mut conn = Conn {
        hub: hub.clone(),
        key,
        handle: handle.clone(),
    };
    let welcome = Outbound::Message(Bytes::from(encode(&welcome)));
    if outbox.try_send(welcome).is_err() || outbox.drain().await.is_err() {
        return;
    }
    hub.add_client(key, handle.clone());
    // Messages that arrived in the same read as the Hello are already buffered.
    let pending = conn.drain_frames(&mut reader);

    let end = if let Err(end) = pending {
        end
    } else {
        // Made once, not per turn of the loop: each registers with its token or
        // notifier. `kill` is a child of `shutdown`, so one future covers both.
        let killed = handle.kill.cancelled();
        tokio::pin!(killed);
        let queued = outbox.queued();
        tokio::pin!(queued);
        loop {
            tokio::select! {
                _ = &mut killed => {
                    let code = if shutdown.is_cancelled() { 1001 } else { 1008 };
                    break End::Close { code, error: None };
                }
                _ = &mut queued => {
                    queued.set(outbox.queued());
                    if outbox.drain().await.is_err() {
                        break End::Gone;
                    }
                }
                readable = stream.readable() => {
                    if readable.is_err() {
                        break End::Gone;
                    }
                    match stream.try_read_buf(&mut reader.buf) {
                        Ok(0) => break End::Gone,
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        Err(_) => break End::Gone,
                    }
                    if let Err(end) = conn.drain_frames(&mut reader) {
                        break end;
                    }
                }
            }
        }
    };
    hub.remove_client(key);
    let slow = matches!(end, End::Close { code: 1008, .. });
    // A close frame may only follow whole frames; after a half-written one, the
    // socket is simply closed.
    if outbox.close() {
        finish(&stream, end).await;
    }
    debug!(slow, "connection closed");
}

fn binary_only() -> End {
    End::Close {
        code: 1003,
        error: Some((
            "binary_only",
            "messages must be binary MessagePack, not text".into(),
        )),
    }
}

fn ws_code(e: &ws::WsError) -> &'static str {
    match e {
        ws::WsError::TooLarge { .. } => "too_large",
        ws::WsError::Protocol(_) => "malformed",
    }
}

/// A token for a later Hello; unguessable enough to not collide, not a secret yet.
fn resume_token(key: SessionKey) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{key:x}.{:x}", (nanos as u64) ^ key.rotate_left(32))
}

/// Says why (best effort) and closes.
async fn finish(stream: &TcpStream, end: End) {
    let End::Close { code, error } = end else {
        return;
    };
    let mut out = Vec::new();
    let mut reason = "";
    if let Some((code_name, message)) = &error {
        let msg = encode(&FrontMsg::Error(ErrorMsg {
            code: (*code_name).into(),
            message: message.clone(),
        }));
        let mut head = [0; MAX_HEADER];
        let n = ws::header(ws::OP_BINARY, msg.len(), &mut head);
        out.extend_from_slice(&head[..n]);
        out.extend_from_slice(&msg);
        reason = code_name;
    }
    if code == 1008 {
        reason = "slow client";
    }
    out.extend_from_slice(&ws::close_frame(code, reason));
    // The peer may be gone or stuck; neither may hold the task. Dropping the socket
    // afterwards closes it.
    let write = async {
        let mut rest = &out[..];
        while !rest.is_empty() {
            stream.writable().await?;
            match stream.try_write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), write).await;
}

/// A connection's working state.
struct Conn {
    hub: Arc<Hub>,
    key: SessionKey,
    handle: ClientHandle,
}

impl Conn {
    /// Handles every complete frame in the read buffer.
    fn drain_frames(&mut self, reader: &mut FrameReader) -> Result<(), End> {
        loop {
            let event = match reader.next_event() {
                Ok(Some(e)) => e,
                Ok(None) => return Ok(()),
                Err(e) => {
                    self.hub.metrics.protocol_errors.fetch_add(1, Relaxed);
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
                    self.reply(Outbound::Frame(Bytes::from(pong)))?;
                }
                WsEvent::Pong => {}
                WsEvent::Close => {
                    return Err(End::Close {
                        code: 1000,
                        error: None,
                    });
                }
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
        let (channel, result) = match msg {
            ClientMsg::Hello(_) => (
                String::new(),
                Err(Refusal::Error(
                    "already_welcomed",
                    "this connection already has a session".into(),
                )),
            ),
            ClientMsg::Join(j) => {
                let r = hub.join(self.key, &self.handle, &j.channel, j.data);
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

    /// Queues a reply behind whatever is already queued, so replies keep their order
    /// relative to patches. A client too slow to take a reply is disconnected.
    fn reply(&self, item: Outbound) -> Result<(), End> {
        match self.handle.out.try_send(item) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.hub
                    .metrics
                    .slow_client_disconnects
                    .fetch_add(1, Relaxed);
                Err(End::Close {
                    code: 1008,
                    error: None,
                })
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(End::Gone),
        }
    }
}
