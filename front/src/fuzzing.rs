//! Entry points for the fuzz targets in `fuzz/` (cargo feature `fuzzing`): the parsers a
//! client reaches before it is anyone (the first request's head, WebSocket frames, the
//! resume token), wrapped so that the crate's own types stay private. Not a stable API.

use bytes::{BufMut, Bytes};

use centrum_protocol::LinkResume;

use crate::{http, resume, ws};

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
}

/// The framing rule a client broke: the close code the front sends, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsFailure {
    pub close_code: u16,
    pub message: String,
}

impl FrameReader {
    /// A reader refusing messages over `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Self(ws::FrameReader::new(max_message))
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
