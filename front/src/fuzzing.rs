//! Entry points for the fuzz targets in `fuzz/` (cargo feature `fuzzing`): the parsers a
//! client reaches before it is anyone (the first request's head, WebSocket frames, the
//! resume token, the hello's JWT), wrapped so that the crate's own types stay private.
//! Not a stable API.

use bytes::{BufMut, Bytes};

use centrum_config::{Config, Limits};
use centrum_protocol::LinkResume;

use crate::rate::Budget;
use crate::{auth, http, resume, ws};

/// The front's WebSocket frame reader, fed as a connection feeds it.
#[derive(Debug)]
pub struct FrameReader(ws::FrameReader);

/// One complete message or control frame, as the reader surfaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    Binary(Bytes),
    Text,
    Ping(Bytes),
    Pong,
    Close,
    /// A frame over the client's budget, dropped unread (with its whole message).
    Dropped,
}

/// The framing rule a client broke: the close code the front sends, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsFailure {
    pub close_code: u16,
    pub message: String,
}

impl FrameReader {
    /// A reader refusing messages over `max_message` bytes, with no rate limits.
    pub fn new(max_message: usize) -> Self {
        Self::with_burst(max_message, 0, 0)
    }

    /// A reader whose client may send `frames` frames and `bytes` payload bytes (0: no
    /// limit) and then one more of each a second: within one run, only the burst.
    pub fn with_burst(max_message: usize, frames: u32, bytes: u32) -> Self {
        let limits = Limits {
            client_messages_per_s: u32::from(frames > 0),
            client_message_burst: frames.max(1),
            client_bytes_per_s: u32::from(bytes > 0),
            client_bytes_burst: bytes.max(1),
            ..Limits::default()
        };
        Self(ws::FrameReader::new(max_message, Budget::new(&limits)))
    }

    /// Takes as many of `bytes` as one `read_buf` from the socket would (the buffer's
    /// spare capacity, or 64 bytes when it has none) and returns how many it took.
    pub fn read(&mut self, bytes: &[u8]) -> usize {
        let buf = &mut self.0.buf;
        if buf.capacity() == buf.len() {
            buf.reserve(64);
        }
        let n = bytes.len().min(buf.capacity() - buf.len());
        buf.put_slice(&bytes[..n]);
        n
    }

    /// Appends all of `bytes`, however many that is.
    pub fn push(&mut self, bytes: &[u8]) {
        self.0.buf.extend_from_slice(bytes);
    }

    /// The next event, `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// [`WsFailure`] when the bytes break the framing rules or the size limit.
    pub fn next_event(&mut self) -> Result<Option<WsEvent>, WsFailure> {
        match self.0.next_event() {
            Ok(event) => Ok(event.map(|e| match e {
                ws::WsEvent::Binary(b) => WsEvent::Binary(b),
                ws::WsEvent::Text => WsEvent::Text,
                ws::WsEvent::Ping(b) => WsEvent::Ping(b),
                ws::WsEvent::Pong => WsEvent::Pong,
                ws::WsEvent::Close => WsEvent::Close,
                ws::WsEvent::Dropped => WsEvent::Dropped,
            })),
            Err(e) => Err(WsFailure {
                close_code: e.close_code(),
                message: e.to_string(),
            }),
        }
    }

    /// Bytes read but not yet part of an event.
    pub fn buffered(&self) -> usize {
        self.0.buf.len()
    }

    /// What the read buffer holds allocated.
    pub fn capacity(&self) -> usize {
        self.0.buf.capacity()
    }
}

/// A parsed request head and what the front decides from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// How many bytes of the input the head took.
    pub len: usize,
    pub method: String,
    pub path: String,
    pub http11: bool,
    /// Names lowercase.
    pub headers: Vec<(String, String)>,
    pub keep_alive: bool,
    /// The upgrade's `Sec-WebSocket-Key`, or the status and message refusing it.
    pub websocket_key: Result<String, (u16, String)>,
}

/// Parses a request head at the start of `buf`; `Ok(None)` while it is incomplete.
///
/// # Errors
/// The status and message the front answers a bad head with.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, (u16, String)> {
    match http::parse_head(buf) {
        Ok(None) => Ok(None),
        Ok(Some((request, len))) => Ok(Some(Head {
            len,
            keep_alive: request.keep_alive(),
            websocket_key: http::websocket_key(&request).map(str::to_owned),
            method: request.method,
            path: request.path,
            http11: request.http11,
            headers: request.headers,
        })),
        Err(http::HeadError::Bad(status, message)) => Err((status, message)),
        // Only reading from a socket ends with Gone; a target that sees status 0 fails.
        Err(http::HeadError::Gone) => Err((0, "gone".into())),
    }
}

/// A resume token's session id and claim, `None` for anything that is not a token.
pub fn parse_resume_token(token: &str) -> Option<(String, LinkResume)> {
    resume::ResumeToken::parse(token).map(|t| (t.session_id, t.claim))
}

/// The token a `Welcome` carries for this session id and claim.
pub fn encode_resume_token(session_id: &str, claim: &LinkResume) -> String {
    resume::ResumeToken {
        session_id: session_id.to_owned(),
        claim: claim.clone(),
    }
    .encode()
}

/// The front's JWT check of a hello's token, as `[auth]` of a config sets it up.
#[derive(Debug)]
pub struct JwtVerifier(auth::Verifier);

/// What a verified token (or none) grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtGrant {
    Anonymous,
    Token {
        subject: String,
        /// Claim names passed on, with their values as MessagePack.
        claims: Vec<(String, Bytes)>,
        /// The token's channel patterns; `None`: any channel.
        channels: Option<Vec<String>>,
    },
}

/// Why a token was refused: the metric's reason label and the client's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtFailure {
    pub reason: &'static str,
    pub message: String,
}

/// The largest identity (subject and claims, MessagePack) a token may pass on.
pub const MAX_IDENTITY_BYTES: usize = auth::MAX_IDENTITY_BYTES;

impl JwtVerifier {
    /// The verifier of `config`'s `[auth]`; `None` without one or when its key cannot
    /// be read.
    pub fn new(config: &Config) -> Option<Self> {
        auth::Verifier::from_config(config).ok().flatten().map(Self)
    }

    /// What a hello with `token` (empty: none) may do.
    ///
    /// # Errors
    /// [`JwtFailure`] for a token that does not verify, or none where one is required.
    pub fn admit(&self, token: &str) -> Result<JwtGrant, JwtFailure> {
        match self.0.admit(token) {
            Ok(auth::Grant::Open | auth::Grant::Anonymous) => Ok(JwtGrant::Anonymous),
            Ok(auth::Grant::Token { identity, channels }) => Ok(JwtGrant::Token {
                subject: identity.subject,
                claims: identity.claims.into_iter().collect(),
                channels,
            }),
            Err(e) => Err(JwtFailure {
                reason: auth::AuthFailure::LABELS[e.index()],
                message: e.message(),
            }),
        }
    }
}

/// Whether channel `name` matches a token's channel `pattern` (`*`: any run).
pub fn channel_matches(pattern: &str, name: &str) -> bool {
    auth::matches(pattern, name)
}
