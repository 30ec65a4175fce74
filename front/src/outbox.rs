//! What a client connection is sent, and how it gets there. A fan-out writes each
//! message straight into the client's socket with one non-blocking vectored write
//! (header and per-client prefix from the stack, the shared body from its `Bytes`),
//! without waking the connection's task. Only when that cannot be done (the socket
//! would block, the connection's task is writing, the connection is TLS) does the
//! message wait in the client's bounded queue for its task, which writes it once the
//! socket takes bytes again. One lock orders both paths, so the client sees every
//! message in the order it was given, whole.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use parking_lot::{Mutex, MutexGuard};
use tokio::net::TcpStream;

use centrum_protocol::{Seq, SharedKind, SharedPrefix};

use crate::metrics::FrontMetrics;
use crate::ws::{self, MAX_HEADER};

/// The most bytes in front of a message's body: the WebSocket header and the prefix.
pub(crate) const HEAD_MAX: usize = MAX_HEADER + 9;

/// One message for a client.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A whole client message, sent as one binary frame.
    Message(Bytes),
    /// A shared body behind this client's prefix (its ack).
    Shared {
        kind: SharedKind,
        ack: Seq,
        body: Bytes,
        /// When the front received it from the back: the write measures the front's delay.
        since: Instant,
    },
    /// A control frame (ping, pong), framed already.
    Control(Bytes),
}

impl Outbound {
    /// Writes the frame's header and the per-client prefix into `out`; returns their length.
    pub(crate) fn head(&self, out: &mut [u8; HEAD_MAX]) -> usize {
        match self {
            Outbound::Control(_) => 0,
            Outbound::Message(body) => ws::header(ws::OP_BINARY, body.len(), out),
            Outbound::Shared {
                kind, ack, body, ..
            } => {
                let prefix = SharedPrefix::new(*kind, *ack);
                let prefix = prefix.as_bytes();
                let n = ws::header(ws::OP_BINARY, prefix.len() + body.len(), out);
                out[n..n + prefix.len()].copy_from_slice(prefix);
                n + prefix.len()
            }
        }
    }

    /// The bytes after the head.
    pub(crate) fn body(&self) -> &Bytes {
        match self {
            Outbound::Message(body) | Outbound::Shared { body, .. } | Outbound::Control(body) => {
                body
            }
        }
    }

    /// Counts a message written whole: payload bytes, messages, and a patch's delay in
    /// the front.
    pub(crate) fn count_sent(&self, metrics: &FrontMetrics, now: Instant) {
        let payload = match self {
            Outbound::Control(_) => return,
            Outbound::Message(body) => body.len(),
            Outbound::Shared {
                kind,
                ack,
                body,
                since,
            } => {
                if *kind == SharedKind::Patch {
                    let us = now.saturating_duration_since(*since).as_micros();
                    metrics.record_patch_delay(u64::try_from(us).unwrap_or(u64::MAX));
                }
                SharedPrefix::new(*kind, *ack).as_bytes().len() + body.len()
            }
        };
        metrics.bytes_out.fetch_add(payload as u64, Relaxed);
        metrics.messages_out.fetch_add(1, Relaxed);
    }
}

/// Why a connection is closed from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kill {
    /// The slow-client policy (`disconnect`) or a queue that cannot take a reply: 1008.
    Slow,
    /// The front is shutting down: 1001.
    Shutdown,
}

/// Why a message was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `limits.client_queue` messages wait already: the slow-client policy applies.
    Full,
    /// The connection has ended.
    Closed,
}

/// What the connection's task is woken for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// Messages wait in the queue.
    Write,
    Kill(Kill),
}

/// A client's outbound messages: shared by the fan-out (every task that sends to the
/// client) and the connection's task.
#[derive(Debug)]
pub(crate) struct Outbox {
    inner: Mutex<Inner>,
    /// Set (under the lock) when there is something for the connection's task: it is
    /// woken for its socket's input too, and then finds this unset without locking.
    signalled: AtomicBool,
    /// The connection's task, waiting for messages or a kill.
    waker: AtomicWaker,
    /// `limits.client_queue`.
    capacity: usize,
}

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<Outbound>,
    /// Bytes of the first queued message that a direct write already put on the socket.
    head_sent: usize,
    /// The connection's task has taken messages off the queue and is writing them: a
    /// direct write now would overtake them.
    writing: bool,
    /// The socket, for direct writes: plain TCP only, and only until a direct write
    /// fails or the connection ends.
    socket: Option<Arc<TcpStream>>,
    kill: Option<Kill>,
    closed: bool,
}

impl Outbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            signalled: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            capacity: capacity.max(1),
        }
    }

    /// From now on messages may go straight into `socket`.
    pub(crate) fn set_socket(&self, socket: Arc<TcpStream>) {
        self.inner.lock().socket = Some(socket);
    }

    /// Sends `item`: written into the socket at once if it is idle and takes it all,
    /// queued otherwise (a partly written message is queued with what remains). Never
    /// waits.
    pub(crate) fn push(&self, item: Outbound, metrics: &FrontMetrics) -> Result<(), Refused> {
        let mut inner = self.inner.lock();
        if inner.closed {
            return Err(Refused::Closed);
        }
        if inner.queue.is_empty()
            && !inner.writing
            && let Some(socket) = &inner.socket
        {
            let mut head = [0; HEAD_MAX];
            let n = item.head(&mut head);
            let body = item.body();
            let slices = [IoSlice::new(&head[..n]), IoSlice::new(body)];
            let slices = if body.is_empty() {
                &slices[..1]
            } else {
                &slices[..]
            };
            match socket.try_write_vectored(slices) {
                Ok(written) if written == n + body.len() => {
                    drop(inner);
                    item.count_sent(metrics, Instant::now());
                    return Ok(());
                }
                Ok(written) => inner.head_sent = written,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                // The connection's task meets the error on its own write and ends.
                Err(_) => inner.socket = None,
            }
        } else if inner.queue.len() >= self.capacity {
            return Err(Refused::Full);
        }
        metrics.writes_queued.fetch_add(1, Relaxed);
        inner.queue.push_back(item);
        // A task that is writing takes the queue up when its write is done.
        if !inner.writing {
            self.wake(inner);
        }
        Ok(())
    }

    fn wake(&self, inner: MutexGuard<'_, Inner>) {
        self.signalled.store(true, Release);
        drop(inner);
        self.waker.wake();
    }

    /// Closes the connection from outside; the first reason given stands.
    pub(crate) fn kill(&self, why: Kill) -> bool {
        let mut inner = self.inner.lock();
        if inner.kill.is_some() || inner.closed {
            return false;
        }
        inner.kill = Some(why);
        self.wake(inner);
        true
    }

    #[cfg(test)]
    pub(crate) fn is_killed(&self) -> bool {
        self.inner.lock().kill.is_some()
    }

    /// Waits for queued messages (when the task is not writing) or a kill.
    pub(crate) async fn event(&self) -> Event {
        poll_fn(|cx| self.poll_event(cx, false)).await
    }

    /// Waits for a kill only: raced against a write that may block.
    pub(crate) async fn killed(&self) -> Kill {
        poll_fn(|cx| match self.poll_event(cx, true) {
            Poll::Ready(Event::Kill(kill)) => Poll::Ready(kill),
            _ => Poll::Pending,
        })
        .await
    }

    fn poll_event(&self, cx: &mut Context<'_>, kill_only: bool) -> Poll<Event> {
        self.waker.register(cx.waker());
        if !self.signalled.load(Acquire) {
            return Poll::Pending;
        }
        let inner = self.inner.lock();
        if let Some(kill) = inner.kill {
            return Poll::Ready(Event::Kill(kill));
        }
        if !kill_only && !inner.writing && !inner.queue.is_empty() {
            return Poll::Ready(Event::Write);
        }
        // Seen: the next push signals again, and wakes the waker registered above.
        if !inner.writing {
            self.signalled.store(false, Relaxed);
        }
        Poll::Pending
    }

    /// Moves up to `max` queued messages into `batch` for the connection's task to
    /// write; returns how many bytes of the first one are on the socket already. Until
    /// [`Outbox::written`], new messages queue behind them.
    pub(crate) fn take(&self, batch: &mut Vec<Outbound>, max: usize) -> usize {
        let mut inner = self.inner.lock();
        let take = inner.queue.len().min(max);
        batch.extend(inner.queue.drain(..take));
        inner.writing = !batch.is_empty();
        std::mem::take(&mut inner.head_sent)
    }

    /// The taken messages are written.
    pub(crate) fn written(&self) {
        let mut inner = self.inner.lock();
        inner.writing = false;
        if inner.queue.is_empty() {
            // Its memory goes with it: an idle client holds no queue.
            inner.queue = VecDeque::new();
        }
    }

    /// The connection has ended: nothing more is taken or written. Returns whether the
    /// socket was left in the middle of a message (a close frame then cannot follow).
    pub(crate) fn close(&self) -> bool {
        let mut inner = self.inner.lock();
        inner.closed = true;
        inner.socket = None;
        inner.queue.clear();
        std::mem::take(&mut inner.head_sent) > 0
    }

    /// Takes the next queued message (tests read a client's messages so).
    #[cfg(test)]
    pub(crate) fn try_pop(&self) -> Option<Outbound> {
        self.inner.lock().queue.pop_front()
    }
}
