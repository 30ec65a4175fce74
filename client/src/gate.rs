//! The master's HTTP API as a client uses it: one HTTP/1.1 request per question (over
//! TLS for an `https://` master): the gate (`GET /gate?channel=C`, the front a client
//! should connect to) and the matchmaker's requests. No connection pool: a client asks
//! once, then talks to the front.

use std::fmt::Write as _;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::debug;

use crate::{BoxError, ClientError, tls};

/// A gate answer or a seat is a short JSON object; anything longer is not one.
pub(crate) const MAX_REPLY_BYTES: usize = 64 * 1024;

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

/// Asks the gate at `master_http` (`host:port`, `http://host:port` or
/// `https://host:port`) which front serves `channel`, and returns that front's
/// WebSocket URL. Over https, `extra_root_pem` is trusted besides the usual roots.
pub(crate) async fn front_url(
    master_http: &str,
    channel: &str,
    extra_root_pem: Option<&str>,
) -> Result<String, ClientError> {
    let path = format!("/gate?channel={}", query_escape(channel));
    let (status, body) = request(
        master_http,
        "GET",
        &path,
        None,
        extra_root_pem,
        MAX_REPLY_BYTES,
    )
    .await?;
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

/// One request to the master at `master_http` (`host:port`, `http://host:port` or
/// `https://host:port`): `method` on `path`, with a JSON `body` if any. Returns the
/// status and the body (at most `max_reply` bytes). Over https, `extra_root_pem` is
/// trusted besides the usual roots.
pub(crate) async fn request(
    master_http: &str,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    extra_root_pem: Option<&str>,
    max_reply: usize,
) -> Result<(u16, Bytes), ClientError> {
    let (authority, https) = authority(master_http)?;
    let scheme = if https { "https" } else { "http" };
    let url = format!("{scheme}://{authority}{path}");
    let connect_error = |source: BoxError| ClientError::Connect {
        url: url.clone(),
        source,
    };
    let stream = TcpStream::connect(authority)
        .await
        .map_err(|e| connect_error(e.into()))?;
    let _ = stream.set_nodelay(true);
    let (status, body) = if https {
        let config = tls::client_config(extra_root_pem).map_err(connect_error)?;
        let name = server_name(authority).map_err(connect_error)?;
        let stream = TlsConnector::from(config)
            .connect(name, stream)
            .await
            .map_err(|e| connect_error(e.into()))?;
        ask(stream, authority, method, path, body, max_reply).await
    } else {
        ask(stream, authority, method, path, body, max_reply).await
    }
    .map_err(connect_error)?;
    debug!(%url, status, "master answered");
    Ok((status, body))
}

/// One request on a connected stream, plain or TLS: the status and the body.
async fn ask<S>(
    stream: S,
    authority: &str,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    max_reply: usize,
) -> Result<(u16, Bytes), BoxError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, authority)
        .header(header::CONNECTION, "close")
        .header(header::ACCEPT, "application/json");
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;

    let exchange = async {
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), max_reply)
            .collect()
            .await?
            .to_bytes();
        Ok::<_, BoxError>((status, body))
    };
    // The connection future drives the socket; polling it beside the exchange keeps
    // the request inside this call instead of a spawned task that outlives it. It may
    // finish first (the whole answer read, `connection: close`), leaving the body to
    // be taken from its buffer.
    tokio::pin!(connection, exchange);
    tokio::select! {
        exchange = &mut exchange => exchange,
        ended = &mut connection => match ended {
            Ok(()) => exchange.await,
            Err(e) => Err(e.into()),
        },
    }
}

/// `host:port` out of `host:port`, `http://host:port[/]` or `https://host:port[/]`,
/// and whether it is https.
fn authority(master_http: &str) -> Result<(&str, bool), ClientError> {
    let trimmed = master_http.trim();
    let (authority, https) = if tls::has_scheme(trimmed, "https://") {
        (&trimmed["https://".len()..], true)
    } else if tls::has_scheme(trimmed, "http://") {
        (&trimmed["http://".len()..], false)
    } else {
        (trimmed, false)
    };
    let authority = authority.trim_end_matches('/');
    if authority.is_empty() || authority.contains("://") || authority.contains('/') {
        return Err(ClientError::Connect {
            url: master_http.to_owned(),
            source: "the gate address must be host:port, http://host:port or https://host:port"
                .into(),
        });
    }
    Ok((authority, https))
}

/// The name a certificate must bear for `host:port` (`[v6]:port` too): a DNS name
/// or an IP address.
fn server_name(authority: &str) -> Result<ServerName<'static>, BoxError> {
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(ServerName::try_from(host.to_owned())?)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub(crate) fn query_escape(s: &str) -> String {
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
        assert_eq!(
            authority("127.0.0.1:7300").unwrap(),
            ("127.0.0.1:7300", false)
        );
        assert_eq!(
            authority("http://127.0.0.1:7300/").unwrap(),
            ("127.0.0.1:7300", false)
        );
        assert_eq!(
            authority("HTTPS://play.example.com:443").unwrap(),
            ("play.example.com:443", true)
        );
        assert!(matches!(
            authority("ftp://127.0.0.1:7300"),
            Err(ClientError::Connect { .. })
        ));
        assert!(authority("").is_err());
        assert!(authority("https://").is_err());
    }

    #[test]
    fn server_names_of_hosts_and_addresses() {
        let name = |a| server_name(a).unwrap().to_str().into_owned();
        assert_eq!(name("play.example.com:443"), "play.example.com");
        assert_eq!(name("127.0.0.1:7300"), "127.0.0.1");
        assert_eq!(name("[::1]:7300"), "::1");
        assert_eq!(name("localhost"), "localhost");
        assert!(server_name("bad name:1").is_err());
    }

    #[test]
    fn channel_names_are_escaped() {
        assert_eq!(query_escape("arena-1_b.c~"), "arena-1_b.c~");
        assert_eq!(query_escape("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
