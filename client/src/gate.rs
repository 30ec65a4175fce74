//! The master's gate: one plain HTTP/1.1 `GET /gate?channel=C` that names the front a
//! client should connect to. No connection pool: a client asks once, then talks to
//! the front.

use std::fmt::Write as _;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;
use tracing::debug;

use crate::ClientError;

/// A gate answer is a short JSON object; anything longer is not one.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// The master's answer to a gate request (other fields are ignored).
#[derive(Debug, Deserialize)]
struct GateReply {
    url: String,
}

/// The body of every error the master's HTTP API returns.
#[derive(Debug, Deserialize)]
struct GateErrorReply {
    error: String,
}

/// Asks the gate at `master_http` (`host:port`, optionally `http://`-prefixed) which
/// front serves `channel`, and returns that front's WebSocket URL.
pub(crate) async fn front_url(master_http: &str, channel: &str) -> Result<String, ClientError> {
    let authority = authority(master_http)?;
    let url = format!("http://{authority}/gate?channel={}", query_escape(channel));
    let connect_error = |source: crate::error::BoxError| ClientError::Connect {
        url: url.clone(),
        source,
    };

    let stream = TcpStream::connect(authority)
        .await
        .map_err(|e| connect_error(e.into()))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| connect_error(e.into()))?;
    let request = hyper::Request::get(format!("/gate?channel={}", query_escape(channel)))
        .header(header::HOST, authority)
        .header(header::CONNECTION, "close")
        .header(header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| connect_error(e.into()))?;

    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| connect_error(e.into()))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_REPLY_BYTES)
            .collect()
            .await
            .map_err(connect_error)?
            .to_bytes();
        Ok::<_, ClientError>((status, body))
    };
    // The connection future drives the socket; polling it beside the exchange keeps
    // the request inside this call instead of a spawned task that outlives it. It may
    // finish first (the whole answer read, `connection: close`), leaving the body to
    // be taken from its buffer.
    tokio::pin!(connection, exchange);
    let (status, body) = tokio::select! {
        exchange = &mut exchange => exchange?,
        ended = &mut connection => match ended {
            Ok(()) => exchange.await?,
            Err(e) => return Err(connect_error(e.into())),
        },
    };
    debug!(%url, status, "gate answered");

    if status != 200 {
        let message = match serde_json::from_slice::<GateErrorReply>(&body) {
            Ok(reply) => reply.error,
            Err(_) => String::from_utf8_lossy(&body).trim().to_owned(),
        };
        return Err(ClientError::Gate { status, message });
    }
    serde_json::from_slice::<GateReply>(&body)
        .map(|reply| reply.url)
        .map_err(|e| ClientError::Gate {
            status,
            message: format!("the answer is not a gate reply: {e}"),
        })
}

/// `host:port` out of `host:port` or `http://host:port[/]`.
fn authority(master_http: &str) -> Result<&str, ClientError> {
    let trimmed = master_http.trim().trim_end_matches('/');
    let authority = trimmed.strip_prefix("http://").unwrap_or(trimmed);
    if authority.is_empty() || authority.contains("://") || authority.contains('/') {
        return Err(ClientError::Connect {
            url: master_http.to_owned(),
            source: "the gate address must be host:port or http://host:port".into(),
        });
    }
    Ok(authority)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_with_and_without_scheme() {
        assert_eq!(authority("127.0.0.1:7300").unwrap(), "127.0.0.1:7300");
        assert_eq!(
            authority("http://127.0.0.1:7300/").unwrap(),
            "127.0.0.1:7300"
        );
        assert!(matches!(
            authority("https://127.0.0.1:7300"),
            Err(ClientError::Connect { .. })
        ));
        assert!(authority("").is_err());
    }

    #[test]
    fn channel_names_are_escaped() {
        assert_eq!(query_escape("arena-1_b.c~"), "arena-1_b.c~");
        assert_eq!(query_escape("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
