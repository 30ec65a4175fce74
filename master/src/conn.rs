//! Serving the master's HTTP connections (hyper's HTTP/1, one task per connection): the
//! accept loop with its connection cap, and per connection the head, body and idle
//! timeouts. At the cap, a new connection closes the open one that has waited longest
//! for a request, so idle or slow connections cannot lock out new ones. With TLS, each
//! connection's handshake runs in its task, by the head's deadline.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tracing::{debug, warn};

use centrum_config::MasterLimits;
use centrum_net::{Acceptor, ServerTls, Shutdown};

use crate::metrics::HttpCounters;

/// How long [`serve`] waits for the requests in flight after the shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(4);

/// At the cap, how long to wait for the closed connection's permit before choosing
/// again (the one chosen may have started a request meanwhile).
const EVICT_RETRY: Duration = Duration::from_millis(50);

/// hyper's read buffer, and so the largest request head (a larger one gets 431): far
/// above any head the master's pages send, far below hyper's default of about 400 KB
/// per connection.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The timeouts and the cap, from `[master.limits]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    pub(crate) header: Duration,
    pub(crate) idle: Duration,
    pub(crate) max_connections: usize,
}

impl ConnLimits {
    pub(crate) fn new(limits: &MasterLimits) -> Self {
        Self {
            header: limits.header_timeout(),
            idle: limits.idle_timeout(),
            max_connections: usize::try_from(limits.max_connections)
                .unwrap_or(usize::MAX)
                .max(1),
        }
    }
}

/// Where a connection is between requests. Time comes in as arguments, so that tests
/// drive it without a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Sending a request's head: since the connection opened, or since the first byte
    /// after an idle spell.
    Head { since: Instant },
    /// Requests in progress (body, handler or response): no timeout of this layer.
    Busy { requests: u32 },
    /// No request since the last response ended.
    Idle { since: Instant },
}

/// Why a connection's time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Header,
    Idle,
}

impl Phase {
    fn opened(now: Instant) -> Self {
        Phase::Head { since: now }
    }

    /// Bytes arrived; true when the deadline moved.
    fn bytes_read(&mut self, now: Instant) -> bool {
        match self {
            Phase::Idle { .. } => {
                *self = Phase::Head { since: now };
                true
            }
            Phase::Head { .. } | Phase::Busy { .. } => false,
        }
    }

    /// A request's head is complete and its handler called.
    fn request(&mut self) {
        *self = match *self {
            Phase::Busy { requests } => Phase::Busy {
                requests: requests.saturating_add(1),
            },
            Phase::Head { .. } | Phase::Idle { .. } => Phase::Busy { requests: 1 },
        };
    }

    /// A request ended (its response sent, or dropped); true when the deadline moved.
    fn request_ended(&mut self, now: Instant) -> bool {
        match *self {
            Phase::Busy { requests } if requests > 1 => {
                *self = Phase::Busy {
                    requests: requests - 1,
                };
                false
            }
            Phase::Busy { .. } => {
                *self = Phase::Idle { since: now };
                true
            }
            Phase::Head { .. } | Phase::Idle { .. } => false,
        }
    }

    fn deadline(&self, limits: &ConnLimits) -> Option<(Instant, Expiry)> {
        match *self {
            Phase::Head { since } => Some((since + limits.header, Expiry::Header)),
            Phase::Idle { since } => Some((since + limits.idle, Expiry::Idle)),
            Phase::Busy { .. } => None,
        }
    }

    /// Since when the connection has waited for a request, when it has no request in
    /// progress (and so may be closed to make room).
    fn waiting_since(&self) -> Option<Instant> {
        match *self {
            Phase::Head { since } | Phase::Idle { since } => Some(since),
            Phase::Busy { .. } => None,
        }
    }
}

/// What a connection's task shares with its socket wrapper, its requests and the
/// accept loop.
#[derive(Debug)]
struct Conn {
    phase: Mutex<Phase>,
    /// The deadline moved earlier (or appeared): the task recomputes it.
    changed: Notify,
    /// The accept loop needs this connection's permit.
    evict: Notify,
    /// Chosen for eviction already; not chosen twice.
    evicting: AtomicBool,
    /// A request body timed out: close once its response is sent.
    close: AtomicBool,
}

impl Conn {
    fn new(now: Instant) -> Self {
        Self {
            phase: Mutex::new(Phase::opened(now)),
            changed: Notify::new(),
            evict: Notify::new(),
            evicting: AtomicBool::new(false),
            close: AtomicBool::new(false),
        }
    }

    fn bytes_read(&self) {
        if self.phase.lock().bytes_read(Instant::now()) {
            self.changed.notify_one();
        }
    }
}

/// The open connections, for choosing one to close at the cap. At most
/// `max_connections` (+1 being admitted) entries: one per permit.
#[derive(Debug, Default)]
struct Table {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Table {
    /// The connection that has waited longest for a request, marked as chosen.
    fn choose_victim(&self) -> Option<Arc<Conn>> {
        let conns = self.conns.lock();
        let victim = conns
            .values()
            .filter(|conn| !conn.evicting.load(Relaxed))
            .filter_map(|conn| Some((conn.phase.lock().waiting_since()?, conn)))
            .min_by_key(|(since, _)| *since)
            .map(|(_, conn)| conn.clone())?;
        victim.evicting.store(true, Relaxed);
        Some(victim)
    }
}

/// Serves `router` on `listener` until `shutdown`; then closes connections with no
/// request in progress, lets the others finish theirs, and waits for them at most
/// [`DRAIN_TIMEOUT`].
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    counters: Arc<HttpCounters>,
    tls: Option<ServerTls>,
    shutdown: Shutdown,
) {
    let mut acceptor = Acceptor::new(listener);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let table = Arc::new(Table::default());
    let mut tasks = JoinSet::new();
    let mut next_id = 0u64;
    loop {
        // Accepted before a permit is taken, unlike the nodes' ports: at the cap, only a
        // connection actually waiting justifies closing an idle one.
        let (stream, peer) = tokio::select! {
            accepted = acceptor.accept(&counters.accept_errors) => accepted,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                log_panic(joined);
                continue;
            }
            () = shutdown.cancelled() => break,
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => match make_room(&table, &permits, &shutdown).await {
                Some(permit) => permit,
                None => break,
            },
        };
        let _ = stream.set_nodelay(true);
        let id = next_id;
        next_id += 1;
        let conn = Arc::new(Conn::new(Instant::now()));
        table.conns.lock().insert(id, conn.clone());
        counters.connections.fetch_add(1, Relaxed);
        let served = ServedConn {
            conn,
            peer,
            router: router.clone(),
            limits,
            counters: counters.clone(),
            shutdown: shutdown.clone(),
            _permit: permit,
        };
        let (table, tls) = (table.clone(), tls.clone());
        tasks.spawn(async move {
            let counters = served.counters.clone();
            match tls {
                None => served.run(stream).await,
                Some(tls) => {
                    // The handshake counts as waiting for the first request: it has the
                    // head's deadline, and the connection may be evicted meanwhile.
                    let deadline = Instant::now() + limits.header;
                    let evicted = served.conn.clone();
                    let handshake = tokio::select! {
                        stream = tls.accept(stream, deadline) => stream,
                        () = evicted.evict.notified() => None,
                    };
                    if let Some(stream) = handshake {
                        served.run(stream).await;
                    }
                }
            }
            table.conns.lock().remove(&id);
            counters.connections.fetch_sub(1, Relaxed);
        });
    }
    drop(acceptor);
    let drain = async {
        while let Some(joined) = tasks.join_next().await {
            log_panic(joined);
        }
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        warn!(
            connections = tasks.len(),
            "http connections still busy after the shutdown grace; closing them"
        );
        tasks.shutdown().await;
    }
}

/// At the cap: closes the connection that has waited longest for a request and takes
/// its permit. `None` on shutdown.
async fn make_room(
    table: &Table,
    permits: &Arc<Semaphore>,
    shutdown: &Shutdown,
) -> Option<OwnedSemaphorePermit> {
    loop {
        if let Some(victim) = table.choose_victim() {
            victim.evict.notify_one();
        }
        tokio::select! {
            // Invariant: the semaphore is never closed.
            permit = permits.clone().acquire_owned() => return permit.ok(),
            () = tokio::time::sleep(EVICT_RETRY) => {}
            () = shutdown.cancelled() => return None,
        }
    }
}

fn log_panic(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined
        && e.is_panic()
    {
        warn!(error = %e, "an http connection task panicked");
    }
}

/// One accepted connection and what serving it needs.
#[derive(Debug)]
struct ServedConn {
    conn: Arc<Conn>,
    peer: SocketAddr,
    router: Router,
    limits: ConnLimits,
    counters: Arc<HttpCounters>,
    shutdown: Shutdown,
    /// Released when the connection's task ends.
    _permit: OwnedSemaphorePermit,
}

impl ServedConn {
    /// Serves HTTP/1 on `stream` until the client closes it, a timeout, an eviction or
    /// shutdown. Closing a connection with no request in progress drops it at once; one
    /// with a request finishes that request first.
    async fn run<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let conn = self.conn.clone();
        let service = ConnService {
            router: self.router.clone(),
            conn: conn.clone(),
            peer: self.peer,
            header: self.limits.header,
            counters: self.counters.clone(),
        };
        let io = TokioIo::new(Watched {
            stream,
            conn: conn.clone(),
        });
        let http = http1::Builder::new()
            .keep_alive(true)
            .max_buf_size(MAX_HEAD_BYTES)
            // This layer's own timeouts: hyper's header timer also runs while a
            // connection is idle between requests, which is the idle timeout's job.
            .header_read_timeout(None)
            .serve_connection(io, service);
        tokio::pin!(http);
        let mut closing = false;
        loop {
            let deadline = conn.phase.lock().deadline(&self.limits);
            let expiry = async {
                match deadline {
                    Some((at, expiry)) => {
                        tokio::time::sleep_until(at).await;
                        expiry
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                result = http.as_mut() => {
                    if let Err(e) = result {
                        debug!(peer = %self.peer, error = %e, "http connection ended");
                    }
                    return;
                }
                expiry = expiry => {
                    // The phase may have moved on since the deadline was read.
                    let due = conn.phase.lock().deadline(&self.limits);
                    if due.is_some_and(|(at, _)| at <= Instant::now()) {
                        let counter = match expiry {
                            Expiry::Header => &self.counters.header_timeouts,
                            Expiry::Idle => &self.counters.idle_timeouts,
                        };
                        counter.fetch_add(1, Relaxed);
                        debug!(peer = %self.peer, ?expiry, "http connection timed out");
                        return;
                    }
                }
                () = conn.changed.notified() => {
                    if conn.close.load(Relaxed) && !closing {
                        http.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
                () = conn.evict.notified() => {
                    if conn.phase.lock().waiting_since().is_some() {
                        self.counters.evicted.fetch_add(1, Relaxed);
                        debug!(peer = %self.peer, "http connection closed to make room");
                        return;
                    }
                    // It started a request since it was chosen: it closes after it.
                    http.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = self.shutdown.cancelled(), if !closing => {
                    if conn.phase.lock().waiting_since().is_some() {
                        return;
                    }
                    http.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// The socket, telling its connection when bytes arrive.
#[derive(Debug)]
struct Watched<S> {
    stream: S,
    conn: Arc<Conn>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.conn.bytes_read();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Hands each request to the router with the peer's address ([`ConnectInfo`]), its
/// body under the body timeout, and its response marked as in progress until sent.
#[derive(Debug, Clone)]
struct ConnService {
    router: Router,
    conn: Arc<Conn>,
    peer: SocketAddr,
    header: Duration,
    counters: Arc<HttpCounters>,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<InFlightBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::start(self.conn.clone());
        let deadline = Instant::now() + self.header;
        let (conn, counters) = (self.conn.clone(), self.counters.clone());
        let mut request = request.map(|body| TimedBody {
            body,
            deadline,
            sleep: None,
            conn,
            counters,
        });
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let mut router = self.router.clone();
        Box::pin(async move {
            // A Router is always ready (its poll_ready returns Ready at once).
            let response = match tower_service::Service::call(&mut router, request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            Ok(response.map(|body| InFlightBody {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// A request in progress on its connection, from its handler's call until its response
/// is sent (or dropped).
#[derive(Debug)]
struct InFlight {
    conn: Arc<Conn>,
}

impl InFlight {
    fn start(conn: Arc<Conn>) -> Self {
        conn.phase.lock().request();
        Self { conn }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.conn.phase.lock().request_ended(Instant::now()) {
            self.conn.changed.notify_one();
        }
    }
}

/// A response body that keeps its request in progress while hyper sends it.
#[derive(Debug)]
struct InFlightBody {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for InFlightBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that must arrive whole by a deadline (the header timeout after its
/// head); later, reading it fails and the connection closes after the response.
#[derive(Debug)]
struct TimedBody {
    body: Incoming,
    deadline: Instant,
    /// Made the first time the body is not ready.
    sleep: Option<Pin<Box<Sleep>>>,
    conn: Arc<Conn>,
    counters: Arc<HttpCounters>,
}

/// The error a [`TimedBody`] gives when its deadline passes.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimeout;

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.counters.body_timeouts.fetch_add(1, Relaxed);
        this.conn.close.store(true, Relaxed);
        this.conn.changed.notify_one();
        Poll::Ready(Some(Err(BodyTimeout.into())))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnLimits {
        ConnLimits {
            header: Duration::from_secs(5),
            idle: Duration::from_secs(30),
            max_connections: 4,
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_new_connection_has_the_header_timeout_from_its_opening() {
        let t0 = Instant::now();
        let mut phase = Phase::opened(t0);
        assert_eq!(
            phase.deadline(&limits()),
            Some((t0 + secs(5), Expiry::Header))
        );
        // Its first bytes do not restart the clock: a trickled head still ends at 5 s.
        assert!(!phase.bytes_read(t0 + secs(4)));
        assert_eq!(
            phase.deadline(&limits()),
            Some((t0 + secs(5), Expiry::Header))
        );
        assert_eq!(phase.waiting_since(), Some(t0));
    }

    #[test]
    fn a_request_in_progress_has_no_deadline_and_cannot_be_evicted() {
        let t0 = Instant::now();
        let mut phase = Phase::opened(t0);
        phase.request();
        assert_eq!(phase.deadline(&limits()), None);
        assert_eq!(phase.waiting_since(), None);
        assert!(!phase.bytes_read(t0 + secs(100)));
        assert_eq!(phase.deadline(&limits()), None);
    }

    #[test]
    fn after_a_response_the_idle_timeout_runs_until_the_next_head_starts() {
        let t0 = Instant::now();
        let mut phase = Phase::opened(t0);
        phase.request();
        assert!(phase.request_ended(t0 + secs(1)));
        assert_eq!(
            phase.deadline(&limits()),
            Some((t0 + secs(31), Expiry::Idle))
        );
        // The next request's first byte at 20 s: its head is due by 25 s, not 31 s.
        assert!(phase.bytes_read(t0 + secs(20)));
        assert_eq!(
            phase.deadline(&limits()),
            Some((t0 + secs(25), Expiry::Header))
        );
        assert_eq!(phase.waiting_since(), Some(t0 + secs(20)));
    }

    #[test]
    fn overlapping_requests_end_the_busy_phase_with_the_last() {
        let t0 = Instant::now();
        let mut phase = Phase::opened(t0);
        phase.request();
        phase.request();
        assert!(!phase.request_ended(t0 + secs(1)));
        assert_eq!(phase.deadline(&limits()), None);
        assert!(phase.request_ended(t0 + secs(2)));
        assert_eq!(phase.waiting_since(), Some(t0 + secs(2)));
        // An end without a start (cannot happen) changes nothing.
        assert!(!phase.request_ended(t0 + secs(3)));
    }

    #[test]
    fn the_victim_is_the_connection_waiting_longest_and_never_a_busy_one() {
        let t0 = Instant::now();
        let table = Table::default();
        let add = |id: u64, phase: Phase| {
            let conn = Arc::new(Conn::new(t0));
            *conn.phase.lock() = phase;
            table.conns.lock().insert(id, conn.clone());
            conn
        };
        let busy = add(0, Phase::Busy { requests: 1 });
        let idle_old = add(
            1,
            Phase::Idle {
                since: t0 + secs(1),
            },
        );
        let head = add(
            2,
            Phase::Head {
                since: t0 + secs(2),
            },
        );
        let chosen = table.choose_victim().expect("a victim");
        assert!(Arc::ptr_eq(&chosen, &idle_old));
        let chosen = table.choose_victim().expect("a second victim");
        assert!(Arc::ptr_eq(&chosen, &head), "the first is not chosen twice");
        assert!(table.choose_victim().is_none(), "never the busy one");
        assert!(!busy.evicting.load(Relaxed));
    }
}
