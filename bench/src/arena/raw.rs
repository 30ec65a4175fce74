//! A client that speaks the protocol like any other (hello, join, inputs) but only
//! counts what it receives: it walks the WebSocket frame headers and reads the two
//! bytes that name each message, nothing more. In `probe:K` mode the N-K clients
//! that do not measure are these, so one load generator can drive thousands.

use std::cell::RefCell;
use std::io;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use centrum_protocol::{ClientMsg, Hello, Input, Join, PROTOCOL_VERSION, Seq, encode};

/// The message type codes of PROTOCOL.md that a counting client cares about.
pub(crate) const WELCOME: u8 = 0;
pub(crate) const STATE: u8 = 1;
pub(crate) const PATCH: u8 = 2;
pub(crate) const REJECTED: u8 = 3;
pub(crate) const ERROR: u8 = 6;

const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;

thread_local! {
    /// One read buffer per worker thread: reads copy from the kernel and are walked
    /// at once, so no connection needs a buffer of its own.
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; 256 * 1024]);
}

/// A whole frame seen on the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameSeen {
    pub(crate) opcode: u8,
    pub(crate) len: u64,
    /// The centrum message type (the second byte of `[type, body]`), when the frame
    /// is a binary message that starts like one.
    pub(crate) kind: Option<u8>,
}

/// Walks server frames (unmasked) across reads of any size.
#[derive(Debug, Default)]
pub(crate) struct FrameWalker {
    header: [u8; 10],
    have: usize,
    /// Payload bytes of the current frame still to come; None while in a header.
    remaining: Option<u64>,
    opcode: u8,
    len: u64,
    peek: [u8; 2],
    peeked: usize,
}

impl FrameWalker {
    /// Feeds bytes from the socket, reporting every frame that completes.
    ///
    /// # Errors
    /// When the server sends a masked frame, which RFC 6455 forbids.
    pub(crate) fn feed(
        &mut self,
        mut data: &[u8],
        mut seen: impl FnMut(FrameSeen),
    ) -> Result<(), &'static str> {
        while !data.is_empty() {
            if let Some(remaining) = self.remaining {
                if self.peeked < 2 {
                    let n = (2 - self.peeked).min(data.len()).min(remaining as usize);
                    self.peek[self.peeked..self.peeked + n].copy_from_slice(&data[..n]);
                    self.peeked += n;
                }
                let take = remaining.min(data.len() as u64);
                data = &data[take as usize..];
                let left = remaining - take;
                self.remaining = Some(left);
                if left == 0 {
                    self.finish(&mut seen);
                }
                continue;
            }
            let need = self.header_len();
            let n = (need - self.have).min(data.len());
            self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have < self.header_len() {
                continue;
            }
            if self.header[1] & 0x80 != 0 {
                return Err("the server sent a masked frame");
            }
            self.opcode = self.header[0] & 0x0f;
            self.len = match self.header[1] & 0x7f {
                126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
                127 => u64::from_be_bytes(self.header[2..10].try_into().unwrap_or([0; 8])),
                short => u64::from(short),
            };
            self.have = 0;
            self.peeked = 0;
            self.remaining = Some(self.len);
            if self.len == 0 {
                self.finish(&mut seen);
            }
        }
        Ok(())
    }

    /// Header bytes needed so far: 2, then the extended length the second byte names.
    fn header_len(&self) -> usize {
        if self.have < 2 {
            return 2;
        }
        match self.header[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        }
    }

    fn finish(&mut self, seen: &mut impl FnMut(FrameSeen)) {
        let kind = (self.opcode == OP_BINARY && self.peeked == 2 && self.peek[0] == 0x92)
            .then_some(self.peek[1]);
        seen(FrameSeen {
            opcode: self.opcode,
            len: self.len,
            kind,
        });
        self.remaining = None;
    }
}

/// One counting connection.
#[derive(Debug)]
pub(crate) struct RawClient {
    stream: TcpStream,
    walker: FrameWalker,
    mask_state: u64,
    channel: String,
}

/// What a read produced.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Received {
    pub(crate) msgs: u64,
    pub(crate) bytes: u64,
    pub(crate) patches: u64,
    pub(crate) patch_bytes: u64,
    /// The centrum message types seen (bit `1 << type`), for the handshake and join.
    pub(crate) kinds: u16,
    pub(crate) closed: bool,
}

impl RawClient {
    /// Opens a WebSocket to `url` (`ws://host:port[/path]`), says hello and waits for
    /// the welcome.
    pub(crate) async fn connect(url: &str, channel: &str, seed: u64) -> io::Result<RawClient> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| invalid(format!("{url}: only ws:// URLs are supported")))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let stream = TcpStream::connect(authority).await?;
        stream.set_nodelay(true)?;
        let key = generate_key();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        let mut client = RawClient {
            stream,
            walker: FrameWalker::default(),
            mask_state: seed | 1,
            channel: channel.to_owned(),
        };
        client.write_all(request.as_bytes()).await?;
        let leftover = client
            .read_response(&derive_accept_key(key.as_bytes()))
            .await?;
        let mut early = Received::default();
        client.walk(&leftover, false, &mut early)?;
        let hello = ClientMsg::Hello(Hello {
            version: PROTOCOL_VERSION,
            token: String::new(),
            resume: None,
        });
        client.send(&hello).await?;
        client.wait_for(early, &[WELCOME]).await?;
        Ok(client)
    }

    /// Joins the channel and waits for its full state.
    pub(crate) async fn join(&mut self, data: Bytes) -> io::Result<()> {
        let join = ClientMsg::Join(Join {
            channel: self.channel.clone(),
            data,
            seat: None,
        });
        self.send(&join).await?;
        self.wait_for(Received::default(), &[STATE]).await
    }

    /// Reads until a message of one of `kinds` arrives; a rejection or an error
    /// from the server fails.
    async fn wait_for(&mut self, mut got: Received, kinds: &[u8]) -> io::Result<()> {
        loop {
            let seen = |k: u8| got.kinds & (1 << k) != 0;
            if kinds.iter().any(|&k| seen(k)) {
                return Ok(());
            }
            if seen(REJECTED) {
                return Err(invalid("the join was rejected".into()));
            }
            if seen(ERROR) {
                return Err(invalid("the server answered with an error".into()));
            }
            if got.closed {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.stream.readable().await?;
            got = Received::default();
            self.drain(false, &mut got)?;
        }
    }

    /// The HTTP response to the upgrade; returns the bytes that followed it.
    async fn read_response(&mut self, accept: &str) -> io::Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(512);
        loop {
            self.stream.readable().await?;
            let mut chunk = [0u8; 1024];
            match self.stream.try_read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                if !head.starts_with("http/1.1 101") {
                    let status = head.lines().next().unwrap_or("").to_owned();
                    return Err(invalid(format!("the front refused the upgrade: {status}")));
                }
                if !head.contains(&format!(
                    "sec-websocket-accept: {}",
                    accept.to_ascii_lowercase()
                )) {
                    return Err(invalid("wrong Sec-WebSocket-Accept".into()));
                }
                return Ok(buf.split_off(end + 4));
            }
            if buf.len() > 8192 {
                return Err(invalid("the upgrade response is too long".into()));
            }
        }
    }

    /// Sends one input.
    pub(crate) async fn send_input(&mut self, seq: Seq, data: Bytes) -> io::Result<()> {
        let input = ClientMsg::Input(Input {
            channel: self.channel.clone(),
            seq,
            data,
        });
        self.send(&input).await
    }

    /// Ends the connection politely: a close frame, then the socket is dropped.
    pub(crate) async fn close(mut self) {
        let frame = self.frame(0x8, &1000u16.to_be_bytes());
        let _ = self.write_all(&frame).await;
    }

    async fn send(&mut self, msg: &ClientMsg) -> io::Result<()> {
        let frame = self.frame(OP_BINARY, &encode(msg));
        self.write_all(&frame).await
    }

    /// A masked client frame (RFC 6455 5.3) around `payload`.
    fn frame(&mut self, opcode: u8, payload: &[u8]) -> Vec<u8> {
        // xorshift: masks need not be secret here, only different.
        self.mask_state ^= self.mask_state << 13;
        self.mask_state ^= self.mask_state >> 7;
        self.mask_state ^= self.mask_state << 17;
        let mask = (self.mask_state as u32).to_be_bytes();
        let mut out = Vec::with_capacity(payload.len() + 14);
        out.push(0x80 | opcode);
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    async fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.stream.try_write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stream.writable().await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Waits until the socket has something to read.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        self.stream.readable().await
    }

    /// Reads what the socket holds now and walks it; `counting` says whether the
    /// bytes fall in the measurement window.
    pub(crate) fn drain(&mut self, counting: bool, got: &mut Received) -> io::Result<()> {
        // A few reads at most, so that one busy socket cannot hold the thread.
        for _ in 0..4 {
            let more = READ_BUF.with(|buf| {
                let mut buf = buf.borrow_mut();
                match self.stream.try_read(&mut buf) {
                    Ok(0) => {
                        got.closed = true;
                        Ok(false)
                    }
                    // A short read emptied the socket: no need for a WouldBlock.
                    Ok(n) => self.walk(&buf[..n], counting, got).map(|()| n == buf.len()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
                    Err(e) => Err(e),
                }
            })?;
            if !more || got.closed {
                break;
            }
        }
        Ok(())
    }

    fn walk(&mut self, data: &[u8], counting: bool, got: &mut Received) -> io::Result<()> {
        self.walker
            .feed(data, |f| {
                if f.opcode == OP_CLOSE {
                    got.closed = true;
                }
                if let Some(k) = f.kind.filter(|k| *k < 16) {
                    got.kinds |= 1 << k;
                }
                if counting && f.opcode == OP_BINARY {
                    got.msgs += 1;
                    got.bytes += f.len;
                    if f.kind == Some(PATCH) {
                        got.patches += 1;
                        got.patch_bytes += f.len;
                    }
                }
            })
            .map_err(|e| invalid(e.into()))
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x80 | OP_BINARY];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= 0xffff => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    /// Walks `stream` in chunks of `chunk` bytes.
    fn walk(stream: &[u8], chunk: usize) -> Vec<FrameSeen> {
        let mut walker = FrameWalker::default();
        let mut seen = Vec::new();
        for piece in stream.chunks(chunk) {
            walker.feed(piece, |f| seen.push(f)).expect("valid frames");
        }
        seen
    }

    #[test]
    fn frames_of_every_length_class_are_walked_across_any_split() {
        let mut stream = Vec::new();
        let small = [0x92, PATCH, 1, 2, 3];
        let medium: Vec<u8> = [0x92, STATE].into_iter().chain([7; 300]).collect();
        let large: Vec<u8> = [0x92, PATCH].into_iter().chain([9; 70_000]).collect();
        for p in [&small[..], &medium, &large, &[0x92][..], &[]] {
            stream.extend(server_frame(p));
        }
        let expected = vec![
            FrameSeen {
                opcode: OP_BINARY,
                len: 5,
                kind: Some(PATCH),
            },
            FrameSeen {
                opcode: OP_BINARY,
                len: 302,
                kind: Some(STATE),
            },
            FrameSeen {
                opcode: OP_BINARY,
                len: 70_002,
                kind: Some(PATCH),
            },
            FrameSeen {
                opcode: OP_BINARY,
                len: 1,
                kind: None,
            },
            FrameSeen {
                opcode: OP_BINARY,
                len: 0,
                kind: None,
            },
        ];
        for chunk in [1, 2, 3, 7, 64, 4096, stream.len()] {
            assert_eq!(walk(&stream, chunk), expected, "chunks of {chunk}");
        }
    }

    #[test]
    fn a_masked_server_frame_is_refused() {
        let mut walker = FrameWalker::default();
        assert!(walker.feed(&[0x82, 0x81, 1, 2, 3, 4, 5], |_| {}).is_err());
    }

    #[test]
    fn client_frames_are_masked_and_unmask_to_the_payload() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let stream = TcpStream::connect(listener.local_addr().expect("addr"))
                .await
                .expect("connect");
            let mut client = RawClient {
                stream,
                walker: FrameWalker::default(),
                mask_state: 7,
                channel: String::new(),
            };
            for len in [3usize, 200, 70_000] {
                let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let frame = client.frame(OP_BINARY, &payload);
                assert_eq!(frame[0], 0x80 | OP_BINARY);
                assert_ne!(frame[1] & 0x80, 0, "masked");
                let (ext, start) = match frame[1] & 0x7f {
                    126 => (2, 4),
                    127 => (8, 10),
                    _ => (0, 2),
                };
                assert_eq!(start, 2 + ext);
                let mask = &frame[start..start + 4];
                let body: Vec<u8> = frame[start + 4..]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ mask[i % 4])
                    .collect();
                assert_eq!(body, payload);
            }
        });
    }
}
