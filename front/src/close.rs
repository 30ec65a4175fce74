//! How a client connection ends: the reasons ([`End`]), and the `Error` message and
//! close frame that tell the client why, written best effort.

use tokio::io::AsyncWriteExt;

use centrum_net::ServerStream;
use centrum_protocol::{ErrorMsg, FrontMsg, encode};

use crate::ws::{self, MAX_HEADER};

/// Why a connection ends; anything but `Gone` is told to the client before the close.
pub(crate) enum End {
    /// The peer closed or the socket failed: nothing more to say.
    Gone,
    /// The client sent a close frame: it meant to go, so it leaves its channels rather
    /// than be held for a resume. Answered with close 1000.
    Goodbye,
    /// Killed in the middle of a write: the stream may end inside a frame, so nothing
    /// more is written and the connection is reset, which also frees the bytes the
    /// client never read.
    Abort,
    /// Nothing arrived from the client (not even a pong) for `limits.client_timeout_ms`,
    /// or a write could not finish within it: a drop, held for a resume like any other,
    /// closed with 1001 and reason `timeout`.
    TimedOut,
    /// Close with a WebSocket close code, after an optional Error message.
    Close {
        code: u16,
        error: Option<(&'static str, String)>,
    },
}

/// A text message: the protocol is binary MessagePack.
pub(crate) fn binary_only() -> End {
    End::Close {
        code: 1003,
        error: Some((
            "binary_only",
            "messages must be binary MessagePack, not text".into(),
        )),
    }
}

/// The `Error` code for a WebSocket framing error.
pub(crate) fn ws_code(e: &ws::WsError) -> &'static str {
    match e {
        ws::WsError::TooLarge { .. } => "too_large",
        ws::WsError::Protocol(_) => "malformed",
        ws::WsError::TooManyFragments { .. } => "too_many_fragments",
    }
}

/// Says why (best effort) and closes.
pub(crate) async fn finish(stream: &mut ServerStream, end: End) {
    let timed_out = matches!(end, End::TimedOut);
    let (code, error) = match end {
        End::Gone => return,
        End::Abort => {
            let _ = stream.tcp().set_zero_linger();
            return;
        }
        End::Goodbye => (1000, None),
        End::TimedOut => (1001, None),
        End::Close { code, error } => (code, error),
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
    if code == 1008 && error.is_none() {
        reason = "slow client";
    }
    if timed_out {
        reason = "timeout";
    }
    out.extend_from_slice(&ws::close_frame(code, reason));
    // The peer may be gone or stuck; neither may hold the task. Over TLS, the
    // shutdown's close_notify is a write too.
    let limit = std::time::Duration::from_secs(1);
    let write = async {
        stream.write_all(&out).await?;
        stream.flush().await
    };
    let _ = tokio::time::timeout(limit, write).await;
    let _ = tokio::time::timeout(limit, stream.shutdown()).await;
}
