//! WebSocket framing (RFC 6455) on the raw stream after the handshake. Reading:
//! masked client frames, fragments reassembled up to the message limit, control
//! frames surfaced. Writing: headers only; payloads stay in shared `Bytes`, so a
//! patch is never copied or re-framed per client.

use bytes::{Buf, Bytes, BytesMut};

pub(crate) const OP_CONTINUATION: u8 = 0x0;
pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xA;

/// The largest header a server frame needs: 2 bytes plus an 8-byte length.
pub(crate) const MAX_HEADER: usize = 10;

/// One complete message or control frame from the client.
#[derive(Debug, PartialEq)]
pub(crate) enum WsEvent {
    Binary(Bytes),
    Text,
    Ping(Bytes),
    Pong,
    Close,
}

/// The client broke the framing rules; the connection is closed with `close_code()`.
#[derive(Debug, PartialEq, thiserror::Error)]
pub(crate) enum WsError {
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: u64, limit: usize },
}

impl WsError {
    pub(crate) fn close_code(&self) -> u16 {
        match self {
            WsError::Protocol(_) => 1002,
            WsError::TooLarge { .. } => 1009,
        }
    }
}

/// Incremental parser over bytes read from the socket.
#[derive(Debug)]
pub(crate) struct FrameReader {
    pub(crate) buf: BytesMut,
    max_message: usize,
    /// A fragmented message being reassembled: its opcode and the bytes so far.
    partial: Option<(u8, BytesMut)>,
}

impl FrameReader {
    pub(crate) fn new(max_message: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(512),
            max_message,
            partial: None,
        }
    }

    /// The next complete event in the buffer, `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// [`WsError`] when the client violates the framing rules or the size limit; the
    /// length is checked from the header, before the payload is buffered.
    pub(crate) fn next_event(&mut self) -> Result<Option<WsEvent>, WsError> {
        loop {
            let Some((fin, opcode, header_len, len, mask)) = self.header()? else {
                return Ok(None);
            };
            let total = header_len + len as usize;
            if self.buf.len() < total {
                self.buf.reserve(total - self.buf.len());
                return Ok(None);
            }
            self.buf.advance(header_len);
            let mut payload = self.buf.split_to(len as usize);
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i & 3];
            }
            match opcode {
                OP_CLOSE => return Ok(Some(WsEvent::Close)),
                OP_PING => return Ok(Some(WsEvent::Ping(payload.freeze()))),
                OP_PONG => return Ok(Some(WsEvent::Pong)),
                OP_TEXT | OP_BINARY if self.partial.is_some() => {
                    return Err(WsError::Protocol("new message inside a fragmented one"));
                }
                OP_TEXT | OP_BINARY if fin => return Ok(Some(complete(opcode, payload))),
                OP_TEXT | OP_BINARY => self.partial = Some((opcode, payload)),
                OP_CONTINUATION => {
                    let Some((first, mut so_far)) = self.partial.take() else {
                        return Err(WsError::Protocol("continuation without a message"));
                    };
                    if so_far.len() + payload.len() > self.max_message {
                        let size = (so_far.len() + payload.len()) as u64;
                        return Err(WsError::TooLarge {
                            size,
                            limit: self.max_message,
                        });
                    }
                    so_far.extend_from_slice(&payload);
                    if fin {
                        return Ok(Some(complete(first, so_far)));
                    }
                    self.partial = Some((first, so_far));
                }
                _ => return Err(WsError::Protocol("reserved opcode")),
            }
        }
    }

    /// Parses the header at the front of the buffer, or None when it is not all there yet.
    fn header(&self) -> Result<Option<Header>, WsError> {
        let b = &self.buf[..];
        if b.len() < 2 {
            return Ok(None);
        }
        let fin = b[0] & 0x80 != 0;
        if b[0] & 0x70 != 0 {
            return Err(WsError::Protocol(
                "reserved bits set (no extension was negotiated)",
            ));
        }
        let opcode = b[0] & 0x0F;
        if b[1] & 0x80 == 0 {
            return Err(WsError::Protocol("client frames must be masked"));
        }
        let (len, at) = match b[1] & 0x7F {
            126 if b.len() < 4 => return Ok(None),
            126 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() < 10 => return Ok(None),
            127 => (
                u64::from_be_bytes([b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9]]),
                10,
            ),
            n => (u64::from(n), 2),
        };
        if opcode >= OP_CLOSE && (len > 125 || !fin) {
            return Err(WsError::Protocol(
                "control frames must be short and unfragmented",
            ));
        }
        if len > self.max_message as u64 {
            return Err(WsError::TooLarge {
                size: len,
                limit: self.max_message,
            });
        }
        if b.len() < at + 4 {
            return Ok(None);
        }
        let mask = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        Ok(Some((fin, opcode, at + 4, len, mask)))
    }
}

/// A parsed frame header: (fin, opcode, header length, payload length, mask).
type Header = (bool, u8, usize, u64, [u8; 4]);

fn complete(opcode: u8, payload: BytesMut) -> WsEvent {
    if opcode == OP_TEXT {
        WsEvent::Text
    } else {
        WsEvent::Binary(payload.freeze())
    }
}

/// Writes the header of an unmasked, final server frame into `out`; returns its length.
pub(crate) fn header(opcode: u8, payload_len: usize, out: &mut [u8; MAX_HEADER]) -> usize {
    out[0] = 0x80 | opcode;
    if payload_len < 126 {
        out[1] = payload_len as u8;
        2
    } else if payload_len <= usize::from(u16::MAX) {
        out[1] = 126;
        out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        10
    }
}

/// A complete close frame with `code` and a short reason.
pub(crate) fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let reason = &reason.as_bytes()[..reason.len().min(120)];
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    let mut head = [0; MAX_HEADER];
    let n = header(OP_CLOSE, payload.len(), &mut head);
    let mut frame = head[..n].to_vec();
    frame.extend_from_slice(&payload);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
        if payload.len() < 126 {
            f.push(0x80 | payload.len() as u8);
        } else {
            f.push(0x80 | 126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        f
    }

    #[test]
    fn parses_split_fragmented_and_control_frames() {
        let mut r = FrameReader::new(1000);
        let frame = masked(OP_BINARY, true, &[9; 300]);
        r.buf.extend_from_slice(&frame[..3]);
        assert_eq!(r.next_event(), Ok(None));
        r.buf.extend_from_slice(&frame[3..]);
        assert_eq!(
            r.next_event(),
            Ok(Some(WsEvent::Binary(Bytes::from(vec![9; 300]))))
        );
        r.buf.extend_from_slice(&masked(OP_BINARY, false, b"ab"));
        r.buf.extend_from_slice(&masked(OP_PING, true, b"p"));
        r.buf
            .extend_from_slice(&masked(OP_CONTINUATION, true, b"cd"));
        assert_eq!(
            r.next_event(),
            Ok(Some(WsEvent::Ping(Bytes::from_static(b"p"))))
        );
        assert_eq!(
            r.next_event(),
            Ok(Some(WsEvent::Binary(Bytes::from_static(b"abcd"))))
        );
        r.buf.extend_from_slice(&masked(OP_TEXT, true, b"hi"));
        assert_eq!(r.next_event(), Ok(Some(WsEvent::Text)));
    }

    #[test]
    fn refuses_oversized_unmasked_and_stray_frames() {
        let mut r = FrameReader::new(100);
        r.buf
            .extend_from_slice(&masked(OP_BINARY, true, &[0; 101])[..4]);
        assert_eq!(
            r.next_event(),
            Err(WsError::TooLarge {
                size: 101,
                limit: 100
            })
        );
        let mut r = FrameReader::new(100);
        r.buf.extend_from_slice(&[0x82, 0x01, 0x00]);
        assert_eq!(
            r.next_event(),
            Err(WsError::Protocol("client frames must be masked"))
        );
        let mut r = FrameReader::new(100);
        r.buf
            .extend_from_slice(&masked(OP_CONTINUATION, true, b"x"));
        assert_eq!(
            r.next_event(),
            Err(WsError::Protocol("continuation without a message"))
        );
        let mut r = FrameReader::new(100);
        r.buf.extend_from_slice(&masked(OP_BINARY, false, &[0; 60]));
        r.buf
            .extend_from_slice(&masked(OP_CONTINUATION, true, &[0; 60]));
        assert_eq!(
            r.next_event(),
            Err(WsError::TooLarge {
                size: 120,
                limit: 100
            })
        );
    }

    #[test]
    fn headers_use_the_shortest_length() {
        let mut h = [0; MAX_HEADER];
        assert_eq!(header(OP_BINARY, 125, &mut h), 2);
        assert_eq!(&h[..2], &[0x82, 125]);
        assert_eq!(header(OP_BINARY, 126, &mut h), 4);
        assert_eq!(&h[..4], &[0x82, 126, 0, 126]);
        assert_eq!(header(OP_BINARY, 70_000, &mut h), 10);
        assert_eq!(&h[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }
}
