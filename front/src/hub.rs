//! The front's shared routing state: connected clients, and per channel the members,
//! their acks and the link to the channel's back. The front keeps no game state: it
//! moves bytes, and fans each patch out to the channel's members as the same bytes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::oneshot;

use centrum_config::{Config, SlowClientPolicy};
use centrum_net::Shutdown;
use centrum_protocol::{
    ChannelIndex, ErrorMsg, FrontMsg, FrontToBack, IdMap, Left, LinkAway, LinkCall, LinkInput,
    LinkJoin, LinkLeave, LinkMessage, LinkPatch, LinkReply, LinkResume, LinkResync, LinkSession,
    LinkState, Rejected, Seq, SessionKey, SharedKind, Tick, Unavailable, encode,
};

use crate::access::Access;
use crate::auth::{Grant, Verifier};
use crate::metrics::FrontMetrics;
pub(crate) use crate::outbox::Outbound;
use crate::outbox::{Kill, Outbox, Refused};

/// How the rest of the front reaches one client connection.
#[derive(Clone, Debug)]
pub(crate) struct ClientHandle {
    /// Written into directly, or queued up to `limits.client_queue`; when full, the
    /// slow-client policy applies (never a wait, so one slow client cannot stall a
    /// fan-out). Also how the connection is closed from outside.
    pub(crate) outbox: Arc<Outbox>,
    /// The session's resume secret, told to every back it joins.
    pub(crate) secret: u64,
    /// What its hello's token allows, and the identity every join carries.
    pub(crate) grant: Arc<Grant>,
}

/// Where a channel's members stand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// Join sent to the back; waiting for its State or rejection.
    Joining,
    /// Receiving patches.
    Active,
    /// Fell behind or the back was away; waiting for a fresh State, patches skipped.
    Waiting,
    /// The client's connection closed while the channel's link was down, so the back
    /// could not be told it is away. Kept until the relink: the link's session list
    /// names it, then the back hears it is away and holds it for a resume, as it would
    /// have. Without this, a client dropped during a partition could not resume.
    Gone,
}

#[derive(Debug)]
struct Member {
    client: ClientHandle,
    /// The last of its inputs the back applied; an atomic so that a fan-out can update
    /// it under the route's read lock.
    ack: AtomicU32,
    status: Status,
    /// The join data, replayed if the back must join this client again.
    data: Bytes,
    /// The game's messages dropped while this client was behind; told to the client
    /// (`messages_dropped`) right after its next state, or before its next message,
    /// when there is room.
    dropped_messages: u32,
}

/// One channel's members and the link to its back.
#[derive(Debug)]
struct ChannelRoute {
    back: usize,
    /// A room made at run time: the route exists while this front has a use for it.
    room: bool,
    /// Open to clients without a token (`anonymous = true`).
    anonymous: bool,
    /// The link's outbound queue and this channel's index on it; None while unlinked.
    link: Option<(mpsc::Sender<Bytes>, ChannelIndex, Shutdown)>,
    members: IdMap<SessionKey, Member>,
}

/// Shared by every task of a front.
#[derive(Debug)]
pub(crate) struct Hub {
    pub(crate) id: String,
    /// This process, as backs tell it from an earlier one with the same id: its
    /// sessions are not the earlier one's.
    pub(crate) instance: u64,
    pub(crate) config: Arc<Config>,
    /// Checks client tokens; `None` without `[auth]`.
    pub(crate) auth: Option<Verifier>,
    pub(crate) metrics: FrontMetrics,
    /// Per-address connection limits, trusted proxies and allowed origins.
    pub(crate) access: Arc<Access>,
    /// TLS for the links to backs that serve it (`backs[].tls`), checked against
    /// `cluster.ca`; set once at start.
    pub(crate) link_tls: Option<centrum_net::LinkTls>,
    clients: RwLock<IdMap<SessionKey, ClientHandle>>,
    /// Set (under `clients`' lock) when the front shuts down: a client that finishes
    /// its handshake afterwards is closed at once.
    closing: AtomicBool,
    /// The cores a fan-out may use (`SplitPatch`).
    cores: usize,
    /// The channels of the config (from the start) and the rooms this front's clients
    /// are in; one lock per channel, taken after (never while holding) another.
    routes: RwLock<Routes>,
    /// Each back's link while it is up: a room's join goes there before the front
    /// knows the room's number.
    links: Mutex<Vec<Option<BackLink>>>,
    /// HTTP calls sent to backs and waiting for their reply, by call number. Bounded
    /// by `calls.max_in_flight`: more are refused (503), never queued.
    calls: Mutex<HashMap<u64, PendingCall>>,
    next_call: AtomicU64,
}

/// A back's link as a room's join uses it: its outbound queue and its close signal.
type BackLink = (mpsc::Sender<Bytes>, Shutdown);

#[derive(Debug, Default)]
struct Routes {
    channels: HashMap<String, Arc<RwLock<ChannelRoute>>>,
    /// Every room the linked backs have announced (`LinkOpened`), with its back and
    /// number, whether or not a client of this front is in it.
    rooms: HashMap<String, (usize, ChannelIndex)>,
}

#[derive(Debug)]
struct PendingCall {
    /// The back it went to: if that link drops, the call fails at once.
    back: usize,
    reply: oneshot::Sender<LinkReply>,
}

/// A call waiting for its reply; dropping it (answered, timed out, caller gone)
/// forgets the call, so a late reply is ignored.
#[derive(Debug)]
pub(crate) struct CallTicket<'a> {
    hub: &'a Hub,
    call: u64,
}

impl Drop for CallTicket<'_> {
    fn drop(&mut self) {
        self.hub.calls.lock().remove(&self.call);
    }
}

/// Why a call was not sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CallRefusal {
    UnknownChannel,
    /// The link to the channel's back is down or full.
    Unavailable,
    /// `calls.max_in_flight` calls are waiting already.
    Busy(u32),
}

/// A client request refused on the spot.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Reply `Rejected{channel, reason}`.
    Reject(String),
    /// Reply `Error{code, message}`.
    Error(&'static str, String),
}

impl Hub {
    pub(crate) fn new(id: &str, config: Arc<Config>, auth: Option<Verifier>) -> Self {
        let mut channels = HashMap::new();
        for (b, back) in config.backs.iter().enumerate() {
            for ch in &back.channels {
                channels.insert(
                    ch.name.clone(),
                    Arc::new(RwLock::new(ChannelRoute {
                        back: b,
                        room: false,
                        anonymous: ch.anonymous,
                        link: None,
                        members: IdMap::default(),
                    })),
                );
            }
        }
        let links = Mutex::new(vec![None; config.backs.len()]);
        Self {
            id: id.to_owned(),
            instance: crate::resume::new_instance(),
            access: Arc::new(Access::new(&config)),
            link_tls: None,
            config,
            auth,
            metrics: FrontMetrics::default(),
            clients: RwLock::new(IdMap::default()),
            closing: AtomicBool::new(false),
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            routes: RwLock::new(Routes {
                channels,
                rooms: HashMap::new(),
            }),
            links,
            calls: Mutex::new(HashMap::new()),
            next_call: AtomicU64::new(1),
        }
    }

    /// The route of `channel`, if there is one.
    fn route(&self, channel: &str) -> Option<Arc<RwLock<ChannelRoute>>> {
        self.routes.read().channels.get(channel).cloned()
    }

    /// Every route, to go through one at a time.
    fn all_routes(&self) -> Vec<(String, Arc<RwLock<ChannelRoute>>)> {
        let routes = self.routes.read();
        routes
            .channels
            .iter()
            .map(|(name, route)| (name.clone(), route.clone()))
            .collect()
    }

    /// The route of a room a client joins: made if this front has none yet. The back
    /// comes from the room's id (`<type>.<random>.<back id>`), which must name a back
    /// that offers the type; the room's number on the link, if the back announced it.
    fn room_route(&self, room: &str) -> Option<Arc<RwLock<ChannelRoute>>> {
        let (back, _, kind) = self.config.room_owner(room)?;
        let anonymous = kind.anonymous;
        let mut routes = self.routes.write();
        if let Some(route) = routes.channels.get(room) {
            return Some(route.clone());
        }
        let link = match (routes.rooms.get(room), &self.links.lock()[back]) {
            (Some((b, index)), Some((tx, close))) if *b == back => {
                Some((tx.clone(), *index, close.clone()))
            }
            _ => None,
        };
        let route = Arc::new(RwLock::new(ChannelRoute {
            back,
            room: true,
            anonymous,
            link,
            members: IdMap::default(),
        }));
        routes.channels.insert(room.to_owned(), route.clone());
        Some(route)
    }

    /// A back announced a room: its number on the link.
    pub(crate) fn room_opened(&self, back: usize, name: &str, index: ChannelIndex) {
        let mut routes = self.routes.write();
        routes.rooms.insert(name.to_owned(), (back, index));
        if let Some(route) = routes.channels.get(name) {
            let mut route = route.write();
            if route.back == back
                && let Some((tx, close)) = &self.links.lock()[back]
            {
                route.link = Some((tx.clone(), index, close.clone()));
                self.hand_over_gone(&mut route);
            }
        }
    }

    /// A back disposed of a room: its members here are told, and the route goes.
    pub(crate) fn room_closed(&self, back: usize, name: &str, reason: &str) {
        let route = {
            let mut routes = self.routes.write();
            if routes.rooms.get(name).is_some_and(|(b, _)| *b == back) {
                routes.rooms.remove(name);
            }
            match routes.channels.get(name) {
                Some(route) if route.read().back == back => routes.channels.remove(name),
                _ => None,
            }
        };
        let Some(route) = route else {
            return;
        };
        let left = Bytes::from(encode(&FrontMsg::Left(Left {
            channel: name.to_owned(),
            reason: reason.to_owned(),
        })));
        for (_, m) in route.write().members.drain() {
            let _ = m
                .client
                .outbox
                .push(Outbound::Message(left.clone()), &self.metrics);
        }
    }

    pub(crate) fn client_count(&self) -> usize {
        self.clients.read().len()
    }

    pub(crate) fn add_client(&self, key: SessionKey, handle: ClientHandle) {
        let mut clients = self.clients.write();
        if self.closing.load(Relaxed) {
            handle.outbox.kill(Kill::Shutdown);
        }
        clients.insert(key, handle);
    }

    /// The front is shutting down: every client connection is closed (1001), and so
    /// is any that finishes its handshake from now on.
    pub(crate) fn close_all(&self) {
        let clients = self.clients.write();
        self.closing.store(true, Relaxed);
        for client in clients.values() {
            client.outbox.kill(Kill::Shutdown);
        }
    }

    /// Removes a closed connection from every channel. With `leave` (the client
    /// closed the connection itself) its memberships end; otherwise the backs hold
    /// them for a resume (`limits.resume_grace_ms`).
    pub(crate) fn remove_client(&self, key: SessionKey, leave: bool) {
        self.clients.write().remove(&key);
        for (_, route) in self.all_routes() {
            let mut guard = route.write();
            let route = &mut *guard;
            let Some(member) = route.members.get_mut(&key) else {
                continue;
            };
            let Some((tx, channel, close)) = &route.link else {
                // The back hears of it at the relink; one that left is simply not
                // named then, which ends its membership.
                if leave || member.status == Status::Joining {
                    route.members.remove(&key);
                } else {
                    member.status = Status::Gone;
                }
                continue;
            };
            let (session, channel) = (key, *channel);
            let msg = if leave {
                FrontToBack::Leave(LinkLeave { session, channel })
            } else {
                FrontToBack::Away(LinkAway { session, channel })
            };
            send_or_close(tx, close, encode(&msg));
            route.members.remove(&key);
        }
    }

    /// The link of `route` is up again (its session list sent): members whose
    /// connection closed meanwhile are handed to the back as away.
    fn hand_over_gone(&self, route: &mut ChannelRoute) {
        let Some((tx, channel, close)) = &route.link else {
            return;
        };
        route.members.retain(|&session, m| {
            if m.status != Status::Gone {
                return true;
            }
            let away = FrontToBack::Away(LinkAway {
                session,
                channel: *channel,
            });
            send_or_close(tx, close, encode(&away));
            false
        });
    }

    /// Whether the client is a member of a channel (joining, joined or waiting for a
    /// fresh state). One lock at a time: called only when an idle timer fires.
    pub(crate) fn in_any_channel(&self, key: SessionKey) -> bool {
        self.all_routes()
            .iter()
            .any(|(_, route)| route.read().members.contains_key(&key))
    }

    /// Starts a join; the back's State or rejection arrives later through the link.
    /// `resume` is the session this client claims from before, if any. A channel the
    /// client's token does not open is rejected here: its back never hears of it.
    pub(crate) fn join(
        &self,
        key: SessionKey,
        client: &ClientHandle,
        channel: &str,
        data: Bytes,
        resume: Option<&LinkResume>,
        seat: Option<String>,
    ) -> Result<(), Refusal> {
        let route = self
            .route(channel)
            .or_else(|| self.room_route(channel))
            .ok_or_else(|| Refusal::Reject(format!("unknown channel {channel:?}")))?;
        let joined = self.join_route(&route, key, client, channel, data, resume, seat);
        if joined.is_err() {
            self.forget_room_route(channel);
        }
        joined
    }

    #[allow(clippy::too_many_arguments)]
    fn join_route(
        &self,
        route: &RwLock<ChannelRoute>,
        key: SessionKey,
        client: &ClientHandle,
        channel: &str,
        data: Bytes,
        resume: Option<&LinkResume>,
        seat: Option<String>,
    ) -> Result<(), Refusal> {
        let mut route = route.write();
        if let Some(refused) = client.grant.refusal(channel, route.anonymous) {
            self.metrics.joins_refused[refused as usize].fetch_add(1, Relaxed);
            return Err(Refusal::Reject(refused.reason(channel)));
        }
        if route.members.contains_key(&key) {
            return Err(Refusal::Error(
                "already_joined",
                format!("already in channel {channel:?}"),
            ));
        }
        // A room's join may go before the back announced the room's number to this
        // front: it names the room, and the announcement comes before the answer.
        let tx = match (&route.link, route.room) {
            (Some((tx, _, _)), _) => tx.clone(),
            (None, true) => match &self.links.lock()[route.back] {
                Some((tx, _)) => tx.clone(),
                None => {
                    return Err(Refusal::Reject(format!(
                        "channel {channel:?} is unavailable"
                    )));
                }
            },
            (None, false) => {
                return Err(Refusal::Reject(format!(
                    "channel {channel:?} is unavailable"
                )));
            }
        };
        let frame = encode(&FrontToBack::Join(LinkJoin {
            session: key,
            channel: channel.to_owned(),
            data: data.clone(),
            secret: client.secret,
            resume: resume.cloned(),
            identity: client.grant.identity().cloned(),
            seat,
        }));
        if tx.try_send(Bytes::from(frame)).is_err() {
            return Err(Refusal::Reject(format!(
                "channel {channel:?} is overloaded; try again"
            )));
        }
        route.members.insert(
            key,
            Member {
                client: client.clone(),
                ack: AtomicU32::new(0),
                status: Status::Joining,
                data,
                dropped_messages: 0,
            },
        );
        Ok(())
    }

    pub(crate) fn leave(&self, key: SessionKey, channel: &str) -> Result<(), Refusal> {
        let not_joined = || Refusal::Error("not_joined", format!("not in channel {channel:?}"));
        let route = self.route(channel).ok_or_else(not_joined)?;
        let mut route = route.write();
        route.members.remove(&key).ok_or_else(not_joined)?;
        if let Some((tx, index, close)) = &route.link {
            send_or_close(
                tx,
                close,
                encode(&FrontToBack::Leave(LinkLeave {
                    session: key,
                    channel: *index,
                })),
            );
        }
        Ok(())
    }

    /// Forwards an input to the channel's back.
    pub(crate) fn input(
        &self,
        key: SessionKey,
        channel: &str,
        seq: Seq,
        data: Bytes,
    ) -> Result<(), Refusal> {
        let not_joined = || {
            Refusal::Error(
                "not_joined",
                format!("input for channel {channel:?}, which this client has not joined"),
            )
        };
        let route = self.route(channel).ok_or_else(not_joined)?;
        // A read lock: the inputs of a channel's clients go side by side, and beside
        // its fan-out.
        let route = route.read();
        match route.members.get(&key).map(|m| m.status) {
            None | Some(Status::Joining) => return Err(not_joined()),
            Some(_) => {}
        }
        let Some((tx, index, _)) = &route.link else {
            return Err(Refusal::Error(
                "unavailable",
                format!("channel {channel:?} is unavailable; input {seq} dropped"),
            ));
        };
        let frame = encode(&FrontToBack::Input(LinkInput {
            session: key,
            channel: *index,
            seq,
            data,
        }));
        tx.try_send(Bytes::from(frame)).map_err(|_| {
            self.metrics.inputs_dropped.fetch_add(1, Relaxed);
            Refusal::Error(
                "overloaded",
                format!("the link to channel {channel:?} is full; input {seq} dropped"),
            )
        })?;
        self.metrics.inputs.fetch_add(1, Relaxed);
        Ok(())
    }

    /// The sessions this front holds in the channels of back `back`, for a LinkHello.
    pub(crate) fn sessions_of_back(&self, back: usize) -> Vec<LinkSession> {
        let mut out = Vec::new();
        for (name, route) in self.all_routes() {
            let route = route.read();
            if route.back != back {
                continue;
            }
            for (key, m) in &route.members {
                if m.status != Status::Joining {
                    out.push(LinkSession {
                        session: *key,
                        channel: name.clone(),
                        data: m.data.clone(),
                        secret: m.client.secret,
                        identity: m.client.grant.identity().cloned(),
                    });
                }
            }
        }
        out
    }

    /// The backs (their indices in the config) this front has no link to now.
    pub(crate) fn unlinked(&self) -> Vec<usize> {
        let links = self.links.lock();
        (0..links.len()).filter(|&i| links[i].is_none()).collect()
    }

    /// A link to back `back` is up: its channels become available at their indices.
    pub(crate) fn link_up(
        &self,
        back: usize,
        channels: &[String],
        tx: &mpsc::Sender<Bytes>,
        close: &Shutdown,
    ) {
        self.links.lock()[back] = Some((tx.clone(), close.clone()));
        for (i, name) in channels.iter().enumerate() {
            if let (Some(route), Ok(index)) = (self.route(name), ChannelIndex::try_from(i)) {
                let mut route = route.write();
                if route.back == back && !route.room {
                    route.link = Some((tx.clone(), index, close.clone()));
                    self.hand_over_gone(&mut route);
                }
            }
        }
    }

    /// The link to back `back` is down: its channels' members are told, joins in
    /// flight are rejected, and everyone waits for a fresh State after the relink.
    pub(crate) fn link_down(&self, back: usize) {
        // Their replies cannot come now: the callers hear it at once (503).
        self.calls.lock().retain(|_, pending| pending.back != back);
        self.links.lock()[back] = None;
        // The back announces its rooms again when the link is back.
        self.routes.write().rooms.retain(|_, (b, _)| *b != back);
        for (name, route) in self.all_routes() {
            let mut route = route.write();
            let joining = route.members.values().any(|m| m.status == Status::Joining);
            if route.back != back || (route.link.is_none() && !(route.room && joining)) {
                continue;
            }
            let name = &name;
            route.link = None;
            let unavailable = Bytes::from(encode(&FrontMsg::Unavailable(Unavailable {
                channel: name.clone(),
            })));
            route.members.retain(|_, m| {
                if m.status == Status::Joining {
                    let reason = format!("channel {name:?} became unavailable");
                    let msg = encode(&FrontMsg::Rejected(Rejected {
                        channel: name.clone(),
                        reason,
                    }));
                    let _ = m
                        .client
                        .outbox
                        .push(Outbound::Message(Bytes::from(msg)), &self.metrics);
                    return false;
                }
                if m.status == Status::Gone {
                    return true;
                }
                m.status = Status::Waiting;
                let _ = m
                    .client
                    .outbox
                    .push(Outbound::Message(unavailable.clone()), &self.metrics);
                true
            });
        }
    }

    /// A full state for the listed sessions: they become active from this tick on.
    pub(crate) fn on_state(&self, channel: &str, msg: LinkState) {
        let Some(route) = self.route(channel) else {
            return;
        };
        let since = Instant::now();
        let mut route = route.write();
        for (key, ack) in msg.sessions {
            let Some(m) = route
                .members
                .get_mut(&key)
                .filter(|m| m.status != Status::Gone)
            else {
                continue;
            };
            m.ack.store(ack.0, Relaxed);
            let item = Outbound::Shared {
                kind: SharedKind::State,
                ack,
                body: msg.body.clone(),
                since,
            };
            match m.client.outbox.push(item, &self.metrics) {
                Ok(()) => {
                    m.status = Status::Active;
                    // The state first: it is what the client cannot do without.
                    self.tell_dropped_messages(channel, m);
                }
                // Not even a full state fits: this client cannot keep up at all.
                Err(Refused::Full) => self.drop_slow(&m.client.outbox),
                Err(Refused::Closed) => {}
            }
        }
    }

    /// Fans one patch out: the same body to every active member, each behind its own
    /// ack, written straight into its socket where it can take it (`outbox`). Under the
    /// route's read lock, so that the channel's inputs are never held behind a fan-out.
    /// A channel with many members on this front is returned as a [`SplitPatch`] for
    /// the caller to write on every core, before it handles anything else.
    pub(crate) fn on_patch(&self, channel: &str, msg: LinkPatch) -> Option<SplitPatch> {
        let route = self.route(channel)?;
        let since = Instant::now();
        let mut behind = Vec::new();
        {
            let route = route.read();
            for (key, ack) in &msg.acks {
                if let Some(m) = route.members.get(key) {
                    m.ack.store(ack.0, Relaxed);
                }
            }
            let rotated = || in_turn(&route.members, msg.tick);
            if msg.changed && self.cores > 1 && route.members.len() >= SPLIT_FANOUT_AT {
                let targets = rotated()
                    .filter(|(_, m)| m.status == Status::Active)
                    .map(|(key, m)| Target {
                        key: *key,
                        outbox: m.client.outbox.clone(),
                        ack: Seq(m.ack.load(Relaxed)),
                    })
                    .collect();
                return Some(SplitPatch {
                    channel: channel.to_owned(),
                    targets,
                    body: msg.body,
                    since,
                });
            }
            let mut send = |key: SessionKey, m: &Member| {
                if m.status == Status::Active {
                    let ack = Seq(m.ack.load(Relaxed));
                    self.send_patch(key, &m.client.outbox, ack, &msg.body, since, &mut behind);
                }
            };
            if msg.changed {
                rotated().for_each(|(key, m)| send(*key, m));
            } else {
                for (key, _) in &msg.acks {
                    if let Some(m) = route.members.get(key) {
                        send(*key, m);
                    }
                }
            }
        }
        self.patch_sent(&route, behind);
        None
    }

    /// Sends one member its patch; a member whose queue is full is noted in `behind`
    /// (the resync policy) or disconnected.
    fn send_patch(
        &self,
        key: SessionKey,
        outbox: &Outbox,
        ack: Seq,
        body: &Bytes,
        since: Instant,
        behind: &mut Vec<SessionKey>,
    ) {
        let patch = Outbound::Shared {
            kind: SharedKind::Patch,
            ack,
            body: body.clone(),
            since,
        };
        match outbox.push(patch, &self.metrics) {
            Ok(()) | Err(Refused::Closed) => {}
            Err(Refused::Full) => match self.config.limits.slow_client {
                SlowClientPolicy::Resync => behind.push(key),
                SlowClientPolicy::Disconnect => self.drop_slow(outbox),
            },
        }
    }

    /// A patch is out: the members that fell behind skip patches until a fresh state,
    /// which one resync asks the back for.
    fn patch_sent(&self, route: &RwLock<ChannelRoute>, mut behind: Vec<SessionKey>) {
        self.metrics.patches.fetch_add(1, Relaxed);
        if behind.is_empty() {
            return;
        }
        let mut route = route.write();
        behind.retain(|key| match route.members.get_mut(key) {
            Some(m) if m.status == Status::Active => {
                m.status = Status::Waiting;
                true
            }
            _ => false,
        });
        self.metrics
            .slow_client_resyncs
            .fetch_add(behind.len() as u64, Relaxed);
        if let Some((tx, index, close)) = &route.link
            && !behind.is_empty()
        {
            send_or_close(
                tx,
                close,
                encode(&FrontToBack::Resync(LinkResync {
                    channel: *index,
                    sessions: behind,
                })),
            );
        }
    }

    /// Queues the game's message to the listed members, or to every member of the
    /// channel on this front, as the same bytes. A member that is behind (waiting for a
    /// fresh state, so it has not seen the state the message follows) or whose queue is
    /// full misses it: under the `resync` policy it is told later (`messages_dropped`),
    /// under `disconnect` a full queue disconnects it, as for a patch.
    pub(crate) fn on_message(&self, channel: &str, msg: LinkMessage) {
        let Some(route) = self.route(channel) else {
            return;
        };
        let mut route = route.write();
        let mut deliver = |m: &mut Member| {
            match m.status {
                // A joiner hears the game only from its first state on.
                Status::Joining => return,
                // It missed the state this message follows; it hears how many it
                // missed with its fresh state.
                Status::Waiting => return self.missed_message(m),
                Status::Gone => return,
                Status::Active => {}
            }
            self.tell_dropped_messages(channel, m);
            match m
                .client
                .outbox
                .push(Outbound::Message(msg.body.clone()), &self.metrics)
            {
                Ok(()) => {
                    self.metrics.game_messages.fetch_add(1, Relaxed);
                }
                Err(Refused::Full) => match self.config.limits.slow_client {
                    SlowClientPolicy::Resync => self.missed_message(m),
                    SlowClientPolicy::Disconnect => self.drop_slow(&m.client.outbox),
                },
                Err(Refused::Closed) => {}
            }
        };
        match &msg.to {
            None => route.members.values_mut().for_each(&mut deliver),
            Some(keys) => {
                for key in keys {
                    if let Some(m) = route.members.get_mut(key) {
                        deliver(m);
                    }
                }
            }
        }
    }

    /// A member misses one of the game's messages: counted, and told later.
    fn missed_message(&self, m: &mut Member) {
        self.metrics.game_messages_dropped.fetch_add(1, Relaxed);
        m.dropped_messages = m.dropped_messages.saturating_add(1);
    }

    /// Tells a member how many of the game's messages it missed while it was behind,
    /// if any and if its queue has room now.
    fn tell_dropped_messages(&self, channel: &str, m: &mut Member) {
        if m.dropped_messages == 0 {
            return;
        }
        let message = format!(
            "{} messages of channel {channel:?} were dropped while this client was behind",
            m.dropped_messages
        );
        if m.client
            .outbox
            .push(
                Hub::error("messages_dropped".into(), message),
                &self.metrics,
            )
            .is_ok()
        {
            m.dropped_messages = 0;
        }
    }

    /// Sends a call to the back of `channel`; the reply arrives on the receiver.
    ///
    /// # Errors
    /// [`CallRefusal`] when the channel is unknown, its link down or full, or too many
    /// calls are waiting.
    pub(crate) fn call(
        &self,
        channel: &str,
        data: Bytes,
    ) -> Result<(CallTicket<'_>, oneshot::Receiver<LinkReply>), CallRefusal> {
        let (tx, index, back) = {
            let route = self.route(channel).ok_or(CallRefusal::UnknownChannel)?;
            let route = route.read();
            let Some((tx, index, _)) = &route.link else {
                return Err(CallRefusal::Unavailable);
            };
            (tx.clone(), *index, route.back)
        };
        let limit = self.config.calls.max_in_flight;
        let call = self.next_call.fetch_add(1, Relaxed);
        let (reply, receiver) = oneshot::channel();
        {
            let mut calls = self.calls.lock();
            if calls.len() >= limit as usize {
                return Err(CallRefusal::Busy(limit));
            }
            calls.insert(call, PendingCall { back, reply });
        }
        let ticket = CallTicket { hub: self, call };
        let frame = encode(&FrontToBack::Call(LinkCall {
            call,
            channel: index,
            data,
        }));
        if tx.try_send(Bytes::from(frame)).is_err() {
            return Err(CallRefusal::Unavailable);
        }
        Ok((ticket, receiver))
    }

    /// Back number `back` answered a call; a reply nobody waits for any more, or from
    /// another back than the call went to, is dropped.
    pub(crate) fn on_reply(&self, back: usize, reply: LinkReply) {
        let mut calls = self.calls.lock();
        if calls.get(&reply.call).is_some_and(|p| p.back == back)
            && let Some(pending) = calls.remove(&reply.call)
        {
            let _ = pending.reply.send(reply);
        }
    }

    pub(crate) fn on_join_rejected(&self, channel: &str, key: SessionKey, reason: String) {
        let Some(route) = self.route(channel) else {
            return;
        };
        let mut route = route.write();
        if let Some(m) = route.members.remove(&key) {
            // A member that was in already (a relinked front's session in a room
            // disposed of meanwhile) has left; one that was joining is rejected.
            let msg = if m.status == Status::Joining {
                FrontMsg::Rejected(Rejected {
                    channel: channel.to_owned(),
                    reason,
                })
            } else {
                FrontMsg::Left(Left {
                    channel: channel.to_owned(),
                    reason,
                })
            };
            let _ = m
                .client
                .outbox
                .push(Outbound::Message(Bytes::from(encode(&msg))), &self.metrics);
        }
        let unused = route.room && route.link.is_none() && route.members.is_empty();
        drop(route);
        if unused {
            self.forget_room_route(channel);
        }
    }

    /// Drops the route of a room its back never announced to this front and no client
    /// here is in or joining (a join of a room that does not exist): a client cannot
    /// make the front keep routes by joining made-up room ids.
    fn forget_room_route(&self, channel: &str) {
        let mut routes = self.routes.write();
        let unused = routes.channels.get(channel).is_some_and(|r| {
            let r = r.read();
            r.room && r.link.is_none() && r.members.is_empty()
        });
        if unused {
            routes.channels.remove(channel);
        }
    }

    /// Room routes, for tests.
    #[cfg(test)]
    fn route_count(&self) -> usize {
        self.routes.read().channels.len()
    }

    /// The session resumed on another connection: this one is out of the channel.
    pub(crate) fn on_evicted(&self, channel: &str, key: SessionKey, reason: String) {
        let Some(route) = self.route(channel) else {
            return;
        };
        if let Some(m) = route.write().members.remove(&key) {
            let msg = encode(&FrontMsg::Left(Left {
                channel: channel.to_owned(),
                reason,
            }));
            let _ = m
                .client
                .outbox
                .push(Outbound::Message(Bytes::from(msg)), &self.metrics);
        }
    }

    pub(crate) fn on_notice(&self, key: SessionKey, code: String, message: String) {
        if let Some(client) = self.clients.read().get(&key) {
            let _ = client.outbox.push(Hub::error(code, message), &self.metrics);
        }
    }

    /// A non-fatal `Error` for one client.
    pub(crate) fn error(code: String, message: String) -> Outbound {
        Outbound::Message(Bytes::from(encode(&FrontMsg::Error(ErrorMsg {
            code,
            message,
        }))))
    }

    /// The reply to a leave, queued behind anything already queued for that channel.
    pub(crate) fn left(channel: &str) -> Outbound {
        Outbound::Message(Bytes::from(encode(&FrontMsg::Left(Left {
            channel: channel.to_owned(),
            reason: "left".into(),
        }))))
    }

    fn drop_slow(&self, outbox: &Outbox) {
        if outbox.kill(Kill::Slow) {
            self.metrics.slow_client_disconnects.fetch_add(1, Relaxed);
        }
    }
}

/// A channel's members in the order of this tick's fan-out: each tick starts at
/// another member, so that no client is always written last (the map's order is
/// stable while its members are).
fn in_turn<V>(
    members: &IdMap<SessionKey, V>,
    tick: Tick,
) -> impl Iterator<Item = (&SessionKey, &V)> {
    let start = tick.0 as usize % members.len().max(1);
    members.iter().skip(start).chain(members.iter().take(start))
}

/// Members of one channel on this front from which a patch is written by one task per
/// core, each taking its share of the sockets; below it, the link's task writes them
/// all.
const SPLIT_FANOUT_AT: usize = 256;

/// One member's share of a split patch.
#[derive(Debug)]
struct Target {
    key: SessionKey,
    outbox: Arc<Outbox>,
    ack: Seq,
}

/// A patch for a channel with many members, written on every core (`Hub::on_patch`).
#[derive(Debug)]
pub(crate) struct SplitPatch {
    channel: String,
    targets: Vec<Target>,
    body: Bytes,
    since: Instant,
}

impl SplitPatch {
    /// Writes the patch: one share on this task, the others on tasks of their own.
    /// Returns once every member has it, so nothing the link brings next can overtake
    /// it.
    pub(crate) async fn write(self, hub: &Arc<Hub>) {
        let Self {
            channel,
            mut targets,
            body,
            since,
        } = self;
        let share = targets.len().div_ceil(hub.cores);
        let mut others = Vec::with_capacity(hub.cores);
        while targets.len() > share {
            let theirs = targets.split_off(targets.len() - share);
            let (hub, body) = (hub.clone(), body.clone());
            others.push(tokio::spawn(async move {
                hub.send_patches(&theirs, &body, since)
            }));
        }
        let mut behind = hub.send_patches(&targets, &body, since);
        for other in others {
            match other.await {
                Ok(theirs) => behind.extend(theirs),
                // Only a bug could: its members may have missed this patch.
                Err(e) => tracing::error!(%channel, error = %e, "a share of a patch failed"),
            }
        }
        if let Some(route) = hub.route(&channel) {
            hub.patch_sent(&route, behind);
        }
    }
}

impl Hub {
    fn send_patches(&self, targets: &[Target], body: &Bytes, since: Instant) -> Vec<SessionKey> {
        let mut behind = Vec::new();
        for t in targets {
            self.send_patch(t.key, &t.outbox, t.ack, body, since, &mut behind);
        }
        behind
    }
}

/// Queues a frame that must not be lost (a leave, a resync); if the link's queue is
/// full the link is closed instead, and relinking reconciles the sessions.
fn send_or_close(tx: &mpsc::Sender<Bytes>, close: &Shutdown, frame: Vec<u8>) {
    if let Err(TrySendError::Full(_)) = tx.try_send(Bytes::from(frame)) {
        close.cancel();
    }
}

#[cfg(test)]
mod tests {
    use centrum_protocol::{LinkState, Tick, decode};

    use super::*;

    fn hub(policy: SlowClientPolicy) -> Hub {
        let mut config = Config::embedded_default();
        config.limits.slow_client = policy;
        Hub::new("front-1", Arc::new(config), None)
    }

    /// A client's queue as a test reads it (there is no socket: everything queues).
    struct Rx(Arc<Outbox>);

    impl Rx {
        fn try_recv(&mut self) -> Result<Outbound, ()> {
            self.0.try_pop().ok_or(())
        }
    }

    fn client(capacity: usize) -> (ClientHandle, Rx) {
        let outbox = Arc::new(Outbox::new(capacity));
        (
            ClientHandle {
                outbox: outbox.clone(),
                secret: 1,
                grant: Arc::new(Grant::Open),
            },
            Rx(outbox),
        )
    }

    fn patch(tick: u32) -> LinkPatch {
        LinkPatch {
            channel: 0,
            tick: Tick(tick),
            changed: true,
            acks: vec![(2, Seq(tick))],
            body: Bytes::from_static(b"p"),
        }
    }

    /// Sets up a linked channel with a slow client (queue of 1) and a fast one.
    fn linked(policy: SlowClientPolicy) -> (Hub, mpsc::Receiver<Bytes>, ClientHandle, Rx, Rx) {
        let hub = hub(policy);
        let (link_tx, mut link_rx) = mpsc::channel(16);
        hub.link_up(0, &["arena".to_owned()], &link_tx, &Shutdown::new());
        let (slow, slow_rx) = client(1);
        let (fast, fast_rx) = client(16);
        hub.join(1, &slow, "arena", Bytes::new(), None, None)
            .unwrap();
        hub.join(2, &fast, "arena", Bytes::new(), None, None)
            .unwrap();
        for _ in 0..2 {
            let frame = link_rx.try_recv().unwrap();
            assert!(matches!(
                decode::<FrontToBack>(&frame, usize::MAX).unwrap(),
                FrontToBack::Join(_)
            ));
        }
        let state = LinkState {
            channel: 0,
            tick: Tick(1),
            sessions: vec![(1, Seq(0)), (2, Seq(0))],
            body: Bytes::from_static(b"s"),
        };
        hub.on_state("arena", state);
        (hub, link_rx, slow, slow_rx, fast_rx)
    }

    #[test]
    fn a_slow_client_is_resynced_and_never_holds_up_the_others() {
        let (hub, mut link_rx, _slow, mut slow_rx, mut fast_rx) = linked(SlowClientPolicy::Resync);
        for tick in 2..6 {
            hub.on_patch("arena", patch(tick));
        }
        // The fast client got the state and every patch, with its own acks.
        let acks: Vec<Seq> = std::iter::from_fn(|| fast_rx.try_recv().ok())
            .map(|o| match o {
                Outbound::Shared { ack, .. } => ack,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(acks, vec![Seq(0), Seq(2), Seq(3), Seq(4), Seq(5)]);
        // The slow one was asked a resync for once, and skipped patches meanwhile.
        let frame = link_rx.try_recv().unwrap();
        let FrontToBack::Resync(r) = decode(&frame, usize::MAX).unwrap() else {
            panic!("expected a resync")
        };
        assert_eq!(r.sessions, vec![1]);
        assert!(
            link_rx.try_recv().is_err(),
            "one resync request, not one per patch"
        );
        assert_eq!(hub.metrics.slow_client_resyncs.load(Relaxed), 1);
        // Once it has drained its queue, the fresh state makes it active again.
        assert!(matches!(
            slow_rx.try_recv().unwrap(),
            Outbound::Shared {
                kind: SharedKind::State,
                ..
            }
        ));
        hub.on_state(
            "arena",
            LinkState {
                channel: 0,
                tick: Tick(6),
                sessions: vec![(1, Seq(0))],
                body: Bytes::from_static(b"s"),
            },
        );
        assert!(matches!(
            slow_rx.try_recv().unwrap(),
            Outbound::Shared {
                kind: SharedKind::State,
                ..
            }
        ));
        let _ = slow_rx.try_recv();
        hub.on_patch("arena", patch(7));
        assert!(matches!(
            slow_rx.try_recv().unwrap(),
            Outbound::Shared {
                kind: SharedKind::Patch,
                ..
            }
        ));
    }

    #[test]
    fn the_disconnect_policy_closes_a_slow_client() {
        let (hub, _link_rx, slow, _slow_rx, _fast_rx) = linked(SlowClientPolicy::Disconnect);
        assert!(!slow.outbox.is_killed());
        hub.on_patch("arena", patch(2));
        assert!(slow.outbox.is_killed());
        assert_eq!(hub.metrics.slow_client_disconnects.load(Relaxed), 1);
    }

    #[test]
    fn a_dropped_link_tells_members_and_rejects_joins_in_flight() {
        let (hub, _link_rx, _slow, _slow_rx, mut fast_rx) = linked(SlowClientPolicy::Resync);
        let (late, mut late_rx) = client(4);
        hub.join(3, &late, "arena", Bytes::new(), None, None)
            .unwrap();
        hub.link_down(0);
        let _state = fast_rx.try_recv().unwrap();
        let Outbound::Message(m) = fast_rx.try_recv().unwrap() else {
            panic!("expected a message")
        };
        assert!(
            matches!(decode::<FrontMsg>(&m, usize::MAX).unwrap(), FrontMsg::Unavailable(u) if u.channel == "arena")
        );
        let Outbound::Message(m) = late_rx.try_recv().unwrap() else {
            panic!("expected a message")
        };
        assert!(matches!(
            decode::<FrontMsg>(&m, usize::MAX).unwrap(),
            FrontMsg::Rejected(_)
        ));
        assert_eq!(
            hub.sessions_of_back(0).len(),
            2,
            "the members stay for the relink"
        );
        assert!(matches!(
            hub.input(2, "arena", Seq(1), Bytes::new()),
            Err(Refusal::Error("unavailable", _))
        ));
    }

    fn message(to: Option<Vec<SessionKey>>) -> LinkMessage {
        LinkMessage {
            channel: 0,
            to,
            body: Bytes::from_static(b"m"),
        }
    }

    fn is_message(o: &Outbound) -> bool {
        matches!(o, Outbound::Message(m) if &m[..] == b"m")
    }

    #[test]
    fn messages_reach_their_members_and_a_client_that_was_behind_is_told_what_it_missed() {
        let (hub, _link_rx, _slow, mut slow_rx, mut fast_rx) = linked(SlowClientPolicy::Resync);
        let (late, mut late_rx) = client(4);
        hub.join(3, &late, "arena", Bytes::new(), None, None)
            .unwrap();
        let _state = fast_rx.try_recv().unwrap();

        hub.on_message("arena", message(None));
        assert!(is_message(&fast_rx.try_recv().unwrap()));
        assert!(
            late_rx.try_recv().is_err(),
            "a joiner hears nothing before its state"
        );
        // The slow client's one slot holds its state: the message is dropped, counted.
        assert_eq!(hub.metrics.game_messages_dropped.load(Relaxed), 1);

        hub.on_message("arena", message(Some(vec![2])));
        assert!(is_message(&fast_rx.try_recv().unwrap()));

        // Caught up, the slow client is told how many it missed before its next
        // message (its queue has room for the notice only, so that message is
        // dropped in turn, and counted).
        let _ = slow_rx.try_recv().unwrap();
        hub.on_message("arena", message(Some(vec![1])));
        let Outbound::Message(m) = slow_rx.try_recv().unwrap() else {
            panic!("expected the notice")
        };
        let FrontMsg::Error(e) = decode(&m, usize::MAX).unwrap() else {
            panic!("expected an error")
        };
        assert_eq!(e.code, "messages_dropped");
        assert!(
            e.message.starts_with("1 messages of channel \"arena\""),
            "{}",
            e.message
        );
        assert_eq!(hub.metrics.game_messages_dropped.load(Relaxed), 2);
    }

    #[test]
    fn a_client_waiting_for_a_fresh_state_gets_no_message_before_that_state() {
        let hub = hub(SlowClientPolicy::Resync);
        let (link_tx, _link_rx) = mpsc::channel(16);
        hub.link_up(0, &["arena".to_owned()], &link_tx, &Shutdown::new());
        let (behind, mut rx) = client(2);
        hub.join(1, &behind, "arena", Bytes::new(), None, None)
            .unwrap();
        let state = |tick| LinkState {
            channel: 0,
            tick: Tick(tick),
            sessions: vec![(1, Seq(0))],
            body: Bytes::from_static(b"s"),
        };
        hub.on_state("arena", state(1));
        // The state and one patch fill its queue; the next patch does not fit, and it
        // waits for a fresh state.
        hub.on_patch("arena", patch(2));
        hub.on_patch("arena", patch(3));
        while rx.try_recv().is_ok() {}
        // Room again, but the message follows a patch it never got.
        hub.on_message("arena", message(None));
        assert!(rx.try_recv().is_err(), "no message before its state");
        assert_eq!(hub.metrics.game_messages_dropped.load(Relaxed), 1);
        // The fresh state, then how many messages it missed.
        hub.on_state("arena", state(4));
        assert!(matches!(
            rx.try_recv().unwrap(),
            Outbound::Shared {
                kind: SharedKind::State,
                ..
            }
        ));
        let Outbound::Message(m) = rx.try_recv().unwrap() else {
            panic!("expected the notice")
        };
        assert!(matches!(
            decode::<FrontMsg>(&m, usize::MAX).unwrap(),
            FrontMsg::Error(e) if e.code == "messages_dropped"
        ));
    }

    #[test]
    fn a_call_gets_one_reply_and_fails_at_once_when_its_link_drops() {
        let (hub, mut link_rx, ..) = linked(SlowClientPolicy::Resync);
        assert_eq!(
            hub.call("nowhere", Bytes::new()).unwrap_err(),
            CallRefusal::UnknownChannel
        );
        let (ticket, mut reply) = hub.call("arena", Bytes::from_static(b"\xc0")).unwrap();
        let FrontToBack::Call(call) = decode(&link_rx.try_recv().unwrap(), usize::MAX).unwrap()
        else {
            panic!("expected the call on the link")
        };
        let answer = LinkReply {
            call: call.call,
            outcome: centrum_protocol::CallOutcome::Ok,
            message: String::new(),
            data: Bytes::from_static(b"\x01"),
        };
        hub.on_reply(1, answer.clone());
        assert!(reply.try_recv().is_err(), "another back cannot answer it");
        hub.on_reply(0, answer.clone());
        assert_eq!(reply.try_recv().unwrap(), answer);
        drop(ticket);
        assert!(hub.calls.lock().is_empty());

        let (_ticket, mut reply) = hub.call("arena", Bytes::new()).unwrap();
        hub.link_down(0);
        assert!(
            matches!(reply.try_recv(), Err(oneshot::error::TryRecvError::Closed)),
            "the caller hears at once"
        );
        assert_eq!(
            hub.call("arena", Bytes::new()).unwrap_err(),
            CallRefusal::Unavailable
        );
    }

    #[test]
    fn a_client_gone_while_the_link_is_down_is_handed_over_as_away_at_the_relink() {
        let (hub, mut link_rx, ..) = linked(SlowClientPolicy::Resync);
        hub.link_down(0);
        // Client 1's connection drops (to be resumed), client 2 leaves for good.
        hub.remove_client(1, false);
        hub.remove_client(2, true);
        let (link_tx, mut relink_rx) = mpsc::channel(16);
        // The relink's session list still names the one that may resume...
        let listed: Vec<SessionKey> = hub.sessions_of_back(0).iter().map(|s| s.session).collect();
        assert_eq!(listed, [1]);
        hub.link_up(0, &["arena".to_owned()], &link_tx, &Shutdown::new());
        // ...then the back hears it is away, and holds it for a resume.
        let frame = relink_rx.try_recv().expect("an away on the new link");
        assert!(matches!(
            decode::<FrontToBack>(&frame, usize::MAX).unwrap(),
            FrontToBack::Away(LinkAway {
                session: 1,
                channel: 0
            })
        ));
        assert!(
            relink_rx.try_recv().is_err(),
            "nothing for the one that left"
        );
        assert!(hub.sessions_of_back(0).is_empty(), "handed over once");
        assert!(link_rx.try_recv().is_err(), "nothing went to the dead link");
    }

    #[test]
    fn a_join_of_a_made_up_room_leaves_no_route_behind() {
        let hub = hub(SlowClientPolicy::Resync);
        let before = hub.route_count();
        let (c, _rx) = client(8);
        // No link to the back: refused at once.
        let refused = hub.join(1, &c, "match.madeup.back-1", Bytes::new(), None, None);
        assert!(matches!(refused, Err(Refusal::Reject(r)) if r.contains("unavailable")));
        assert_eq!(hub.route_count(), before);
        // Linked: the join goes to the back, which rejects it.
        let (tx, _link_rx) = mpsc::channel(8);
        hub.link_up(0, &["arena".into()], &tx, &Shutdown::new());
        hub.join(1, &c, "match.madeup.back-1", Bytes::new(), None, None)
            .expect("sent to the back");
        assert_eq!(hub.route_count(), before + 1);
        hub.on_join_rejected("match.madeup.back-1", 1, "no_such_room: x".into());
        assert_eq!(hub.route_count(), before);
        // Not a room id of this cluster: no route at all.
        let unknown = hub.join(1, &c, "duel.madeup.back-9", Bytes::new(), None, None);
        assert!(matches!(unknown, Err(Refusal::Reject(r)) if r.contains("unknown channel")));
        assert_eq!(hub.route_count(), before);
    }

    #[test]
    fn calls_in_flight_are_bounded() {
        let mut config = Config::embedded_default();
        config.calls.max_in_flight = 1;
        let hub = Hub::new("front-1", Arc::new(config), None);
        let (link_tx, _link_rx) = mpsc::channel(16);
        hub.link_up(0, &["arena".to_owned()], &link_tx, &Shutdown::new());
        let first = hub.call("arena", Bytes::new()).unwrap();
        assert_eq!(
            hub.call("arena", Bytes::new()).unwrap_err(),
            CallRefusal::Busy(1)
        );
        drop(first);
        assert!(hub.call("arena", Bytes::new()).is_ok(), "room again");
    }

    #[test]
    fn no_member_is_always_written_last() {
        let members: IdMap<SessionKey, ()> = (1..=5).map(|k| (k, ())).collect();
        let mut last = std::collections::HashSet::new();
        for tick in 100..105 {
            let order: Vec<SessionKey> = in_turn(&members, Tick(tick)).map(|(k, _)| *k).collect();
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(
                sorted,
                vec![1, 2, 3, 4, 5],
                "every member once, at tick {tick}"
            );
            last.insert(*order.last().unwrap());
        }
        assert_eq!(last.len(), 5, "each member is last once in five ticks");
    }

    /// A patch for a channel with many members is written by several tasks, and is
    /// done before the link's next frame: a message of the same tick follows it for
    /// every member.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_patch_split_over_cores_reaches_everyone_before_what_follows() {
        let mut hub = hub(SlowClientPolicy::Resync);
        hub.cores = 2;
        let hub = Arc::new(hub);
        let (link_tx, _link_rx) = mpsc::channel(1024);
        hub.link_up(0, &["arena".to_owned()], &link_tx, &Shutdown::new());
        let members = SPLIT_FANOUT_AT as u64 + 44;
        let mut queues = Vec::new();
        for key in 1..=members {
            let (handle, rx) = client(8);
            hub.join(key, &handle, "arena", Bytes::new(), None, None)
                .unwrap();
            queues.push(rx);
        }
        hub.on_state(
            "arena",
            LinkState {
                channel: 0,
                tick: Tick(1),
                sessions: (1..=members).map(|k| (k, Seq(0))).collect(),
                body: Bytes::from_static(b"s"),
            },
        );
        let split = hub
            .on_patch("arena", patch(2))
            .expect("a channel this large is split");
        split.write(&hub).await;
        hub.on_message("arena", message(None));
        for (i, rx) in queues.iter_mut().enumerate() {
            let kinds: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
                .map(|o| match o {
                    Outbound::Shared { kind, .. } => format!("{kind:?}"),
                    Outbound::Message(_) => "Message".into(),
                    Outbound::Control(_) => "Control".into(),
                })
                .collect();
            assert_eq!(kinds, ["State", "Patch", "Message"], "member {}", i + 1);
        }
        assert_eq!(hub.metrics.patches.load(Relaxed), 1);
    }
}
