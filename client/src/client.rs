//! The driver of one WebSocket connection to a front: connect (directly or through
//! the gate), hello and welcome under a timeout, then messages out and in, the pings
//! that find a silent front, and the close. Everything the messages mean is the
//! [`Session`]'s business.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tracing::{debug, trace};

use centrum_protocol::{ClientMsg, Input, Mirror, Seq, encode};

use crate::session::{Due, Session};
use crate::{ClientError, Event, Token, data, gate, tls};

/// Events that arrive while [`Client::join`] waits for its answer are kept for
/// [`Client::next_event`]; when this many are waiting, `join` stops waiting and
/// returns an error, leaving them (and the join's answer, when it comes) to be read.
const MAX_QUEUED_EVENTS: usize = 65_536;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How a client connects.
#[derive(Clone)]
pub struct ClientOptions {
    /// The token sent in the hello (PROTOCOL.md: authentication): none, a fixed one,
    /// or one fetched before every connect. A `&str` or `String` converts into it.
    pub token: Token,
    /// The [`Client::resume_token`] of an earlier connection, to resume its session:
    /// joining a channel again then restores the membership (same player, same ack)
    /// where the back still holds it. PROTOCOL.md §7.8 says how long that is.
    pub resume: Option<String>,
    /// The largest message accepted from the server, applied by the WebSocket layer
    /// before anything is decoded. Full states can be large.
    pub max_message_bytes: usize,
    /// Bounds the whole connect (gate request, TCP, WebSocket upgrade, hello and
    /// welcome) and the close handshake.
    pub connect_timeout: Duration,
    /// While [`Client::next_event`] waits, a front that has sent nothing for this long
    /// is sent a ping (PROTOCOL.md §7.10).
    pub ping_after: Duration,
    /// A front that answers nothing, not even that ping, for this long after it is
    /// taken for gone: the connection ends with [`Event::Closed`] as if it had
    /// dropped, and resuming works as after any drop. A silent front is found within
    /// `ping_after + silence_timeout` of its last message.
    pub silence_timeout: Duration,
    /// Root certificates (PEM) trusted for `wss://` fronts and an `https://` gate
    /// besides the web's usual ones: a cluster's own CA, or a self-signed certificate.
    pub tls_root_pem: Option<String>,
}

/// The tokens are secrets: they are not printed.
impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("token", &self.token)
            .field("resume", &self.resume.as_ref().map(|_| "<redacted>"))
            .field("max_message_bytes", &self.max_message_bytes)
            .field("connect_timeout", &self.connect_timeout)
            .field("ping_after", &self.ping_after)
            .field("silence_timeout", &self.silence_timeout)
            .field("tls_root_pem", &self.tls_root_pem.as_ref().map(|_| "<pem>"))
            .finish()
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            token: Token::None,
            resume: None,
            max_message_bytes: 16 << 20,
            connect_timeout: Duration::from_secs(10),
            ping_after: Duration::from_secs(2),
            silence_timeout: Duration::from_secs(4),
            tls_root_pem: None,
        }
    }
}

/// One connection to a front, with a mirror of every channel it is in.
///
/// Every method takes `&mut self`: a client is driven by one task, which interleaves
/// sending with [`Client::next_event`]. Reading regularly also answers the server's
/// WebSocket pings.
pub struct Client {
    ws: Ws,
    options: ClientOptions,
    session: Session,
    /// Results that arrived during a `join`, returned first by `next_event`.
    queue: VecDeque<Result<Event, ClientError>>,
    /// Why the connection ended, once it has.
    closed: Option<String>,
    /// Binary messages and their payload bytes received so far.
    messages_received: u64,
    bytes_received: u64,
}

/// What the socket delivered, once control frames are set aside.
enum Incoming {
    Binary(Bytes),
    Text,
    /// A WebSocket ping or pong: no data, but a sign of life.
    Control,
    Ended(String),
}

impl Client {
    /// Connects to the front at `url` (`ws://host:port`, or `wss://` for TLS) and
    /// exchanges hello and welcome.
    ///
    /// # Errors
    /// [`ClientError::Connect`] when the front cannot be reached or refuses the
    /// upgrade, [`ClientError::Handshake`] when it refuses the hello (for example an
    /// unsupported protocol version, code `version`), [`ClientError::Timeout`] past
    /// `options.connect_timeout`, [`ClientError::Closed`] or
    /// [`ClientError::Protocol`] when it answers with something other than a welcome.
    pub async fn connect(url: &str, options: ClientOptions) -> Result<Client, ClientError> {
        tokio::time::timeout(options.connect_timeout, Self::handshake(url, options))
            .await
            .map_err(|_| ClientError::Timeout("connect"))?
    }

    /// Asks the master's gate (`127.0.0.1:7300`, `http://127.0.0.1:7300`, or
    /// `https://` for TLS) which front serves `channel`, then connects to it. It does
    /// not join the channel.
    ///
    /// # Errors
    /// [`ClientError::Gate`] with the master's status and message when it has no front
    /// to offer (404 unknown channel, 503 no live front, ...); otherwise as
    /// [`Client::connect`]. The gate request has its own `connect_timeout`.
    pub async fn connect_via_gate(
        master_http: &str,
        channel: &str,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let url = tokio::time::timeout(
            options.connect_timeout,
            gate::front_url(master_http, channel, options.tls_root_pem.as_deref()),
        )
        .await
        .map_err(|_| ClientError::Timeout("gate"))??;
        debug!(%url, channel, "gate chose a front");
        Self::connect(&url, options).await
    }

    async fn handshake(url: &str, options: ClientOptions) -> Result<Client, ClientError> {
        let limit = options.max_message_bytes;
        let config = WebSocketConfig::default()
            .max_message_size(Some(limit))
            .max_frame_size(Some(limit));
        let connect_error = |source| ClientError::Connect {
            url: url.to_owned(),
            source,
        };
        // A plain `ws://` needs no TLS config; building one reads every root.
        let connector = match tls::has_scheme(url, "wss://") {
            true => Some(Connector::Rustls(
                tls::client_config(options.tls_root_pem.as_deref()).map_err(connect_error)?,
            )),
            false => None,
        };
        let (mut ws, _response) =
            tokio_tungstenite::connect_async_tls_with_config(url, Some(config), true, connector)
                .await
                .map_err(|e| connect_error(e.into()))?;
        let token = options.token.get().await?;
        let hello = Session::hello(&token, options.resume.as_deref());
        send_message(&mut ws, &hello).await?;
        let bytes = loop {
            match incoming(&mut ws).await {
                Incoming::Binary(bytes) => break bytes,
                Incoming::Text => return Err(text_message()),
                Incoming::Control => {}
                Incoming::Ended(reason) => return Err(ClientError::Closed(reason)),
            }
        };
        let session = Session::welcome(&bytes, Instant::now())?;
        debug!(
            url,
            session = %session.id(),
            front = %session.front(),
            resumed = session.resumed(),
            "welcome"
        );
        Ok(Client {
            ws,
            options,
            session,
            queue: VecDeque::new(),
            closed: None,
            messages_received: 1,
            bytes_received: bytes.len() as u64,
        })
    }

    /// The session id the front gave this connection; a resumed session keeps its id.
    pub fn session(&self) -> &str {
        self.session.id()
    }

    /// The token that resumes this session from another connection (see
    /// [`ClientOptions::resume`]). A secret: whoever holds it can take the session.
    pub fn resume_token(&self) -> &str {
        self.session.resume_token()
    }

    /// Whether the front took [`ClientOptions::resume`] as a token of this cluster: the
    /// session kept its id, and each join claims the old membership (same player,
    /// same ack) where the channel's back still holds it. `false`: a new session.
    pub fn resumed(&self) -> bool {
        self.session.resumed()
    }

    /// The id of the front serving this connection.
    pub fn front(&self) -> &str {
        self.session.front()
    }

    /// Binary messages received on this connection so far (every server message is one).
    pub fn messages_received(&self) -> u64 {
        self.messages_received
    }

    /// Payload bytes of those messages, WebSocket framing excluded.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// Joins `channel` with the application's `data` (MessagePack the game defines;
    /// may be empty) and waits for the answer: the channel's full state, applied to
    /// its mirror, or a rejection. Anything else that arrives meanwhile is kept, in
    /// order, for [`Client::next_event`]. If this future is dropped before the answer,
    /// the answer comes later through `next_event` as [`Event::State`] or
    /// [`Event::Rejected`]. A channel being left may be joined again at once.
    ///
    /// # Errors
    /// [`ClientError::Rejected`] with the server's reason, [`ClientError::AlreadyJoined`]
    /// (nothing is sent), [`ClientError::Closed`] when the connection ends first,
    /// [`ClientError::Protocol`] when the state does not fit or too many other events
    /// arrive before the answer, or a send error.
    pub async fn join(&mut self, channel: &str, data: &[u8]) -> Result<(), ClientError> {
        self.join_bytes(channel, Bytes::copy_from_slice(data)).await
    }

    /// [`Client::join`] with join data the game reads as a serde value: `data` is
    /// encoded with field names (a struct becomes a map), as other clients send it.
    ///
    /// # Errors
    /// [`ClientError::Encode`] when `data` cannot be encoded (nothing is sent);
    /// otherwise as [`Client::join`].
    pub async fn join_value<T: Serialize + ?Sized>(
        &mut self,
        channel: &str,
        data: &T,
    ) -> Result<(), ClientError> {
        let data = data::encode(data)?;
        self.join_bytes(channel, data.into()).await
    }

    /// Joins the room of a seat the [`Matchmaker`](crate::Matchmaker) reserved, with
    /// join data the game reads as a serde value, and waits for the room's state as
    /// [`Client::join`] does. After a reconnect with the resume token, join again with
    /// the same reservation: the back restores the membership it holds without looking
    /// at the (by then maybe expired) seat.
    ///
    /// # Errors
    /// As [`Client::join`]; a refused seat is [`ClientError::Rejected`] whose reason
    /// starts with its code (`seat_expired: ...`, `room_full: ...`).
    pub async fn join_room<T: Serialize + ?Sized>(
        &mut self,
        seat: &crate::SeatReservation,
        data: &T,
    ) -> Result<(), ClientError> {
        let data = data::encode(data)?;
        self.join_with(&seat.room, data.into(), Some(seat.seat.clone()))
            .await
    }

    async fn join_bytes(&mut self, channel: &str, data: Bytes) -> Result<(), ClientError> {
        self.join_with(channel, data, None).await
    }

    async fn join_with(
        &mut self,
        channel: &str,
        data: Bytes,
        seat: Option<String>,
    ) -> Result<(), ClientError> {
        let join = self.session.join(channel, data, seat)?;
        self.send(&join).await?;
        loop {
            if self.queue.len() >= MAX_QUEUED_EVENTS {
                return Err(ClientError::Protocol(format!(
                    "{} events arrived while waiting for the answer to joining {channel:?}; \
                     read them with next_event",
                    self.queue.len()
                )));
            }
            match self.receive().await {
                Ok(Event::State { channel: c, .. }) if c == channel => return Ok(()),
                Ok(Event::Rejected { channel: c, reason }) if c == channel => {
                    return Err(ClientError::Rejected { channel: c, reason });
                }
                Ok(Event::Closed { reason }) => {
                    // next_event reports the end too, after what came before it.
                    self.queue.push_back(Ok(Event::Closed {
                        reason: reason.clone(),
                    }));
                    return Err(ClientError::Closed(reason));
                }
                // Only this join's State makes the channel joined: it did not fit.
                Err(e) if self.session.is_joined(channel) => return Err(e),
                other => self.queue.push_back(other),
            }
        }
    }

    /// Asks to leave `channel`. From now on its mirror and ack are gone and what is
    /// still on its way for it (states, patches, the game's messages) is ignored; the
    /// server's answer, [`Event::Left`], comes through [`Client::next_event`].
    ///
    /// # Errors
    /// [`ClientError::Closed`] or [`ClientError::Io`] when the message cannot be sent.
    pub async fn leave(&mut self, channel: &str) -> Result<(), ClientError> {
        let leave = self.session.leave(channel);
        self.send(&leave).await
    }

    /// Sends an input with the next seq of this channel (1, 2, 3, ..., skipping 0 when
    /// it wraps past `u32::MAX`; a new membership continues after the ack of its first
    /// state, so a fresh join starts again from 1) and returns that seq.
    /// [`Client::ack`] reaches it once the back has applied it.
    ///
    /// # Errors
    /// [`ClientError::Closed`] or [`ClientError::Io`] when the message cannot be sent;
    /// the seq is used up even so.
    pub async fn send_input(&mut self, channel: &str, data: &[u8]) -> Result<Seq, ClientError> {
        self.send_input_bytes(channel, Bytes::copy_from_slice(data))
            .await
    }

    /// [`Client::send_input`] with an input the game reads as a serde value: `input` is
    /// encoded with field names (a struct becomes a map), as other clients send it.
    ///
    /// # Errors
    /// [`ClientError::Encode`] when `input` cannot be encoded (nothing is sent, no seq
    /// is used); otherwise as [`Client::send_input`].
    pub async fn send_value<T: Serialize + ?Sized>(
        &mut self,
        channel: &str,
        input: &T,
    ) -> Result<Seq, ClientError> {
        let data = data::encode(input)?;
        self.send_input_bytes(channel, data.into()).await
    }

    async fn send_input_bytes(&mut self, channel: &str, data: Bytes) -> Result<Seq, ClientError> {
        // The seq is taken before sending: a send that fails or is cancelled half-way
        // may still deliver the input, and its seq must not be reused.
        let (seq, input) = self.session.input(channel, data);
        self.send(&input).await?;
        Ok(seq)
    }

    /// Sends an input with a seq the caller chooses. It does not move the counter of
    /// [`Client::send_input`].
    ///
    /// # Errors
    /// [`ClientError::Closed`] or [`ClientError::Io`] when the message cannot be sent.
    pub async fn send_input_with_seq(
        &mut self,
        channel: &str,
        seq: Seq,
        data: &[u8],
    ) -> Result<(), ClientError> {
        self.send(&ClientMsg::Input(Input {
            channel: channel.to_owned(),
            seq,
            data: Bytes::copy_from_slice(data),
        }))
        .await
    }

    /// Sends a ping; its [`Event::Pong`] carries the measured round-trip time.
    ///
    /// # Errors
    /// [`ClientError::Closed`] or [`ClientError::Io`] when the message cannot be sent.
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        let ping = self.session.ping(Instant::now());
        self.send(&ping).await
    }

    /// Sends `bytes` as one binary message, as-is (for testing a server's handling of
    /// malformed input).
    ///
    /// # Errors
    /// [`ClientError::Closed`] or [`ClientError::Io`] when the message cannot be sent.
    pub async fn send_raw(&mut self, bytes: Vec<u8>) -> Result<(), ClientError> {
        if let Some(reason) = &self.closed {
            return Err(ClientError::Closed(reason.clone()));
        }
        send_bytes(&mut self.ws, bytes).await
    }

    /// The next event: one kept during a [`Client::join`], else the next server
    /// message, applied to its channel's mirror first. Returns [`Event::Closed`] once
    /// when the connection ends. Cancel-safe: dropping the future loses nothing.
    ///
    /// # Errors
    /// [`ClientError::Protocol`] for a message this client cannot understand or apply
    /// (the connection stays open; a channel whose mirror no longer fits is hidden
    /// from [`Client::mirror`] until its next full state); [`ClientError::Closed`]
    /// after [`Event::Closed`].
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        match self.queue.pop_front() {
            Some(queued) => queued,
            None => self.receive().await,
        }
    }

    /// The mirror of a channel this client is in, as of the last message received
    /// (events kept during a [`Client::join`] are applied when they arrive, before
    /// `next_event` returns them). `None` before its first state, once leaving or
    /// rejected, and while a state or patch that did not fit waits for the next full
    /// state.
    pub fn mirror(&self, channel: &str) -> Option<&Mirror> {
        self.session.mirror(channel)
    }

    /// The last of this client's inputs on `channel` the back has applied, as of the
    /// last state or patch; `Seq(0)` ([`Seq::NONE`]) when none (or not in the channel).
    pub fn ack(&self, channel: &str) -> Seq {
        self.session.ack(channel)
    }

    /// Closes the connection with the WebSocket close handshake. Messages still
    /// arriving are dropped.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] when the server does not complete the handshake within
    /// `connect_timeout`; [`ClientError::Io`] when the close cannot be sent.
    pub async fn close(mut self) -> Result<(), ClientError> {
        if self.closed.is_some() {
            return Ok(());
        }
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let handshake = async {
            match self.ws.close(Some(frame)).await {
                Ok(()) => {}
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => return Ok(()),
                Err(e) => return Err(send_error(e)),
            }
            // The server's own close frame ends the stream; an error after ours is a
            // server that hung up without answering, which ends it just as well.
            while let Some(Ok(_)) = self.ws.next().await {}
            Ok(())
        };
        tokio::time::timeout(self.options.connect_timeout, handshake)
            .await
            .map_err(|_| ClientError::Timeout("close"))?
    }

    /// Reads until a message yields a result; `Ok(Event::Closed)` once at the end.
    async fn receive(&mut self) -> Result<Event, ClientError> {
        if let Some(reason) = &self.closed {
            return Err(ClientError::Closed(reason.clone()));
        }
        loop {
            let (ping_after, silence) = (self.options.ping_after, self.options.silence_timeout);
            let wake = match self.session.liveness(Instant::now(), ping_after, silence) {
                Due::Wait(at) => at,
                Due::Ping(ping) => {
                    // Bounded too: a socket that cannot take a ping is as silent.
                    let sent = tokio::time::timeout(silence, self.send(&ping)).await;
                    if let Ok(Err(e)) | Err(e) = sent.map_err(|_| ClientError::Timeout("ping")) {
                        return Ok(self.end(format!("the connection failed: {e}")));
                    }
                    continue;
                }
                Due::Silent { silent } => {
                    return Ok(self.end(format!(
                        "the front sent nothing for {} ms, not even a pong",
                        silent.as_millis()
                    )));
                }
            };
            let next = tokio::select! {
                next = incoming(&mut self.ws) => next,
                () = tokio::time::sleep_until(wake.into()) => continue,
            };
            let bytes = match next {
                Incoming::Binary(bytes) => bytes,
                Incoming::Text => return Err(text_message()),
                Incoming::Control => {
                    self.session.heard(Instant::now());
                    continue;
                }
                Incoming::Ended(reason) => return Ok(self.end(reason)),
            };
            self.messages_received += 1;
            self.bytes_received += bytes.len() as u64;
            if let Some(event) = self.session.apply(&bytes, Instant::now())? {
                return Ok(event);
            }
        }
    }

    /// The connection is over, for `reason`: [`Event::Closed`] is what reports it.
    fn end(&mut self, reason: String) -> Event {
        debug!(session = %self.session.id(), %reason, "connection ended");
        self.closed = Some(reason.clone());
        Event::Closed { reason }
    }

    async fn send(&mut self, msg: &ClientMsg) -> Result<(), ClientError> {
        if let Some(reason) = &self.closed {
            return Err(ClientError::Closed(reason.clone()));
        }
        send_message(&mut self.ws, msg).await
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("session", &self.session)
            .field("queued", &self.queue.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// The next message or control frame, or how the connection ended. Cancel-safe.
async fn incoming(ws: &mut Ws) -> Incoming {
    match ws.next().await {
        Some(Ok(Message::Binary(bytes))) => Incoming::Binary(bytes),
        Some(Ok(Message::Text(_))) => Incoming::Text,
        Some(Ok(Message::Close(frame))) => {
            // tungstenite has queued the answering close frame; push it out if
            // the socket takes it now, without waiting on a peer that left.
            let _ = ws.flush().now_or_never();
            Incoming::Ended(match frame {
                Some(f) if f.reason.is_empty() => {
                    format!("closed by the server (code {})", u16::from(f.code))
                }
                Some(f) => format!(
                    "closed by the server (code {}): {}",
                    u16::from(f.code),
                    f.reason
                ),
                None => "closed by the server".into(),
            })
        }
        // tungstenite answers pings itself, on the next read or write.
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Incoming::Control,
        Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) | None => {
            Incoming::Ended("the connection ended".into())
        }
        Some(Err(e)) => Incoming::Ended(format!("the connection failed: {e}")),
    }
}

async fn send_message(ws: &mut Ws, msg: &ClientMsg) -> Result<(), ClientError> {
    trace!(message = msg.name(), "sending");
    send_bytes(ws, encode(msg)).await
}

async fn send_bytes(ws: &mut Ws, bytes: Vec<u8>) -> Result<(), ClientError> {
    ws.send(Message::Binary(bytes.into()))
        .await
        .map_err(send_error)
}

fn text_message() -> ClientError {
    ClientError::Protocol("a text message; centrum sends binary MessagePack only".into())
}

fn send_error(e: WsError) -> ClientError {
    match e {
        WsError::Io(e) => ClientError::Io(e),
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            ClientError::Closed("the connection is closed".into())
        }
        other => ClientError::Protocol(format!("cannot send: {other}")),
    }
}

#[cfg(test)]
mod tests;
