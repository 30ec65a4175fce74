//! Test harness: a whole cluster in-process on 127.0.0.1:0 ([`TestCluster`]), a TCP
//! proxy that can cut or black-hole a link on demand ([`Proxy`]), client helpers, a
//! plain HTTP/1.1 client ([`http`], over TLS too), certificates made at test time
//! ([`tls`]) and a small game for testing the platform ([`games::Echo`]).

pub mod games;
pub mod http;
pub mod raw_ws;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use centrum_app::Registry;
use centrum_back::Back;
use centrum_client::{Client, ClientError, ClientOptions, Event};
use centrum_config::{
    AccessConfig, AuthConfig, BackConfig, CallsConfig, ChannelConfig, ClusterConfig, Config,
    FrontConfig, Limits, MasterConfig, MatchmakerConfig, RoomTypeConfig, StoreConfig, StoreKind,
    TlsConfig,
};
use centrum_front::Front;
use centrum_net::Shutdown;

/// An arena input moving the player along x by `dx` (MessagePack `{dx, dy: 0}`).
pub fn steer(dx: f64) -> bytes::Bytes {
    #[derive(serde::Serialize)]
    struct Move {
        dx: f64,
        dy: f64,
    }
    bytes::Bytes::from(rmp_serde::to_vec_named(&Move { dx, dy: 0.0 }).expect("a move encodes"))
}

/// The cluster secret of every in-process test cluster.
pub const CLUSTER_SECRET: &str = "the in-process test clusters' secret";

/// Every network await in a test is bounded by this.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Awaits `f` for at most [`TIMEOUT`], failing the test with `what` otherwise.
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// What cluster to start.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub fronts: usize,
    /// `(channel, app)` per back; each back serves one channel.
    pub backs: Vec<(String, String)>,
    pub tick_hz: u32,
    pub limits: Limits,
    /// Route front->back links through a [`Proxy`], so tests can cut them.
    pub proxied_links: bool,
    /// `master.admin_token`.
    pub admin_token: Option<String>,
    /// The `[calls]` table (server key off by default).
    pub calls: CallsConfig,
    /// The `[access]` table (no trusted proxies, any origin by default).
    pub access: AccessConfig,
    /// The games the backs host; the built-in ones by default.
    pub apps: Registry,
    /// The certificate of the master and of every front: https:// and wss://.
    pub tls: Option<TlsConfig>,
    /// The certificate of every back's link port, and the roots the fronts trust for it
    /// (`cluster.ca`): links over TLS.
    pub link_tls: Option<(TlsConfig, std::path::PathBuf)>,
    /// The `[auth]` table (none by default: tokens ignored).
    pub auth: Option<AuthConfig>,
    /// The channels marked `anonymous = true`.
    pub anonymous: Vec<String>,
    /// The room types every back offers.
    pub rooms: Vec<RoomTypeConfig>,
    /// The `[matchmaker]` table.
    pub matchmaker: MatchmakerConfig,
    /// Every front and back serves its ops port (`ops`) on a port of 127.0.0.1 the OS
    /// picks (`Front::ops_addr`, `Back::ops_addr`).
    pub ops: bool,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        Self {
            fronts: 1,
            backs: vec![("arena".into(), "arena".into())],
            tick_hz: 20,
            limits: Limits::default(),
            proxied_links: false,
            admin_token: None,
            calls: CallsConfig::default(),
            access: AccessConfig::default(),
            apps: centrum_games::registry(),
            tls: None,
            link_tls: None,
            auth: None,
            anonymous: Vec::new(),
            rooms: Vec::new(),
            matchmaker: MatchmakerConfig::default(),
            ops: false,
        }
    }
}

/// A running cluster: master, fronts and backs as tasks of this test.
#[derive(Debug)]
pub struct TestCluster {
    pub config: Arc<Config>,
    pub fronts: Vec<Front>,
    pub backs: Vec<Back>,
    pub master_http: SocketAddr,
    /// One per back when the links are proxied.
    pub proxies: Vec<Proxy>,
    shutdown: Shutdown,
    /// One per front, children of `shutdown`, for [`TestCluster::stop_front`].
    front_stops: Vec<Shutdown>,
    /// One per back, for [`TestCluster::stop_back`].
    back_stops: Vec<Shutdown>,
    master_stop: Shutdown,
    master: JoinHandle<()>,
}

fn spawn_master(
    config: Arc<Config>,
    http: TcpListener,
    nodes: TcpListener,
    stop: Shutdown,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        centrum_master::run(
            config,
            centrum_master::MasterListeners { http, nodes },
            stop,
        )
        .await
        .expect("master runs");
    })
}

impl TestCluster {
    /// Starts master, backs and fronts. Returns once every front has linked to every back.
    pub async fn start(spec: ClusterSpec) -> TestCluster {
        let shutdown = Shutdown::new();
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let nodes = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut back_listeners = Vec::new();
        for _ in &spec.backs {
            back_listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
        }
        let mut proxies = Vec::new();
        let mut back_addrs = Vec::new();
        for l in &back_listeners {
            let real = l.local_addr().expect("addr");
            if spec.proxied_links {
                let proxy = Proxy::start(real).await;
                back_addrs.push(proxy.addr);
                proxies.push(proxy);
            } else {
                back_addrs.push(real);
            }
        }
        let mut front_listeners = Vec::new();
        for _ in 0..spec.fronts {
            front_listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
        }
        let config = Arc::new(Config {
            master: MasterConfig {
                host: "127.0.0.1".into(),
                http: http.local_addr().expect("addr"),
                nodes: nodes.local_addr().expect("addr"),
                advertise: None,
                admin_token: spec.admin_token.clone().map(centrum_config::Secret::new),
                admin_token_env: None,
                admin_token_file: None,
                limits: Default::default(),
                tls: spec.tls.clone(),
            },
            cluster: ClusterConfig {
                secret: Some(centrum_config::Secret::new(CLUSTER_SECRET)),
                ca: spec.link_tls.as_ref().map(|(_, ca)| ca.clone()),
                ..ClusterConfig::default()
            },
            fronts: front_listeners
                .iter()
                .enumerate()
                .map(|(i, l)| FrontConfig {
                    id: format!("front-{}", i + 1),
                    pool: false,
                    host: "127.0.0.1".into(),
                    listen: l.local_addr().expect("addr"),
                    public_url: None,
                    tls: spec.tls.clone(),
                    ops: spec.ops.then(|| "127.0.0.1:0".parse().expect("addr")),
                })
                .collect(),
            backs: spec
                .backs
                .iter()
                .enumerate()
                .map(|(i, (channel, app))| BackConfig {
                    id: format!("back-{}", i + 1),
                    host: "127.0.0.1".into(),
                    listen: back_addrs[i],
                    advertise: None,
                    tick_hz: spec.tick_hz,
                    channels: vec![ChannelConfig {
                        name: channel.clone(),
                        app: app.clone(),
                        anonymous: spec.anonymous.contains(channel),
                    }],
                    rooms: spec.rooms.clone(),
                    data_dir: None,
                    tls: spec.link_tls.as_ref().map(|(tls, _)| tls.clone()),
                    ops: spec.ops.then(|| "127.0.0.1:0".parse().expect("addr")),
                })
                .collect(),
            limits: spec.limits,
            calls: spec.calls.clone(),
            access: spec.access.clone(),
            // In-process clusters keep nothing on disk; the process tests do.
            store: StoreConfig {
                kind: StoreKind::Memory,
                ..StoreConfig::default()
            },
            supervision: Default::default(),
            matchmaker: spec.matchmaker,
            auth: spec.auth.clone(),
        });
        config.validate().expect("test config is valid");
        let master_http = config.master.http;
        let master_stop = shutdown.child_token();
        let master = spawn_master(config.clone(), http, nodes, master_stop.clone());
        let back_stops: Vec<Shutdown> = back_listeners
            .iter()
            .map(|_| shutdown.child_token())
            .collect();
        let backs = back_listeners
            .into_iter()
            .zip(&back_stops)
            .enumerate()
            .map(|(i, (l, stop))| {
                Back::start(
                    config.clone(),
                    &spec.apps,
                    &format!("back-{}", i + 1),
                    l,
                    stop.clone(),
                )
                .expect("back starts")
            })
            .collect();
        let front_stops: Vec<Shutdown> = front_listeners
            .iter()
            .map(|_| shutdown.child_token())
            .collect();
        let fronts = front_listeners
            .into_iter()
            .zip(&front_stops)
            .enumerate()
            .map(|(i, (l, stop))| {
                Front::start(config.clone(), &format!("front-{}", i + 1), l, stop.clone())
                    .expect("front starts")
            })
            .collect();
        TestCluster {
            config,
            fronts,
            backs,
            master_http,
            proxies,
            shutdown,
            front_stops,
            back_stops,
            master_stop,
            master,
        }
    }

    /// Stops back `i`; the rest of the cluster keeps running.
    pub fn stop_back(&self, i: usize) {
        self.back_stops[i].cancel();
    }

    /// Stops the master, waits for it, and starts a new one on the same addresses, which
    /// knows nothing until the nodes register with it again.
    pub async fn restart_master(&mut self) {
        self.master_stop.cancel();
        let old = std::mem::replace(&mut self.master, tokio::spawn(async {}));
        within("master stops", old).await.expect("master task");
        let http = TcpListener::bind(self.config.master.http)
            .await
            .expect("rebind http");
        let nodes = TcpListener::bind(self.config.master.nodes)
            .await
            .expect("rebind nodes");
        self.master_stop = self.shutdown.child_token();
        self.master = spawn_master(self.config.clone(), http, nodes, self.master_stop.clone());
    }

    /// The WebSocket URL of front `i`.
    pub fn front_url(&self, i: usize) -> String {
        self.fronts[i].client_url().to_owned()
    }

    /// A client connected to front `i`.
    pub async fn connect(&self, i: usize) -> Client {
        within(
            "connect",
            Client::connect(&self.front_url(i), ClientOptions::default()),
        )
        .await
        .expect("connect")
    }

    /// Stops front `i` (its clients are disconnected, its links close); the rest of
    /// the cluster keeps running.
    pub fn stop_front(&self, i: usize) {
        self.front_stops[i].cancel();
    }

    /// Stops everything and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for f in self.fronts {
            let _ = within("front stops", f.wait()).await;
        }
        for b in self.backs {
            let _ = within("back stops", b.wait()).await;
        }
        let _ = within("master stops", self.master).await;
    }
}

/// A TCP proxy to one address. [`Proxy::cut`] drops every connection through it;
/// [`Proxy::pause`] black-holes them: the sockets stay open and carry nothing (bytes
/// wait, unread, in the kernel's buffers) until [`Proxy::resume`], as with a stopped
/// peer or a path that silently drops packets. Connections opened while paused wait too.
#[derive(Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
    /// True while paused.
    paused: watch::Sender<bool>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (paused, gate) = watch::channel(false);
        let accept = tokio::spawn({
            let conns = conns.clone();
            async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    let mut gate = gate.clone();
                    let task = tokio::spawn(async move {
                        open(&mut gate).await;
                        let Ok(outbound) = TcpStream::connect(target).await else {
                            return;
                        };
                        let (in_read, in_write) = inbound.into_split();
                        let (out_read, out_write) = outbound.into_split();
                        // Both directions in this task, so that aborting it (a cut)
                        // closes all four halves.
                        tokio::join!(
                            pump(in_read, out_write, gate.clone()),
                            pump(out_read, in_write, gate),
                        );
                    });
                    conns.lock().push(task);
                }
            }
        });
        Proxy {
            addr,
            conns,
            accept,
            paused,
        }
    }

    /// Drops every open connection (both ends see the link break). New ones still pass.
    pub fn cut(&self) {
        for task in self.conns.lock().drain(..) {
            task.abort();
        }
    }

    /// Stops every connection, open or new, from carrying anything; nothing is closed.
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    /// Lets the connections carry bytes again, starting with those that waited.
    pub fn resume(&self) {
        self.paused.send_replace(false);
    }
}

/// Waits while the proxy is paused.
async fn open(gate: &mut watch::Receiver<bool>) {
    // The sender lives as long as the proxy, which outlives its connections.
    let _ = gate.wait_for(|paused| !paused).await;
}

/// Copies one direction, never reading or writing while paused.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut gate: watch::Receiver<bool>,
) {
    let mut buf = vec![0; 16 << 10];
    loop {
        open(&mut gate).await;
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Paused while reading: the bytes wait here.
        open(&mut gate).await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// Joins, retrying while the front is still linking to the back at start-up.
pub async fn join(client: &mut Client, channel: &str, data: &[u8]) {
    within("join", async {
        loop {
            match client.join(channel, data).await {
                Ok(()) => return,
                Err(ClientError::Rejected { reason, .. }) if reason.contains("unavailable") => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("join failed: {e}"),
            }
        }
    })
    .await
}

/// Reads events until `done` holds for the client.
pub async fn until(client: &mut Client, what: &str, mut done: impl FnMut(&Client, &Event) -> bool) {
    within(what, async {
        loop {
            let event = client.next_event().await.expect("event");
            if done(client, &event) {
                return;
            }
        }
    })
    .await
}
