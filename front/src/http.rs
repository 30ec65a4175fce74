//! Every connection to a front starts as HTTP/1.1. This file reads a request's head
//! and decides: a WebSocket upgrade is accepted and handed back to `connection`,
//! `POST /v1/channels/{channel}/call` is a call to a channel's game (`call`); anything
//! else gets a JSON error. It also writes the few responses a front sends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::debug;

use centrum_net::{ServerStream, Shutdown};

use crate::access::{IpSlot, Refused};
use crate::call;
use crate::hub::Hub;

/// The largest request head a front reads; a longer one gets 431.
pub(crate) const MAX_HEAD: usize = 8 * 1024;

/// At most this many headers in a request; more get 431.
const MAX_HEADERS: usize = 32;

/// A request's head, parsed. Header names are lowercase.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    /// HTTP/1.1 (keep-alive by default) rather than HTTP/1.0.
    pub(crate) http11: bool,
    pub(crate) headers: Vec<(String, String)>,
}

/// Why a request head could not be read.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// The peer closed, or the socket failed, before a whole head arrived.
    Gone,
    /// Not HTTP/1.x, or over the size limits: answer with this status and close.
    Bad(u16, String),
}

impl Request {
    /// The value of header `name` (lowercase), if present.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (lowercase), in order.
    pub(crate) fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether header `name` is a comma-separated list holding `token` (any case).
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// Whether the connection stays open after the response.
    pub(crate) fn keep_alive(&self) -> bool {
        if self.has_token("connection", "close") {
            return false;
        }
        self.http11 || self.has_token("connection", "keep-alive")
    }
}

/// Reads one request head from `stream` into `buf`; the bytes after it (a body, or
/// frames) stay in `buf`.
pub(crate) async fn read_head(
    stream: &mut ServerStream,
    buf: &mut BytesMut,
) -> Result<Request, HeadError> {
    loop {
        if let Some((request, len)) = parse_head(buf)? {
            let _ = buf.split_to(len);
            return Ok(request);
        }
        if buf.len() >= MAX_HEAD {
            return Err(HeadError::Bad(
                431,
                format!("the request head is over {MAX_HEAD} bytes"),
            ));
        }
        buf.reserve(1024);
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(HeadError::Gone),
            Ok(_) => {}
        }
    }
}

/// A complete head at the start of `buf` and its length; `None` while incomplete.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::Bad(
                431,
                format!("more than {MAX_HEADERS} headers"),
            ));
        }
        Err(e) => return Err(HeadError::Bad(400, format!("not an HTTP/1.1 request: {e}"))),
    };
    let request = Request {
        method: req.method.unwrap_or_default().to_owned(),
        path: req.path.unwrap_or_default().to_owned(),
        http11: req.version == Some(1),
        headers: req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
    };
    Ok(Some((request, len)))
}

/// Reads a connection's first request and answers it: a call is served to the end
/// here, a WebSocket upgrade is accepted and returned with the bytes that followed it,
/// anything else is refused. A connection from a trusted proxy comes with no `slot`:
/// it is admitted here, as the client its `X-Forwarded-For` names.
pub(crate) async fn first_request(
    mut stream: ServerStream,
    peer: SocketAddr,
    slot: &mut Option<IpSlot>,
    hub: &Arc<Hub>,
    shutdown: &Shutdown,
    deadline: tokio::time::Instant,
) -> Option<(ServerStream, BytesMut)> {
    let _ = stream.tcp().set_nodelay(true);
    let mut buf = BytesMut::with_capacity(1024);
    let head = tokio::select! {
        _ = shutdown.cancelled() => return None,
        head = tokio::time::timeout_at(deadline, read_head(&mut stream, &mut buf)) => head,
    };
    let request = match head {
        Ok(Ok(request)) => request,
        Ok(Err(HeadError::Bad(status, message))) => {
            hub.metrics.handshake_failures.fetch_add(1, Relaxed);
            debug!(%peer, status, %message, "bad request");
            respond_error(&mut stream, status, &message, false).await;
            drain(&mut stream).await;
            return None;
        }
        Ok(Err(HeadError::Gone)) | Err(_) => {
            hub.metrics.handshake_failures.fetch_add(1, Relaxed);
            debug!(%peer, "no request before the handshake timeout");
            return None;
        }
    };
    if slot.is_none() {
        let client = hub
            .access
            .client_ip(peer.ip(), request.header_values("x-forwarded-for"));
        debug!(%client, "forwarded by a trusted proxy");
        match hub.access.admit(client) {
            Ok(admitted) => *slot = Some(admitted),
            Err(refused) => {
                refuse(&mut stream, hub, &refused).await;
                return None;
            }
        }
    }
    if request.path.starts_with("/v1/") {
        call::serve(stream, request, buf, hub.clone(), shutdown.clone()).await;
        return None;
    }
    let accept = match websocket_key(&request) {
        Ok(key) => derive_accept_key(key.as_bytes()),
        Err((status, message)) => {
            hub.metrics.handshake_failures.fetch_add(1, Relaxed);
            debug!(%peer, status, %message, "not a websocket upgrade");
            respond_error(&mut stream, status, &message, false).await;
            drain(&mut stream).await;
            return None;
        }
    };
    // Browsers always send Origin with a WebSocket upgrade, and a page cannot change
    // it; other clients need not send it, and could write any value if they did.
    if let Some(origin) = request.header("origin")
        && !hub.access.origin_allowed(origin)
    {
        hub.metrics.origin_refusals.fetch_add(1, Relaxed);
        hub.metrics.handshake_failures.fetch_add(1, Relaxed);
        debug!(%peer, origin, "origin not allowed");
        let message = format!("pages from {origin:?} may not connect to this front");
        respond_error(&mut stream, 403, &message, false).await;
        drain(&mut stream).await;
        return None;
    }
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(response.as_bytes()).await.ok()?;
    stream.flush().await.ok()?;
    Some((stream, buf))
}

/// The `Sec-WebSocket-Key` of a valid upgrade request (RFC 6455 §4.2.1), or the
/// status and message to refuse it with. Any path is accepted.
pub(crate) fn websocket_key(request: &Request) -> Result<&str, (u16, String)> {
    let upgrade =
        request.has_token("upgrade", "websocket") && request.has_token("connection", "upgrade");
    if !upgrade {
        return Err((
            426,
            "this is a centrum front: open a WebSocket here (PROTOCOL.md §4), or POST /v1/channels/{channel}/call".into(),
        ));
    }
    if request.method != "GET" || !request.http11 {
        return Err((400, "a WebSocket upgrade is an HTTP/1.1 GET".into()));
    }
    if request.header("sec-websocket-version") != Some("13") {
        return Err((426, "only WebSocket version 13 is supported".into()));
    }
    match request.header("sec-websocket-key") {
        Some(key) if !key.trim().is_empty() => Ok(key.trim()),
        _ => Err((400, "the upgrade has no Sec-WebSocket-Key".into())),
    }
}

/// How long, and how much, a front reads of a request it refused before it closes the
/// connection: closing with unread bytes would reset it, and the caller could lose the
/// answer.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(1);
const DRAIN_BYTES: usize = 1 << 20;

/// Reads and drops what the caller still sends, for at most [`DRAIN_TIME`] and
/// [`DRAIN_BYTES`], so that closing does not reset the connection under its answer.
pub(crate) async fn drain(stream: &mut ServerStream) {
    let mut sink = vec![0; 16 * 1024];
    let mut total = 0;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while total < DRAIN_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

/// Answers a connection refused by the per-address limits with 429, counted.
pub(crate) async fn refuse(stream: &mut ServerStream, hub: &Hub, refused: &Refused) {
    count_refusal(hub, refused);
    respond_error(stream, 429, &refused.message(), false).await;
    drain(stream).await;
}

/// Counts a connection refused by the per-address limits, answered or not.
pub(crate) fn count_refusal(hub: &Hub, refused: &Refused) {
    let counter = match refused {
        Refused::TooMany(_) => &hub.metrics.ip_cap_refusals,
        Refused::TooFast(_) => &hub.metrics.ip_rate_refusals,
    };
    counter.fetch_add(1, Relaxed);
    debug!(?refused, "connection refused");
}

/// The reason phrase of the statuses a front sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// Writes a response with `body` and the headers its status calls for.
///
/// # Errors
/// The socket's: the caller ends the connection.
pub(crate) async fn respond(
    stream: &mut ServerStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
) -> std::io::Result<()> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {connection}\r\nCache-Control: no-store\r\n{}\r\n",
        reason(status),
        body.len(),
        headers_for(status),
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    if !keep_alive {
        let _ = stream.shutdown().await;
    }
    Ok(())
}

/// `{"error": message}` with `status`, as every error of a front's HTTP reads.
pub(crate) async fn respond_error(
    stream: &mut ServerStream,
    status: u16,
    message: &str,
    keep_alive: bool,
) {
    let body = error_body(message);
    let _ = respond(stream, status, "application/json", &body, keep_alive).await;
}

/// The headers a status calls for (RFC 9110): how to authenticate, which method, what
/// to upgrade to.
fn headers_for(status: u16) -> &'static str {
    match status {
        401 => "WWW-Authenticate: Bearer\r\n",
        405 => "Allow: POST\r\n",
        426 => "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
        429 => "Retry-After: 1\r\n",
        _ => "",
    }
}

/// `{"error": message}` as JSON bytes.
pub(crate) fn error_body(message: &str) -> Vec<u8> {
    // A map of one string always serializes.
    serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Request {
        parse_head(text.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn a_websocket_upgrade_is_recognised_in_any_case_on_any_path() {
        let req = parse(
            "GET /anything HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        );
        assert_eq!(websocket_key(&req), Ok("dGhlIHNhbXBsZSBub25jZQ=="));
        // RFC 6455's own example.
        assert_eq!(
            derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn anything_else_is_refused_with_a_status_that_says_why() {
        let plain = parse("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(websocket_key(&plain).unwrap_err().0, 426);
        let old = parse(
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: k\r\n\r\n",
        );
        assert_eq!(websocket_key(&old).unwrap_err().0, 426);
        let keyless = parse(
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
        );
        assert_eq!(websocket_key(&keyless).unwrap_err().0, 400);
        assert!(matches!(
            parse_head(b"\x16\x03\x01 not http\r\n\r\n"),
            Err(HeadError::Bad(400, _))
        ));
        let many: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
        assert!(matches!(
            parse_head(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            Err(HeadError::Bad(431, _))
        ));
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost:").unwrap().is_none());
    }

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_header() {
        assert!(parse("POST /v1/x HTTP/1.1\r\n\r\n").keep_alive());
        assert!(!parse("POST /v1/x HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive());
        assert!(!parse("POST /v1/x HTTP/1.0\r\n\r\n").keep_alive());
        assert!(parse("POST /v1/x HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive());
    }
}
