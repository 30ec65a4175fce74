//! The matchmaker: the rooms of every type as their backs report them, seat
//! reservations, and room creation on the least loaded back. It is asked only when a
//! client joins; play never passes through it. A restarted master knows nothing until
//! the backs report, which they do in full right after registering.
//!
//! Seats are reserved here, not on the backs: a room's places are the members its back
//! reported plus the seats handed out since that it has not reported taken, so a burst
//! of joins fills rooms exactly without asking a back per join. The back still checks
//! every seat (signed, for its room, not expired, not used) and refuses a full room.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use centrum_config::{Config, RoomId, RoomTypeConfig};
use centrum_net::auth::ClusterKey;
use centrum_net::seat::{Seat, unix_ms};
use centrum_protocol::{CreateRoom, MasterToNode, Role, RoomCreated, RoomsReport};

use crate::login_limit::LoginLimiter;
use crate::registry::{LinkId, Node, Registry};

/// Requests to one back waiting to be written to its control link; past it the back is
/// too far behind, and the room is refused (503) rather than queued.
const BACK_QUEUE: usize = 256;

/// Room creations waiting for their back's answer at once, over all backs.
const MAX_CREATING: usize = 1024;

/// A back whose ticks take this share of a core or more gets a new room only when no
/// other back can take it.
const BUSY: f64 = 0.75;

/// Why a request got no seat: the HTTP status, the code and a message (PROTOCOL.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MatchError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> MatchError {
    MatchError {
        status,
        code,
        message: message.into(),
    }
}

/// A seat handed out: the token, and the front the client should connect to.
#[derive(Debug)]
pub(crate) struct Reservation {
    pub(crate) room: String,
    pub(crate) kind: String,
    pub(crate) token: String,
    pub(crate) front: Node,
    pub(crate) expires_in: Duration,
}

/// One room in a listing.
/// A room entered in the book with a seat taken, which its back has yet to make.
struct StartedRoom {
    seat: Seat,
    made_tx: watch::Sender<Made>,
    request: u64,
    answer: oneshot::Receiver<RoomCreated>,
    back_tx: mpsc::Sender<MasterToNode>,
    room: String,
    kind: String,
    options: Bytes,
}

#[derive(Debug, serde::Serialize)]
pub(crate) struct Listing {
    pub(crate) id: String,
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) clients: u32,
    pub(crate) max: u32,
    pub(crate) metadata: Value,
    pub(crate) locked: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Matchmaker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Arc<Config>,
    key: ClusterKey,
    registry: Registry,
    book: Mutex<Book>,
    /// Rooms made per client address; None without a limit.
    creates: Option<LoginLimiter>,
    metrics: MatchmakerMetrics,
}

/// What /metrics shows of the matchmaker.
#[derive(Debug, Default)]
struct MatchmakerMetrics {
    seats: AtomicU64,
    rooms_created: AtomicU64,
    refused: AtomicU64,
    rate_limited: AtomicU64,
}

#[derive(Debug, Default)]
struct Book {
    rooms: HashMap<String, RoomView>,
    /// The control link of each registered back: how to ask it for a room.
    backs: HashMap<String, (LinkId, mpsc::Sender<MasterToNode>)>,
    /// Creations waiting for their back's answer, by request number.
    creating: HashMap<u64, oneshot::Sender<RoomCreated>>,
    next_request: u64,
    next_seat: u64,
}

/// Whether a room exists yet: a room being made already takes seats, so that a burst
/// of joins fills it instead of making one room each; they wait for the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Made {
    Pending,
    Yes,
    No(MatchError),
}

#[derive(Debug)]
struct RoomView {
    kind: String,
    back: String,
    /// Members, as the back last reported.
    clients: u32,
    max: u32,
    metadata: Value,
    locked: bool,
    /// Seats handed out and not yet reported taken, with their expiry.
    seats: Vec<(u64, Instant)>,
    made: watch::Receiver<Made>,
    created: Instant,
}

impl RoomView {
    fn taken(&self) -> u32 {
        self.clients + self.seats.len() as u32
    }

    fn expire(&mut self, now: Instant) {
        self.seats.retain(|(_, until)| *until > now);
    }

    fn matches(&self, filter: &serde_json::Map<String, Value>) -> bool {
        filter
            .iter()
            .all(|(k, v)| self.metadata.get(k).is_some_and(|m| m == v))
    }
}

impl Matchmaker {
    pub(crate) fn new(config: Arc<Config>, key: ClusterKey, registry: Registry) -> Self {
        let per_minute = config.matchmaker.creates_per_minute;
        let mut first_seat = [0u8; 8];
        // Seat numbers start at random so that a restarted master does not hand out
        // numbers a back has seen taken; without a random source they start at 1.
        let _ = getrandom::fill(&mut first_seat);
        let book = Book {
            next_seat: u64::from_le_bytes(first_seat) >> 1 | 1,
            ..Book::default()
        };
        Self {
            inner: Arc::new(Inner {
                creates: (per_minute > 0).then(|| LoginLimiter::new(per_minute)),
                config,
                key,
                registry,
                book: Mutex::new(book),
                metrics: MatchmakerMetrics::default(),
            }),
        }
    }

    /// The matchmaker's counters, as the master's own metrics on /metrics.
    pub(crate) fn metrics(&self) -> Vec<centrum_protocol::Metric> {
        use crate::metrics::counter;
        let m = &self.inner.metrics;
        vec![
            counter(
                "centrum_master_seats_total",
                "Seat reservations handed out by the matchmaker.",
                &m.seats,
            ),
            counter(
                "centrum_master_rooms_created_total",
                "Rooms the matchmaker had a back make.",
                &m.rooms_created,
            ),
            counter(
                "centrum_master_rooms_refused_total",
                "Room creations that failed: the back refused (bad options, max_rooms) or did not answer in time.",
                &m.refused,
            ),
            counter(
                "centrum_master_room_creates_rate_limited_total",
                "Room creations refused because the client address made rooms faster than matchmaker.creates_per_minute.",
                &m.rate_limited,
            ),
        ]
    }

    /// A back registered over `link`: the requests for it come out of the receiver,
    /// and what the master knew of its rooms is forgotten until it reports again.
    pub(crate) fn back_linked(&self, back: &str, link: LinkId) -> mpsc::Receiver<MasterToNode> {
        let (tx, rx) = mpsc::channel(BACK_QUEUE);
        let mut book = self.inner.book.lock();
        book.backs.insert(back.to_owned(), (link, tx));
        book.rooms
            .retain(|_, r| r.back != back || *r.made.borrow() == Made::Pending);
        rx
    }

    /// The back's link over `link` ended: its rooms leave the listing.
    pub(crate) fn back_gone(&self, back: &str, link: LinkId) {
        let mut book = self.inner.book.lock();
        if book.backs.get(back).is_some_and(|(l, _)| *l == link) {
            book.backs.remove(back);
            book.rooms.retain(|_, r| r.back != back);
        }
    }

    /// A back's report of its rooms.
    pub(crate) fn report(&self, back: &str, report: RoomsReport, now: Instant) {
        let mut book = self.inner.book.lock();
        for id in report.gone {
            book.rooms.remove(&id);
        }
        for room in report.rooms {
            let metadata = metadata_json(&room.metadata);
            let view = book
                .rooms
                .entry(room.id.clone())
                .or_insert_with(|| RoomView {
                    kind: room.kind.clone(),
                    back: back.to_owned(),
                    clients: 0,
                    max: room.max_clients,
                    metadata: Value::Null,
                    locked: false,
                    seats: Vec::new(),
                    // Known from a report: it exists.
                    made: watch::channel(Made::Yes).1,
                    created: now,
                });
            if view.back != back {
                // Room ids name their back; another back cannot report it.
                continue;
            }
            view.clients = room.clients;
            view.metadata = metadata;
            view.locked = room.locked;
            view.seats.retain(|(n, _)| !room.seats_taken.contains(n));
        }
    }

    /// A back's answer to a creation.
    pub(crate) fn created(&self, answer: RoomCreated) {
        let waiting = self.inner.book.lock().creating.remove(&answer.request);
        if let Some(waiting) = waiting {
            let _ = waiting.send(answer);
        }
    }

    /// A seat in the fullest open room of type `kind` whose metadata matches `filter`,
    /// or in a new room made with `options`.
    pub(crate) async fn join_or_create(
        &self,
        kind: &str,
        options: &Value,
        filter: &serde_json::Map<String, Value>,
        client: IpAddr,
    ) -> Result<Reservation, MatchError> {
        let room_type = self.room_type(kind)?;
        // A room that was being made and then was not is skipped: try again.
        for _ in 0..3 {
            let found = {
                let now = Instant::now();
                let mut book = self.inner.book.lock();
                let registry = &self.inner.registry;
                let live = |back: &str| registry.is_live_id(back, now);
                let best = book
                    .rooms
                    .iter_mut()
                    .filter(|(_, r)| r.kind == kind && !r.locked && live(&r.back))
                    .filter(|(_, r)| !matches!(*r.made.borrow(), Made::No(_)))
                    .filter_map(|(id, r)| {
                        r.expire(now);
                        // A room of a type disposed at once when empty may be on its way out.
                        let leaving = room_type.empty_dispose_s == 0 && r.taken() == 0;
                        (r.taken() < r.max && !leaving && r.matches(filter)).then_some((
                            id,
                            r.taken(),
                            r.created,
                        ))
                    })
                    .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)))
                    .map(|(id, _, _)| id.clone());
                match best {
                    Some(id) => Ok(self.reserve(&mut book, &id, now)),
                    None => Err(self.start_room(&mut book, kind, room_type, options, client, now)?),
                }
            };
            match found {
                Ok((seat, made)) => match self.await_made(made).await {
                    Ok(()) => return self.hand_out(seat),
                    Err(_) => continue,
                },
                Err(started) => return self.finish_room(started).await,
            }
        }
        Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "rooms are being made and failing; try again",
        ))
    }

    /// A seat in a new room of type `kind` made with `options`.
    pub(crate) async fn create(
        &self,
        kind: &str,
        options: &Value,
        client: IpAddr,
    ) -> Result<Reservation, MatchError> {
        let room_type = self.room_type(kind)?;
        let now = Instant::now();
        let started = {
            let mut book = self.inner.book.lock();
            self.start_room(&mut book, kind, room_type, options, client, now)?
        };
        self.finish_room(started).await
    }

    /// Enters a new room of type `kind` in `book` with a seat taken in it, under the
    /// caller's lock: a join-or-create that found no open room makes one before any
    /// other can look, so a burst never makes two half-empty rooms.
    fn start_room(
        &self,
        book: &mut Book,
        kind: &str,
        room_type: &RoomTypeConfig,
        options: &Value,
        client: IpAddr,
        now: Instant,
    ) -> Result<StartedRoom, MatchError> {
        if let Some(limit) = &self.inner.creates
            && let Err(wait) = limit.check(client)
        {
            self.inner.metrics.rate_limited.fetch_add(1, Relaxed);
            return Err(refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "this address makes rooms too fast (matchmaker.creates_per_minute = {}); try again in {} s",
                    self.inner.config.matchmaker.creates_per_minute,
                    wait.as_secs().max(1)
                ),
            ));
        }
        let options = rmp_serde::to_vec_named(options).map_err(|e| {
            refuse(
                StatusCode::BAD_REQUEST,
                "bad_options",
                format!("the options do not encode: {e}"),
            )
        })?;
        let back = self.place(book, room_type, now)?;
        if book.creating.len() >= MAX_CREATING {
            return Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "too many rooms are being made at once; try again",
            ));
        }
        let Some((_, back_tx)) = book.backs.get(&back).cloned() else {
            return Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_capacity",
                format!("no live back offers room type {kind:?}"),
            ));
        };
        let room = format!("{kind}.{}.{back}", room_suffix());
        let (made_tx, made_rx) = watch::channel(Made::Pending);
        book.rooms.insert(
            room.clone(),
            RoomView {
                kind: kind.to_owned(),
                back,
                clients: 0,
                max: room_type.max_clients,
                metadata: Value::Null,
                locked: false,
                seats: Vec::new(),
                made: made_rx,
                created: now,
            },
        );
        let (seat, _) = self.reserve(book, &room, now);
        book.next_request += 1;
        let request = book.next_request;
        let (answer_tx, answer) = oneshot::channel();
        book.creating.insert(request, answer_tx);
        Ok(StartedRoom {
            seat,
            made_tx,
            request,
            answer,
            back_tx,
            room,
            kind: kind.to_owned(),
            options: Bytes::from(options),
        })
    }

    /// Asks the back to make a room `start_room` entered, and hands out its seat once
    /// it is made; a room not made leaves the book.
    async fn finish_room(&self, started: StartedRoom) -> Result<Reservation, MatchError> {
        let StartedRoom {
            seat,
            made_tx,
            request,
            answer,
            back_tx,
            room,
            kind,
            options,
        } = started;
        let ask = MasterToNode::CreateRoom(CreateRoom {
            request,
            room: room.clone(),
            kind,
            options,
        });
        let outcome = match back_tx.try_send(ask) {
            Err(_) => Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the room's back is not keeping up; try again",
            )),
            Ok(()) => {
                let timeout = self.inner.config.matchmaker.create_timeout();
                match tokio::time::timeout(timeout, answer).await {
                    Ok(Ok(RoomCreated {
                        error: None,
                        metadata,
                        ..
                    })) => Ok(metadata),
                    Ok(Ok(RoomCreated {
                        error: Some((code, message)),
                        ..
                    })) => Err(from_back(&code, message)),
                    Ok(Err(_)) | Err(_) => Err(refuse(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        format!("the back did not make room {room} in time; try again"),
                    )),
                }
            }
        };
        match outcome {
            Ok(metadata) => {
                self.inner.metrics.rooms_created.fetch_add(1, Relaxed);
                info!(%room, "room made");
                // Listed with the metadata the game set at once, not from its first report.
                if let Some(view) = self.inner.book.lock().rooms.get_mut(&room) {
                    view.metadata = metadata_json(&metadata);
                }
                let _ = made_tx.send(Made::Yes);
                self.hand_out(seat)
            }
            Err(e) => {
                self.inner.metrics.refused.fetch_add(1, Relaxed);
                let mut book = self.inner.book.lock();
                book.creating.remove(&request);
                book.rooms.remove(&room);
                drop(book);
                let _ = made_tx.send(Made::No(e.clone()));
                warn!(%room, code = e.code, message = %e.message, "room not made");
                Err(e)
            }
        }
    }

    /// A seat in room `room`.
    pub(crate) async fn join_by_id(&self, room: &str) -> Result<Reservation, MatchError> {
        let (seat, made) = {
            let now = Instant::now();
            let mut book = self.inner.book.lock();
            let live = |back: &str| self.inner.registry.is_live_id(back, now);
            let Some(view) = book.rooms.get_mut(room).filter(|r| live(&r.back)) else {
                return Err(no_such_room(room));
            };
            view.expire(now);
            if view.locked {
                return Err(refuse(
                    StatusCode::CONFLICT,
                    "room_locked",
                    format!("room {room} is locked"),
                ));
            }
            if view.taken() >= view.max {
                return Err(refuse(
                    StatusCode::CONFLICT,
                    "room_full",
                    format!("room {room} has its {} clients", view.max),
                ));
            }
            self.reserve(&mut book, room, now)
        };
        self.await_made(made).await?;
        self.hand_out(seat)
    }

    /// The rooms of type `kind` (all types with None), in id order.
    pub(crate) fn list(&self, kind: Option<&str>) -> Vec<Listing> {
        let now = Instant::now();
        let mut book = self.inner.book.lock();
        let mut out: Vec<Listing> = book
            .rooms
            .iter_mut()
            .filter(|(_, r)| kind.is_none_or(|k| r.kind == k))
            .filter(|(_, r)| *r.made.borrow() == Made::Yes)
            .filter(|(_, r)| self.inner.registry.is_live_id(&r.back, now))
            .map(|(id, r)| {
                r.expire(now);
                Listing {
                    id: id.clone(),
                    kind: r.kind.clone(),
                    clients: r.taken(),
                    max: r.max,
                    metadata: r.metadata.clone(),
                    locked: r.locked,
                }
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    fn room_type(&self, kind: &str) -> Result<&RoomTypeConfig, MatchError> {
        self.inner.config.room_type(kind).ok_or_else(|| {
            refuse(
                StatusCode::NOT_FOUND,
                "unknown_type",
                format!("no back offers room type {kind:?}"),
            )
        })
    }

    /// Takes a seat in `room` (which must be in the book) until the seat expires.
    fn reserve(&self, book: &mut Book, room: &str, now: Instant) -> (Seat, watch::Receiver<Made>) {
        let ttl = self.inner.config.matchmaker.seat_ttl();
        book.next_seat = book.next_seat.wrapping_add(1);
        let number = book.next_seat;
        let view = book
            .rooms
            .get_mut(room)
            .unwrap_or_else(|| unreachable!("reserve is called with a room of the book"));
        view.seats.push((number, now + ttl));
        let seat = Seat {
            room: room.to_owned(),
            number,
            expires_ms: unix_ms() + ttl.as_millis() as u64,
        };
        (seat, view.made.clone())
    }

    /// Waits for a room being made; Err when it was not.
    async fn await_made(&self, mut made: watch::Receiver<Made>) -> Result<(), MatchError> {
        let timeout = self.inner.config.matchmaker.create_timeout() + Duration::from_secs(1);
        let settled = tokio::time::timeout(timeout, made.wait_for(|m| *m != Made::Pending)).await;
        match settled {
            Ok(Ok(m)) => match &*m {
                Made::No(e) => Err(e.clone()),
                _ => Ok(()),
            },
            _ => Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the room is still being made; try again",
            )),
        }
    }

    /// The seat's token and the front to take it to.
    fn hand_out(&self, seat: Seat) -> Result<Reservation, MatchError> {
        let front = self
            .inner
            .registry
            .least_loaded_front(Instant::now())
            .ok_or_else(|| {
                refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "no live front",
                )
            })?;
        self.inner.metrics.seats.fetch_add(1, Relaxed);
        let kind = RoomId::parse(&seat.room).map_or("", |r| r.kind).to_owned();
        Ok(Reservation {
            token: seat.token(&self.inner.key),
            room: seat.room,
            kind,
            front,
            expires_in: self.inner.config.matchmaker.seat_ttl(),
        })
    }

    /// The live back offering `room_type` with room for one more such room and the
    /// least load: clients in its channels and rooms plus seats handed out, backs
    /// whose ticks keep a core busy last; ties go to the smaller id.
    fn place(
        &self,
        book: &Book,
        room_type: &RoomTypeConfig,
        now: Instant,
    ) -> Result<String, MatchError> {
        let kind = &room_type.kind;
        let mut best: Option<(bool, u64, String)> = None;
        let mut offering = 0;
        for node in self.inner.registry.live(now) {
            if node.role != Role::Back || !book.backs.contains_key(&node.id) {
                continue;
            }
            let Some(offered) = self
                .inner
                .config
                .back(&node.id)
                .and_then(|b| b.rooms.iter().find(|r| &r.kind == kind))
            else {
                continue;
            };
            offering += 1;
            let mine = book.rooms.values().filter(|r| r.back == node.id);
            let (mut rooms_of_type, mut load) = (0u32, 0u64);
            for r in mine {
                rooms_of_type += u32::from(&r.kind == kind);
                load += u64::from(r.taken());
            }
            if rooms_of_type >= offered.max_rooms {
                continue;
            }
            load += node
                .stats
                .channels
                .iter()
                .map(|c| u64::from(c.clients))
                .sum::<u64>();
            let busy = node
                .stats
                .metrics
                .iter()
                .find(|m| m.name == "centrum_back_busy_ratio")
                .is_some_and(|m| m.value >= BUSY);
            let candidate = (busy, load, node.id.clone());
            if best.as_ref().is_none_or(|b| candidate < *b) {
                best = Some(candidate);
            }
        }
        best.map(|(_, _, id)| id).ok_or_else(|| {
            let message = if offering == 0 {
                format!("no back offering room type {kind:?} is live and registered")
            } else {
                format!("every live back offering room type {kind:?} has its max_rooms rooms of it")
            };
            refuse(StatusCode::SERVICE_UNAVAILABLE, "no_capacity", message)
        })
    }
}

/// A room's metadata (MessagePack) as the listing shows it: JSON, null for none (or for
/// a value JSON cannot hold, such as binary).
fn metadata_json(metadata: &[u8]) -> Value {
    if metadata.is_empty() {
        return Value::Null;
    }
    rmp_serde::from_slice(metadata).unwrap_or(Value::Null)
}

fn no_such_room(room: &str) -> MatchError {
    refuse(
        StatusCode::NOT_FOUND,
        "no_such_room",
        format!("no room {room:?} (it may have been disposed of)"),
    )
}

/// The matchmaker's error for a back's refusal code.
fn from_back(code: &str, message: String) -> MatchError {
    match code {
        "bad_options" => refuse(StatusCode::BAD_REQUEST, "bad_options", message),
        "unknown_type" => refuse(StatusCode::NOT_FOUND, "unknown_type", message),
        "no_capacity" => refuse(StatusCode::SERVICE_UNAVAILABLE, "no_capacity", message),
        _ => refuse(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message),
    }
}

/// The random part of a room id: 12 characters of lowercase base32 (60 bits).
fn room_suffix() -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bytes = [0u8; 12];
    if getrandom::fill(&mut bytes).is_err() {
        // No random source: a counter keeps ids unique within this master.
        static NEXT: AtomicU64 = AtomicU64::new(1);
        bytes[..8].copy_from_slice(&NEXT.fetch_add(1, Relaxed).to_le_bytes());
    }
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
        .collect()
}
