//! `POST /v1/channels/{channel}/call`: a server-side system calls a channel's game and
//! gets its reply over plain HTTP. The front checks the server key, reads the body
//! (MessagePack, or JSON it turns into MessagePack), sends it to the channel's back
//! and answers with the game's reply in the caller's format, or an error status.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::debug;

use centrum_net::{ServerStream, Shutdown};
use centrum_protocol::{CallOutcome, LinkReply};

use crate::http::{self, Request, error_body, respond, respond_error};
use crate::hub::{CallRefusal, Hub};

/// What a link frame carrying a call holds besides the call's data (config/validate.rs
/// keeps `calls.max_body_bytes` within the frame by as much).
const CALL_FRAME_OVERHEAD: usize = 64;

/// The body formats a caller may use; the reply comes in the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    MessagePack,
    Json,
}

/// A finished response: status, content type and body.
struct Response {
    status: u16,
    json: bool,
    body: Vec<u8>,
}

impl Response {
    fn error(status: u16, message: impl AsRef<str>) -> Self {
        Self {
            status,
            json: true,
            body: error_body(message.as_ref()),
        }
    }
}

/// Serves calls on one connection, one request after another while it is kept alive.
pub(crate) async fn serve(
    mut stream: ServerStream,
    first: Request,
    mut buf: BytesMut,
    hub: Arc<Hub>,
    shutdown: Shutdown,
) {
    let idle = hub.config.limits.handshake_timeout();
    let mut request = first;
    loop {
        let keep_alive = request.keep_alive();
        let started = Instant::now();
        let (response, body_read) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = handle(&mut stream, &request, &mut buf, &hub) => r,
        };
        let Response { status, json, body } = response;
        hub.metrics.calls.fetch_add(1, Relaxed);
        if status != 200 {
            hub.metrics.calls_failed.fetch_add(1, Relaxed);
        }
        debug!(path = %request.path, status, took_ms = started.elapsed().as_secs_f64() * 1e3, "call");
        // A body left unread would be taken for the next request: close instead.
        let keep_alive = keep_alive && body_read;
        let content_type = if json {
            "application/json"
        } else {
            "application/msgpack"
        };
        if respond(&mut stream, status, content_type, &body, keep_alive)
            .await
            .is_err()
        {
            return;
        }
        if !keep_alive {
            if !body_read {
                http::drain(&mut stream).await;
            }
            return;
        }
        request = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = tokio::time::timeout(idle, http::read_head(&mut stream, &mut buf)) => match next {
                Ok(Ok(next)) => next,
                Ok(Err(http::HeadError::Bad(status, message))) => {
                    respond_error(&mut stream, status, &message, false).await;
                    http::drain(&mut stream).await;
                    return;
                }
                Ok(Err(http::HeadError::Gone)) | Err(_) => return,
            },
        };
    }
}

/// One request to its response. The flag says whether its body was read whole.
async fn handle(
    stream: &mut ServerStream,
    request: &Request,
    buf: &mut BytesMut,
    hub: &Hub,
) -> (Response, bool) {
    let has_body = request
        .header("content-length")
        .is_some_and(|l| l.trim() != "0")
        || request.header("transfer-encoding").is_some();
    let refuse = |status, message: String| (Response::error(status, message), !has_body);
    let Some(channel) = request
        .path
        .strip_prefix("/v1/channels/")
        .and_then(|rest| rest.strip_suffix("/call"))
        .filter(|c| !c.is_empty() && !c.contains('/'))
    else {
        return refuse(
            404,
            format!(
                "no route {:?}; a front serves POST /v1/channels/{{channel}}/call",
                request.path
            ),
        );
    };
    if request.method != "POST" {
        return refuse(
            405,
            format!("{} {}: use POST", request.method, request.path),
        );
    }
    let calls = &hub.config.calls;
    let Some(key) = &calls.server_key else {
        return refuse(
            403,
            "calls are off: set [calls] server_key in the cluster config".into(),
        );
    };
    let presented = request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if !presented.is_some_and(|p| key.matches(p)) {
        return refuse(
            401,
            "a call needs the server key: Authorization: Bearer <calls.server_key>".into(),
        );
    }
    let format = match request
        .header("content-type")
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .as_deref()
    {
        Some("application/json") => Format::Json,
        Some("application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack") => {
            Format::MessagePack
        }
        _ => {
            return refuse(
                415,
                "set Content-Type to application/json or application/msgpack".into(),
            );
        }
    };
    if request.header("transfer-encoding").is_some() {
        return refuse(411, "send the body with a Content-Length".into());
    }
    let Some(length) = request
        .header("content-length")
        .map(|l| l.trim().parse::<usize>())
    else {
        return refuse(411, "a call needs a Content-Length".into());
    };
    let Ok(length) = length else {
        return refuse(400, "Content-Length is not a number".into());
    };
    let limit = calls.max_body_bytes as usize;
    if length > limit {
        return refuse(
            413,
            format!("a call body may be at most {limit} bytes; this one has {length}"),
        );
    }
    // A client that waits to be told to go on before it sends its body (curl does for
    // large ones).
    if request
        .header("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        && continue_100(stream).await.is_err()
    {
        return (Response::error(400, "the connection failed"), false);
    }
    let body = match read_body(stream, buf, length, hub).await {
        Ok(body) => body,
        Err(()) => {
            return (
                Response::error(408, "the body did not arrive in time"),
                false,
            );
        }
    };
    let response = call_channel(hub, channel, format, body).await;
    (response, true)
}

/// `100 Continue`, flushed: the caller waits for it before it sends the body.
async fn continue_100(stream: &mut ServerStream) -> std::io::Result<()> {
    stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    stream.flush().await
}

/// The body of `length` bytes: what `buf` holds already, then reads.
async fn read_body(
    stream: &mut ServerStream,
    buf: &mut BytesMut,
    length: usize,
    hub: &Hub,
) -> Result<Bytes, ()> {
    let deadline = hub.config.limits.handshake_timeout();
    let read = async {
        while buf.len() < length {
            buf.reserve(length - buf.len());
            match stream.read_buf(buf).await {
                Ok(0) | Err(_) => return Err(()),
                Ok(_) => {}
            }
        }
        Ok(buf.split_to(length).freeze())
    };
    tokio::time::timeout(deadline, read).await.map_err(|_| ())?
}

/// Sends the call to the channel's back and turns its answer into a response.
async fn call_channel(hub: &Hub, channel: &str, format: Format, body: Bytes) -> Response {
    let data = match format {
        Format::MessagePack => body,
        Format::Json => match json_to_msgpack(&body) {
            Ok(data) => data,
            Err(e) => return Response::error(400, format!("the body is not JSON: {e}")),
        },
    };
    // JSON can grow as MessagePack (a short float becomes 9 bytes); the call must still
    // fit one link frame, or it would break the link of every client of that back.
    let room = (hub.config.limits.max_frame_bytes as usize).saturating_sub(CALL_FRAME_OVERHEAD);
    if data.len() > room {
        return Response::error(
            413,
            format!(
                "the call is {} bytes as MessagePack, over the {room} bytes a call may be",
                data.len()
            ),
        );
    }
    let (ticket, reply) = match hub.call(channel, data) {
        Ok(pending) => pending,
        Err(CallRefusal::UnknownChannel) => {
            return Response::error(404, format!("unknown channel {channel:?}"));
        }
        Err(CallRefusal::Unavailable) => {
            return Response::error(503, format!("channel {channel:?} is unavailable"));
        }
        Err(CallRefusal::Busy(limit)) => {
            return Response::error(
                503,
                format!("this front has {limit} calls waiting for their answer; try again"),
            );
        }
    };
    let timeout = hub.config.calls.timeout();
    let reply = match tokio::time::timeout(timeout, reply).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(_)) => {
            return Response::error(
                503,
                format!("the link to channel {channel:?} dropped before it answered"),
            );
        }
        Err(_) => {
            hub.metrics.calls_timed_out.fetch_add(1, Relaxed);
            return Response::error(
                504,
                format!(
                    "channel {channel:?} did not answer within {} ms",
                    timeout.as_millis()
                ),
            );
        }
    };
    drop(ticket);
    from_reply(reply, format)
}

/// The game's answer as an HTTP response (PROTOCOL.md §14.5 lists the outcomes).
fn from_reply(reply: LinkReply, format: Format) -> Response {
    let status = match reply.outcome {
        CallOutcome::Ok => 200,
        CallOutcome::BadCall => 400,
        CallOutcome::Refused => 422,
        CallOutcome::NoCalls => 501,
        CallOutcome::Overloaded => 503,
        CallOutcome::Failed => 500,
    };
    if status != 200 {
        return Response::error(status, reply.message);
    }
    match format {
        Format::MessagePack => Response {
            status,
            json: false,
            body: reply.data.to_vec(),
        },
        Format::Json => match msgpack_to_json(&reply.data) {
            Ok(body) => Response {
                status,
                json: true,
                body,
            },
            Err(e) => Response::error(
                500,
                format!("the game's reply has no JSON form ({e}); call with application/msgpack"),
            ),
        },
    }
}

fn json_to_msgpack(body: &[u8]) -> Result<Bytes, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    rmp_serde::to_vec_named(&value)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

fn msgpack_to_json(data: &[u8]) -> Result<Vec<u8>, String> {
    let value: serde_json::Value = rmp_serde::from_slice(data).map_err(|e| e.to_string())?;
    serde_json::to_vec(&value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_travels_as_msgpack_maps_and_comes_back() {
        let data = json_to_msgpack(br#"{"Kick": {"player": 3, "why": "afk"}}"#).unwrap();
        #[derive(serde::Deserialize, Debug, PartialEq)]
        enum Call {
            Kick { player: u32, why: String },
        }
        assert_eq!(
            rmp_serde::from_slice::<Call>(&data).unwrap(),
            Call::Kick {
                player: 3,
                why: "afk".into()
            }
        );
        let reply =
            rmp_serde::to_vec_named(&serde_json::json!({"kicked": true, "left": [1, 2]})).unwrap();
        assert_eq!(
            msgpack_to_json(&reply).unwrap(),
            br#"{"kicked":true,"left":[1,2]}"#
        );
        assert!(json_to_msgpack(b"{not json").is_err());
    }

    #[test]
    fn outcomes_map_to_statuses() {
        let reply = |outcome| LinkReply {
            call: 1,
            outcome,
            message: "why".into(),
            data: Bytes::from_static(b"\x2a"),
        };
        for (outcome, status) in [
            (CallOutcome::Ok, 200),
            (CallOutcome::BadCall, 400),
            (CallOutcome::Refused, 422),
            (CallOutcome::NoCalls, 501),
            (CallOutcome::Overloaded, 503),
            (CallOutcome::Failed, 500),
        ] {
            assert_eq!(from_reply(reply(outcome), Format::Json).status, status);
        }
        let ok = from_reply(reply(CallOutcome::Ok), Format::MessagePack);
        assert_eq!((ok.json, ok.body), (false, vec![0x2a]));
        assert_eq!(from_reply(reply(CallOutcome::Ok), Format::Json).body, b"42");
    }
}
