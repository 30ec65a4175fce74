//! A centrum back: the single authoritative owner of its channels' state. It accepts
//! links from fronts, queues what they forward, ticks each channel on its own fixed
//! schedule through the hosted game (an [`App`](centrum_app::App) from the
//! [`Registry`] it is given), and sends one patch per tick to every front.
//!
//! Layers: `link` (accept loop, per-link tasks) -> `directory` (which channels and
//! links there are now; `rooms`: the channels made at run time for the master's
//! matchmaker) -> `inbox` (per-channel queue) ->
//! `channel` (tick loop; `membership`: who is in, `game`: the hosted game,
//! `fanout`: patches, states, messages, replies; `journal` and `persist`: the
//! channel's records and snapshots in a [`Store`], and its recovery from them).

pub use centrum_store::{DiskStore, MemoryStore, RedisStore, Store, StoreError};

mod channel;
mod directory;
mod inbox;
mod link;
mod metrics;
mod rooms;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::info;

use centrum_app::Registry;
use centrum_config::{Config, FieldError, Fsync, StoreKind};
use centrum_net::auth::ClusterKey;
use centrum_net::ops::{Ops, OpsNode};
use centrum_net::{Control, Registration, ServerTls, Shutdown};
use centrum_protocol::{
    CLUSTER_VERSION, MasterToNode, NodeStats, NodeToMaster, Register, Role, Tick,
};
use tokio_util::task::TaskTracker;

pub use channel::RecoverError;
use channel::{Channel, ChannelOptions, ChannelShared, StorePolicy};
use directory::Directory;
use inbox::{Event, Inbox};
use metrics::{BackMetrics, ChannelMetrics};
use rooms::Rooms;

/// Why a back could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum BackError {
    #[error("no back with id {0:?} in the config")]
    UnknownId(String),
    #[error("channel {channel:?}: unknown application {app:?} (this binary has: {known})")]
    UnknownApp {
        channel: String,
        app: String,
        known: String,
    },
    #[error("channel {channel:?}: application schema: {source}")]
    Schema {
        channel: String,
        source: centrum_protocol::SchemaError,
    },
    #[error("channel index overflow: a back serves at most 65536 channels")]
    TooManyChannels,
    /// The store could not be opened or read.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A channel's journal writer failed; what it acknowledged is durable.
    #[error(
        "channel {channel:?}: the journal writer failed; restart the back to recover the channel"
    )]
    JournalFailed { channel: String },
    /// A channel's store failed for longer than `limits.link_timeout_ms`: the back
    /// stops, so that its clients are told their channels are unavailable, and its
    /// supervisor starts it again (from what is durable) once the store answers.
    #[error(
        "channel {channel:?}: the store failed for over {} ms ({error}); the back stops so that its clients are told the channel is unavailable",
        limit.as_millis()
    )]
    StoreOutage {
        channel: String,
        limit: std::time::Duration,
        error: String,
    },
    /// A channel's store holds something it cannot come back from.
    #[error("channel {channel:?} cannot recover: {source}")]
    Recover {
        channel: String,
        #[source]
        source: RecoverError,
    },
    #[error(transparent)]
    Refused(#[from] centrum_net::RegisterError),
    /// The cluster secret is missing or unreadable.
    #[error(transparent)]
    Secret(#[from] centrum_config::SecretError),
    /// The store's URL is missing or unreadable.
    #[error(transparent)]
    StoreUrl(#[from] centrum_config::StoreUrlError),
    #[error(transparent)]
    Ops(#[from] centrum_net::ops::BindError),
    /// The link port's certificate or key (`field`) cannot be used.
    #[error("{field}: {source}")]
    Tls {
        field: String,
        #[source]
        source: centrum_net::TlsError,
    },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// What the back's tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) id: String,
    pub(crate) config: Arc<Config>,
    /// The channels of the config, in order: their index is their number on a link.
    pub(crate) static_channels: Vec<String>,
    /// Every channel there is now, rooms included, and the open links.
    pub(crate) directory: Arc<Directory>,
    /// The rooms this back makes; None when it offers no room type.
    pub(crate) rooms: Option<Arc<Rooms>>,
    pub(crate) metrics: Arc<BackMetrics>,
    /// Where channels are kept, if anywhere: for its counters.
    pub(crate) store: Option<Arc<dyn Store>>,
    /// Signs this back's proofs and checks the fronts'.
    pub(crate) key: ClusterKey,
    /// The link port's accept loop runs (for readiness).
    pub(crate) accepting: AtomicBool,
}

/// A running back.
#[derive(Debug)]
pub struct Back {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    /// Where the ops port is bound, when `ops` is set.
    ops_addr: Option<SocketAddr>,
    tasks: JoinSet<Result<(), BackError>>,
    /// The rooms' channel tasks, waited for with the others.
    room_tasks: TaskTracker,
    shutdown: Shutdown,
}

impl Back {
    /// Starts back `id` of `config` on `listener`: its channels start ticking the
    /// games of `apps` their config names, links are accepted, and it registers with
    /// the master (retrying while it is away).
    ///
    /// # Errors
    /// [`BackError`] when the id, an application or a schema is unknown or invalid,
    /// [`BackError::Ops`] when its `ops` address cannot be bound.
    pub fn start(
        config: Arc<Config>,
        apps: &Registry,
        id: &str,
        listener: TcpListener,
        shutdown: Shutdown,
    ) -> Result<Back, BackError> {
        let early = Early::start(&config, id, &shutdown)?;
        let store = open_store(&config, id)?;
        Self::start_early(config, apps, id, store, listener, shutdown, early)
    }

    /// As [`Back::start`], keeping channels in `store` (None: nowhere) whatever the
    /// config says: for tests that restart a back in one process.
    ///
    /// # Errors
    /// As [`Back::start`].
    pub fn start_with_store(
        config: Arc<Config>,
        apps: &Registry,
        id: &str,
        store: Option<Arc<dyn Store>>,
        listener: TcpListener,
        shutdown: Shutdown,
    ) -> Result<Back, BackError> {
        let early = Early::start(&config, id, &shutdown)?;
        Self::start_early(config, apps, id, store, listener, shutdown, early)
    }

    /// As [`Back::start_with_store`], with the ops port already serving.
    fn start_early(
        config: Arc<Config>,
        apps: &Registry,
        id: &str,
        store: Option<Arc<dyn Store>>,
        listener: TcpListener,
        shutdown: Shutdown,
        early: Early,
    ) -> Result<Back, BackError> {
        let me = config
            .back(id)
            .ok_or_else(|| BackError::UnknownId(id.to_owned()))?
            .clone();
        let key = ClusterKey::new(config.cluster.secret()?.expose().as_bytes());
        let Early {
            metrics,
            mut tasks,
            ops,
        } = early;
        let tls = match &me.tls {
            None => None,
            Some(files) => {
                let index = config.backs.iter().position(|b| b.id == id).unwrap_or(0);
                let loaded = ServerTls::load(&files.cert, &files.key, metrics.tls.clone());
                Some(loaded.map_err(|source| BackError::Tls {
                    field: source.field(&format!("backs[{index}]")),
                    source,
                })?)
            }
        };
        let local_addr = listener.local_addr()?;
        let limits = &config.limits;
        let options = ChannelOptions {
            period: me.tick_period(),
            link_grace: limits.link_grace(),
            resume_grace: limits.resume_grace(),
            // A message travels in one link frame with its channel name and a few
            // headers around it; 1 KiB covers them.
            max_game_message_bytes: (limits.max_frame_bytes as usize).saturating_sub(1024),
            max_game_messages: (limits.link_queue as usize / 4).max(1),
            max_frame_bytes: limits.max_frame_bytes as usize,
            epoch: std::time::Instant::now(),
        };
        let policy = StorePolicy {
            every: config.store.snapshot_every(),
            journal_bytes: config.store.snapshot_journal_bytes,
            outage: limits.link_timeout(),
        };
        let now = std::time::Instant::now();
        let directory = Arc::new(Directory::default());
        let mut runners = Vec::new();
        for ch in &me.channels {
            let app = apps.create(&ch.app).ok_or_else(|| BackError::UnknownApp {
                channel: ch.name.clone(),
                app: ch.app.clone(),
                known: apps.names().collect::<Vec<_>>().join(", "),
            })?;
            app.schema()
                .validate()
                .map_err(|source| BackError::Schema {
                    channel: ch.name.clone(),
                    source,
                })?;
            // No link is open yet: nothing to attach.
            let shared = directory
                .insert(
                    |index| {
                        Arc::new(ChannelShared {
                            name: ch.name.clone(),
                            app_name: ch.app.clone(),
                            index,
                            inbox: Inbox::new(config.limits.channel_inputs as usize),
                            metrics: Arc::new(ChannelMetrics::default()),
                            room: None,
                        })
                    },
                    |_, _| {},
                )
                .map_err(|_| BackError::TooManyChannels)?;
            let runner = match &store {
                Some(store) => Channel::recover(shared, app, options, &**store, policy, now)?,
                None => Channel::new(shared, app, options),
            };
            runners.push(runner);
        }
        let room_tasks = TaskTracker::new();
        let rooms = (!me.rooms.is_empty()).then(|| {
            Arc::new(Rooms::new(
                id,
                me.rooms.clone(),
                apps.clone(),
                key.clone(),
                options,
                config.limits.channel_inputs as usize,
                directory.clone(),
                room_tasks.clone(),
                shutdown.clone(),
                config.matchmaker.seat_ttl(),
                store.clone().map(|s| (s, policy)),
            ))
        });
        if let Some(rooms) = &rooms {
            let recovered = rooms.recover(now)?;
            if recovered > 0 {
                info!(back = id, rooms = recovered, "rooms recovered");
            }
        }
        let shared = Arc::new(Shared {
            id: id.to_owned(),
            config: config.clone(),
            static_channels: me.channels.iter().map(|c| c.name.clone()).collect(),
            directory,
            rooms,
            metrics,
            store: store.clone(),
            key,
            accepting: AtomicBool::new(false),
        });
        // Recovered: readiness is the node's to tell from now on.
        if let Some((ops, _)) = &ops {
            ops.set_node(Arc::new(BackControl {
                shared: shared.clone(),
                tick_hz: me.tick_hz,
            }));
        }
        if let Some(store) = &store {
            tasks.spawn(watch_store(store.clone(), shutdown.clone()));
        }
        for runner in runners {
            let stop = shutdown.clone();
            tasks.spawn(runner.run(stop));
        }
        if let Some(tls) = &tls {
            let watch = tls.clone().watch(shutdown.clone());
            tasks.spawn(async move {
                watch.await;
                Ok(())
            });
        }
        tasks.spawn({
            let (shared, stop) = (shared.clone(), shutdown.clone());
            async move {
                link::accept_loop(listener, shared, tls, stop).await;
                Ok(())
            }
        });
        tasks.spawn(register(
            shared.clone(),
            local_addr,
            me.tick_hz,
            shutdown.clone(),
        ));
        let kept = store
            .as_ref()
            .map_or("nowhere (store.kind = \"memory\")".to_owned(), |s| {
                s.describe()
            });
        info!(back = id, listen = %local_addr, channels = me.channels.len(), room_types = me.rooms.len(), store = %kept, "back started");
        Ok(Back {
            shared,
            local_addr,
            ops_addr: ops.map(|(_, addr)| addr),
            tasks,
            room_tasks,
            shutdown,
        })
    }

    /// The address links are accepted on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where the ops port (`/healthz`, `/readyz`, `/metrics`) is bound, when `ops` is set.
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops_addr
    }

    /// The full state of `channel` right after its next tick, as the shared body of a
    /// client `State` message. For tests and tools; `None` for an unknown channel.
    pub async fn snapshot(&self, channel: &str) -> Option<(Tick, Bytes)> {
        let ch = self.shared.directory.named(channel)?;
        let (reply, rx) = tokio::sync::oneshot::channel();
        ch.inbox.push(Event::Snapshot { reply }).ok()?;
        rx.await.ok()
    }

    /// Serves a link over an in-process stream, exactly as one accepted over TCP.
    pub fn link_stream<S>(&self, stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        tokio::spawn(link::serve_link(
            stream,
            self.shared.clone(),
            None,
            self.shutdown.child_token(),
        ));
    }

    /// Waits until the back stops (shutdown, or refusal by the master), and for every
    /// task it started, at most 5 s after the signal.
    ///
    /// # Errors
    /// [`BackError::Refused`] when the master refused this back (e.g. its id is live elsewhere).
    pub async fn wait(mut self) -> Result<(), BackError> {
        let result = centrum_net::wait_tasks(&mut self.tasks, &self.shutdown).await;
        // Rooms stop on the same signal; the tasks above had their 5 s.
        self.room_tasks.close();
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(1), self.room_tasks.wait()).await;
        // A room's channel that stopped the back is its reason, as a channel's would be.
        match (self.shared.rooms.as_ref()).and_then(|rooms| rooms.take_failure()) {
            Some(e) if result.is_ok() => Err(e),
            _ => result,
        }
    }
}

/// The store back `id` keeps its channels in, as the config says: files under its
/// data directory (made if missing), keys on a Redis server (taking the back's lease
/// there), or none with `store.kind = "memory"`.
///
/// # Errors
/// [`BackError::Store`] naming the directory when it cannot be made or written, or
/// the server when it does not answer, does not keep writes as `store.fsync` needs, or
/// another process holds the back's lease; [`BackError::StoreUrl`] without a URL.
pub fn open_store(config: &Config, id: &str) -> Result<Option<Arc<dyn Store>>, BackError> {
    let sync = match config.store.fsync {
        Fsync::Tick => centrum_store::SyncPolicy::EveryRecord,
        Fsync::Interval => centrum_store::SyncPolicy::Interval(config.store.fsync_interval()),
        Fsync::Never => centrum_store::SyncPolicy::Never,
    };
    if config.store.kind == StoreKind::Redis {
        let store = RedisStore::new(centrum_store::RedisOptions {
            url: config.store.url()?.expose().to_owned(),
            prefix: config.store.prefix.clone(),
            back: id.to_owned(),
            lease: config.store.lease(),
            sync,
        })?;
        return Ok(Some(Arc::new(store)));
    }
    let Some(dir) = config.data_dir(id) else {
        return Ok(None);
    };
    Ok(Some(Arc::new(DiskStore::new(dir, sync)?)))
}

/// Stops the back once its store may no longer be written by this process (its lease
/// was lost: taken over, or not renewed in time): its links close, so clients see
/// their channels unavailable, and its supervisor starts it again.
async fn watch_store(store: Arc<dyn Store>, shutdown: Shutdown) -> Result<(), BackError> {
    let mut every = tokio::time::interval(std::time::Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = every.tick() => store.health()?,
        }
    }
}

/// Runs back `id` until `shutdown`.
///
/// # Errors
/// As [`Back::start`] and [`Back::wait`].
pub async fn run(
    config: Arc<Config>,
    apps: &Registry,
    id: &str,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), BackError> {
    Back::start(config, apps, id, listener, shutdown)?
        .wait()
        .await
}

/// Checks that every channel of `config` runs an application of `apps`, naming the
/// config field of each that does not:
/// `backs[0].channels[1].app: unknown application "tagg" (this binary has: arena, tag)`.
///
/// # Errors
/// One [`FieldError`] per unknown application.
pub fn check_apps(config: &Config, apps: &Registry) -> Result<(), Vec<FieldError>> {
    let known = apps.names().collect::<Vec<_>>().join(", ");
    let problems: Vec<FieldError> = config
        .backs
        .iter()
        .enumerate()
        .flat_map(|(b, back)| {
            back.channels
                .iter()
                .enumerate()
                .map(move |(c, ch)| (b, c, ch))
        })
        .filter(|(_, _, ch)| !apps.contains(&ch.app))
        .map(|(b, c, ch)| FieldError {
            field: format!("backs[{b}].channels[{c}].app"),
            reason: format!(
                "unknown application {:?} (this binary has: {known})",
                ch.app
            ),
        })
        .chain(config.backs.iter().enumerate().flat_map(|(b, back)| {
            let known = &known;
            back.rooms
                .iter()
                .enumerate()
                .filter(|(_, room)| !apps.contains(&room.app))
                .map(move |(r, room)| FieldError {
                    field: format!("backs[{b}].rooms[{r}].app"),
                    reason: format!(
                        "unknown application {:?} (this binary has: {known})",
                        room.app
                    ),
                })
        }))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

async fn register(
    shared: Arc<Shared>,
    listen: SocketAddr,
    tick_hz: u32,
    shutdown: Shutdown,
) -> Result<(), BackError> {
    let limits = &shared.config.limits;
    let reg = Registration {
        master: shared.config.master.nodes_address(),
        register: Register {
            version: CLUSTER_VERSION,
            role: Role::Back,
            id: shared.id.clone(),
            pid: std::process::id(),
            listen: listen.to_string(),
            // Made afresh for each connection by the registration loop.
            nonce: Bytes::new(),
        },
        heartbeat: limits.heartbeat(),
        max_frame_bytes: limits.max_frame_bytes,
        key: shared.key.clone(),
    };
    let control = BackControl { shared, tick_hz };
    centrum_net::register_and_heartbeat(reg, control, shutdown).await?;
    Ok(())
}

/// What a back tells the master: its stats, its rooms; and the rooms it makes for it.
struct BackControl {
    shared: Arc<Shared>,
    tick_hz: u32,
}

impl BackControl {
    /// The back's stats. Per-heartbeat windows (tick times) are reset when `reset` (a
    /// heartbeat) and only read otherwise (a scrape of the ops port).
    fn report(&self, reset: bool) -> NodeStats {
        let s = &self.shared;
        let mut metrics = Vec::new();
        s.metrics.metrics(&mut metrics);
        // Channels of the config are reported one by one; rooms, which may be
        // thousands, by type (`Rooms::metrics`) and in the room reports.
        let mut busy_us = 0;
        let mut clients = 0;
        let mut channels = Vec::new();
        for c in s.directory.channels() {
            if c.room.is_some() {
                busy_us += c.metrics.tick_us_avg(reset) * u64::from(self.tick_hz);
                clients += c.metrics.clients.load(std::sync::atomic::Ordering::Relaxed) as u32;
                continue;
            }
            c.metrics.metrics(&c.name, &mut metrics);
            let stats = c.metrics.stats(&c.name, &c.app_name, self.tick_hz, reset);
            busy_us += stats.tick_us_avg * u64::from(self.tick_hz);
            clients += stats.clients;
            channels.push(stats);
        }
        if let Some(rooms) = &s.rooms {
            rooms.metrics(&mut metrics);
        }
        if let Some(store) = &s.store {
            metrics.push(centrum_protocol::Metric {
                name: "centrum_back_store_failures_total".into(),
                help: "Round trips to a networked store (store.kind = \"redis\") that failed because it could not be reached: writes (each retried, nothing acknowledged meanwhile), reads and lease renewals.".into(),
                kind: centrum_protocol::MetricKind::Counter,
                labels: Vec::new(),
                value: store.failures() as f64,
            });
            metrics.push(centrum_protocol::Metric {
                name: "centrum_back_store_syncs_total".into(),
                help: "Syncs of the store to the disk: one fdatasync for a journal that asked alone, one syncfs for all the journals that asked together (every channel's record of one tick, with store.fsync = \"tick\").".into(),
                kind: centrum_protocol::MetricKind::Counter,
                labels: Vec::new(),
                value: store.syncs() as f64,
            });
        }
        metrics.push(centrum_protocol::Metric {
            name: "centrum_back_busy_ratio".into(),
            help: "The share of one core the back's ticks took over the last heartbeat period (rooms included); the matchmaker places new rooms by it and by clients.".into(),
            kind: centrum_protocol::MetricKind::Gauge,
            labels: Vec::new(),
            value: busy_us as f64 / 1e6,
        });
        channels.sort_by(|a, b| a.name.cmp(&b.name));
        NodeStats {
            clients,
            links: s.metrics.links.load(std::sync::atomic::Ordering::Relaxed) as u32,
            channels,
            metrics,
        }
    }
}

impl Control for BackControl {
    fn stats(&self) -> NodeStats {
        self.report(true)
    }

    fn reports(&self, all: bool) -> Vec<NodeToMaster> {
        let Some(rooms) = &self.shared.rooms else {
            return Vec::new();
        };
        let max = centrum_protocol::CONTROL_FRAME_BYTES as usize / 4;
        rooms
            .reports(all, max)
            .into_iter()
            .map(NodeToMaster::Rooms)
            .collect()
    }

    fn request(&self, msg: MasterToNode) -> Option<NodeToMaster> {
        match msg {
            MasterToNode::CreateRoom(req) => {
                let answer = match &self.shared.rooms {
                    Some(rooms) => rooms.create(req, std::time::Instant::now()),
                    None => centrum_protocol::RoomCreated {
                        request: req.request,
                        error: Some((
                            "unknown_type".into(),
                            format!("back {} offers no room types", self.shared.id),
                        )),
                        metadata: Bytes::new(),
                    },
                };
                Some(NodeToMaster::RoomCreated(answer))
            }
            MasterToNode::Registered(_) | MasterToNode::Refused(_) | MasterToNode::Challenge(_) => {
                None
            }
        }
    }
}

impl OpsNode for BackControl {
    fn metrics(&self) -> Vec<centrum_protocol::Metric> {
        self.report(false).metrics
    }

    /// Ready once its channels are recovered (the ops port asks only from then on), its
    /// link port accepts, and its store, if any, may still be written.
    fn ready(&self) -> Result<(), String> {
        let s = &self.shared;
        if !s.accepting.load(std::sync::atomic::Ordering::Relaxed) {
            return Err("not accepting links".into());
        }
        if let Some(store) = &s.store {
            store.health().map_err(|e| format!("store: {e}"))?;
        }
        Ok(())
    }
}

/// What a back starts before it opens its store and recovers its channels, which may
/// take a while: its counters and its ops port, live but not ready meanwhile.
struct Early {
    metrics: Arc<BackMetrics>,
    tasks: JoinSet<Result<(), BackError>>,
    /// The ops port's state and bound address, when `ops` is set.
    ops: Option<(Arc<Ops>, SocketAddr)>,
}

impl Early {
    fn start(config: &Config, id: &str, shutdown: &Shutdown) -> Result<Early, BackError> {
        let index = (config.backs.iter().position(|b| b.id == id))
            .ok_or_else(|| BackError::UnknownId(id.to_owned()))?;
        let metrics = Arc::new(BackMetrics::default());
        let mut tasks = JoinSet::new();
        let ops = match config.backs[index].ops {
            None => None,
            Some(addr) => {
                let token = config.master.admin_token.clone();
                let at = (format!("backs[{index}].ops"), addr);
                let counters = metrics.ops.clone();
                Some(centrum_net::ops::start(
                    at, counters, token, &mut tasks, shutdown,
                )?)
            }
        };
        Ok(Early {
            metrics,
            tasks,
            ops,
        })
    }
}
