//! A node's operations port (`fronts[].ops`, `backs[].ops`): plain HTTP/1.1 serving
//! `/healthz` (liveness), `/readyz` (readiness) and `/metrics` (the node's own metrics,
//! as in its heartbeats), so that probes and scrapers reach each node directly. One
//! request per connection, a cap on connections and a deadline on each; no body is read.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use centrum_config::Secret;
use centrum_protocol::{Metric, MetricKind};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::debug;

use crate::{Acceptor, Shutdown, prometheus};

/// Connections served at once; more wait in the listen backlog until one ends (each
/// ends within [`CONNECTION_TIMEOUT`]). Probes and scrapers need a handful.
const MAX_CONNECTIONS: usize = 32;

/// A connection must send its request head within this.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection is closed this long after it opened, whatever it is doing: its
/// request's head, the answer, and a client slow to read it.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// hyper's read buffer, and so the largest request head (a larger one gets 431);
/// hyper's smallest allowed.
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// After the shutdown signal, how long connections in progress may take to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// What the operations port asks of the node it serves.
pub trait OpsNode: Send + Sync {
    /// Every metric the node reports in its heartbeats, read without resetting any of
    /// them (a scrape must not take from the master's view).
    fn metrics(&self) -> Vec<Metric>;

    /// `Ok` when the node can take work; else why not, in one line.
    ///
    /// # Errors
    /// The reason the node is not ready.
    fn ready(&self) -> Result<(), String>;
}

/// What the operations port counts: each of its limits as it acts. Part of the
/// node's metrics (zero without an operations port).
#[derive(Debug, Default)]
pub struct OpsCounters {
    /// Failed accepts (out of file descriptors, for example), waited out.
    pub accept_errors: AtomicU64,
    /// Connections closed at [`HEAD_TIMEOUT`] or [`CONNECTION_TIMEOUT`].
    pub timeouts: AtomicU64,
    /// Times the port was at [`MAX_CONNECTIONS`] and left new connections waiting.
    pub full: AtomicU64,
    /// `/metrics` requests refused (401) without the admin token.
    pub unauthorized: AtomicU64,
}

impl OpsCounters {
    /// The counters as metrics named `centrum_<role>_ops_*` (role: `front` or `back`).
    pub fn metrics(&self, role: &str, out: &mut Vec<Metric>) {
        for (name, help, counter) in [
            (
                "accept_errors_total",
                "Failed accepts on the node's ops port (for want of file descriptors or memory).",
                &self.accept_errors,
            ),
            (
                "timeouts_total",
                "Connections to the node's ops port closed for time: no request head within 5 s, or not done within 10 s.",
                &self.timeouts,
            ),
            (
                "full_total",
                "Times the node's ops port had 32 connections open and left new ones waiting.",
                &self.full,
            ),
            (
                "unauthorized_total",
                "Requests for the node's /metrics refused (401) without master.admin_token.",
                &self.unauthorized,
            ),
        ] {
            out.push(Metric {
                name: format!("centrum_{role}_ops_{name}"),
                help: help.into(),
                kind: MetricKind::Counter,
                labels: Vec::new(),
                value: counter.load(Relaxed) as f64,
            });
        }
    }
}

/// What the operations port serves: the node once it is set (until then it is live
/// but not ready), and the token `/metrics` needs.
pub struct Ops {
    node: OnceLock<Arc<dyn OpsNode>>,
    counters: Arc<OpsCounters>,
    /// `master.admin_token`, when set.
    token: Option<Secret>,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops")
            .field("started", &self.node.get().is_some())
            .field("counters", &self.counters)
            .field("token", &self.token)
            .finish()
    }
}

impl Ops {
    pub fn new(counters: Arc<OpsCounters>, token: Option<Secret>) -> Arc<Ops> {
        Arc::new(Ops {
            node: OnceLock::new(),
            counters,
            token,
        })
    }

    /// The node has started: `/readyz` and `/metrics` ask it from now on. Set once;
    /// a later call changes nothing.
    pub fn set_node(&self, node: Arc<dyn OpsNode>) {
        let _ = self.node.set(node);
    }

    /// True when there is no token, or `headers` carry it as a bearer token.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .filter_map(|value| value.strip_prefix("Bearer "))
            .any(|token| expected.matches(token.trim()))
    }
}

/// Binds the operations port at `addr`, from synchronous code in a Tokio runtime.
///
/// # Errors
/// When the address cannot be bound (in use, not of this machine, privileged).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// The ops port the config sets in `field` could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("{field}: cannot listen on {addr}: {source}")]
pub struct BindError {
    pub field: String,
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

/// Binds the operations port at `addr` (set by the config's `field`) and serves it in a
/// task of `tasks` until `shutdown`: the port's [`Ops`] (for the node to
/// [`Ops::set_node`]) and bound address.
///
/// # Errors
/// [`BindError`] as [`bind`].
pub fn start<E: Send + 'static>(
    (field, addr): (String, SocketAddr),
    counters: Arc<OpsCounters>,
    token: Option<Secret>,
    tasks: &mut JoinSet<Result<(), E>>,
    shutdown: &Shutdown,
) -> Result<(Arc<Ops>, SocketAddr), BindError> {
    let bound = bind(addr).and_then(|l| Ok((l.local_addr()?, l)));
    let (bound, listener) = bound.map_err(|source| BindError {
        field,
        addr,
        source,
    })?;
    let ops = Ops::new(counters, token);
    let (served, stop) = (ops.clone(), shutdown.clone());
    tasks.spawn(async move {
        serve(listener, served, stop).await;
        Ok(())
    });
    Ok((ops, bound))
}

/// Serves the operations port on `listener` until `shutdown`, then gives connections in
/// progress [`DRAIN_TIMEOUT`] to finish.
pub async fn serve(listener: TcpListener, ops: Arc<Ops>, shutdown: Shutdown) {
    let router = router(ops.clone());
    let mut acceptor = Acceptor::new(listener);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = JoinSet::new();
    loop {
        if permits.available_permits() == 0 {
            ops.counters.full.fetch_add(1, Relaxed);
        }
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            permit = permits.clone().acquire_owned() => permit,
        };
        // Invariant: the semaphore is never closed.
        let Ok(permit) = permit else { break };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = acceptor.accept(&ops.counters.accept_errors) => accepted,
        };
        let (router, counters) = (router.clone(), ops.counters.clone());
        tasks.spawn(async move {
            serve_connection(stream, peer, router, &counters).await;
            drop(permit);
        });
    }
    drop(acceptor);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        tasks.shutdown().await;
    }
}

/// One request on `stream` (no keep-alive: a probe or a scrape opens a connection
/// each time, and so no request body is ever waited for).
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    counters: &OpsCounters,
) {
    let service = hyper::service::service_fn(move |request: axum::http::Request<Incoming>| {
        let mut router = router.clone();
        async move {
            // A Router is always ready and never fails.
            let response = tower_service::Service::call(&mut router, request).await;
            Ok::<_, Infallible>(match response {
                Ok(response) => response,
                Err(never) => match never {},
            })
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.is_timeout() => {
            counters.timeouts.fetch_add(1, Relaxed);
            debug!(%peer, "ops connection sent no request head in time");
        }
        Ok(Err(e)) => debug!(%peer, error = %e, "ops connection ended"),
        Err(_) => {
            counters.timeouts.fetch_add(1, Relaxed);
            debug!(%peer, "ops connection closed at its deadline");
        }
    }
}

fn router(ops: Arc<Ops>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(ops)
}

/// `GET /healthz`: the process runs and answers.
async fn healthz() -> Response {
    text(StatusCode::OK, "ok".into())
}

/// `GET /readyz`: 200 `ready`, or 503 with the reason in one line.
async fn readyz(State(ops): State<Arc<Ops>>) -> Response {
    let verdict = match ops.node.get() {
        None => Err("starting".to_owned()),
        Some(node) => node.ready(),
    };
    match verdict {
        Ok(()) => text(StatusCode::OK, "ready".into()),
        Err(reason) => {
            let line = reason.replace(['\r', '\n'], " ");
            text(StatusCode::SERVICE_UNAVAILABLE, line)
        }
    }
}

/// `GET /metrics`: the node's metrics in the text exposition format, behind the admin
/// token when one is set; empty while the node starts.
async fn metrics(State(ops): State<Arc<Ops>>, headers: HeaderMap) -> Response {
    if !ops.authorized(&headers) {
        ops.counters.unauthorized.fetch_add(1, Relaxed);
        // At debug: a scraper set up without the token would fill the log.
        debug!("ops /metrics refused without the admin token");
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "this cluster requires the admin token: send \"Authorization: Bearer <token>\"".into(),
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"centrum node\""),
        );
        return response;
    }
    let body = ops
        .node
        .get()
        .map(|node| prometheus::render(&node.metrics()))
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)], body).into_response()
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no route for {method} {}; a node's ops port serves GET /healthz, /readyz and /metrics",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not accept {method}", uri.path()),
    )
}

/// One line of plain text.
fn text(status: StatusCode, mut line: String) -> Response {
    line.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        line,
    )
        .into_response()
}

#[derive(Debug, Serialize)]
struct ErrorBody {
    error: String,
}

/// `{"error": "..."}`, as the master's errors.
fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(ErrorBody { error: message })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    use parking_lot::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// A node whose readiness the test sets.
    struct Node {
        ready: Mutex<Result<(), String>>,
    }

    impl OpsNode for Node {
        fn metrics(&self) -> Vec<Metric> {
            vec![Metric {
                name: "centrum_test_total".into(),
                help: "A test counter.".into(),
                kind: MetricKind::Counter,
                labels: vec![("k".into(), "v".into())],
                value: 3.0,
            }]
        }

        fn ready(&self) -> Result<(), String> {
            self.ready.lock().clone()
        }
    }

    /// The whole response to `request`, sent on a new connection.
    async fn ask(addr: SocketAddr, request: &str) -> String {
        let exchange = async {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.write_all(request.as_bytes()).await.expect("write");
            let mut out = Vec::new();
            stream.read_to_end(&mut out).await.expect("read");
            String::from_utf8(out).expect("utf-8")
        };
        tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .expect("an answer in time")
    }

    fn get(path: &str, extra: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: node\r\n{extra}\r\n")
    }

    #[tokio::test]
    async fn health_readiness_metrics_and_errors() {
        let counters = Arc::new(OpsCounters::default());
        let ops = Ops::new(counters.clone(), Some(Secret::new("the admin token")));
        let listener = bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = Shutdown::new();
        let server = tokio::spawn(serve(listener, ops.clone(), shutdown.clone()));

        let health = ask(addr, &get("/healthz", "")).await;
        assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
        assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
        let starting = ask(addr, &get("/readyz", "")).await;
        assert!(starting.starts_with("HTTP/1.1 503 "), "{starting}");
        assert!(starting.ends_with("\r\n\r\nstarting\n"), "{starting}");

        let node = Arc::new(Node {
            ready: Mutex::new(Err("no link\nto back-1".into())),
        });
        ops.set_node(node.clone());
        let not_ready = ask(addr, &get("/readyz", "")).await;
        assert!(
            not_ready.ends_with("\r\n\r\nno link to back-1\n"),
            "{not_ready}"
        );
        *node.ready.lock() = Ok(());
        let ready = ask(addr, &get("/readyz", "")).await;
        assert!(ready.starts_with("HTTP/1.1 200 OK\r\n"), "{ready}");
        assert!(ready.ends_with("\r\n\r\nready\n"), "{ready}");

        let refused = ask(addr, &get("/metrics", "Authorization: Bearer wrong\r\n")).await;
        assert!(refused.starts_with("HTTP/1.1 401 "), "{refused}");
        assert!(
            refused
                .to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{refused}"
        );
        assert_eq!(counters.unauthorized.load(Relaxed), 1);
        let scraped = ask(
            addr,
            &get("/metrics", "Authorization: Bearer the admin token\r\n"),
        )
        .await;
        assert!(scraped.starts_with("HTTP/1.1 200 OK\r\n"), "{scraped}");
        assert!(
            scraped.contains("content-type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            "{scraped}"
        );
        assert!(
            scraped.ends_with("# TYPE centrum_test_total counter\ncentrum_test_total{k=\"v\"} 3\n"),
            "{scraped}"
        );

        let missing = ask(addr, &get("/status", "")).await;
        assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
        assert!(
            missing.contains("{\"error\":\"no route for GET /status"),
            "{missing}"
        );
        let posted = ask(
            addr,
            "POST /healthz HTTP/1.1\r\nHost: node\r\nContent-Length: 1000000\r\n\r\n",
        )
        .await;
        assert!(posted.starts_with("HTTP/1.1 405 "), "{posted}");
        let garbage = ask(addr, "\0\0\0 not http\r\n\r\n").await;
        assert!(
            garbage.is_empty() || garbage.starts_with("HTTP/1.1 400 "),
            "{garbage}"
        );

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server stops")
            .expect("no panic");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_at_the_head_timeout() {
        let counters = Arc::new(OpsCounters::default());
        let ops = Ops::new(counters.clone(), None);
        let listener = bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = Shutdown::new();
        tokio::spawn(serve(listener, ops, shutdown.clone()));
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(b"GET /heal").await.expect("write");
        let opened = tokio::time::Instant::now();
        let mut out = Vec::new();
        let read = tokio::time::timeout(CONNECTION_TIMEOUT * 2, stream.read_to_end(&mut out));
        assert!(read.await.is_ok(), "the connection is closed");
        let after = opened.elapsed();
        assert!(
            (HEAD_TIMEOUT..CONNECTION_TIMEOUT).contains(&after),
            "closed after {after:?}"
        );
        assert_eq!(counters.timeouts.load(Relaxed), 1);
        shutdown.cancel();
    }
}
