//! A client's outbound messages. Whoever sends one (a patch fan-out, a reply) writes it
//! straight to the socket when nothing is waiting: a patch then costs one syscall per
//! client and no task wake-up. When the socket is busy, messages queue in order (at
//! most `capacity`) and the connection's task drains them as the socket allows.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::sync::mpsc::error::TrySendError;

use crate::hub::Outbound;
use crate::metrics::FrontMetrics;
use crate::ws;

/// Messages written in one vectored write when a queue has formed.
const BATCH: usize = 32;
/// A WebSocket header and a shared prefix: at most 10 + 9 bytes.
const MAX_HEAD: usize = ws::MAX_HEADER + 9;

/// A cheap handle to one client's outbox.
#[derive(Clone, Debug)]
pub(crate) struct Outbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    /// Set once the connection's handshake is done; until then messages only queue.
    stream: OnceLock<Arc<TcpStream>>,
    /// Tells the connection's task that a queue formed and needs draining.
    queued: Notify,
    capacity: usize,
    metrics: Arc<FrontMetrics>,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Outbound>,
    /// Bytes of the first queued message already on the socket.
    written: usize,
    closed: bool,
}

/// Whether a drain left anything behind.
#[derive(Debug, PartialEq, Eq)]
enum Drained {
    Empty,
    Blocked,
}

impl Outbox {
    pub(crate) fn new(capacity: usize, metrics: Arc<FrontMetrics>) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                stream: OnceLock::new(),
                queued: Notify::new(),
                capacity: capacity.max(1),
                metrics,
            }),
        }
    }

    /// Connects the outbox to its socket: from now on idle sends write through.
    pub(crate) fn attach(&self, stream: Arc<TcpStream>) {
        let _ = self.inner.stream.set(stream);
        if !self.inner.state.lock().queue.is_empty() {
            self.inner.queued.notify_one();
        }
    }

    /// Sends `item`: written at once when the socket is idle, queued otherwise.
    ///
    /// # Errors
    /// `Full` when `capacity` messages are already waiting (the slow-client policy
    /// decides what follows), `Closed` once the connection is gone.
    pub(crate) fn try_send(&self, item: Outbound) -> Result<(), TrySendError<Outbound>> {
        let inner = &self.inner;
        let mut state = inner.state.lock();
        if state.closed {
            return Err(TrySendError::Closed(item));
        }
        if !state.queue.is_empty() {
            if state.queue.len() >= inner.capacity {
                return Err(TrySendError::Full(item));
            }
            inner.count(&item);
            state.queue.push_back(item);
            return Ok(());
        }
        inner.count(&item);
        let Some(stream) = inner.stream.get() else {
            state.queue.push_back(item);
            return Ok(());
        };
        // The lock is held across this non-blocking write so that no other sender
        // can slip bytes in between; it never waits.
        let mut head = [0; MAX_HEAD];
        let (head_len, body) = frame_head(&item, &mut head);
        let total = head_len + body.len();
        let written = match stream
            .try_write_vectored(&[IoSlice::new(&head[..head_len]), IoSlice::new(body)])
        {
            Ok(n) if n == total => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(_) => {
                state.closed = true;
                inner.queued.notify_one();
                return Err(TrySendError::Closed(item));
            }
        };
        state.queue.push_back(item);
        state.written = written;
        inner.queued.notify_one();
        Ok(())
    }

    /// Waits until a queue has formed that the connection's task must drain.
    pub(crate) async fn queued(&self) {
        self.inner.queued.notified().await;
    }

    /// Writes everything queued, waiting for the socket as needed.
    ///
    /// # Errors
    /// When the socket fails; the outbox is then closed.
    pub(crate) async fn drain(&self) -> io::Result<()> {
        let Some(stream) = self.inner.stream.get() else {
            return Ok(());
        };
        while self.write_queued(stream)? == Drained::Blocked {
            stream.writable().await?;
        }
        Ok(())
    }

    /// Refuses every later send; returns whether the socket stands between frames
    /// (nothing half-written), so that a close frame may follow.
    pub(crate) fn close(&self) -> bool {
        let mut state = self.inner.state.lock();
        state.closed = true;
        let clean = state.written == 0;
        state.queue.clear();
        clean
    }

    fn write_queued(&self, stream: &TcpStream) -> io::Result<Drained> {
        let mut state = self.inner.state.lock();
        loop {
            if state.queue.is_empty() {
                return Ok(Drained::Empty);
            }
            let mut heads = [[0u8; MAX_HEAD]; BATCH];
            let mut slices = [IoSlice::new(&[]); 2 * BATCH];
            let mut count = 0;
            let mut skip = state.written;
            let mut batch_bytes = 0;
            for (item, head) in state.queue.iter().zip(heads.iter_mut()) {
                let (head_len, body) = frame_head(item, head);
                for part in [&head[..head_len], &body[..]] {
                    if skip >= part.len() {
                        skip -= part.len();
                        continue;
                    }
                    slices[count] = IoSlice::new(&part[skip..]);
                    batch_bytes += part.len() - skip;
                    skip = 0;
                    count += 1;
                }
            }
            let n = match stream.try_write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Drained::Blocked),
                Err(e) => {
                    state.closed = true;
                    return Err(e);
                }
            };
            // Retire the messages now wholly on the socket.
            let mut left = n + state.written;
            state.written = 0;
            while let Some(item) = state.queue.front() {
                let mut head = [0; MAX_HEAD];
                let (head_len, body) = frame_head(item, &mut head);
                let size = head_len + body.len();
                if left < size {
                    state.written = left;
                    break;
                }
                left -= size;
                state.queue.pop_front();
            }
            if n < batch_bytes {
                return Ok(Drained::Blocked);
            }
        }
    }

    /// The messages waiting, oldest first (tests inspect an unattached outbox).
    #[cfg(test)]
    pub(crate) fn try_recv(&self) -> Result<Outbound, ()> {
        self.inner.state.lock().queue.pop_front().ok_or(())
    }
}

impl Inner {
    fn count(&self, item: &Outbound) {
        let (prefix, body) = item.parts();
        let size = prefix.map_or(0, |p| p.as_bytes().len()) + body.len();
        self.metrics.messages_out.fetch_add(1, Relaxed);
        self.metrics.bytes_out.fetch_add(size as u64, Relaxed);
    }
}

/// Writes `item`'s WebSocket header and per-client prefix into `head`; returns their
/// length and the body that follows them.
fn frame_head<'a>(item: &'a Outbound, head: &mut [u8; MAX_HEAD]) -> (usize, &'a bytes::Bytes) {
    if let Outbound::Frame(frame) = item {
        return (0, frame);
    }
    let (prefix, body) = item.parts();
    let prefix = prefix.as_ref().map(|p| p.as_bytes()).unwrap_or(&[]);
    let mut header = [0; ws::MAX_HEADER];
    let n = ws::header(ws::OP_BINARY, prefix.len() + body.len(), &mut header);
    head[..n].copy_from_slice(&header[..n]);
    head[n..n + prefix.len()].copy_from_slice(prefix);
    (n + prefix.len(), body)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tokio::io::AsyncReadExt as _;
    use tokio::net::TcpListener;

    use super::*;

    async fn pair() -> (Arc<TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"));
        let (client, accepted) = tokio::join!(client, listener.accept());
        (
            Arc::new(accepted.expect("accept").0),
            client.expect("connect"),
        )
    }

    fn message(byte: u8, len: usize) -> Outbound {
        Outbound::Message(Bytes::from(vec![byte; len]))
    }

    /// Reads `n` frames and returns (first payload byte, payload length) of each.
    async fn read_frames(peer: &mut TcpStream, n: usize) -> Vec<(u8, usize)> {
        let mut out = Vec::new();
        for _ in 0..n {
            let mut h = [0u8; 2];
            peer.read_exact(&mut h).await.expect("header");
            let len = match h[1] & 0x7f {
                126 => usize::from(peer.read_u16().await.expect("len")),
                127 => peer.read_u64().await.expect("len") as usize,
                l => usize::from(l),
            };
            let mut body = vec![0; len];
            peer.read_exact(&mut body).await.expect("body");
            assert!(
                body.iter().all(|b| *b == body[0]),
                "a frame was interleaved"
            );
            out.push((body[0], len));
        }
        out
    }

    #[tokio::test]
    async fn an_idle_socket_is_written_through_and_a_busy_one_queues_in_order() {
        let (stream, mut peer) = pair().await;
        let outbox = Outbox::new(10_000, Arc::default());
        outbox
            .try_send(message(1, 10))
            .expect("queued before attach");
        outbox.attach(stream);
        outbox.drain().await.expect("drains");
        // Far more than the socket buffers hold while the peer reads nothing: the
        // first writes go through, the rest queue, and nothing is lost or reordered.
        for i in 0..200u8 {
            outbox.try_send(message(i.max(2), 60_000)).expect("fits");
        }
        let reader = tokio::spawn(async move { read_frames(&mut peer, 201).await });
        outbox.drain().await.expect("drains");
        let frames = tokio::time::timeout(std::time::Duration::from_secs(20), reader)
            .await
            .expect("in time")
            .expect("reader");
        assert_eq!(frames[0], (1, 10));
        for (i, frame) in frames[1..].iter().enumerate() {
            assert_eq!(*frame, ((i as u8).max(2), 60_000));
        }
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_a_closed_outbox_says_so() {
        let outbox = Outbox::new(2, Arc::default());
        outbox.try_send(message(1, 1)).expect("room");
        outbox.try_send(message(2, 1)).expect("room");
        assert!(matches!(
            outbox.try_send(message(3, 1)),
            Err(TrySendError::Full(_))
        ));
        assert!(outbox.close(), "nothing half-written");
        assert!(matches!(
            outbox.try_send(message(4, 1)),
            Err(TrySendError::Closed(_))
        ));
    }
}
