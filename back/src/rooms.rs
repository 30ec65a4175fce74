//! The rooms a back makes at run time: which types it offers, which rooms it has, the
//! ids it must not give out again, and what it reports to the master's matchmaker.
//! A room is a channel like any other once made; this file decides whether to make
//! it and keeps the book the matchmaker reads.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use centrum_app::{Registry, Room};
use centrum_config::{RoomId, RoomTypeConfig};
use centrum_net::Shutdown;
use centrum_net::auth::ClusterKey;
use centrum_protocol::{CreateRoom, Metric, MetricKind, RoomCreated, RoomReport, RoomsReport};

use crate::channel::{Channel, ChannelOptions, ChannelShared, RoomError, StorePolicy};
use crate::directory::Directory;
use crate::inbox::{Event, Inbox};
use crate::metrics::ChannelMetrics;
use centrum_store::Store;

/// How long the id of a disposed room is refused for a new one: long enough that no
/// seat or report naming the old room is still about.
const ID_HOLD: Duration = Duration::from_secs(600);

/// The most disposed ids held at once; past it the oldest go first.
const MAX_HELD_IDS: usize = 100_000;

/// The most rooms in one report frame; [`Rooms::reports`] also cuts by size, since a
/// room's metadata may take 1 KiB.
const REPORT_ROOMS: usize = 256;

/// A room as its channel's task and the matchmaker's reports share it.
#[derive(Debug)]
pub(crate) struct RoomShared {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) max_clients: u32,
    pub(crate) empty_dispose: Duration,
    /// The room's channel's counters, summed per type on /metrics.
    metrics: Arc<ChannelMetrics>,
    /// What the master has not heard yet.
    report: Mutex<Reported>,
}

#[derive(Debug, Default)]
struct Reported {
    clients: u32,
    metadata: Bytes,
    locked: bool,
    seats_taken: Vec<u64>,
    /// Changed since the last report.
    dirty: bool,
}

impl RoomShared {
    /// The channel's view after a tick: told to the master with its next heartbeat.
    pub(crate) fn update(&self, clients: u32, room: &Room, seats_taken: &mut Vec<u64>) {
        let mut r = self.report.lock();
        r.clients = clients;
        if r.metadata != room.metadata() {
            r.metadata = room.metadata().clone();
        }
        r.locked = room.is_locked();
        r.seats_taken.append(seats_taken);
        r.dirty = true;
    }

    fn report(&self, all: bool) -> Option<RoomReport> {
        let mut r = self.report.lock();
        if !(all || r.dirty) {
            return None;
        }
        r.dirty = false;
        Some(RoomReport {
            id: self.id.clone(),
            kind: self.kind.clone(),
            clients: r.clients,
            max_clients: self.max_clients,
            metadata: r.metadata.clone(),
            locked: r.locked,
            seats_taken: std::mem::take(&mut r.seats_taken),
        })
    }
}

/// Everything a back needs to make rooms.
#[derive(Debug)]
pub(crate) struct Rooms {
    back: String,
    types: Vec<RoomTypeConfig>,
    apps: Registry,
    pub(crate) key: ClusterKey,
    options: ChannelOptions,
    inbox_capacity: usize,
    directory: Arc<Directory>,
    tasks: TaskTracker,
    shutdown: Shutdown,
    /// How long a seat the matchmaker hands out is good: a new room waits at least
    /// this long for its first client before it counts as empty.
    pub(crate) seat_ttl: Duration,
    /// Where rooms are kept, like every channel; None: nowhere.
    store: Option<(Arc<dyn Store>, StorePolicy)>,
    book: Mutex<Book>,
    pub(crate) metrics: RoomMetrics,
    /// The counters of rooms disposed of, per type and name, so that the per-type sums
    /// on /metrics never go down.
    retired: Mutex<HashMap<String, Counters>>,
    /// The first error a room's channel stopped with (its store failed): the back
    /// stops with it, as it does for a channel of the config.
    failure: Mutex<Option<crate::BackError>>,
}

#[derive(Debug, Default)]
struct Book {
    live: HashMap<String, Arc<RoomShared>>,
    per_type: HashMap<String, u32>,
    /// Disposed ids, refused for new rooms until their time is up, oldest first.
    held: VecDeque<(String, Instant)>,
    held_ids: std::collections::HashSet<String>,
    /// Disposed since the last report.
    gone: Vec<String>,
}

/// Counters of the rooms of each type, for /metrics (per type, not per room: a back
/// may have thousands).
#[derive(Debug, Default)]
pub(crate) struct RoomMetrics {
    pub(crate) created: AtomicU64,
    pub(crate) disposed: AtomicU64,
    pub(crate) create_refused: AtomicU64,
    pub(crate) seats_refused: AtomicU64,
}

/// Why a room was not made: the matchmaker's error code and a message.
pub(crate) type Refusal = (&'static str, String);

impl Rooms {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        back: &str,
        types: Vec<RoomTypeConfig>,
        apps: Registry,
        key: ClusterKey,
        options: ChannelOptions,
        inbox_capacity: usize,
        directory: Arc<Directory>,
        tasks: TaskTracker,
        shutdown: Shutdown,
        seat_ttl: Duration,
        store: Option<(Arc<dyn Store>, StorePolicy)>,
    ) -> Self {
        Self {
            back: back.to_owned(),
            types,
            apps,
            key,
            options,
            inbox_capacity,
            directory,
            tasks,
            shutdown,
            seat_ttl,
            store,
            book: Mutex::new(Book::default()),
            metrics: RoomMetrics::default(),
            retired: Mutex::default(),
            failure: Mutex::default(),
        }
    }

    /// The store rooms are kept in, if any.
    pub(crate) fn store(&self) -> Option<(&dyn Store, StorePolicy)> {
        self.store.as_ref().map(|(s, p)| (&**s, *p))
    }

    /// Brings back the rooms of an earlier run of this back from its store: every room
    /// id of this back and of a type it still offers. Its members are held for resume,
    /// as in every recovered channel.
    ///
    /// # Errors
    /// What a room's store holds that cannot be used: the back does not start over it.
    pub(crate) fn recover(self: &Arc<Self>, now: Instant) -> Result<usize, crate::BackError> {
        let Some((store, _)) = self.store() else {
            return Ok(0);
        };
        let mut recovered = 0;
        for id in store.channels()? {
            let Some(kind) = self.types.iter().find(|t| self.is_room_id(&id, &t.kind)) else {
                continue;
            };
            let Some(app) = self.apps.create(&kind.app) else {
                continue;
            };
            let room = Arc::new(RoomShared {
                id: id.clone(),
                kind: kind.kind.clone(),
                max_clients: kind.max_clients,
                empty_dispose: kind.empty_dispose(),
                metrics: Arc::new(ChannelMetrics::default()),
                report: Mutex::new(Reported::default()),
            });
            let made = self.start(room.clone(), &kind.app, |shared| {
                Channel::recover_room(shared, app, self.options, self.clone(), now)
            });
            match made {
                Ok(()) => {}
                Err(RoomError::Back(e)) => return Err(e),
                Err(RoomError::Refused(e)) => {
                    return Err(crate::BackError::Recover {
                        channel: id,
                        source: crate::RecoverError::Room(e.message().to_owned()),
                    });
                }
            }
            let mut book = self.book.lock();
            book.live.insert(id, room);
            *book.per_type.entry(kind.kind.clone()).or_insert(0) += 1;
            recovered += 1;
        }
        Ok(recovered)
    }

    /// Makes the room the master asks for, and answers.
    pub(crate) fn create(self: &Arc<Self>, req: CreateRoom, now: Instant) -> RoomCreated {
        let (error, metadata) = match self.try_create(&req, now) {
            Ok(metadata) => (None, metadata),
            Err((code, message)) => {
                self.metrics.create_refused.fetch_add(1, Relaxed);
                warn!(room = %req.room, code, %message, "room not made");
                (Some((code.to_owned(), message)), Bytes::new())
            }
        };
        RoomCreated {
            request: req.request,
            error,
            metadata,
        }
    }

    /// Makes the room; its metadata as the game's `create` set it.
    fn try_create(self: &Arc<Self>, req: &CreateRoom, now: Instant) -> Result<Bytes, Refusal> {
        let Some(kind) = self.types.iter().find(|t| t.kind == req.kind) else {
            return Err((
                "unknown_type",
                format!("back {} offers no room type {:?}", self.back, req.kind),
            ));
        };
        if !self.is_room_id(&req.room, &kind.kind) {
            return Err((
                "bad_request",
                format!(
                    "{:?} is not a room id of type {:?} on back {}",
                    req.room, kind.kind, self.back
                ),
            ));
        }
        let app = self.apps.create(&kind.app).ok_or_else(|| {
            (
                "unknown_type",
                format!("this back's binary has no application {:?}", kind.app),
            )
        })?;
        // Counted as made before the game is asked, so two creations at once cannot
        // both pass `max_rooms`; given back if the game refuses.
        {
            let mut book = self.book.lock();
            book.expire_held(now);
            if book.live.contains_key(&req.room) || book.held_ids.contains(&req.room) {
                return Err(("exists", format!("room {} exists or existed", req.room)));
            }
            let count = book.per_type.entry(kind.kind.clone()).or_insert(0);
            if *count >= kind.max_rooms {
                return Err((
                    "no_capacity",
                    format!(
                        "back {} has its {} rooms of type {:?}",
                        self.back, kind.max_rooms, kind.kind
                    ),
                ));
            }
            *count += 1;
        }
        let room = Arc::new(RoomShared {
            id: req.room.clone(),
            kind: kind.kind.clone(),
            max_clients: kind.max_clients,
            empty_dispose: kind.empty_dispose(),
            metrics: Arc::new(ChannelMetrics::default()),
            report: Mutex::new(Reported::default()),
        });
        let made = self.make(room.clone(), &kind.app, app, &req.options, now);
        let mut book = self.book.lock();
        match made {
            Ok(()) => {
                let metadata = room.report.lock().metadata.clone();
                book.live.insert(req.room.clone(), room);
                self.metrics.created.fetch_add(1, Relaxed);
                info!(room = %req.room, kind = %kind.kind, "room made");
                Ok(metadata)
            }
            Err(refusal) => {
                if let Some(count) = book.per_type.get_mut(&kind.kind) {
                    *count = count.saturating_sub(1);
                }
                Err(refusal)
            }
        }
    }

    /// The room's channel: made, told the options, added to the directory (attached
    /// to every open link), and started.
    fn make(
        self: &Arc<Self>,
        room: Arc<RoomShared>,
        app_name: &str,
        app: Box<dyn centrum_app::DynApp>,
        options: &Bytes,
        now: Instant,
    ) -> Result<(), Refusal> {
        app.schema()
            .validate()
            .map_err(|e| ("bad_options", format!("the game's schema: {e}")))?;
        let made = self.start(room, app_name, |shared| {
            Channel::new_room(shared, app, self.options, self.clone(), options, now)
        });
        made.map_err(|e| match e {
            RoomError::Refused(e) => ("bad_options", e.message().to_owned()),
            RoomError::Back(e) => ("unavailable", format!("the room's store: {e}")),
        })
    }

    /// Builds the room's channel with `build`, adds it to the directory (attached to
    /// every open link) and starts its task.
    fn start(
        self: &Arc<Self>,
        room: Arc<RoomShared>,
        app_name: &str,
        build: impl FnOnce(Arc<ChannelShared>) -> Result<Channel, RoomError>,
    ) -> Result<(), RoomError> {
        let name = room.id.clone();
        let mut built = None;
        let directory = self.directory.clone();
        let inserted = directory.insert(
            |index| {
                let shared = Arc::new(ChannelShared {
                    name: name.clone(),
                    app_name: app_name.to_owned(),
                    index,
                    inbox: Inbox::new(self.inbox_capacity),
                    metrics: room.metrics.clone(),
                    room: Some(room.clone()),
                });
                built = Some(build(shared.clone()));
                shared
            },
            |channel, link| {
                let _ = channel.inbox.push(Event::Attach {
                    link: link.clone(),
                    instance: link.instance(),
                    sessions: Vec::new(),
                });
            },
        );
        let shared =
            inserted.map_err(|e| RoomError::Refused(centrum_app::AppError::new(e.to_string())))?;
        match built {
            Some(Ok(channel)) => {
                let (rooms, shutdown) = (self.clone(), self.shutdown.clone());
                self.tasks.spawn(async move {
                    if let Err(e) = channel.run(shutdown.clone()).await {
                        tracing::error!(error = %e, "stopping");
                        rooms.failure.lock().get_or_insert(e);
                        shutdown.cancel();
                    }
                });
                Ok(())
            }
            Some(Err(e)) => {
                directory.remove(shared.index);
                Err(e)
            }
            None => {
                directory.remove(shared.index);
                Err(RoomError::Refused(centrum_app::AppError::new(
                    "the room was not made",
                )))
            }
        }
    }

    /// `<type>.<random>.<this back>`: what the master makes, and fronts route by.
    fn is_room_id(&self, id: &str, kind: &str) -> bool {
        RoomId::parse(id).is_some_and(|r| r.kind == kind && r.back == self.back)
    }

    /// A room's channel stopped for good: its id is held, and the master told.
    pub(crate) fn disposed(
        &self,
        room: &RoomShared,
        index: centrum_protocol::ChannelIndex,
        now: Instant,
    ) {
        self.directory.remove(index);
        let mut book = self.book.lock();
        book.live.remove(&room.id);
        if let Some(count) = book.per_type.get_mut(&room.kind) {
            *count = count.saturating_sub(1);
        }
        book.gone.push(room.id.clone());
        if book.held.len() >= MAX_HELD_IDS
            && let Some((oldest, _)) = book.held.pop_front()
        {
            book.held_ids.remove(&oldest);
        }
        book.held.push_back((room.id.clone(), now + ID_HOLD));
        book.held_ids.insert(room.id.clone());
        drop(book);
        self.metrics.disposed.fetch_add(1, Relaxed);
        let mut retired = self.retired.lock();
        let sums = retired.entry(room.kind.clone()).or_default();
        add_counters(room, sums);
    }

    /// What the master has not heard: every room when `all` (a new registration),
    /// else those that changed, and the rooms disposed since. Cut into frames of at
    /// most [`REPORT_ROOMS`] rooms and about `max_bytes`.
    pub(crate) fn reports(&self, all: bool, max_bytes: usize) -> Vec<RoomsReport> {
        let (rooms, gone) = {
            let mut book = self.book.lock();
            let rooms: Vec<Arc<RoomShared>> = book.live.values().cloned().collect();
            (rooms, std::mem::take(&mut book.gone))
        };
        let mut out = vec![RoomsReport {
            rooms: Vec::new(),
            gone,
        }];
        let mut bytes = 0;
        for report in rooms.iter().filter_map(|r| r.report(all)) {
            let size = 64
                + report.id.len()
                + report.kind.len()
                + report.metadata.len()
                + report.seats_taken.len() * 9;
            let last = out.last_mut().map_or(0, |r| r.rooms.len());
            if last >= REPORT_ROOMS || (last > 0 && bytes + size > max_bytes) {
                out.push(RoomsReport::default());
                bytes = 0;
            }
            bytes += size;
            if let Some(frame) = out.last_mut() {
                frame.rooms.push(report);
            }
        }
        out.retain(|r| !(r.rooms.is_empty() && r.gone.is_empty()));
        out
    }

    /// Rooms per type now, for /metrics: how many, their clients, and the counters of
    /// their channels (inputs, patches, ticks, ...) summed per type, labelled
    /// `room_type` where a channel of the config has `channel`.
    /// The error a room's channel stopped the back with, if one did.
    pub(crate) fn take_failure(&self) -> Option<crate::BackError> {
        self.failure.lock().take()
    }

    pub(crate) fn metrics(&self, out: &mut Vec<Metric>) {
        let mut sums = self.retired.lock().clone();
        let live: Vec<Arc<RoomShared>> = self.book.lock().live.values().cloned().collect();
        for room in &live {
            add_counters(room, sums.entry(room.kind.clone()).or_default());
        }
        for (kind, counters) in sums {
            for (name, help, value) in counters {
                out.push(Metric {
                    name: name.into(),
                    help: help.into(),
                    kind: MetricKind::Counter,
                    labels: vec![("room_type".into(), kind.clone())],
                    value,
                });
            }
        }
        let book = self.book.lock();
        for t in &self.types {
            let live = book.per_type.get(&t.kind).copied().unwrap_or(0);
            let clients: u32 = book
                .live
                .values()
                .filter(|r| r.kind == t.kind)
                .map(|r| r.report.lock().clients)
                .sum();
            for (name, help, value) in [
                (
                    "centrum_back_rooms",
                    "Rooms of this type on this back.",
                    live,
                ),
                (
                    "centrum_back_room_clients",
                    "Clients in the rooms of this type (connected or held for resume).",
                    clients,
                ),
            ] {
                out.push(Metric {
                    name: name.into(),
                    help: help.into(),
                    kind: MetricKind::Gauge,
                    labels: vec![("type".into(), t.kind.clone())],
                    value: f64::from(value),
                });
            }
        }
        let m = &self.metrics;
        for (name, help, v) in [
            (
                "centrum_back_rooms_created_total",
                "Rooms made.",
                &m.created,
            ),
            (
                "centrum_back_rooms_disposed_total",
                "Rooms disposed of.",
                &m.disposed,
            ),
            (
                "centrum_back_rooms_refused_total",
                "Room creations refused (unknown type, max_rooms, bad options, a used id).",
                &m.create_refused,
            ),
            (
                "centrum_back_seats_refused_total",
                "Joins of a room refused for their seat (missing, forged, expired, used) or a full room.",
                &m.seats_refused,
            ),
        ] {
            out.push(Metric {
                name: name.into(),
                help: help.into(),
                kind: MetricKind::Counter,
                labels: Vec::new(),
                value: v.load(Relaxed) as f64,
            });
        }
    }
}

/// Counters in [`ChannelMetrics::each`]'s order: name, help, sum.
type Counters = Vec<(&'static str, &'static str, f64)>;

/// Adds the counters of `room`'s channel to `sums`.
fn add_counters(room: &RoomShared, sums: &mut Counters) {
    let mut i = 0;
    room.metrics.each(|name, help, kind, value| {
        if kind != MetricKind::Counter {
            return;
        }
        match sums.get_mut(i) {
            Some(sum) => sum.2 += value,
            None => sums.push((name, help, value)),
        }
        i += 1;
    });
}

impl Book {
    fn expire_held(&mut self, now: Instant) {
        while let Some((id, until)) = self.held.front() {
            if *until > now {
                break;
            }
            self.held_ids.remove(id);
            self.held.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use centrum_config::Config;
    use centrum_net::seat::{Seat, unix_ms};
    use centrum_protocol::{BackToFront, decode};
    use tokio::net::TcpListener;

    use super::*;
    use crate::link::LinkHandle;
    use crate::{Back, MemoryStore};

    const SECRET: &str = "a cluster secret of some length";

    fn config(empty_dispose_s: u32) -> Arc<Config> {
        let mut config = Config::embedded_default();
        config.cluster.secret = Some(centrum_config::Secret::new(SECRET));
        config.backs[0].listen = "127.0.0.1:0".parse().unwrap();
        config.backs[0].rooms[0].empty_dispose_s = empty_dispose_s;
        config.matchmaker.seat_ttl_ms = 1_000;
        // No master runs: the back retries it in the background, which is harmless.
        config.master.nodes = "127.0.0.1:9".parse().unwrap();
        Arc::new(config)
    }

    async fn start(config: &Arc<Config>, store: &MemoryStore, stop: &Shutdown) -> Back {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let store: Arc<dyn Store> = Arc::new(store.clone());
        Back::start_with_store(
            config.clone(),
            &centrum_games::registry(),
            "back-1",
            Some(store),
            listener,
            stop.clone(),
        )
        .unwrap()
    }

    fn rooms(back: &Back) -> &Arc<Rooms> {
        back.shared
            .rooms
            .as_ref()
            .expect("the default back offers rooms")
    }

    fn create(back: &Back, room: &str) -> RoomCreated {
        let req = CreateRoom {
            request: 1,
            room: room.into(),
            kind: "match".into(),
            options: Bytes::from_static(b"\xc0"),
        };
        rooms(back).create(req, Instant::now())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restarted_back_brings_its_rooms_back_with_their_members_held() {
        let (config, store) = (config(30), MemoryStore::new());
        let stop = Shutdown::new();
        let back = start(&config, &store, &stop).await;
        let room = "match.abc.back-1";
        assert_eq!(create(&back, room).error, None);
        let again = create(&back, room);
        assert_eq!(
            again.error.map(|e| e.0),
            Some("exists".into()),
            "an id is made once"
        );
        let bad = create(&back, "match.abc.back-2");
        assert_eq!(
            bad.error.map(|e| e.0),
            Some("bad_request".into()),
            "another back's id"
        );

        // A member joins with a seat, and its join is durable before its state leaves.
        let (link, mut frames) = LinkHandle::for_test("front-1", 64);
        let channel = back.shared.directory.named(room).expect("the room");
        channel
            .inbox
            .push(Event::Attach {
                link: link.clone(),
                instance: 1,
                sessions: vec![],
            })
            .unwrap();
        let key = ClusterKey::new(SECRET.as_bytes());
        let seat = Seat {
            room: room.into(),
            number: 7,
            expires_ms: unix_ms() + 60_000,
        };
        let join = Event::Join {
            link: link.clone(),
            session: 1,
            data: Bytes::new(),
            secret: 99,
            resume: None,
            identity: None,
            seat: Some(seat.token(&key)),
        };
        channel.inbox.push(join).unwrap();
        let mut opened = false;
        let joined = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(frame) = frames.recv().await {
                match decode::<BackToFront>(&frame, usize::MAX).unwrap() {
                    BackToFront::Opened(o) => opened |= o.name == room,
                    BackToFront::State(s) if s.sessions.iter().any(|(k, _)| *k == 1) => return,
                    BackToFront::JoinRejected(r) => panic!("rejected: {}", r.reason),
                    _ => {}
                }
            }
        })
        .await;
        assert!(
            joined.is_ok() && opened,
            "the room announced itself, then took its member"
        );
        // A room nobody joined (and no front knows) still journals its creation at once.
        let idle = "match.idle.back-1";
        assert_eq!(create(&back, idle).error, None);
        tokio::time::timeout(Duration::from_secs(5), async {
            while store.open(idle).unwrap().recovered.records.is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the idle room's creation is journaled");
        stop.cancel();
        back.wait().await.unwrap();

        let stop = Shutdown::new();
        let back = start(&config, &store, &stop).await;
        let report = rooms(&back).reports(true, 1 << 20);
        let mut listed: Vec<_> = report.iter().flat_map(|r| &r.rooms).collect();
        listed.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(listed.len(), 2);
        assert_eq!(
            (listed[0].id.as_str(), listed[0].clients),
            (room, 1),
            "the member is held for its resume"
        );
        assert_eq!((listed[1].id.as_str(), listed[1].clients), (idle, 0));
        assert!(
            !listed[1].metadata.is_empty(),
            "the game's create ran again in the replay"
        );
        assert_eq!(
            create(&back, room).error.map(|e| e.0),
            Some("exists".into())
        );
        stop.cancel();
        back.wait().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_empty_room_goes_with_what_was_kept_of_it() {
        let (config, store) = (config(0), MemoryStore::new());
        let stop = Shutdown::new();
        let back = start(&config, &store, &stop).await;
        let room = "match.empty.back-1";
        assert_eq!(create(&back, room).error, None);
        assert!(store.channels().unwrap().contains(&room.to_owned()));
        // Nobody comes within the seats' time (1 s): the room goes, and its id with it.
        tokio::time::timeout(Duration::from_secs(5), async {
            while back.shared.directory.named(room).is_some() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("disposed of");
        assert!(!store.channels().unwrap().contains(&room.to_owned()));
        let report = rooms(&back).reports(false, 1 << 20);
        assert!(report.iter().any(|r| r.gone.contains(&room.to_owned())));
        assert_eq!(
            create(&back, room).error.map(|e| e.0),
            Some("exists".into()),
            "a disposed id is not made again"
        );
        stop.cancel();
        back.wait().await.unwrap();
    }
}
