//! The master's HTTP API (axum): `/gate` sends a client to the least-loaded live front,
//! `/status` describes the cluster as JSON, `/metrics` serves Prometheus text, `/healthz`
//! and `/readyz` answer probes, `/v1/rooms` is the matchmaker; the web pages are in [`crate::web`]. Every route is in [`router`];
//! errors are JSON `{"error": "..."}` (the matchmaker's add a `message`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::time::Instant;

use centrum_config::Config;
use centrum_net::{ServerTls, Shutdown};
use centrum_protocol::{NodeStats, Role};

use crate::conn::{self, ConnLimits};
use crate::login_limit::LoginLimiter;
use crate::matchmaker::{MatchError, Matchmaker};
use crate::metrics::HttpCounters;
use crate::registry::{Node, Registry, role_name};
use crate::sessions::Sessions;
use crate::{ChildStatus, SuperviseError, SupervisorHandle, metrics, web};

/// The largest request body read: the only one is the login form's token.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// What every handler reads.
#[derive(Debug, Clone)]
pub(crate) struct HttpState {
    pub(crate) config: Arc<Config>,
    pub(crate) registry: Registry,
    pub(crate) matchmaker: Matchmaker,
    /// The addresses actually bound (the config may say port 0).
    pub(crate) http: SocketAddr,
    pub(crate) nodes: SocketAddr,
    pub(crate) started: Instant,
    /// A game's own pages (`centrum::Cli::page`).
    pub(crate) pages: Arc<Vec<web::Page>>,
    /// The processes of this host, when the master runs under `centrum up`.
    pub(crate) supervisor: Option<SupervisorHandle>,
    /// What the nodes port counts (refused registrations, evicted handshakes).
    pub(crate) nodes_metrics: Arc<crate::nodes::NodesMetrics>,
    /// The dashboard's logins.
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) logins: Arc<LoginLimiter>,
    pub(crate) counters: Arc<HttpCounters>,
    /// The admin cookie gets `Secure` (sent over HTTPS only): true when the master
    /// serves TLS.
    pub(crate) secure_cookies: bool,
    /// The certificate, when the master serves https://.
    pub(crate) tls: Option<ServerTls>,
}

#[derive(Debug, Deserialize)]
struct GateQuery {
    channel: Option<String>,
}

#[derive(Debug, Serialize)]
struct GateReply {
    url: String,
    front: String,
    channel: String,
}

#[derive(Debug, Serialize)]
struct Status {
    master: MasterStatus,
    /// How often nodes report; rates are per second over one such interval.
    heartbeat_ms: u32,
    nodes: Vec<NodeStatus>,
    /// Configured fronts and backs with no live registration.
    down: Vec<String>,
    channels: Vec<ChannelStatus>,
    /// Clients connected to live fronts.
    clients: u64,
    configured: Configured,
    /// The processes this master supervises (`centrum up`), by id; empty otherwise.
    supervised: Vec<SupervisedStatus>,
}

/// A supervised process: what `up` is doing with it, whether or not it is registered.
#[derive(Debug, Serialize)]
struct SupervisedStatus {
    id: String,
    /// `running`, `restarting`, `failed` (it keeps exiting; retried every
    /// `supervision.restart_max_ms`) or `stopped`.
    state: &'static str,
    pid: Option<u32>,
    /// The process was left running by an `up` that died, and taken over.
    adopted: bool,
    restarts: u64,
    /// Quick exits in a row.
    failures: u32,
    /// How its last run ended: `exit code 1`, `signal 9`, ...
    last_exit: Option<String>,
    /// The end of its last run's output, a few KB at most.
    stderr_tail: Option<String>,
    /// When it is started again, while restarting or failed.
    retry_in_ms: Option<u64>,
    log: Option<String>,
}

#[derive(Debug, Serialize)]
struct MasterStatus {
    http: String,
    nodes: String,
    uptime_s: f64,
}

#[derive(Debug, Serialize)]
struct NodeStatus {
    id: String,
    role: &'static str,
    pid: u32,
    listen: String,
    client_url: String,
    registered_s_ago: f64,
    last_heartbeat_ms_ago: u64,
    clients: u32,
    links: u32,
    /// Every metric the node reports, summed over its labels.
    metrics: BTreeMap<String, f64>,
    /// Each counter's change per second between the node's last two heartbeats; empty
    /// until the second one.
    rates: BTreeMap<String, f64>,
}

#[derive(Debug, Default, Serialize)]
struct ChannelStatus {
    name: String,
    app: String,
    back: String,
    /// The owning back is live; the numbers below are from its latest heartbeat.
    live: bool,
    clients: u32,
    entities: u32,
    tick: u32,
    tick_hz: u32,
    tick_us_avg: u64,
    tick_us_max: u64,
    overruns: u64,
    inputs_per_s: f64,
    patch_bytes_per_s: f64,
}

#[derive(Debug, Serialize)]
struct Configured {
    fronts: Vec<String>,
    backs: Vec<String>,
}

/// Serves the API on `listener` until `shutdown`, then finishes the requests in flight
/// (see [`conn::serve`]).
pub(crate) async fn serve(listener: TcpListener, state: HttpState, shutdown: Shutdown) {
    let limits = ConnLimits::new(&state.config.master.limits);
    let counters = state.counters.clone();
    let tls = state.tls.clone();
    conn::serve(listener, router(state), limits, counters, tls, shutdown).await;
}

/// Every route of the API.
pub(crate) fn router(state: HttpState) -> Router {
    // The admin API: behind the admin token when one is configured.
    let admin_api = Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/nodes/{id}/restart", post(restart))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            web::require_admin,
        ));
    Router::new()
        .route("/", get(web::play))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/gate", get(gate))
        .route("/v1/rooms", get(rooms))
        .route("/v1/rooms/{name}/{action}", post(matchmake))
        .route("/admin", get(web::admin))
        .route("/admin/login", post(web::login))
        .route("/admin/logout", post(web::logout))
        .route("/assets/{name}", get(web::asset))
        .merge(admin_api)
        .fallback(web::page_or_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// `GET /healthz`: the master runs and answers (liveness); open, like `/readyz`.
async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: the master is ready once it serves this: its registry is up before its
/// HTTP port is served, and nodes register with it from then on.
async fn readyz() -> &'static str {
    "ready\n"
}

/// `GET /gate?channel=C`: the live front with the fewest clients. Every front serves
/// every channel (fronts link to every back), so any live front qualifies. `C` may be a
/// channel of the config or a room's id (a client reconnecting to its room).
async fn gate(
    State(state): State<HttpState>,
    query: Result<Query<GateQuery>, QueryRejection>,
) -> Response {
    let channel = match query {
        Ok(Query(GateQuery {
            channel: Some(channel),
        })) if !channel.is_empty() => channel,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "missing query parameter \"channel\": use GET /gate?channel=NAME".into(),
            );
        }
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("bad query string: {}", rejection.body_text()),
            );
        }
    };
    if state.config.channel_owner(&channel).is_none() && state.config.room_owner(&channel).is_none()
    {
        return error(
            StatusCode::NOT_FOUND,
            format!("unknown channel {channel:?}"),
        );
    }
    let Some(front) = state.registry.least_loaded_front(Instant::now()) else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no live front".into());
    };
    let url = client_url(&state.config, &front);
    Json(GateReply {
        url,
        front: front.id,
        channel,
    })
    .into_response()
}

#[derive(Debug, Deserialize)]
struct RoomsQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// `GET /v1/rooms[?type=T]`: the rooms of a type (or all), as their backs reported them.
async fn rooms(
    State(state): State<HttpState>,
    query: Result<Query<RoomsQuery>, QueryRejection>,
) -> Response {
    match query {
        Ok(Query(q)) => Json(state.matchmaker.list(q.kind.as_deref())).into_response(),
        Err(rejection) => matched::<()>(Err(MatchError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: format!("bad query string: {}", rejection.body_text()),
        })),
    }
}

/// What a matchmaking request may carry; every field may be left out.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchBody {
    #[serde(default)]
    options: serde_json::Value,
    #[serde(default)]
    filter: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Serialize)]
struct SeatReply {
    room: String,
    #[serde(rename = "type")]
    kind: String,
    front: String,
    seat: String,
    expires_in_ms: u64,
}

/// `POST /v1/rooms/{type}/join-or-create`, `/v1/rooms/{type}/create` and
/// `/v1/rooms/{room}/join`: a seat reservation (PROTOCOL.md, rooms).
async fn matchmake(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((name, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let body: MatchBody = if body.iter().all(u8::is_ascii_whitespace) {
        MatchBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(body) => body,
            Err(e) => {
                return matched::<()>(Err(MatchError {
                    status: StatusCode::BAD_REQUEST,
                    code: "bad_request",
                    message: format!(
                        "the body must be JSON {{\"options\": ..., \"filter\": {{...}}}}: {e}"
                    ),
                }));
            }
        }
    };
    let mm = &state.matchmaker;
    let ip = peer.ip();
    let reserved = match action.as_str() {
        "join-or-create" => {
            let filter = body.filter.unwrap_or_default();
            mm.join_or_create(&name, &body.options, &filter, ip).await
        }
        "create" => mm.create(&name, &body.options, ip).await,
        "join" => mm.join_by_id(&name).await,
        _ => {
            return matched::<()>(Err(MatchError {
                status: StatusCode::NOT_FOUND,
                code: "bad_request",
                message: format!(
                    "no action {action:?}: use join-or-create, create (of a type) or join (of a room)"
                ),
            }));
        }
    };
    matched(reserved.map(|r| {
        let front = client_url(&state.config, &r.front);
        SeatReply {
            front,
            room: r.room,
            kind: r.kind,
            seat: r.token,
            expires_in_ms: r.expires_in.as_millis() as u64,
        }
    }))
}

/// A matchmaker answer: the value, or `{"error": code, "message": ...}` with its status.
fn matched<T: Serialize>(result: Result<T, MatchError>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(e) => {
            let body = Json(serde_json::json!({ "error": e.code, "message": e.message }));
            let mut response = (e.status, body).into_response();
            if e.status == StatusCode::TOO_MANY_REQUESTS {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            }
            response
        }
    }
}

/// `GET /status`: the master, the live nodes, and every configured channel.
async fn status(State(state): State<HttpState>) -> Json<Status> {
    let now = Instant::now();
    let live = state.registry.live(now);
    let nodes = live
        .iter()
        .map(|node| NodeStatus {
            id: node.id.clone(),
            role: role_name(node.role),
            pid: node.pid,
            listen: node.listen.clone(),
            client_url: match node.role {
                Role::Front => client_url(&state.config, node),
                Role::Back => String::new(),
            },
            registered_s_ago: now.saturating_duration_since(node.registered).as_secs_f64(),
            last_heartbeat_ms_ago: u64::try_from(
                now.saturating_duration_since(node.last_seen).as_millis(),
            )
            .unwrap_or(u64::MAX),
            clients: node.stats.clients,
            links: node.stats.links,
            metrics: sums(&node.stats, |_| true),
            rates: rates(node, |_| true),
        })
        .collect();
    // A pool has no fixed members to miss.
    let down = state
        .config
        .fronts
        .iter()
        .filter(|f| !f.pool)
        .map(|f| &f.id)
        .chain(state.config.backs.iter().map(|b| &b.id))
        .filter(|id| !live.iter().any(|node| &node.id == *id))
        .cloned()
        .collect();
    let mut channels = Vec::new();
    for back in &state.config.backs {
        let owner = live
            .iter()
            .find(|node| node.role == Role::Back && node.id == back.id);
        for channel in &back.channels {
            let mut entry = ChannelStatus {
                name: channel.name.clone(),
                app: channel.app.clone(),
                back: back.id.clone(),
                live: owner.is_some(),
                ..ChannelStatus::default()
            };
            let reported = owner.and_then(|node| {
                node.stats
                    .channels
                    .iter()
                    .find(|stats| stats.name == channel.name)
            });
            if let Some(stats) = reported {
                entry.clients = stats.clients;
                entry.entities = stats.entities;
                entry.tick = stats.tick;
                entry.tick_hz = stats.tick_hz;
                entry.tick_us_avg = stats.tick_us_avg;
                entry.tick_us_max = stats.tick_us_max;
                entry.overruns = stats.overruns;
            }
            if let Some(node) = owner {
                let this_channel = |labels: &[(String, String)]| {
                    labels
                        .iter()
                        .any(|(k, v)| k == "channel" && *v == channel.name)
                };
                let per_s = rates(node, this_channel);
                let rate = |name: &str| per_s.get(name).copied().unwrap_or(0.0);
                entry.inputs_per_s = rate("centrum_back_inputs_total");
                entry.patch_bytes_per_s = rate("centrum_back_patch_bytes_total");
            }
            channels.push(entry);
        }
    }
    let clients = live
        .iter()
        .filter(|node| node.role == Role::Front)
        .map(|node| u64::from(node.stats.clients))
        .sum();
    Json(Status {
        master: MasterStatus {
            http: state.http.to_string(),
            nodes: state.nodes.to_string(),
            uptime_s: now.saturating_duration_since(state.started).as_secs_f64(),
        },
        heartbeat_ms: state.config.limits.heartbeat_ms,
        nodes,
        down,
        channels,
        clients,
        configured: Configured {
            fronts: (state.config.fronts.iter())
                .map(|f| match f.pool {
                    true => format!("{}-*", f.id),
                    false => f.id.clone(),
                })
                .collect(),
            backs: state.config.backs.iter().map(|b| b.id.clone()).collect(),
        },
        supervised: supervised(&state)
            .into_iter()
            .map(|child| SupervisedStatus {
                state: child.state.as_str(),
                pid: child.pid,
                adopted: child.adopted,
                restarts: child.restarts,
                failures: child.failures,
                retry_in_ms: child.retry_at.map(|at| {
                    u64::try_from(at.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX)
                }),
                log: child.log.as_ref().map(|p| p.display().to_string()),
                last_exit: child.last_exit,
                stderr_tail: child.stderr_tail,
                id: child.name,
            })
            .collect(),
    })
}

fn supervised(state: &HttpState) -> Vec<ChildStatus> {
    state
        .supervisor
        .as_ref()
        .map(SupervisorHandle::children)
        .unwrap_or_default()
}

/// `GET /metrics`: Prometheus text exposition.
async fn metrics(State(state): State<HttpState>) -> Response {
    let now = Instant::now();
    let live = state.registry.live(now);
    let sessions = state.sessions.live(now) as u64;
    state.counters.sessions.store(sessions, Relaxed);
    let mut own = state.nodes_metrics.metrics();
    own.extend(state.matchmaker.metrics());
    if let Some(tls) = &state.tls {
        own.extend(metrics::tls_metrics(tls.counters()));
    }
    let text = metrics::render(
        &state.config,
        &live,
        &supervised(&state),
        &state.counters,
        &own,
    );
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
}

#[derive(Debug, Serialize)]
struct Restarted {
    node: String,
    pid: u32,
}

/// `POST /nodes/{id}/restart`: stops the node's process if one runs, forgets its
/// failures and starts it again; answers with the new pid once it runs.
async fn restart(State(state): State<HttpState>, Path(id): Path<String>) -> Response {
    let shown: String = id.chars().take(64).collect();
    let host = match (state.config.front(&id), state.config.back(&id)) {
        (Some(front), _) => &front.host,
        (None, Some(back)) => &back.host,
        (None, None) => {
            return error(StatusCode::NOT_FOUND, format!("unknown node {shown:?}"));
        }
    };
    let Some(supervisor) = &state.supervisor else {
        return error(
            StatusCode::CONFLICT,
            format!(
                "this master supervises no processes (`centrum master`, or `up --in-process`); \
                 restart {id} where it runs"
            ),
        );
    };
    // Stopping takes at most the grace period, then SIGKILL and the same again.
    let limit = state.config.supervision.stop_grace() * 2 + std::time::Duration::from_secs(5);
    match tokio::time::timeout(limit, supervisor.restart(&id)).await {
        Ok(Ok(pid)) => {
            tracing::info!(node = %id, pid, "restarted at an operator's request");
            Json(Restarted { node: id, pid }).into_response()
        }
        Ok(Err(SuperviseError::Unknown(_))) => error(
            StatusCode::CONFLICT,
            format!("{id} runs on host {host}, not under this master's `centrum up`"),
        ),
        Ok(Err(e @ SuperviseError::Busy(_))) => error(StatusCode::CONFLICT, e.to_string()),
        Ok(Err(e @ SuperviseError::NotStarted { .. })) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            format!("{id} was not restarted within {} s", limit.as_secs()),
        ),
    }
}

/// Each metric of `stats` whose labels pass `keep`, summed by name.
fn sums(stats: &NodeStats, keep: impl Fn(&[(String, String)]) -> bool) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for metric in stats.metrics.iter().filter(|m| keep(&m.labels)) {
        *out.entry(metric.name.clone()).or_insert(0.0) += metric.value;
    }
    out
}

/// Per-second change of each counter (`*_total`) whose labels pass `keep`, between the
/// node's last two heartbeats. A counter that went down (the node restarted under the
/// same registration, which cannot happen, or wrapped) reads as 0.
fn rates(node: &Node, keep: impl Fn(&[(String, String)]) -> bool) -> BTreeMap<String, f64> {
    let Some((then, before)) = &node.previous else {
        return BTreeMap::new();
    };
    let seconds = node
        .last_seen
        .saturating_duration_since(*then)
        .as_secs_f64();
    if seconds <= 0.0 {
        return BTreeMap::new();
    }
    let before = sums(before, &keep);
    sums(&node.stats, &keep)
        .into_iter()
        .filter(|(name, _)| name.ends_with("_total"))
        .map(|(name, now)| {
            let was = before.get(&name).copied().unwrap_or(0.0);
            let rate = ((now - was) / seconds).max(0.0);
            (name, rate)
        })
        .collect()
}

pub(crate) async fn not_found(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no route for {method} {}; the master serves /, /admin, /gate?channel=NAME, /status, /metrics, \
             /healthz, /readyz and POST /nodes/ID/restart",
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

/// The URL clients of `front` are sent to. It comes from the config, never from what
/// a registering process says, so that no process can send clients elsewhere. The one
/// thing a registration tells is the port of a front configured on port 0 (tests and
/// trials), which is known only once it runs.
fn client_url(config: &Config, front: &Node) -> String {
    let Some(configured) = config.front(&front.id) else {
        return String::new();
    };
    let url = configured.client_url();
    if configured.public_url.is_some() || configured.listen.port() != 0 {
        return url;
    }
    match (front.listen.parse::<SocketAddr>(), url.strip_suffix(":0")) {
        (Ok(bound), Some(base)) => format!("{base}:{}", bound.port()),
        _ => url,
    }
}

pub(crate) fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}
