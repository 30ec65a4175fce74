//! centrum's cluster config: one TOML file declares the master, every front and every back,
//! their channels and the shared limits. [`Config::parse`] and [`Config::load`] read and
//! validate it; [`Config::embedded_default`] is a one-machine cluster for trying things out.

mod auth;
mod validate;

pub use auth::{AuthConfig, JwtAlgorithm, MIN_HMAC_SECRET};

pub use validate::{NAME_RULE, is_name};

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The default cluster, also shipped as an example config users can copy.
///
/// It must parse and validate: [`Config::embedded_default`] relies on it and a test proves it.
pub const DEFAULT_TOML: &str = r#"# centrum cluster config: one file for every process in the cluster.
# Each process is started with this file and the id of its role. `host` names the machine
# a process runs on (default "127.0.0.1"): `centrum up --host H` starts the processes
# placed on H, two processes on one host cannot bind one port, and a process listening
# on a wildcard IP (0.0.0.0) is dialed at `host` unless it sets its address (`advertise`,
# `public_url`). Port 0 asks the OS for a free port.

[master]
# host = "127.0.0.1"
http = "127.0.0.1:7300"    # the master's HTTP endpoint
nodes = "127.0.0.1:7301"   # fronts and backs connect and heartbeat here
# advertise = "10.0.0.1:7301"  # where fronts and backs on other machines dial `nodes` (an IP or a DNS
#                              #   name, and a port); default `nodes`, with `host` for a wildcard IP
# admin_token = "change-me-to-a-long-secret"   # protects /admin, /status and /metrics
# admin_token_env = "CENTRUM_ADMIN_TOKEN"       # or read it from this environment variable,
# admin_token_file = "admin.token"              #   or this file's first line (either wins over admin_token)
# tls = { cert = "master.crt", key = "master.key" }  # serve https:// (PEM files; relative paths are
#                                                    #   relative to this file's folder). Default: plain http://

# The master's HTTP endpoint. Every setting may be omitted; the values shown are the defaults.
# [master.limits]
# header_timeout_ms = 5000       # a request's head must arrive within this long of its first byte (or of
#                                #   the connection opening), and its body within this long after the head;
#                                #   else the connection is closed (100-120000)
# idle_timeout_ms = 30000        # a connection with no request for this long is closed (100-3600000)
# max_connections = 1024         # connections served at once; at the cap, each new connection closes the
#                                #   open one that has waited longest for a request (1-65536)
# login_attempts_per_minute = 5  # dashboard logins per client address (IPv6: per /64) per minute; more get
#                                #   HTTP 429 (1-1000)
# session_ms = 43200000          # how long a dashboard login lasts (60000-2592000000)
# max_sessions = 1024            # dashboard logins kept at once; a new one ends the oldest (1-65536)

# Every process proves to the others that it belongs to the cluster, with a shared secret
# (16-1024 characters) that never crosses the wire. It is read, in this order, from the
# environment variable named by secret_env, from secret_file, or from secret. Without any,
# `centrum up` makes a random one for the processes it starts (kept in its run_dir).
# [cluster]
# secret_env = "CENTRUM_CLUSTER_SECRET"   # the default
# secret_file = "cluster.secret"          # its first line; relative to this file's folder
# secret = "change-me-to-a-long-secret"   # inline: for tests; a file or the environment is better
# ca = "cluster-ca.pem"                   # the certificates fronts trust for links to backs with `tls`

# One [[fronts]] table per front. Clients connect to a front over WebSocket.
[[fronts]]
id = "front-1"             # 1-64 characters of a-z, A-Z, 0-9, '-' or '_'; unique over fronts and backs
# pool = true              # a pool of fronts sharing this table: each is started as
#                          #   `centrum front --id <id>-<suffix>` (any suffix, the whole id 1-64
#                          #   characters as above), as many as you like; `up` starts one, <id>-1
# host = "127.0.0.1"
listen = "127.0.0.1:7310"
# public_url = "wss://play.example.com/front-1"   # the URL clients dial; default ws://<listen>, wss://<listen> with tls
#                                                 #   (with `host` for a wildcard IP); fronts behind one load
#                                                 #   balancer may share one
# tls = { cert = "front-1.crt", key = "front-1.key" }  # serve wss:// (PEM certificate chain and private key;
#                                                      #   reloaded on SIGHUP or when a file changes). Default: plain ws://
# ops = "127.0.0.1:7390"   # /healthz, /readyz, /metrics of this node (plain HTTP; /metrics needs
#                          #   master.admin_token when it is set); any address of the host, a port of
#                          #   its own. Default: none

# One [[backs]] table per back. A back runs the simulation of the channels it owns.
[[backs]]
id = "back-1"
# host = "127.0.0.1"
listen = "127.0.0.1:7320"
# advertise = "10.0.0.2:7320"  # where fronts on other machines dial this back (an IP or a DNS name, and a
#                              #   port); default `listen`, with `host` for a wildcard IP
# ops = "127.0.0.1:7391"   # /healthz, /readyz, /metrics of this node, as for a front. Default: none
tick_hz = 20               # ticks per second, 1-240
# Each channel is owned by exactly one back; `app` names the game logic it runs.
# `anonymous = true` lets clients without a token join it when [auth] is set (default false).
channels = [{ name = "arena", app = "arena" }]
# Room types: rooms made at run time through the master's matchmaker (POST /v1/rooms/...),
# each a channel of its own on a back that offers the type; several backs may offer one
# type (they must agree on app and max_clients), and new rooms go to the least loaded.
#   type            1-64 characters of a-z, A-Z, 0-9, '-' or '_'
#   app             the game a room of this type runs
#   max_clients     seats per room (1-10000)
#   max_rooms       rooms of this type on this back at once (1-100000; default 1000)
#   empty_dispose_s a room empty this long is disposed (0 = at once; 0-86400; default 30)
#   anonymous       with [auth]: clients without a token may join (default false)
rooms = [{ type = "match", app = "arena", max_clients = 8, max_rooms = 100 }]
# data_dir = "/var/lib/centrum/back-1"   # where this back keeps its channels; default <store.dir>/<id>
# tls = { cert = "back-1.crt", key = "back-1.key" }  # links from fronts over TLS (checked against cluster.ca,
#                                                    #   for the listen IP); default plain, on a private network

# Every channel is durable: its back keeps a snapshot and a journal of every tick, and
# a restarted back carries on from its last durable tick. The values shown are the defaults.
# [store]
# kind = "disk"                  # "disk"; "redis": on a Redis server, so that a back can come back on
#                                #   another host (docs/STORAGE.md); or "memory": keep nothing across a
#                                #   restart (tests, demos)
# dir = "centrum-data"           # a back's data_dir defaults to <dir>/<back id>; relative paths are relative
#                                #   to this file's folder (the working directory for a built-in config)
# fsync = "tick"                 # when the journal reaches the disk; "tick": before a tick's inputs are
#                                #   acknowledged (a power cut loses nothing acknowledged);
#                                #   "interval": at most every fsync_interval_ms (a power cut may lose that much);
#                                #   "never": left to the OS (a crash of the back loses nothing, a power cut may)
# fsync_interval_ms = 100        # (1-60000)
# With kind = "redis" (what each fsync value then guarantees: docs/STORAGE.md). The server's URL,
# redis://[[user]:password@]host[:port][/db] or redis+unix:///path, may hold a password: it is read from
# the environment variable named by url_env, else from url_file, else from url, and never printed.
# url_env = "CENTRUM_STORE_URL"  # the default
# url_file = "store.url"         # its first line; relative to this file's folder
# url = "redis://127.0.0.1:6379/0"   # inline
# prefix = "centrum"             # every key starts with it: <prefix>:{<back id>}:... (1-64 of A-Z a-z 0-9 _ - . :)
# lease_ms = 10000               # a back holds its id in the store with a lease this long, renewed every
#                                #   third of it; a back that cannot renew it stops, and a replacement
#                                #   takes over once it ends (1000-600000)
# snapshot_every_ms = 60000      # a snapshot of each channel this often (1000-86400000) ...
# snapshot_journal_bytes = 67108864  # ... or once its journal grows this much (65536-17179869184)

# Every limit may be omitted; the values shown are the defaults.
# [limits]
# max_frame_bytes = 1048576      # largest frame between processes (1024-67108864)
# max_message_bytes = 65536      # largest WebSocket message from a client (64-16777216, <= max_frame_bytes)
# client_queue = 256             # messages queued per client before slow_client applies (1-65536)
# link_queue = 65536             # frames queued per front<->back link (1-1048576)
# link_linger_us = 1000          # a front gathers inputs this long before writing them to a back (0-10000)
# channel_inputs = 65536         # inputs queued per channel between two ticks (1-16777216); one client may
#                                #   hold at most channel_inputs / (clients with inputs queued + 1) of them
# max_connections = 10000        # client connections per front (1-1000000)
# handshake_timeout_ms = 5000    # (100-120000)
# heartbeat_ms = 1000            # node -> master heartbeat period (50-60000)
# link_grace_ms = 10000          # how long a back keeps a dropped front's sessions (0-600000)
# resume_grace_ms = 15000        # how long a back keeps a disconnected client's place for it to resume (0-600000)
# link_heartbeat_ms = 500        # each side of a front<->back link sends a heartbeat this often (50-60000)
# link_timeout_ms = 2500         # a link silent this long is closed (100-600000, >= 2 x link_heartbeat_ms)
# client_ping_ms = 5000          # a front pings a client it has heard nothing from for this long (100-600000)
# client_timeout_ms = 15000      # a client silent this long is dropped, held for resume (200-600000, >= 2 x client_ping_ms)
# slow_client = "resync"         # "resync" or "disconnect" a client whose queue is full
# client_messages_per_s = 100    # WebSocket frames a client may send per second, fragments and control
#                                #   frames included; over it a frame is dropped (0 = no limit, 0-1000000)
# client_message_burst = 200     # frames a client may send at once above that rate (1-1000000)
# client_bytes_per_s = 262144    # payload bytes a client may send per second (0 = no limit, 0-1073741824)
# client_bytes_burst = 262144    # payload bytes at once above that rate (max_message_bytes-1073741824)
# client_flood_close_ms = 5000   # a client with frames dropped for this long in a row is closed (0 = never, 0-600000)
# hello_max_bytes = 4096         # largest frame before the Hello is accepted (64-16777216; at most max_message_bytes applies)
# client_idle_ms = 60000         # a client in no channel that sent nothing but Ping for this long is closed
#                                #   (0 = never, or 100-86400000)
# max_connections_per_ip = 128   # open connections per client IP address (IPv6: per /64) (0 = no limit, 0-1000000)
# connections_per_ip_per_s = 16  # new connections per client IP address per second (0 = no limit, 0-1000000)
# connections_per_ip_burst = 64  # new connections per IP address at once above that rate (1-1000000)

# Who may connect to a front. Both lists are empty by default; the values shown are examples.
# [access]
# trusted_proxies = ["10.0.0.0/8", "127.0.0.1"]  # peers whose X-Forwarded-For names the client (IPs or CIDRs)
# allowed_origins = ["https://game.example.com"] # browser pages that may open a WebSocket (empty: any)

# Calls to a channel's game over HTTP: POST /v1/channels/{channel}/call on any front, with
# "Authorization: Bearer <server_key>". Without a server_key, calls are off.
# [calls]
# server_key = "change-me-to-a-long-secret"
# server_key_env = "CENTRUM_SERVER_KEY"   # or from this environment variable,
# server_key_file = "server.key"          #   or this file's first line (either wins over server_key)
# timeout_ms = 5000              # a call not answered in time gets 504 (100-120000)
# max_body_bytes = 65536         # largest call body (64-16777216, <= limits.max_frame_bytes - 64)
# max_in_flight = 1024           # calls waiting for their answer on one front (1-65536)

# Client authentication: with this section a front verifies the JWT (JSON Web Token) a
# client presents in its hello, and only channels with `anonymous = true` take clients
# without one. Without it tokens are ignored and every channel is open. Tokens must carry
# `sub` and `exp`; `nbf`, when present, is checked too.
# [auth]
# algorithm = "HS256"            # "HS256", "HS384" or "HS512" with a shared secret; "RS256", "RS384",
#                                #   "RS512", "ES256", "ES384" or "EdDSA" with a public key
# secret = "change-me-to-a-secret-of-32-bytes-or-more"   # HMAC secret, at least 32 bytes; or instead:
#   secret_env = "CENTRUM_JWT_SECRET"   # the environment variable holding it, or
#   secret_file = "jwt.secret"          # a file holding it (relative to this file's folder)
#   public_key_file = "jwt.pem"         # for RS*/ES*/EdDSA: the PEM public key, or
#   jwks_file = "jwks.json"             # a JWKS file; each token's `kid` picks its key
#   issuer = "https://auth.example.com" # when set, `iss` must be this
#   audience = "my-game"                # when set, `aud` must be (or list) this
# leeway_s = 30                  # clock skew allowed on exp and nbf, in seconds (0-600)
# claims = []                    # claims passed to the games besides `sub`, e.g. ["name"] (at most 32)
# channels_claim = "channels"    # a claim listing the channels a token may join ("match-*": any characters)

# The matchmaker on the master: how seats are reserved and rooms made. Every setting may
# be omitted; the values shown are the defaults.
# [matchmaker]
# seat_ttl_ms = 10000            # a seat reservation not used to join within this long lapses (1000-600000)
# creates_per_minute = 30        # rooms one client address (IPv6: /64) may create per minute (0 = no limit, 0-100000)
# create_timeout_ms = 5000       # a back that does not answer a room creation in this long: 503 (100-60000)

# How `centrum up` keeps the nodes of its host running. Every setting may be omitted; the
# values shown are the defaults. A node that exits is restarted after a back-off that
# doubles from restart_min_ms to restart_max_ms; after max_failures quick exits in a row
# it shows as failed (on /status, /metrics and the dashboard) and is retried every
# restart_max_ms until it stays up or an operator restarts it (`centrum restart ID`).
# [supervision]
# run_dir = "cluster.run"        # node logs (logs/<id>.log) and up's lock; relative to this file's folder.
#                                # Default: "<this file's name without .toml>.run" beside it
#                                # (a binary's built-in config: a folder in the temp dir)
# restart_min_ms = 200           # first restart delay (10-60000)
# restart_max_ms = 10000         # longest restart delay, and the retry period of a failed node (10-3600000)
# max_failures = 10              # quick exits in a row before a node is failed (1-1000)
# stable_after_ms = 30000        # a node up this long has its failures forgotten (100-3600000)
# stop_grace_ms = 5000           # how long a node may take to exit after SIGTERM before SIGKILL (100-600000)
"#;

/// A whole cluster: one master, at least one front and at least one back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub master: MasterConfig,
    #[serde(default)]
    pub cluster: ClusterConfig,
    // Omitted lists parse as empty so validation can say what is missing, not serde.
    #[serde(default)]
    pub fronts: Vec<FrontConfig>,
    #[serde(default)]
    pub backs: Vec<BackConfig>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub calls: CallsConfig,
    #[serde(default)]
    pub access: AccessConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub supervision: SupervisionConfig,
    #[serde(default)]
    pub matchmaker: MatchmakerConfig,
    /// Client authentication; none: tokens are ignored, every channel is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MasterConfig {
    /// The machine the master runs on.
    #[serde(default = "default_host")]
    pub host: String,
    /// HTTP endpoint.
    pub http: SocketAddr,
    /// Where fronts and backs connect and heartbeat.
    pub nodes: SocketAddr,
    /// The address fronts and backs dial to reach `nodes` (`host:port`, the host an IP
    /// or a DNS name), when it is not `nodes` itself: behind a NAT, a DNS name, or
    /// `nodes` on a wildcard IP. Default: `nodes`, with `host` for a wildcard IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    /// When set, `/admin`, `/status` and `/metrics` require it (a cookie from the
    /// dashboard's login form, or `Authorization: Bearer <token>`). `/gate` and the
    /// demo stay public: game clients use them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<Secret>,
    /// An environment variable holding the admin token, read when the config is; it
    /// takes precedence over `admin_token_file` and `admin_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token_env: Option<String>,
    /// A file whose first line is the admin token (relative to the config's folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<PathBuf>,
    /// Timeouts, the connection cap, the login rate and admin sessions of the HTTP
    /// endpoint (`[master.limits]`).
    #[serde(default)]
    pub limits: MasterLimits,
    /// When set, the HTTP endpoint serves https:// with this certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// Limits of the master's HTTP endpoint, so that idle or slow connections cannot lock
/// out new ones and the admin token cannot be guessed at speed. Each field may be omitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MasterLimits {
    /// A request's head must be complete within this long of its first byte (of the
    /// connection opening, for the first request), and a body a route reads within this
    /// long after the head.
    pub header_timeout_ms: u32,
    /// A connection with no request in progress for this long is closed.
    pub idle_timeout_ms: u32,
    /// Connections served at once. At the cap, a new connection closes the open one that
    /// has waited longest for a request (an idle one, or one still sending its head).
    pub max_connections: u32,
    /// Dashboard logins (right or wrong) per client address per minute, all of them at
    /// once if need be; IPv6 addresses count per /64.
    pub login_attempts_per_minute: u32,
    /// How long a dashboard login lasts.
    pub session_ms: u32,
    /// Dashboard logins kept at once; a new one beyond it ends the oldest.
    pub max_sessions: u32,
}

impl MasterLimits {
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms.into())
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms.into())
    }

    pub fn session(&self) -> Duration {
        Duration::from_millis(self.session_ms.into())
    }
}

impl Default for MasterLimits {
    fn default() -> Self {
        MasterLimits {
            header_timeout_ms: 5_000,
            idle_timeout_ms: 30_000,
            max_connections: 1_024,
            login_attempts_per_minute: 5,
            session_ms: 12 * 3_600_000,
            max_sessions: 1_024,
        }
    }
}

/// A process that accepts client WebSocket connections.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FrontConfig {
    pub id: String,
    /// A pool: any number of fronts share this entry, each started as
    /// `centrum front --id <id>-<suffix>` (Kubernetes pods of one Deployment, say).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pool: bool,
    #[serde(default = "default_host")]
    pub host: String,
    pub listen: SocketAddr,
    /// The URL clients are told to dial, when it differs from `ws://{listen}` (a proxy, TLS,
    /// or a wildcard listen address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// When set, clients connect with TLS (`wss://`) using this certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// When set, the front serves `/healthz`, `/readyz` and `/metrics` there (plain
    /// HTTP), for probes and scrapers that reach it directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops: Option<SocketAddr>,
}

/// A server certificate: PEM files read at start and again on SIGHUP or when either
/// changes. Relative paths are relative to the config file's folder.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A process that owns channels and ticks their simulation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackConfig {
    pub id: String,
    #[serde(default = "default_host")]
    pub host: String,
    pub listen: SocketAddr,
    /// The address fronts dial for their links (`host:port`), when it is not `listen`
    /// itself. Default: `listen`, with `host` for a wildcard IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    pub tick_hz: u32,
    #[serde(default)]
    pub channels: Vec<ChannelConfig>,
    /// The room types this back offers to the matchmaker.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rooms: Vec<RoomTypeConfig>,
    /// Where this back keeps its channels' snapshots and journals, when not
    /// `<store.dir>/<id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// When set, the back's link port serves TLS with this certificate, and fronts
    /// check it against `cluster.ca`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// When set, the back serves `/healthz`, `/readyz` and `/metrics` there (plain HTTP),
    /// for probes and scrapers that reach it directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub name: String,
    /// The game logic the channel runs; which apps exist is checked by the back, not here.
    pub app: String,
    /// With `[auth]`: clients without a token may join it. Without `[auth]` every
    /// channel is open.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
}

/// The parts of a room's id, `<type>.<random>.<back id>`: what the master makes, what
/// fronts route by, and what a back recognises as one of its rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomId<'a> {
    pub kind: &'a str,
    pub back: &'a str,
}

impl<'a> RoomId<'a> {
    /// None for anything else than three dot-separated parts with a random part of 1-32
    /// ASCII letters and digits.
    pub fn parse(id: &'a str) -> Option<Self> {
        let mut parts = id.split('.');
        let (Some(kind), Some(random), Some(back), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let random_ok =
            (1..=32).contains(&random.len()) && random.bytes().all(|b| b.is_ascii_alphanumeric());
        random_ok.then_some(Self { kind, back })
    }
}

/// A kind of room a back can make at run time.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoomTypeConfig {
    #[serde(rename = "type")]
    pub kind: String,
    pub app: String,
    pub max_clients: u32,
    #[serde(default = "default_max_rooms")]
    pub max_rooms: u32,
    #[serde(default = "default_empty_dispose_s")]
    pub empty_dispose_s: u32,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
}

impl RoomTypeConfig {
    pub fn empty_dispose(&self) -> Duration {
        Duration::from_secs(u64::from(self.empty_dispose_s))
    }
}

fn default_max_rooms() -> u32 {
    1000
}

fn default_empty_dispose_s() -> u32 {
    30
}

/// The master's matchmaker (the `[matchmaker]` section).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatchmakerConfig {
    /// How long a seat reservation holds its place.
    pub seat_ttl_ms: u32,
    /// Rooms one client address may create per minute; 0: no limit.
    pub creates_per_minute: u32,
    /// How long the master waits for a back to make a room.
    pub create_timeout_ms: u32,
}

impl Default for MatchmakerConfig {
    fn default() -> Self {
        Self {
            seat_ttl_ms: 10_000,
            creates_per_minute: 30,
            create_timeout_ms: 5_000,
        }
    }
}

impl MatchmakerConfig {
    pub fn seat_ttl(&self) -> Duration {
        Duration::from_millis(u64::from(self.seat_ttl_ms))
    }

    pub fn create_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.create_timeout_ms))
    }
}

/// Sizes, queue depths and timeouts shared by every process. Each field may be omitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest length-prefixed frame between processes.
    pub max_frame_bytes: u32,
    /// Largest WebSocket message accepted from a client; at most `max_frame_bytes`.
    pub max_message_bytes: u32,
    /// Outbound messages queued per client before `slow_client` applies.
    pub client_queue: u32,
    /// Outbound frames queued per front<->back link.
    pub link_queue: u32,
    /// How long a front holds frames for a back (inputs, joins) so that those of many
    /// clients go in one write; 0 writes each at once. Inputs wait for the next tick
    /// anyway, so this adds at most this much latency and saves a write per input.
    /// Timers count whole milliseconds: any value from 1 to 1000 waits up to 1 ms.
    pub link_linger_us: u32,
    /// Inputs queued per channel between two ticks.
    pub channel_inputs: u32,
    /// Client connections per front.
    pub max_connections: u32,
    pub handshake_timeout_ms: u32,
    /// Node -> master heartbeat period.
    pub heartbeat_ms: u32,
    /// How long a back keeps a dropped front's sessions.
    pub link_grace_ms: u32,
    /// How long a back keeps the memberships of a client whose connection closed
    /// without a leave, so that it can resume on any front; 0 makes it leave at once.
    pub resume_grace_ms: u32,
    /// How often each side of a front<->back link sends a heartbeat.
    pub link_heartbeat_ms: u32,
    /// A link on which nothing at all arrived for this long is closed: the front
    /// reports the back's channels unavailable and relinks, the back holds the front's
    /// sessions for `link_grace_ms`. At least twice `link_heartbeat_ms`.
    pub link_timeout_ms: u32,
    /// A front sends a WebSocket ping to a client it has heard nothing from for this long.
    pub client_ping_ms: u32,
    /// A client connection on which nothing arrived (messages, pongs) for this long is
    /// closed as dropped: its memberships are held for a resume. At least twice
    /// `client_ping_ms`.
    pub client_timeout_ms: u32,
    pub slow_client: SlowClientPolicy,
    /// WebSocket frames (fragments and control frames included) a client may send per
    /// second; a frame over it is dropped. 0: no limit.
    pub client_messages_per_s: u32,
    /// Frames a client may send at once above `client_messages_per_s`.
    pub client_message_burst: u32,
    /// Payload bytes a client may send per second; a frame over it is dropped. 0: no limit.
    pub client_bytes_per_s: u32,
    /// Payload bytes a client may send at once; at least `max_message_bytes`, so that
    /// any frame the size limit allows can pass.
    pub client_bytes_burst: u32,
    /// A client that had frames dropped for this long, with no second free of drops, is
    /// closed. 0: never (its frames are only dropped).
    pub client_flood_close_ms: u32,
    /// The largest frame before the client's Hello is accepted: a frame claiming more
    /// is refused from its header, before its payload is read. Never more than
    /// `max_message_bytes` applies: see [`Limits::hello_max`].
    pub hello_max_bytes: u32,
    /// A welcomed client in no channel that sent nothing but `Ping` for this long is
    /// closed. 0: never.
    pub client_idle_ms: u32,
    /// Connections open at once from one client address (an IPv6 /64). 0: no limit.
    pub max_connections_per_ip: u32,
    /// New connections per second from one client address. 0: no limit.
    pub connections_per_ip_per_s: u32,
    /// New connections at once from one address above `connections_per_ip_per_s`.
    pub connections_per_ip_burst: u32,
}

/// Who may connect to a front (the `[access]` section).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// Proxies whose `X-Forwarded-For` is believed: the client is the rightmost address
    /// in it that is not itself one of these. Empty: every peer is the client.
    pub trusted_proxies: Vec<IpRange>,
    /// Origins (`https://game.example.com`) whose pages may open a WebSocket; a request
    /// without an `Origin` header (not from a browser) is not checked. Empty: any.
    pub allowed_origins: Vec<String>,
}

/// An IP address or a network in CIDR form (`10.0.0.0/8`), as the config writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange(ipnet::IpNet);

impl IpRange {
    /// Whether `ip` is in the range; an IPv4-mapped IPv6 address counts as its IPv4 one.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl std::str::FromStr for IpRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let net = if s.contains('/') {
            s.parse::<ipnet::IpNet>().map(|net| net.trunc()).ok()
        } else {
            s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from)
        };
        net.map(IpRange).ok_or_else(|| {
            format!("{s:?} is not an IP address or network (like \"10.0.0.1\" or \"10.0.0.0/8\")")
        })
    }
}

impl std::fmt::Display for IpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for IpRange {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Calls to a channel's game over HTTP (`POST /v1/channels/{channel}/call` on any
/// front), for server-side systems: a lobby, a web back end, an admin script.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallsConfig {
    /// What callers present as `Authorization: Bearer <key>`. Without it calls are off
    /// (HTTP 403). Never logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_key: Option<Secret>,
    /// An environment variable holding the server key, read when the config is; it
    /// takes precedence over `server_key_file` and `server_key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_key_env: Option<String>,
    /// A file whose first line is the server key (relative to the config's folder).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_key_file: Option<PathBuf>,
    /// A call not answered within this long gets HTTP 504.
    pub timeout_ms: u32,
    /// The largest call body; a larger one gets HTTP 413 unread.
    pub max_body_bytes: u32,
    /// Calls one front keeps waiting for their answer at once; more get HTTP 503.
    pub max_in_flight: u32,
}

/// How backs keep their channels durable (the `[store]` section).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Disk, or nothing kept across a restart.
    pub kind: StoreKind,
    /// A back's data directory is `<dir>/<back id>` unless it sets `data_dir`.
    pub dir: PathBuf,
    /// When the journal is synced to the disk.
    pub fsync: Fsync,
    /// With `fsync = "interval"`, at most this long between two syncs.
    pub fsync_interval_ms: u32,
    /// Each channel is snapshotted this often...
    pub snapshot_every_ms: u64,
    /// ...or once this many journal bytes were written since its last snapshot.
    pub snapshot_journal_bytes: u64,
    /// With `kind = "redis"`: the environment variable holding the server's URL;
    /// [`DEFAULT_STORE_URL_ENV`] if unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// A file whose first line is the URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_file: Option<PathBuf>,
    /// The URL itself (it may hold a password).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// The first part of every key.
    pub prefix: String,
    /// How long a back's lease on its id in the store lasts without a renewal.
    pub lease_ms: u32,
}

/// The environment variable read for the store's URL when `store.url_env` is unset.
pub const DEFAULT_STORE_URL_ENV: &str = "CENTRUM_STORE_URL";

/// The schemes of a store URL this build connects to.
pub const STORE_URL_SCHEMES: [&str; 2] = ["redis://", "redis+unix://"];

/// Why the store's URL could not be had.
#[derive(Debug, thiserror::Error)]
pub enum StoreUrlError {
    #[error(
        "no store URL: store.kind = \"redis\" needs one: set the environment variable {env}, or store.url_file or store.url in the config"
    )]
    Missing { env: String },
    #[error("cannot read the store URL from {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the store URL from {0} is not UTF-8")]
    NotUtf8(String),
    #[error(
        "the store URL from {from} must start with redis:// or redis+unix:// (rediss:// is not supported: reach the server over a private network)"
    )]
    Scheme { from: String },
}

/// Where channels are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// Snapshots and journals in files under each back's data directory.
    Disk,
    /// Snapshots and journals on a Redis server, each back's under a lease.
    Redis,
    /// Nowhere: a restarted back starts its channels empty.
    Memory,
}

/// When a journal write is synced to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// Before the tick's inputs are acknowledged.
    Tick,
    /// At most every `fsync_interval_ms`.
    Interval,
    /// When the OS decides.
    Never,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Disk,
            dir: PathBuf::from("centrum-data"),
            fsync: Fsync::Tick,
            fsync_interval_ms: 100,
            snapshot_every_ms: 60_000,
            snapshot_journal_bytes: 64 << 20,
            url_env: None,
            url_file: None,
            url: None,
            prefix: "centrum".into(),
            lease_ms: 10_000,
        }
    }
}

/// How `centrum up` keeps the nodes of its host running: restart back-off, when a node
/// counts as failed, and where node logs go. Each field may be omitted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisionConfig {
    /// Node logs (`logs/<id>.log`) and the lock that keeps two `up`s off the same nodes;
    /// a relative path is relative to the config file's folder. Default: see
    /// [`SupervisionConfig::run_dir`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_dir: Option<PathBuf>,
    /// The first restart delay; it doubles (with jitter) up to `restart_max_ms`.
    pub restart_min_ms: u32,
    /// The longest restart delay, and how often a failed node is retried.
    pub restart_max_ms: u32,
    /// Quick exits in a row (each after less than `stable_after_ms` up) after which a
    /// node is failed.
    pub max_failures: u32,
    /// A node up this long has its failures in a row forgotten.
    pub stable_after_ms: u32,
    /// How long a node may take to exit after SIGTERM before it is killed.
    pub stop_grace_ms: u32,
}

impl SupervisionConfig {
    /// Where `up` keeps its run files for the config read from `config_file`: `run_dir`
    /// if set (relative to the file's folder), else `<file stem>.run` beside the file.
    /// `None` for the binary's built-in config without `run_dir`: the caller picks a
    /// folder of its own.
    pub fn run_dir(&self, config_file: Option<&Path>) -> Option<PathBuf> {
        let folder = config_file
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        match (&self.run_dir, config_file) {
            (Some(dir), _) => Some(folder.join(dir)),
            (None, Some(file)) => {
                let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned());
                Some(folder.join(format!("{}.run", stem.as_deref().unwrap_or("centrum"))))
            }
            (None, None) => None,
        }
    }

    pub fn restart_min(&self) -> Duration {
        Duration::from_millis(self.restart_min_ms.into())
    }

    pub fn restart_max(&self) -> Duration {
        Duration::from_millis(self.restart_max_ms.into())
    }

    pub fn stable_after(&self) -> Duration {
        Duration::from_millis(self.stable_after_ms.into())
    }

    pub fn stop_grace(&self) -> Duration {
        Duration::from_millis(self.stop_grace_ms.into())
    }
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        SupervisionConfig {
            run_dir: None,
            restart_min_ms: 200,
            restart_max_ms: 10_000,
            max_failures: 10,
            stable_after_ms: 30_000,
            stop_grace_ms: 5_000,
        }
    }
}

impl StoreConfig {
    /// `fsync_interval_ms` as a duration.
    pub fn fsync_interval(&self) -> Duration {
        Duration::from_millis(self.fsync_interval_ms.into())
    }

    /// `snapshot_every_ms` as a duration.
    pub fn snapshot_every(&self) -> Duration {
        Duration::from_millis(self.snapshot_every_ms)
    }

    /// `lease_ms` as a duration.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms.into())
    }

    /// The environment variable the URL is read from.
    pub fn url_env(&self) -> &str {
        self.url_env.as_deref().unwrap_or(DEFAULT_STORE_URL_ENV)
    }

    /// The store's URL: from the environment variable [`StoreConfig::url_env`] when it
    /// is set and not empty, else the first line of `url_file`, else `url`.
    ///
    /// # Errors
    /// [`StoreUrlError`] when none of them gives one, the file cannot be read, or the
    /// URL's scheme is not one of [`STORE_URL_SCHEMES`]. No error shows the URL.
    pub fn url(&self) -> Result<Secret, StoreUrlError> {
        let env = self.url_env();
        let found = read_secret(
            env,
            self.url_file.as_deref(),
            self.url.as_ref(),
            "store.url",
        )
        .map_err(|e| match e {
            Unread::NotUtf8(from) => StoreUrlError::NotUtf8(from),
            Unread::Read { path, source } => StoreUrlError::Read { path, source },
        })?;
        let Some((url, from)) = found else {
            return Err(StoreUrlError::Missing {
                env: env.to_owned(),
            });
        };
        if !STORE_URL_SCHEMES.iter().any(|s| url.starts_with(s)) {
            return Err(StoreUrlError::Scheme { from });
        }
        Ok(Secret::new(url))
    }
}

/// Where the cluster secret comes from (see [`ClusterConfig::secret`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The environment variable holding the secret; [`DEFAULT_SECRET_ENV`] if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// A file whose first line is the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// The certificates (PEM) fronts trust for the links of backs that serve TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

/// The environment variable read for the cluster secret when `cluster.secret_env` is unset.
pub const DEFAULT_SECRET_ENV: &str = "CENTRUM_CLUSTER_SECRET";

/// Bounds of the cluster secret's length, in bytes.
pub const CLUSTER_SECRET_BYTES: std::ops::RangeInclusive<usize> = 16..=1024;

impl ClusterConfig {
    /// The environment variable the secret is read from.
    pub fn secret_env(&self) -> &str {
        self.secret_env.as_deref().unwrap_or(DEFAULT_SECRET_ENV)
    }

    /// The cluster secret: from the environment variable [`ClusterConfig::secret_env`]
    /// when it is set and not empty, else the first line of `secret_file`, else `secret`.
    ///
    /// # Errors
    /// [`SecretError::Missing`] when none of them gives one; [`SecretError::Read`] when
    /// the file cannot be read; [`SecretError::Length`] when the secret is shorter than
    /// 16 or longer than 1024 bytes. No error shows the secret.
    pub fn secret(&self) -> Result<Secret, SecretError> {
        let env = self.secret_env();
        let found = read_secret(
            env,
            self.secret_file.as_deref(),
            self.secret.as_ref(),
            "cluster.secret",
        )
        .map_err(|e| match e {
            Unread::NotUtf8(from) => SecretError::NotUtf8(from),
            Unread::Read { path, source } => SecretError::Read { path, source },
        })?;
        let Some((secret, from)) = found else {
            return Err(SecretError::Missing {
                env: env.to_owned(),
            });
        };
        if !CLUSTER_SECRET_BYTES.contains(&secret.len()) {
            return Err(SecretError::Length {
                from,
                len: secret.len(),
            });
        }
        Ok(Secret::new(secret))
    }
}

/// A secret given three ways, for [`ClusterConfig::secret`] and [`StoreConfig::url`]:
/// the environment variable `env` when it is set and not empty, else the first line of
/// `file`, else `inline` (the config key `field`, whose `_file` sibling names `file`).
/// With where it came from, for messages; None when no way gives one.
fn read_secret(
    env: &str,
    file: Option<&Path>,
    inline: Option<&Secret>,
    field: &str,
) -> Result<Option<(String, String)>, Unread> {
    if let Some(value) = std::env::var_os(env).filter(|v| !v.is_empty()) {
        let from = format!("environment variable {env}");
        let value = value
            .into_string()
            .map_err(|_| Unread::NotUtf8(from.clone()))?;
        return Ok(Some((value, from)));
    }
    if let Some(path) = file {
        // A secret is a line; reading at most 64 KiB keeps a wrong path (a device, a
        // huge file) from taking the process's memory.
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| {
                std::io::Read::read_to_end(&mut std::io::Read::take(f, 65_536), &mut bytes)
            })
            .map_err(|source| Unread::Read {
                path: path.to_path_buf(),
                source,
            })?;
        let from = format!("{} ({field}_file)", path.display());
        let text = String::from_utf8(bytes).map_err(|_| Unread::NotUtf8(from.clone()))?;
        let line = text.lines().next().unwrap_or("").trim().to_owned();
        return Ok(Some((line, from)));
    }
    Ok(inline.map(|secret| (secret.expose().to_owned(), field.to_owned())))
}

/// Why [`read_secret`] could not read what it was pointed at.
enum Unread {
    NotUtf8(String),
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Why the cluster secret could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "no cluster secret: set the environment variable {env}, or cluster.secret_file in the config (`centrum up` makes one for the processes it starts)"
    )]
    Missing { env: String },
    #[error("cannot read the cluster secret from {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the cluster secret from {0} is not UTF-8")]
    NotUtf8(String),
    #[error("the cluster secret from {from} must be 16-1024 bytes (got {len})")]
    Length { from: String, len: usize },
}

/// A secret from the config: it serializes as itself but never prints in `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// A secret holding `secret`.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, where it must be written out (a cookie it is the value of).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this secret, compared in a time that depends on the
    /// lengths only, so that a wrong guess does not tell how much of it was right.
    pub fn matches(&self, presented: &str) -> bool {
        let (given, expected) = (presented.as_bytes(), self.0.as_bytes());
        given.len() == expected.len()
            && given
                .iter()
                .zip(expected)
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl CallsConfig {
    /// `timeout_ms` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.into())
    }
}

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            server_key: None,
            server_key_env: None,
            server_key_file: None,
            timeout_ms: 5_000,
            max_body_bytes: 65_536,
            max_in_flight: 1_024,
        }
    }
}

/// What a front does with a client whose outbound queue is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SlowClientPolicy {
    /// Drop the queued messages and send the client a fresh snapshot.
    #[default]
    Resync,
    /// Close the client's connection.
    Disconnect,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax, a wrong type or an unknown field; toml's text with line and column.
    #[error("{0}")]
    Parse(String),
    /// Every problem validation found.
    #[error("invalid config:\n{}", bullet_list(.0))]
    Invalid(Vec<FieldError>),
}

/// One validation problem: `field` is a path such as `backs[1].channels[0].name`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl Config {
    /// The path of key `key` of front or back `id` in the config, for messages:
    /// `backs[1].listen` (`id.key` for an id the config does not have).
    pub fn field_of(&self, id: &str, key: &str) -> String {
        if let Some(i) = self.front_index(id) {
            format!("fronts[{i}].{key}")
        } else if let Some(i) = self.backs.iter().position(|b| b.id == id) {
            format!("backs[{i}].{key}")
        } else {
            format!("{id}.{key}")
        }
    }

    /// Parses a TOML cluster config and validates it.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] if the text is not TOML of the right shape (including unknown
    /// fields), [`ConfigError::Invalid`] listing every rule it breaks.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut config = Self::from_toml(text)?;
        config.validate()?;
        config.resolve_secrets()?;
        // Again, for the tokens just read.
        config.validate()?;
        Ok(config)
    }

    /// The config `text` holds, neither validated nor with its secrets read.
    fn from_toml(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Reads the admin token and the calls' server key from the environment variable
    /// or file named for them, into `admin_token` and `server_key`, so that every
    /// process and `centrum check` see the same value. A source named but empty is an
    /// error: it would leave `/admin` open, or calls off, without a word.
    fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let secrets = [
            (
                "master.admin_token",
                &self.master.admin_token_env,
                &self.master.admin_token_file,
                &mut self.master.admin_token,
            ),
            (
                "calls.server_key",
                &self.calls.server_key_env,
                &self.calls.server_key_file,
                &mut self.calls.server_key,
            ),
        ];
        for (field, env, file, value) in secrets {
            if env.is_none() && file.is_none() {
                continue;
            }
            let env_name = env.as_deref().unwrap_or("");
            match read_secret(env_name, file.as_deref(), value.as_ref(), field) {
                Ok(Some((secret, _))) if !secret.is_empty() => *value = Some(Secret::new(secret)),
                Ok(Some((_, from))) => problems.push(FieldError {
                    field: field.into(),
                    reason: format!("{from} is empty"),
                }),
                Ok(None) => problems.push(FieldError {
                    field: format!("{field}_env"),
                    reason: format!(
                        "the environment variable {env_name} is not set, and no {field}_file or {field} stands in"
                    ),
                }),
                Err(Unread::NotUtf8(from)) => problems.push(FieldError {
                    field: field.into(),
                    reason: format!("{from} is not UTF-8"),
                }),
                Err(Unread::Read { path, source }) => problems.push(FieldError {
                    field: format!("{field}_file"),
                    reason: format!("cannot read {}: {source}", path.display()),
                }),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Reads and parses the config file at `path`.
    ///
    /// # Errors
    /// [`ConfigError::Read`] if the file cannot be read; otherwise as [`Config::parse`], with
    /// parse errors prefixed by the path.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse(message) => {
                ConfigError::Parse(format!("{}: {message}", path.display()))
            }
            other => other,
        })?;
        config.validate()?;
        // Data directories are the file's, wherever a process reading it was started:
        // a back restarted from another working directory must find its channels.
        let folder = std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        config.store.dir = folder.join(&config.store.dir);
        for file in [
            &mut config.cluster.secret_file,
            &mut config.cluster.ca,
            &mut config.store.url_file,
            &mut config.master.admin_token_file,
            &mut config.calls.server_key_file,
        ]
        .into_iter()
        .flatten()
        {
            *file = folder.join(&*file);
        }
        for back in &mut config.backs {
            if let Some(dir) = &mut back.data_dir {
                *dir = folder.join(&*dir);
            }
        }
        // So are certificates: a node started from anywhere reads the same files.
        let tls = std::iter::once(&mut config.master.tls)
            .chain(config.fronts.iter_mut().map(|front| &mut front.tls))
            .chain(config.backs.iter_mut().map(|back| &mut back.tls));
        for tls in tls.flatten() {
            tls.cert = folder.join(&tls.cert);
            tls.key = folder.join(&tls.key);
        }
        if let Some(auth) = &mut config.auth {
            for file in [
                &mut auth.secret_file,
                &mut auth.public_key_file,
                &mut auth.jwks_file,
            ]
            .into_iter()
            .flatten()
            {
                *file = folder.join(&*file);
            }
        }
        config.resolve_secrets()?;
        // Again, for the tokens just read.
        config.validate()?;
        Ok(config)
    }

    /// The cluster in [`DEFAULT_TOML`]: a master, `front-1` and `back-1` owning `arena`.
    pub fn embedded_default() -> Config {
        // DEFAULT_TOML is a constant, and `tests::embedded_default_is_valid` proves it parses
        // and validates, so this cannot fail at run time.
        Config::parse(DEFAULT_TOML).expect("DEFAULT_TOML is a valid config")
    }

    /// Checks every rule, collecting all problems rather than stopping at the first.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] with one [`FieldError`] per problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = validate::problems(self);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Writes the config back out as TOML that [`Config::parse`] reads back unchanged.
    pub fn to_toml(&self) -> String {
        // Every field is a string, number, address, enum or table of those, all of which
        // TOML can represent, so serialization cannot fail.
        toml::to_string(self).expect("a Config is always representable as TOML")
    }

    /// Front `id`: the entry of that id, or the pool it is an instance of
    /// (`front-7f9c` of the pool `front`).
    pub fn front(&self, id: &str) -> Option<&FrontConfig> {
        self.front_index(id).map(|i| &self.fronts[i])
    }

    /// The index in `fronts` of [`Config::front`]'s entry.
    pub fn front_index(&self, id: &str) -> Option<usize> {
        // A pool's own id names none of its instances.
        (self
            .fronts
            .iter()
            .position(|front| front.id == id && !front.pool))
        .or_else(|| {
            (self.fronts.iter()).position(|front| front.pool && is_pool_instance(id, &front.id))
        })
    }

    pub fn back(&self, id: &str) -> Option<&BackConfig> {
        self.backs.iter().find(|back| back.id == id)
    }

    /// Where back `id` keeps its channels: its `data_dir`, else `<store.dir>/<id>`;
    /// `None` for an unknown back or with `store.kind = "memory"` or `"redis"`.
    pub fn data_dir(&self, id: &str) -> Option<PathBuf> {
        let back = self.back(id)?;
        match self.store.kind {
            StoreKind::Memory | StoreKind::Redis => None,
            StoreKind::Disk => Some(
                back.data_dir
                    .clone()
                    .unwrap_or_else(|| self.store.dir.join(&back.id)),
            ),
        }
    }

    /// The back that owns `channel`.
    /// The room type `kind` as the backs offer it (the first one's: validation makes
    /// them agree), or None when no back offers it.
    pub fn room_type(&self, kind: &str) -> Option<&RoomTypeConfig> {
        self.backs
            .iter()
            .flat_map(|b| &b.rooms)
            .find(|r| r.kind == kind)
    }

    /// The back that owns room `id` and the room's type: a room id is
    /// `<type>.<random>.<back id>` and names a back that offers the type. Whether the
    /// room exists now only its back knows.
    pub fn room_owner(&self, id: &str) -> Option<(usize, &BackConfig, &RoomTypeConfig)> {
        let RoomId {
            kind,
            back: back_id,
        } = RoomId::parse(id)?;
        let (index, back) = self
            .backs
            .iter()
            .enumerate()
            .find(|(_, b)| b.id == back_id)?;
        let kind = back.rooms.iter().find(|r| r.kind == kind)?;
        Some((index, back, kind))
    }

    pub fn channel_owner(&self, channel: &str) -> Option<&BackConfig> {
        self.backs
            .iter()
            .find(|back| back.channels.iter().any(|c| c.name == channel))
    }
}

impl FrontConfig {
    /// The URL clients dial: `public_url` if set, else `ws://{listen}`, or
    /// `wss://{listen}` with `tls`.
    pub fn client_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.clone(),
            None => format!(
                "{}://{}",
                self.scheme(),
                dial_address(&self.host, self.listen)
            ),
        }
    }

    /// `wss` with `tls`, else `ws`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "wss" } else { "ws" }
    }
}

impl MasterConfig {
    /// The address nodes dial to reach the master: `advertise`, else `nodes` (with
    /// `host` for a wildcard IP).
    pub fn nodes_address(&self) -> String {
        (self.advertise.clone()).unwrap_or_else(|| dial_address(&self.host, self.nodes))
    }

    /// The address the `centrum` command dials for the master's HTTP endpoint from
    /// the master's own host: `http`, with `host` for a wildcard IP.
    pub fn http_address(&self) -> String {
        dial_address(&self.host, self.http)
    }
}

impl BackConfig {
    /// The address fronts dial for their links: `advertise`, else `listen` (with `host`
    /// for a wildcard IP).
    pub fn link_address(&self) -> String {
        (self.advertise.clone()).unwrap_or_else(|| dial_address(&self.host, self.listen))
    }

    /// Time between two ticks.
    pub fn tick_period(&self) -> Duration {
        // Validation rejects 0; the `max` only keeps an unvalidated config from panicking.
        Duration::from_secs(1) / self.tick_hz.max(1)
    }
}

impl Limits {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms.into())
    }

    pub fn link_linger(&self) -> Duration {
        Duration::from_micros(self.link_linger_us.into())
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.into())
    }

    pub fn link_grace(&self) -> Duration {
        Duration::from_millis(self.link_grace_ms.into())
    }

    pub fn resume_grace(&self) -> Duration {
        Duration::from_millis(self.resume_grace_ms.into())
    }

    pub fn link_heartbeat(&self) -> Duration {
        Duration::from_millis(self.link_heartbeat_ms.into())
    }

    pub fn link_timeout(&self) -> Duration {
        Duration::from_millis(self.link_timeout_ms.into())
    }

    pub fn client_ping(&self) -> Duration {
        Duration::from_millis(self.client_ping_ms.into())
    }

    pub fn client_timeout(&self) -> Duration {
        Duration::from_millis(self.client_timeout_ms.into())
    }

    /// `client_flood_close_ms` as a duration; `None` when off.
    pub fn client_flood_close(&self) -> Option<Duration> {
        (self.client_flood_close_ms > 0)
            .then(|| Duration::from_millis(self.client_flood_close_ms.into()))
    }

    /// The frame size limit until a client's Hello is accepted: `hello_max_bytes`, or
    /// `max_message_bytes` when that is smaller.
    pub fn hello_max(&self) -> u32 {
        self.hello_max_bytes.min(self.max_message_bytes)
    }

    /// `client_idle_ms` as a duration; `None` when off.
    pub fn client_idle(&self) -> Option<Duration> {
        (self.client_idle_ms > 0).then(|| Duration::from_millis(self.client_idle_ms.into()))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 1_048_576,
            max_message_bytes: 65_536,
            client_queue: 256,
            link_queue: 65_536,
            link_linger_us: 1_000,
            channel_inputs: 65_536,
            max_connections: 10_000,
            handshake_timeout_ms: 5_000,
            heartbeat_ms: 1_000,
            link_grace_ms: 10_000,
            resume_grace_ms: 15_000,
            link_heartbeat_ms: 500,
            link_timeout_ms: 2_500,
            client_ping_ms: 5_000,
            client_timeout_ms: 15_000,
            slow_client: SlowClientPolicy::Resync,
            client_messages_per_s: 100,
            client_message_burst: 200,
            client_bytes_per_s: 262_144,
            client_bytes_burst: 262_144,
            client_flood_close_ms: 5_000,
            hello_max_bytes: 4_096,
            client_idle_ms: 60_000,
            max_connections_per_ip: 128,
            connections_per_ip_per_s: 16,
            connections_per_ip_burst: 64,
        }
    }
}

/// Whether `id` names an instance of the front pool `pool`: `pool-<suffix>`, a valid
/// id as a whole.
pub fn is_pool_instance(id: &str, pool: &str) -> bool {
    id.strip_prefix(pool)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|suffix| !suffix.is_empty() && is_name(id))
}

/// Where another machine dials a socket bound at `bind` on machine `host`: `bind`
/// itself, unless its IP is a wildcard (0.0.0.0, ::), which names no machine; then
/// `host`, with `bind`'s port.
pub fn dial_address(host: &str, bind: SocketAddr) -> String {
    if !bind.ip().is_unspecified() {
        return bind.to_string();
    }
    match host.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => format!("[{v6}]:{}", bind.port()),
        Err(_) => format!("{host}:{}", bind.port()),
    }
}

/// Splits a dialable `host:port` (`10.0.0.2:7320`, `[fd00::2]:7320`,
/// `back-1.example:7320`) into its host and port, or says what is wrong with it.
pub fn split_dial_address(address: &str) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (ip, port) = rest
            .split_once("]:")
            .ok_or("an IPv6 address must be written [address]:port")?;
        ip.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{ip:?} is not an IPv6 address"))?;
        (ip, port)
    } else {
        let (host, port) = address
            .rsplit_once(':')
            .ok_or("must be host:port (an IP address or a DNS name, and a port)")?;
        if host.contains(':') {
            return Err("an IPv6 address must be written [address]:port".into());
        }
        if host.parse::<std::net::Ipv4Addr>().is_err() && !is_dns_name(host) {
            return Err(format!("{host:?} is neither an IP address nor a DNS name"));
        }
        (host, port)
    };
    let port = match port.parse::<u16>() {
        Ok(0) => {
            return Err("port 0 cannot be dialed: give the port the socket is bound to".into());
        }
        Ok(port) => port,
        Err(_) => return Err(format!("{port:?} is not a port (1-65535)")),
    };
    if host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
    {
        return Err(format!(
            "{host} is a wildcard, not an address another machine can dial"
        ));
    }
    Ok((host, port))
}

/// A DNS name: dot-separated labels of 1-63 letters, digits, '-' or '_', at most 253
/// characters in all, no label starting or ending with '-'.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn default_host() -> String {
    "127.0.0.1".to_owned()
}

fn bullet_list(problems: &[FieldError]) -> String {
    let mut out = String::new();
    for (i, problem) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "  - {problem}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL_TOML: &str = r#"
[master]
host = "10.0.0.1"
http = "10.0.0.1:7300"
nodes = "10.0.0.1:7301"

[[fronts]]
id = "front-1"
host = "10.0.0.2"
listen = "0.0.0.0:7310"
public_url = "wss://play.example.com/front-1"

[[fronts]]
id = "front-2"
host = "10.0.0.3"
listen = "0.0.0.0:7310"

[[backs]]
id = "back-1"
host = "10.0.0.4"
listen = "10.0.0.4:7320"
tick_hz = 30
channels = [{ name = "arena", app = "arena" }, { name = "lobby", app = "chat" }]

[[backs]]
id = "back-2"
host = "10.0.0.5"
listen = "10.0.0.5:7320"
tick_hz = 60
channels = [{ name = "race_1", app = "race" }]

[limits]
max_frame_bytes = 2097152
max_message_bytes = 131072
client_queue = 512
link_queue = 8192
channel_inputs = 1024
max_connections = 500
handshake_timeout_ms = 2000
heartbeat_ms = 250
link_grace_ms = 0
slow_client = "disconnect"
"#;

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("centrum-config-{}-{name}", std::process::id()))
    }

    #[test]
    fn embedded_default_is_valid() {
        let config = Config::parse(DEFAULT_TOML).expect("DEFAULT_TOML must validate");
        assert_eq!(config, Config::embedded_default());
        assert_eq!(config.master.host, "127.0.0.1");
        assert_eq!(config.master.http, "127.0.0.1:7300".parse().unwrap());
        assert_eq!(config.master.nodes, "127.0.0.1:7301".parse().unwrap());
        let front = config.front("front-1").expect("front-1");
        assert_eq!(front.listen, "127.0.0.1:7310".parse().unwrap());
        assert_eq!(front.client_url(), "ws://127.0.0.1:7310");
        let back = config.back("back-1").expect("back-1");
        assert_eq!(back.listen, "127.0.0.1:7320".parse().unwrap());
        assert_eq!(back.tick_hz, 20);
        assert_eq!(back.tick_period(), Duration::from_millis(50));
        assert_eq!(
            config.channel_owner("arena").map(|b| b.id.as_str()),
            Some("back-1")
        );
        assert_eq!(config.fronts.len(), 1);
        assert_eq!(config.backs.len(), 1);
        assert_eq!(config.limits, Limits::default());
    }

    /// The commented-out examples in DEFAULT_TOML must be valid and show the real defaults.
    #[test]
    fn default_toml_comments_show_the_defaults() {
        let uncommented: String = DEFAULT_TOML
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if rest.starts_with('[') || looks_like_key_value(rest) => rest,
                _ => line,
            })
            .map(|line| format!("{line}\n"))
            .collect();
        assert!(uncommented.contains("\n[limits]\n"), "{uncommented}");
        // Valid as written; the example token files do not exist here, so they are not read.
        let config = Config::from_toml(&uncommented).expect("uncommented DEFAULT_TOML");
        config
            .validate()
            .expect("uncommented DEFAULT_TOML is valid");
        assert_eq!(config.limits, Limits::default());
        assert!(uncommented.contains("\n[master.limits]\n"), "{uncommented}");
        assert_eq!(config.master.limits, MasterLimits::default());
        assert_eq!(
            config.supervision,
            SupervisionConfig {
                run_dir: Some("cluster.run".into()),
                ..SupervisionConfig::default()
            }
        );
        assert_eq!(
            config.fronts[0].public_url.as_deref(),
            Some("wss://play.example.com/front-1")
        );
        assert_eq!(
            config.fronts[0].ops,
            Some("127.0.0.1:7390".parse().expect("addr"))
        );
        assert_eq!(
            config.backs[0].ops,
            Some("127.0.0.1:7391".parse().expect("addr"))
        );
        assert_eq!(Config::embedded_default().fronts[0].ops, None);
        assert_eq!(config.access.trusted_proxies.len(), 2);
        assert_eq!(
            config.access.allowed_origins,
            ["https://game.example.com".to_owned()]
        );
        assert_eq!(Config::embedded_default().access, AccessConfig::default());
        let auth = config.auth.expect("the [auth] example");
        assert_eq!((auth.algorithm, auth.leeway_s), (JwtAlgorithm::HS256, 30));
        assert_eq!(auth.channels_claim, "channels");
        assert!(auth.claims.is_empty() && auth.secret_env.is_none());
    }

    #[test]
    fn auth_parses_from_toml_with_key_files_beside_the_config_file() {
        let path = temp_path("auth.toml");
        let text = DEFAULT_TOML.replace(
            r#"channels = [{ name = "arena", app = "arena" }]"#,
            r#"channels = [{ name = "arena", app = "arena" }, { name = "lobby", app = "arena", anonymous = true }]"#,
        ) + "[auth]\nalgorithm = \"EdDSA\"\njwks_file = \"keys/jwks.json\"\nclaims = [\"name\"]\n";
        std::fs::write(&path, text).unwrap();
        let config = Config::load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let auth = config.auth.as_ref().unwrap();
        assert_eq!(auth.algorithm, JwtAlgorithm::EdDSA);
        let folder = std::path::absolute(&path).unwrap();
        let expected = folder.parent().unwrap().join("keys/jwks.json");
        assert_eq!(auth.jwks_file.as_deref(), Some(expected.as_path()));
        assert_eq!(auth.claims, ["name"]);
        let anonymous: Vec<bool> = config.backs[0]
            .channels
            .iter()
            .map(|c| c.anonymous)
            .collect();
        assert_eq!(anonymous, [false, true]);
        // And it writes back out as it was read.
        assert_eq!(Config::parse(&config.to_toml()).unwrap(), config);
    }

    #[test]
    fn a_bad_auth_section_is_refused_naming_the_field() {
        let text = format!("{DEFAULT_TOML}\n[auth]\nalgorithm = \"HS256\"\nsecret = \"short\"\n");
        let e = Config::parse(&text).unwrap_err().to_string();
        assert!(e.contains("auth.secret: must be at least 32 bytes"), "{e}");
        let text = format!("{DEFAULT_TOML}\n[auth]\nalgorithm = \"HS1\"\n");
        assert!(matches!(Config::parse(&text), Err(ConfigError::Parse(_))));
    }

    fn looks_like_key_value(line: &str) -> bool {
        line.split_once(" = ").is_some_and(|(key, _)| {
            !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        })
    }

    #[test]
    fn the_run_dir_is_beside_the_config_file_unless_set() {
        let default = SupervisionConfig::default();
        let file = Path::new("/etc/centrum/cluster.toml");
        assert_eq!(
            default.run_dir(Some(file)),
            Some(PathBuf::from("/etc/centrum/cluster.run"))
        );
        assert_eq!(default.run_dir(None), None);
        let set = SupervisionConfig {
            run_dir: Some("run".into()),
            ..SupervisionConfig::default()
        };
        assert_eq!(
            set.run_dir(Some(file)),
            Some(PathBuf::from("/etc/centrum/run"))
        );
        assert_eq!(set.run_dir(None), Some(PathBuf::from("run")));
        let absolute = SupervisionConfig {
            run_dir: Some("/var/run/centrum".into()),
            ..SupervisionConfig::default()
        };
        assert_eq!(
            absolute.run_dir(Some(file)),
            Some(PathBuf::from("/var/run/centrum"))
        );
    }

    #[test]
    fn full_example_round_trips() {
        let config = Config::parse(FULL_TOML).expect("full example");
        assert_eq!(config.master.host, "10.0.0.1");
        assert_eq!(config.fronts.len(), 2);
        assert_eq!(config.fronts[1].public_url, None);
        assert_eq!(config.backs[0].channels[1].app, "chat");
        assert_eq!(config.limits.slow_client, SlowClientPolicy::Disconnect);
        assert_eq!(config.limits.link_grace(), Duration::ZERO);
        assert_eq!(config.limits.heartbeat(), Duration::from_millis(250));
        assert_eq!(config.limits.handshake_timeout(), Duration::from_secs(2));

        let written = config.to_toml();
        assert_eq!(Config::parse(&written).expect(&written), config);
    }

    #[test]
    fn omitted_limits_and_hosts_get_defaults() {
        let config = Config::parse(
            r#"
            [master]
            http = "127.0.0.1:0"
            nodes = "127.0.0.1:0"
            [[fronts]]
            id = "f"
            listen = "127.0.0.1:0"
            [[backs]]
            id = "b"
            listen = "127.0.0.1:0"
            tick_hz = 1
            channels = [{ name = "c", app = "a" }]
            "#,
        )
        .expect("minimal config");
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.master.host, "127.0.0.1");
        assert_eq!(config.fronts[0].host, "127.0.0.1");
        assert_eq!(config.backs[0].host, "127.0.0.1");
        assert_eq!(config.backs[0].tick_period(), Duration::from_secs(1));
    }

    #[test]
    fn omitted_limit_fields_get_defaults() {
        let text = format!("{DEFAULT_TOML}\n[limits]\nclient_queue = 8\n");
        let config = Config::parse(&text).expect("partial limits");
        assert_eq!(
            config.limits,
            Limits {
                client_queue: 8,
                ..Limits::default()
            }
        );
    }

    #[test]
    fn default_limit_values() {
        let limits = Limits::default();
        assert_eq!(limits.max_frame_bytes, 1_048_576);
        assert_eq!(limits.max_message_bytes, 65_536);
        assert_eq!(limits.client_queue, 256);
        assert_eq!(limits.link_queue, 65_536);
        assert_eq!(limits.channel_inputs, 65_536);
        assert_eq!(limits.max_connections, 10_000);
        assert_eq!(limits.handshake_timeout(), Duration::from_secs(5));
        assert_eq!(limits.heartbeat(), Duration::from_secs(1));
        assert_eq!(limits.link_grace(), Duration::from_secs(10));
        assert_eq!(limits.link_heartbeat(), Duration::from_millis(500));
        assert_eq!(limits.link_timeout(), Duration::from_millis(2_500));
        assert_eq!(limits.client_ping(), Duration::from_secs(5));
        assert_eq!(limits.client_timeout(), Duration::from_secs(15));
        assert_eq!(limits.slow_client, SlowClientPolicy::Resync);
        assert_eq!(limits.client_flood_close(), Some(Duration::from_secs(5)));
        assert_eq!(limits.client_idle(), Some(Duration::from_secs(60)));
        assert_eq!(limits.hello_max(), 4_096);
        let small = Limits {
            max_message_bytes: 1_024,
            ..limits
        };
        assert_eq!(small.hello_max(), 1_024);
        let off = Limits {
            client_flood_close_ms: 0,
            client_idle_ms: 0,
            ..limits
        };
        assert_eq!((off.client_flood_close(), off.client_idle()), (None, None));
    }

    #[test]
    fn unknown_field_is_a_parse_error_naming_it() {
        let text = DEFAULT_TOML.replace("tick_hz = 20", "tick_rate = 20");
        let err = Config::parse(&text).unwrap_err();
        let ConfigError::Parse(message) = &err else {
            panic!("expected a parse error, got {err:?}");
        };
        assert!(message.contains("unknown field `tick_rate`"), "{message}");
        assert!(message.contains("line "), "{message}");
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks() {
        let text = format!(
            "{DEFAULT_TOML}\n[access]\ntrusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\", \"::1\", \"192.168.1.7/24\"]\n"
        );
        let config = Config::parse(&text).expect("trusted proxies");
        let proxies = &config.access.trusted_proxies;
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("test address");
        assert!(proxies[0].contains(ip("10.200.3.4")));
        assert!(proxies[0].contains(ip("::ffff:10.1.2.3")), "IPv4-mapped");
        assert!(!proxies[0].contains(ip("11.0.0.1")));
        assert!(proxies[1].contains(ip("127.0.0.1")));
        assert!(!proxies[1].contains(ip("127.0.0.2")));
        assert!(proxies[2].contains(ip("::1")));
        // Host bits are dropped: the network is meant.
        assert_eq!(proxies[3].to_string(), "192.168.1.0/24");
        assert_eq!(
            Config::parse(&config.to_toml()).expect("round trip"),
            config
        );

        let text = format!("{DEFAULT_TOML}\n[access]\ntrusted_proxies = [\"10.0.0.0/33\"]\n");
        let err = Config::parse(&text).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Parse(m) if m.contains("trusted_proxies") && m.contains("\"10.0.0.0/33\" is not an IP address or network")),
            "{err}"
        );
    }

    #[test]
    fn unknown_slow_client_policy_is_a_parse_error() {
        let text = format!("{DEFAULT_TOML}\n[limits]\nslow_client = \"drop\"\n");
        let err = Config::parse(&text).unwrap_err();
        assert!(matches!(&err, ConfigError::Parse(m) if m.contains("unknown variant `drop`")));
    }

    #[test]
    fn bad_address_is_a_parse_error() {
        let text = DEFAULT_TOML.replace("127.0.0.1:7310", "localhost:7310");
        let line = 1 + text
            .lines()
            .position(|l| l.contains("localhost:7310"))
            .expect("the front's listen line");
        let err = Config::parse(&text).unwrap_err();
        let expected = format!("line {line}, column");
        assert!(
            matches!(&err, ConfigError::Parse(m) if m.contains(&expected)),
            "{err}"
        );
    }

    #[test]
    fn missing_file_is_a_read_error_naming_the_path() {
        let path = temp_path("does-not-exist.toml");
        let err = Config::load(&path).unwrap_err();
        let ConfigError::Read { path: named, .. } = &err else {
            panic!("expected a read error, got {err:?}");
        };
        assert_eq!(named, &path);
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read {}: ", path.display())),
            "{err}"
        );
    }

    #[test]
    fn load_reads_a_written_config() {
        let path = temp_path("round-trip.toml");
        let config = Config::parse(FULL_TOML).expect("full example");
        std::fs::write(&path, config.to_toml()).expect("write temp config");
        let loaded = Config::load(&path);
        let _ = std::fs::remove_file(&path);
        // The same, but for the data directory: the file's, made absolute.
        let mut expected = config;
        let folder = path.parent().expect("a folder");
        expected.store.dir = folder.join(&expected.store.dir);
        assert_eq!(loaded.expect("load"), expected);
    }

    #[test]
    fn tls_files_are_relative_to_the_config_file_and_make_the_url_wss() {
        let path = temp_path("tls.toml");
        let text = DEFAULT_TOML
            .replace(
                "nodes = \"127.0.0.1:7301\"",
                "nodes = \"127.0.0.1:7301\"\ntls = { cert = \"/etc/m.crt\", key = \"m.key\" }",
            )
            .replace(
                "listen = \"127.0.0.1:7310\"",
                "listen = \"127.0.0.1:7310\"\ntls = { cert = \"certs/f.crt\", key = \"certs/f.key\" }",
            );
        std::fs::write(&path, text).expect("write temp config");
        let loaded = Config::load(&path);
        let _ = std::fs::remove_file(&path);
        let config = loaded.expect("load");
        let folder = std::path::absolute(&path).expect("absolute");
        let folder = folder.parent().expect("a folder");
        assert_eq!(
            config.master.tls,
            Some(TlsConfig {
                cert: "/etc/m.crt".into(),
                key: folder.join("m.key"),
            })
        );
        let front = &config.fronts[0];
        assert_eq!(
            front.tls.as_ref().map(|t| (&t.cert, &t.key)),
            Some((&folder.join("certs/f.crt"), &folder.join("certs/f.key")))
        );
        assert_eq!(front.client_url(), "wss://127.0.0.1:7310");
        let written = config.to_toml();
        assert_eq!(Config::parse(&written).expect(&written), config);
    }

    #[test]
    fn unknown_tls_field_is_a_parse_error() {
        let text = DEFAULT_TOML.replace(
            "listen = \"127.0.0.1:7310\"",
            "listen = \"127.0.0.1:7310\"\ntls = { cert = \"a\", private_key = \"b\" }",
        );
        let err = Config::parse(&text).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Parse(m) if m.contains("unknown field `private_key`")),
            "{err}"
        );
    }

    #[test]
    fn load_prefixes_parse_errors_with_the_path() {
        let path = temp_path("broken.toml");
        std::fs::write(&path, "[master\n").expect("write temp config");
        let err = Config::load(&path).unwrap_err();
        let _ = std::fs::remove_file(&path);
        let ConfigError::Parse(message) = &err else {
            panic!("expected a parse error, got {err:?}");
        };
        assert!(
            message.starts_with(&format!("{}: ", path.display())),
            "{message}"
        );
    }

    #[test]
    fn invalid_lists_every_problem_one_per_line() {
        let mut config = Config::embedded_default();
        config.backs[0].tick_hz = 0;
        config.fronts[0].id = String::new();
        config.limits.client_queue = 0;
        let err = config.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid config:\n\
             \x20 - fronts[0].id: must be 1-64 characters of a-z, A-Z, 0-9, '-' or '_'\n\
             \x20 - backs[0].tick_hz: must be between 1 and 240\n\
             \x20 - limits.client_queue: must be between 1 and 65536"
        );
    }

    #[test]
    fn parse_runs_validation() {
        let text = DEFAULT_TOML.replace("tick_hz = 20", "tick_hz = 241");
        let err = Config::parse(&text).unwrap_err();
        let ConfigError::Invalid(problems) = &err else {
            panic!("expected invalid, got {err:?}");
        };
        assert_eq!(
            problems,
            &[FieldError {
                field: "backs[0].tick_hz".into(),
                reason: "must be between 1 and 240".into(),
            }]
        );
    }

    #[test]
    fn lookups_by_id_and_channel() {
        let config = Config::parse(FULL_TOML).expect("full example");
        assert_eq!(
            config.front("front-2").map(|f| f.host.as_str()),
            Some("10.0.0.3")
        );
        assert_eq!(config.front("back-1"), None);
        assert_eq!(config.back("back-2").map(|b| b.tick_hz), Some(60));
        assert_eq!(config.back("front-1"), None);
        assert_eq!(
            config.channel_owner("lobby").map(|b| b.id.as_str()),
            Some("back-1")
        );
        assert_eq!(
            config.channel_owner("race_1").map(|b| b.id.as_str()),
            Some("back-2")
        );
        assert_eq!(config.channel_owner("nowhere"), None);
    }

    #[test]
    fn client_url_prefers_public_url() {
        let config = Config::parse(FULL_TOML).expect("full example");
        assert_eq!(
            config.fronts[0].client_url(),
            "wss://play.example.com/front-1"
        );
        // A wildcard listen address names no machine: clients are sent to the host.
        assert_eq!(config.fronts[1].client_url(), "ws://10.0.0.3:7310");
    }

    #[test]
    fn nodes_are_dialed_at_their_advertised_address_else_their_bound_one() {
        let mut config = Config::parse(FULL_TOML).expect("full example");
        assert_eq!(config.master.nodes_address(), "10.0.0.1:7301");
        assert_eq!(config.backs[0].link_address(), "10.0.0.4:7320");
        config.backs[0].listen = "0.0.0.0:7320".parse().unwrap();
        assert_eq!(config.backs[0].link_address(), "10.0.0.4:7320");
        config.backs[0].host = "fd00::4".into();
        assert_eq!(config.backs[0].link_address(), "[fd00::4]:7320");
        config.backs[0].advertise = Some("back-1.centrum.svc:7320".into());
        assert_eq!(config.backs[0].link_address(), "back-1.centrum.svc:7320");
    }

    #[test]
    fn a_dial_address_is_a_host_and_a_port() {
        assert_eq!(split_dial_address("10.0.0.2:7320"), Ok(("10.0.0.2", 7320)));
        assert_eq!(split_dial_address("[fd00::2]:80"), Ok(("fd00::2", 80)));
        assert_eq!(
            split_dial_address("back-1.example:1"),
            Ok(("back-1.example", 1))
        );
        for (bad, reason) in [
            ("10.0.0.2", "must be host:port"),
            ("fd00::2:80", "[address]:port"),
            ("[fd00::zz]:80", "not an IPv6 address"),
            ("10.0.0.2:0", "port 0 cannot be dialed"),
            ("10.0.0.2:65536", "is not a port"),
            ("0.0.0.0:7320", "wildcard"),
            ("[::]:7320", "wildcard"),
            ("my box:7320", "neither an IP address nor a DNS name"),
            ("-bad.example:7320", "neither an IP address nor a DNS name"),
            (":7320", "neither an IP address nor a DNS name"),
        ] {
            let err = split_dial_address(bad).expect_err(bad);
            assert!(err.contains(reason), "{bad}: {err}");
        }
    }

    #[test]
    fn the_admin_token_and_the_server_key_come_from_their_variable_or_file() {
        let dir =
            std::env::temp_dir().join(format!("centrum-config-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("admin.token"), "file-token-0123\nignored\n").expect("write");
        std::fs::write(dir.join("empty.token"), "\n").expect("write");
        let with = |master: &str, calls: &str| {
            let toml = DEFAULT_TOML.replacen("[master]\n", &format!("[master]\n{master}\n"), 1);
            std::fs::write(
                dir.join("cluster.toml"),
                format!("{toml}\n[calls]\n{calls}\n"),
            )
            .expect("write");
            Config::load(&dir.join("cluster.toml"))
        };
        // A variable every test process has stands in for one a deployment sets.
        let path = std::env::var("PATH").expect("PATH is set");
        let config = with(
            "admin_token_file = \"admin.token\"",
            "server_key_env = \"PATH\"",
        )
        .expect("valid");
        assert_eq!(
            config.master.admin_token.as_ref().map(Secret::expose),
            Some("file-token-0123"),
            "the file's first line, relative to the config's folder"
        );
        assert_eq!(
            config.calls.server_key.as_ref().map(Secret::expose),
            Some(path.as_str())
        );
        // A named source that gives nothing is an error, never an open /admin.
        for (master, calls, field, says) in [
            (
                "",
                "server_key_env = \"CENTRUM_CONFIG_TEST_NEVER_SET\"",
                "calls.server_key_env",
                "CENTRUM_CONFIG_TEST_NEVER_SET is not set",
            ),
            (
                "admin_token_file = \"missing.token\"",
                "",
                "master.admin_token_file",
                "missing.token",
            ),
            (
                "admin_token_file = \"empty.token\"",
                "",
                "master.admin_token",
                "is empty",
            ),
        ] {
            let err = with(master, calls).expect_err(says).to_string();
            assert!(err.contains(field) && err.contains(says), "{err}");
        }
        // An inline value still stands when the variable is unset.
        let config = with(
            "admin_token = \"inline-token\"\nadmin_token_env = \"CENTRUM_CONFIG_TEST_NEVER_SET\"",
            "",
        )
        .expect("valid");
        assert_eq!(
            config.master.admin_token.as_ref().map(Secret::expose),
            Some("inline-token")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_cluster_secret_comes_from_its_file_else_inline_and_never_prints() {
        // A variable no test sets: reading the process environment is all this does.
        let unset = Some("CENTRUM_CONFIG_TEST_NEVER_SET".to_owned());
        let dir =
            std::env::temp_dir().join(format!("centrum-config-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(
            dir.join("cluster.secret"),
            "file-secret-0123456789\nignored\n",
        )
        .expect("write");
        let toml = format!(
            "{DEFAULT_TOML}\n[cluster]\nsecret_env = \"CENTRUM_CONFIG_TEST_NEVER_SET\"\nsecret_file = \"cluster.secret\"\nsecret = \"inline-secret-0123456789\"\n"
        );
        std::fs::write(dir.join("cluster.toml"), toml).expect("write");
        let config = Config::load(&dir.join("cluster.toml")).expect("valid");
        assert_eq!(
            config.cluster.secret_file,
            Some(dir.join("cluster.secret")),
            "relative to the file"
        );
        let secret = config.cluster.secret().expect("from the file");
        assert_eq!(secret.expose(), "file-secret-0123456789");

        let inline = ClusterConfig {
            secret_env: unset.clone(),
            secret: Some(Secret::new("inline-secret-0123456789")),
            ..ClusterConfig::default()
        };
        assert_eq!(
            inline.secret().expect("inline").expose(),
            "inline-secret-0123456789"
        );

        let missing = ClusterConfig {
            secret_env: unset.clone(),
            ..ClusterConfig::default()
        };
        let error = missing
            .secret()
            .expect_err("no secret anywhere")
            .to_string();
        assert!(error.contains("CENTRUM_CONFIG_TEST_NEVER_SET"), "{error}");

        std::fs::write(dir.join("short.secret"), "short\n").expect("write");
        let short = ClusterConfig {
            secret_env: unset,
            secret_file: Some(dir.join("short.secret")),
            ..ClusterConfig::default()
        };
        let error = short.secret().expect_err("too short").to_string();
        assert!(
            error.contains("must be 16-1024 bytes (got 5)") && !error.contains("short\n"),
            "{error}"
        );
        assert!(!format!("{config:?}").contains("inline-secret"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
