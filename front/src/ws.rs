//! WebSocket framing (RFC 6455) on the raw stream after the handshake. Reading:
//! masked client frames, each checked against the client's budget, fragments
//! reassembled up to the message and fragment limits, control frames surfaced. Writing: headers only; payloads stay in shared `Bytes`, so a
//! patch is never copied or re-framed per client.

use bytes::{Buf, Bytes, BytesMut};

use crate::rate::Budget;

pub(crate) const OP_CONTINUATION: u8 = 0x0;
pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xA;

/// The largest header a server frame needs: 2 bytes plus an 8-byte length.
pub(crate) const MAX_HEADER: usize = 10;

/// A message may arrive in at most this many frames; more is closed
/// (`too_many_fragments`), so that a stream of empty continuations cannot go on forever.
pub(crate) const MAX_FRAGMENTS: u32 = 64;

/// The read buffer's size for the handshake. Afterwards a buffer exists only while a
/// message is arriving: once every complete frame is taken from it, it is released
/// (the socket's reads make a new one), so that an idle connection holds none.
const INITIAL_BUFFER: usize = 512;

/// One complete message or control frame from the client.
#[derive(Debug, PartialEq)]
pub(crate) enum WsEvent {
    Binary(Bytes),
    Text,
    Ping(Bytes),
    Pong,
    Close,
    /// A frame over the client's budget (`rate`), dropped unread; if it was part of a
    /// message, the whole message is dropped.
    Dropped,
}

/// The client broke the framing rules; the connection is closed with `close_code()`.
#[derive(Debug, PartialEq, thiserror::Error)]
pub(crate) enum WsError {
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: u64, limit: usize },
    #[error("a message may have at most {limit} fragments")]
    TooManyFragments { limit: u32 },
}

impl WsError {
    pub(crate) fn close_code(&self) -> u16 {
        match self {
            WsError::Protocol(_) => 1002,
            WsError::TooLarge { .. } => 1009,
            WsError::TooManyFragments { .. } => 1008,
        }
    }
}

/// Incremental parser over bytes read from the socket.
#[derive(Debug)]
pub(crate) struct FrameReader {
    pub(crate) buf: BytesMut,
    max_message: usize,
    /// A fragmented message being reassembled.
    partial: Option<Partial>,
    budget: Budget,
}

/// A fragmented message so far.
#[derive(Debug)]
struct Partial {
    opcode: u8,
    /// Its bytes; left empty once the message is dropped.
    data: BytesMut,
    /// Its length, counted even when dropped, against the size limit.
    len: usize,
    fragments: u32,
    /// A fragment was over the budget: the rest is read and discarded.
    dropped: bool,
}

impl FrameReader {
    /// A reader of messages up to `max_message` bytes, each frame checked against `budget`.
    pub(crate) fn new(max_message: usize, budget: Budget) -> Self {
        Self {
            buf: BytesMut::with_capacity(INITIAL_BUFFER),
            max_message,
            partial: None,
            budget,
        }
    }

    /// Changes the message size limit (raised once the Hello is accepted).
    pub(crate) fn set_max_message(&mut self, max_message: usize) {
        self.max_message = max_message;
    }

    /// The next complete event in the buffer, `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// [`WsError`] when the client violates the framing rules or the size limit; the
    /// length is checked from the header, before the payload is buffered.
    pub(crate) fn next_event(&mut self) -> Result<Option<WsEvent>, WsError> {
        loop {
            let Some((fin, opcode, header_len, len, mask)) = self.header()? else {
                self.shrink();
                return Ok(None);
            };
            let total = header_len + len as usize;
            if self.buf.len() < total {
                self.buf.reserve(total - self.buf.len());
                return Ok(None);
            }
            let len = len as usize;
            // The fragment rules and the size limit hold for dropped messages too.
            match (opcode, &mut self.partial) {
                (OP_TEXT | OP_BINARY, Some(_)) => {
                    return Err(WsError::Protocol("new message inside a fragmented one"));
                }
                (OP_CONTINUATION, None) => {
                    return Err(WsError::Protocol("continuation without a message"));
                }
                (OP_CONTINUATION, Some(partial)) => {
                    partial.fragments += 1;
                    if partial.fragments > MAX_FRAGMENTS {
                        return Err(WsError::TooManyFragments {
                            limit: MAX_FRAGMENTS,
                        });
                    }
                    if partial.len + len > self.max_message {
                        return Err(WsError::TooLarge {
                            size: (partial.len + len) as u64,
                            limit: self.max_message,
                        });
                    }
                    partial.len += len;
                }
                _ => {}
            }
            // A close always passes: the client is leaving.
            if opcode != OP_CLOSE && !self.budget.allow(len as u64) {
                self.buf.advance(total);
                match (opcode, fin) {
                    (OP_TEXT | OP_BINARY, false) => {
                        self.partial = Some(Partial {
                            opcode,
                            data: BytesMut::new(),
                            len,
                            fragments: 1,
                            dropped: true,
                        });
                    }
                    (OP_CONTINUATION, true) => self.partial = None,
                    (OP_CONTINUATION, false) => {
                        if let Some(partial) = &mut self.partial {
                            partial.dropped = true;
                            partial.data = BytesMut::new();
                        }
                    }
                    _ => {}
                }
                return Ok(Some(WsEvent::Dropped));
            }
            self.buf.advance(header_len);
            let mut payload = self.buf.split_to(len);
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i & 3];
            }
            match opcode {
                OP_CLOSE => return Ok(Some(WsEvent::Close)),
                OP_PING => return Ok(Some(WsEvent::Ping(payload.freeze()))),
                OP_PONG => return Ok(Some(WsEvent::Pong)),
                OP_TEXT | OP_BINARY if fin => return Ok(Some(complete(opcode, payload))),
                OP_TEXT | OP_BINARY => {
                    self.partial = Some(Partial {
                        opcode,
                        len,
                        data: payload,
                        fragments: 1,
                        dropped: false,
                    });
                }
                OP_CONTINUATION => {
                    let Some(mut partial) = self.partial.take() else {
                        // Checked above; unreachable.
                        return Err(WsError::Protocol("continuation without a message"));
                    };
                    if !partial.dropped {
                        partial.data.extend_from_slice(&payload);
                    }
                    match (fin, partial.dropped) {
                        (true, false) => return Ok(Some(complete(partial.opcode, partial.data))),
                        // The rest of a dropped message, told when its fragment was.
                        (true, true) => {}
                        (false, _) => self.partial = Some(partial),
                    }
                }
                _ => return Err(WsError::Protocol("reserved opcode")),
            }
        }
    }

    /// Releases the buffer once it is empty: the frames split from it keep their part
    /// of the allocation only as long as they are in use.
    fn shrink(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
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

/// Writes the header of an unmasked, final server frame into `out` (at least
/// [`MAX_HEADER`] bytes); returns its length.
pub(crate) fn header(opcode: u8, payload_len: usize, out: &mut [u8]) -> usize {
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
    use centrum_config::Limits;

    use super::*;

    /// A reader with no rate limits.
    fn reader(max_message: usize) -> FrameReader {
        let unlimited = Limits {
            client_messages_per_s: 0,
            client_bytes_per_s: 0,
            ..Limits::default()
        };
        FrameReader::new(max_message, Budget::new(&unlimited))
    }

    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
        if payload.len() < 126 {
            f.push(0x80 | payload.len() as u8);
        } else if payload.len() <= usize::from(u16::MAX) {
            f.push(0x80 | 126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        f
    }

    #[test]
    fn parses_split_fragmented_and_control_frames() {
        let mut r = reader(1000);
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
        let mut r = reader(100);
        r.buf
            .extend_from_slice(&masked(OP_BINARY, true, &[0; 101])[..4]);
        assert_eq!(
            r.next_event(),
            Err(WsError::TooLarge {
                size: 101,
                limit: 100
            })
        );
        let mut r = reader(100);
        r.buf.extend_from_slice(&[0x82, 0x01, 0x00]);
        assert_eq!(
            r.next_event(),
            Err(WsError::Protocol("client frames must be masked"))
        );
        let mut r = reader(100);
        r.buf
            .extend_from_slice(&masked(OP_CONTINUATION, true, b"x"));
        assert_eq!(
            r.next_event(),
            Err(WsError::Protocol("continuation without a message"))
        );
        let mut r = reader(100);
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
    fn endless_empty_continuations_are_refused() {
        let mut r = reader(100);
        r.buf.extend_from_slice(&masked(OP_BINARY, false, b""));
        for _ in 1..MAX_FRAGMENTS {
            r.buf
                .extend_from_slice(&masked(OP_CONTINUATION, false, b""));
        }
        assert_eq!(
            r.next_event(),
            Ok(None),
            "{MAX_FRAGMENTS} fragments are allowed"
        );
        r.buf
            .extend_from_slice(&masked(OP_CONTINUATION, false, b""));
        assert_eq!(
            r.next_event(),
            Err(WsError::TooManyFragments {
                limit: MAX_FRAGMENTS
            })
        );
        assert_eq!(WsError::TooManyFragments { limit: 1 }.close_code(), 1008);
    }

    #[test]
    fn frames_over_the_budget_are_dropped_with_their_message() {
        let limits = Limits {
            client_messages_per_s: 1,
            client_message_burst: 3,
            client_bytes_per_s: 0,
            ..Limits::default()
        };
        let mut r = FrameReader::new(100, Budget::new(&limits));
        // Three frames pass: two fragments and a ping.
        r.buf.extend_from_slice(&masked(OP_BINARY, false, b"ab"));
        r.buf
            .extend_from_slice(&masked(OP_CONTINUATION, false, b"cd"));
        r.buf.extend_from_slice(&masked(OP_PING, true, b"p"));
        // The fourth, the rest of the message, is dropped, and the message with it;
        // then a whole message and a ping; a close always passes.
        r.buf
            .extend_from_slice(&masked(OP_CONTINUATION, true, b"ef"));
        r.buf.extend_from_slice(&masked(OP_BINARY, true, b"gh"));
        r.buf.extend_from_slice(&masked(OP_PING, true, b""));
        r.buf.extend_from_slice(&masked(OP_CLOSE, true, b""));
        assert_eq!(
            r.next_event(),
            Ok(Some(WsEvent::Ping(Bytes::from_static(b"p"))))
        );
        assert_eq!(r.next_event(), Ok(Some(WsEvent::Dropped)));
        assert_eq!(r.next_event(), Ok(Some(WsEvent::Dropped)));
        assert_eq!(r.next_event(), Ok(Some(WsEvent::Dropped)));
        assert_eq!(r.next_event(), Ok(Some(WsEvent::Close)));
        assert_eq!(r.next_event(), Ok(None));
        assert!(r.partial.is_none());

        // A message whose first fragment was dropped is discarded to its end, even
        // when its later fragments fit the budget.
        let limits = Limits {
            client_messages_per_s: 0,
            client_bytes_per_s: 1,
            client_bytes_burst: 64,
            ..Limits::default()
        };
        let mut r = FrameReader::new(100, Budget::new(&limits));
        r.buf.extend_from_slice(&masked(OP_BINARY, false, &[1; 70]));
        r.buf
            .extend_from_slice(&masked(OP_CONTINUATION, false, &[2; 10]));
        r.buf
            .extend_from_slice(&masked(OP_CONTINUATION, true, &[3; 10]));
        r.buf.extend_from_slice(&masked(OP_BINARY, true, b"next"));
        assert_eq!(r.next_event(), Ok(Some(WsEvent::Dropped)));
        assert_eq!(
            r.next_event(),
            Ok(Some(WsEvent::Binary(Bytes::from_static(b"next"))))
        );
    }

    #[test]
    fn the_buffer_is_released_once_its_frames_are_taken() {
        let mut r = reader(1 << 20);
        let frame = masked(OP_BINARY, true, &[7; 200_000]);
        r.buf.extend_from_slice(&frame[..100]);
        assert_eq!(r.next_event(), Ok(None));
        assert!(r.buf.capacity() >= frame.len());
        r.buf.extend_from_slice(&frame[100..]);
        let Ok(Some(WsEvent::Binary(message))) = r.next_event() else {
            panic!("the message");
        };
        assert_eq!(message.len(), 200_000);
        assert_eq!(r.next_event(), Ok(None));
        assert_eq!(
            r.buf.capacity(),
            0,
            "an idle connection holds no read buffer"
        );
        // A frame that arrives in part keeps the buffer until it is complete.
        r.buf
            .extend_from_slice(&masked(OP_BINARY, true, b"two")[..3]);
        assert_eq!(r.next_event(), Ok(None));
        assert!(r.buf.capacity() > 0);
        // The message's bytes are its own: they go when it does.
        drop(message);
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
