//! A client's handshake once its WebSocket is upgraded: its Hello, read by the
//! connection's deadline and checked (the first message, binary, MessagePack, the
//! protocol version), then the session it gets (a new one, or the one its resume token
//! names) and the Welcome that tells it so.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tokio::io::AsyncReadExt;
use tracing::debug;

use centrum_net::ServerStream;
use centrum_protocol::{
    ClientMsg, FrontMsg, Hello, LinkResume, PROTOCOL_VERSION, SessionKey, Welcome, decode,
};

use crate::close::{End, binary_only, ws_code};
use crate::hub::Hub;
use crate::resume::{ResumeToken, new_secret};
use crate::ws::{FrameReader, WsEvent};

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// A client that said a valid Hello, and what it is told.
pub(crate) struct Welcomed {
    /// The front's number for the connection.
    pub(crate) key: SessionKey,
    /// The membership claim of the resume token it presented, if any: it goes with
    /// every join of this connection.
    pub(crate) resume: Option<LinkResume>,
    /// The connection's own resume secret, told to every back it joins.
    pub(crate) secret: u64,
    pub(crate) welcome: FrontMsg,
}

/// Reads the client's first message by `deadline` and checks that it is a Hello of
/// this protocol version.
///
/// # Errors
/// `Some(End)` to tell the client why; `None` when there is no one to tell (the
/// deadline passed, or the client went away).
pub(crate) async fn read_hello(
    stream: &mut ServerStream,
    reader: &mut FrameReader,
    deadline: tokio::time::Instant,
    max_message: usize,
) -> Result<Hello, Option<End>> {
    let first = async {
        loop {
            match reader.next_event() {
                Ok(Some(event)) => return Some(Ok(event)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            match stream.read_buf(&mut reader.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    };
    let Ok(Some(first)) = tokio::time::timeout_at(deadline, first).await else {
        return Err(None);
    };
    let hello = match first {
        Ok(WsEvent::Binary(bytes)) => match decode::<ClientMsg>(&bytes, max_message) {
            Ok(ClientMsg::Hello(h)) => h,
            Ok(other) => {
                return Err(Some(End::Close {
                    code: 1002,
                    error: Some((
                        "hello_required",
                        format!("the first message must be Hello, not {}", other.name()),
                    )),
                }));
            }
            Err(e) => {
                return Err(Some(End::Close {
                    code: 1007,
                    error: Some(("malformed", e.to_string())),
                }));
            }
        },
        Ok(WsEvent::Text) => return Err(Some(binary_only())),
        Ok(_) => {
            return Err(Some(End::Close {
                code: 1002,
                error: Some(("hello_required", "the first message must be Hello".into())),
            }));
        }
        Err(e) => {
            return Err(Some(End::Close {
                code: e.close_code(),
                error: Some((ws_code(&e), e.to_string())),
            }));
        }
    };
    if hello.version != PROTOCOL_VERSION {
        let message = format!(
            "protocol version {} is not supported; this server speaks {PROTOCOL_VERSION}",
            hello.version
        );
        return Err(Some(End::Close {
            code: 1002,
            error: Some(("version", message)),
        }));
    }
    Ok(hello)
}

/// The session `hello` gets. A well-formed token keeps its session id, and its claim
/// goes with every join of this connection: the back holding a membership decides
/// whether it resumes. Anything else starts a new session, as a missing token does.
pub(crate) fn welcome(hub: &Arc<Hub>, hello: &Hello) -> Welcomed {
    let key: SessionKey = NEXT_SESSION.fetch_add(1, Relaxed);
    let resumed = hello
        .resume
        .as_deref()
        .and_then(ResumeToken::parse)
        // A token naming a front this cluster does not have is not one of its tokens.
        .filter(|token| hub.config.front(&token.claim.front).is_some());
    if resumed.is_some() {
        hub.metrics.resume_hellos.fetch_add(1, Relaxed);
    }
    let session = match &resumed {
        Some(token) => token.session_id.clone(),
        None => format!("{}-{key}", hub.id),
    };
    tracing::Span::current().record("session", session.as_str());
    let secret = new_secret();
    let token = ResumeToken {
        session_id: session.clone(),
        claim: LinkResume {
            front: hub.id.clone(),
            session: key,
            secret,
        },
    };
    let welcome = FrontMsg::Welcome(Welcome {
        version: PROTOCOL_VERSION,
        session,
        resume: token.encode(),
        front: hub.id.clone(),
        resumed: resumed.is_some(),
    });
    debug!(
        resumed = resumed.is_some(),
        asked_resume = hello.resume.is_some(),
        "welcome"
    );
    Welcomed {
        key,
        resume: resumed.map(|t| t.claim),
        secret,
        welcome,
    }
}
