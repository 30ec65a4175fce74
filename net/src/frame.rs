//! Length-prefixed frames (4-byte big-endian length, then one MessagePack message)
//! over any byte stream: TCP between processes, an in-memory duplex within one.
//! The size limit is applied by the codec before a frame is buffered whole.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::LengthDelimitedCodec;

use centrum_protocol::{DecodeError, decode, encode};

/// A framed link over a stream.
pub type Framed<S> = tokio_util::codec::Framed<S, LengthDelimitedCodec>;

/// A link failed: I/O, an oversized frame, a frame that is not a valid message, or a
/// peer that fell silent.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("link i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame from peer: {0}")]
    Decode(#[from] DecodeError),
    /// Nothing arrived from the peer, not even a heartbeat, for this long.
    #[error("the peer sent nothing for {} ms", .0.as_millis())]
    Silent(std::time::Duration),
}

/// Why a link between processes (front ↔ back, node → master) ended other than by a
/// clean close: its transport failed, or the peer broke the protocol (PROTOCOL.md
/// sections 14 and 15). Either way the link is closed; only that link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The connection or its framing failed, or the peer fell silent.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A frame that is not a message of the link protocol.
    #[error("bad message from peer: {0}")]
    Decode(#[from] DecodeError),
    /// A channel index the link's welcome did not list.
    #[error("no channel with index {0}")]
    UnknownChannel(u32),
    /// A message out of place: the handshake's reply was something else.
    #[error("expected {expected}, got {got}")]
    Unexpected {
        /// What the protocol says comes now.
        expected: &'static str,
        /// The message's name.
        got: &'static str,
    },
    /// A handshake message on a link that is already open.
    #[error("a second {0} on a link")]
    Repeated(&'static str),
    /// The peer sends more than its channel's queue can take, even of the messages
    /// that are queued past the capacity (leaves, aways, resyncs).
    #[error("the front sends more leaves than its channel can queue")]
    Overloaded,
    /// The peer refused the link, with its reason.
    #[error("refused: {0}")]
    Refused(String),
    /// The peer did not prove it holds the cluster secret.
    #[error(
        "{0} did not prove it holds the cluster secret (another cluster, or a wrong secret on one side)"
    )]
    Unproven(String),
    /// The peer did not answer the handshake in time.
    #[error("no {0} within the handshake timeout")]
    HandshakeTimeout(&'static str),
}

/// Wraps `stream` in the length-prefixed codec with a maximum frame size.
pub fn framed<S: AsyncRead + AsyncWrite>(stream: S, max_frame_bytes: u32) -> Framed<S> {
    let codec = LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(max_frame_bytes as usize)
        .new_codec();
    tokio_util::codec::Framed::new(stream, codec)
}

/// Encodes and sends one message, flushing it.
///
/// # Errors
/// [`FrameError::Io`] when the link is broken or the message exceeds the frame limit.
pub async fn send<S, T>(link: &mut Framed<S>, msg: &T) -> Result<(), FrameError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: Serialize,
{
    send_bytes(link, Bytes::from(encode(msg))).await
}

/// Sends one already encoded message, flushing it.
///
/// # Errors
/// [`FrameError::Io`] when the link is broken or the message exceeds the frame limit.
pub async fn send_bytes<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut Framed<S>,
    frame: Bytes,
) -> Result<(), FrameError> {
    link.send(frame).await?;
    Ok(())
}

/// Receives and decodes one message; `None` when the peer closed the link cleanly.
///
/// # Errors
/// [`FrameError`] on I/O failure, an oversized frame, or an undecodable message.
pub async fn recv<S, T>(link: &mut Framed<S>) -> Result<Option<T>, FrameError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: DeserializeOwned,
{
    match link.next().await {
        None => Ok(None),
        Some(frame) => {
            let frame = frame?;
            // The codec already enforced the frame limit; this limit is never hit.
            Ok(Some(decode(&frame, usize::MAX)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use centrum_protocol::{ClientMsg, Ping};
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn frames_round_trip_and_oversized_is_refused() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (mut a, mut b) = (framed(a, 64), framed(b, 64));
        send(&mut a, &ClientMsg::Ping(Ping { nonce: 5 }))
            .await
            .unwrap();
        let got: ClientMsg = recv(&mut b).await.unwrap().unwrap();
        assert_eq!(got, ClientMsg::Ping(Ping { nonce: 5 }));

        // A peer announcing a 1000-byte frame is refused before it is read.
        let (raw, b) = tokio::io::duplex(1 << 16);
        let mut b = framed(b, 64);
        let mut raw = raw;
        raw.write_all(&1000u32.to_be_bytes()).await.unwrap();
        let err = recv::<_, ClientMsg>(&mut b).await.unwrap_err();
        assert!(matches!(err, FrameError::Io(_)), "{err}");
        drop(raw);

        // Garbage inside a frame is a decode error, not a panic.
        let (raw, b) = tokio::io::duplex(1 << 16);
        let mut raw = raw;
        let mut b = framed(b, 64);
        raw.write_all(&[0, 0, 0, 2, 0xc1, 0xc1]).await.unwrap();
        assert!(matches!(
            recv::<_, ClientMsg>(&mut b).await,
            Err(FrameError::Decode(_))
        ));
    }
}
