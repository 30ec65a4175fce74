//! One channel's tick loop. Each tick takes the inbox, lets `membership` decide who is
//! in (pure: time in, effects out), applies what happened to the `game` as journal
//! entries, runs the game's tick, and has `fanout` encode what clients get. Then
//! `persist` writes the tick's record to the store, and only once it is durable do
//! the tick's frames leave: nothing is acknowledged that a crash could lose.

mod fanout;
mod game;
mod journal;
mod membership;
mod persist;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use std::collections::HashMap;

use centrum_app::{AppError, CallFailure, DynApp, Outbox, Room};
use centrum_net::seat::{Seat, SeatError, unix_ms};
use centrum_protocol::{
    BackToFront, CallOutcome, ChannelIndex, Identity, LinkClosed, LinkEvicted, LinkJoinRejected,
    LinkNotice, LinkOpened, LinkReply, LinkResume, LinkSession, Seq, SessionKey, Tick, encode,
};
use centrum_store::Store;

use crate::inbox::{Event, Inbox};
use crate::link::LinkHandle;
use crate::metrics::ChannelMetrics;
use crate::rooms::{RoomShared, Rooms};
use game::{Applied, Entry, Game};
use membership::{Effect, JoinStart, Membership};
use persist::{Persist, Stopped};

pub use journal::RecoverError;
pub(crate) use persist::StorePolicy;

/// What the rest of the back shares with a channel's task.
#[derive(Debug)]
pub(crate) struct ChannelShared {
    pub(crate) name: String,
    pub(crate) app_name: String,
    pub(crate) index: ChannelIndex,
    pub(crate) inbox: Inbox,
    pub(crate) metrics: Arc<ChannelMetrics>,
    /// Set for a room made at run time; None for a channel of the config.
    pub(crate) room: Option<Arc<RoomShared>>,
}

/// How a channel runs: its period, its grace periods and its message limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChannelOptions {
    pub(crate) period: Duration,
    pub(crate) link_grace: Duration,
    pub(crate) resume_grace: Duration,
    /// The largest message data a game may send: what fits a link frame.
    pub(crate) max_game_message_bytes: usize,
    /// The most messages a game may send in one tick.
    pub(crate) max_game_messages: usize,
    /// The largest link frame: a state or patch that would not fit one is never sent,
    /// so that no client's data can close a link.
    pub(crate) max_frame_bytes: usize,
    /// The back's tick grid: channel `i` ticks at `epoch + (i % TICK_PHASES) * period /
    /// TICK_PHASES + k * period`. A room made at any moment ticks with the others of
    /// its phase, and their frames to a front leave together (one write instead of
    /// one per channel); the phases spread a back's work, and its fronts' fan-out,
    /// over the period instead of one burst.
    pub(crate) epoch: Instant,
}

/// The phases of a back's tick grid (`ChannelOptions::epoch`).
const TICK_PHASES: u32 = 4;

impl ChannelOptions {
    /// The first tick of channel `index` at or after `now`.
    fn next_tick(&self, now: Instant, index: ChannelIndex) -> Instant {
        let period = self.period.as_nanos().max(1);
        let phase = period * u128::from(index % TICK_PHASES) / u128::from(TICK_PHASES);
        let epoch = self.epoch + Duration::from_nanos(u64::try_from(phase).unwrap_or(0));
        let since = now.saturating_duration_since(epoch).as_nanos();
        let ticks = since.div_ceil(period);
        let at = u64::try_from(ticks * period).unwrap_or(u64::MAX);
        epoch + Duration::from_nanos(at)
    }
}

/// What a join may add to the full state, besides its data, in the estimate that
/// decides whether the state must be measured before the join is let in.
const JOIN_GROWTH: usize = 1024;

/// What a `LinkState` frame holds besides the full state (envelope, tick, a few
/// sessions); a frame that is larger still is caught before it is sent.
const STATE_FRAME_OVERHEAD: usize = 1024;

/// The task-owned side of a channel.
pub(crate) struct Channel {
    shared: Arc<ChannelShared>,
    game: Game,
    members: Membership,
    options: ChannelOptions,
    /// The store, unless the channel keeps nothing across a restart.
    persist: Option<Persist>,
    /// This tick's entries: its journal record.
    entries: Vec<Entry>,
    /// The CRC of this tick's patch, for its record.
    patch_crc: u32,
    /// Frames this tick made, in order; they leave once its record is durable.
    outgoing: Vec<(LinkHandle, Bytes)>,
    /// Answers to this tick's calls, sent after its patch.
    replies: Vec<(LinkHandle, LinkReply)>,
    /// Full states asked for by tests and tools, answered after the tick.
    snapshots: Vec<tokio::sync::oneshot::Sender<(Tick, Bytes)>>,
    /// The last time an error of the game was logged; errors are counted always,
    /// logged at most once per [`APP_ERROR_LOG_EVERY`].
    app_error_logged: Option<Instant>,
    /// Members recovered from the store, placed at the first tick.
    restored: Vec<membership::SavedMember>,
    /// Reused buffers, so that a steady tick allocates only its patch.
    events: Vec<Event>,
    effects: Vec<Effect>,
    /// An upper estimate of the full state's encoded size: exact when it was last
    /// encoded, plus what joins and patches may have added since.
    full_len: usize,
    /// Sessions whose full state could not be sent (too large for a frame): they leave
    /// at the next tick, with the reason, before anything else happens.
    oversized: Vec<(LinkHandle, SessionKey)>,
    /// What a room has beyond a channel; None for a channel of the config.
    room: Option<RoomRun>,
}

/// A room's own bookkeeping, on its channel's task.
#[derive(Debug)]
struct RoomRun {
    shared: Arc<RoomShared>,
    rooms: Arc<Rooms>,
    /// Seats taken, by number, until they expire: a seat is good for one join.
    used: HashMap<u64, u64>,
    /// Seats taken since the last report.
    taken: Vec<u64>,
    /// Members (connected or held) after the last tick.
    clients: u32,
    /// When an empty room is disposed of; None while it has members.
    empty_deadline: Option<Instant>,
}

/// Why a room could not be made or brought back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RoomError {
    /// The game refused its options (or is no room game).
    #[error("{0}")]
    Refused(AppError),
    /// Its store could not be opened, read or cleared.
    #[error(transparent)]
    Back(#[from] crate::BackError),
}

/// What a new member must show, besides what the game asks.
#[derive(Debug, Clone, Copy)]
enum Admission<'a> {
    /// A client's join: a seat token, for a room.
    Seat(Option<&'a str>),
    /// A session a relinking front lists: it was admitted before.
    Relisted,
}

/// A game that fails every tick is logged this often, not every tick.
const APP_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.shared.name)
            .field("tick", &self.game.tick())
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// A channel with nothing kept across a restart.
    pub(crate) fn new(
        shared: Arc<ChannelShared>,
        app: Box<dyn DynApp>,
        options: ChannelOptions,
    ) -> Self {
        let outbox = Outbox::new(options.max_game_message_bytes, options.max_game_messages);
        let game = Game::new(app, &shared.name, options.period, outbox);
        let members = Membership::new(shared.index, options.link_grace, options.resume_grace);
        Self {
            shared,
            game,
            members,
            options,
            persist: None,
            entries: Vec::new(),
            patch_crc: 0,
            outgoing: Vec::new(),
            replies: Vec::new(),
            snapshots: Vec::new(),
            app_error_logged: None,
            restored: Vec::new(),
            events: Vec::new(),
            effects: Vec::new(),
            full_len: 0,
            oversized: Vec::new(),
            room: None,
        }
    }

    /// A room made at run time with `options`, which its game reads (and may refuse)
    /// before the room exists for anyone. Kept nowhere across a restart of the back.
    ///
    /// # Errors
    /// The game's refusal of the options.
    pub(crate) fn new_room(
        shared: Arc<ChannelShared>,
        app: Box<dyn DynApp>,
        options: ChannelOptions,
        rooms: Arc<Rooms>,
        room_options: &Bytes,
        now: Instant,
    ) -> Result<Self, RoomError> {
        let mut channel = Self::room_channel(shared, app, options)?;
        if let Applied::Room(Err(e)) = channel.play(Entry::Create {
            options: room_options.clone(),
        }) {
            return Err(RoomError::Refused(e));
        }
        if let Some((store, policy)) = rooms.store() {
            // A new room's id is new: anything kept under it is from a room of an
            // earlier run that was never disposed of.
            store
                .remove(&channel.shared.name)
                .map_err(crate::BackError::from)?;
            channel = channel.restore(store, policy, now)?;
        }
        Ok(channel.run_room(rooms, now))
    }

    /// A room of an earlier run of this back, brought back from `store`.
    ///
    /// # Errors
    /// What the store could not read, or the channel could not use.
    pub(crate) fn recover_room(
        shared: Arc<ChannelShared>,
        app: Box<dyn DynApp>,
        options: ChannelOptions,
        rooms: Arc<Rooms>,
        now: Instant,
    ) -> Result<Self, RoomError> {
        let channel = Self::room_channel(shared, app, options)?;
        let (store, policy) = rooms
            .store()
            .ok_or_else(|| RoomError::Refused(AppError::new("this back keeps no rooms")))?;
        let channel = channel.restore(store, policy, now)?;
        Ok(channel.run_room(rooms, now))
    }

    fn room_channel(
        shared: Arc<ChannelShared>,
        app: Box<dyn DynApp>,
        options: ChannelOptions,
    ) -> Result<Self, RoomError> {
        let room = shared
            .room
            .as_ref()
            .map(|r| Room::new(&r.id, &r.kind, r.max_clients))
            .ok_or_else(|| RoomError::Refused(AppError::new("not a room")))?;
        let mut channel = Self::new(shared, app, options);
        channel.game.room = Some(room);
        Ok(channel)
    }

    /// The room's own bookkeeping starts, and the matchmaker hears of it.
    fn run_room(mut self, rooms: Arc<Rooms>, now: Instant) -> Self {
        let Some(shared) = self.shared.room.clone() else {
            return self;
        };
        let members = (self.restored.len() + self.members.live_count()) as u32;
        if let Some(room) = &mut self.game.room {
            room.take_changed();
            shared.update(members, room, &mut Vec::new());
        }
        // A new room waits for the seats handed out with it before it counts as empty.
        let wait = shared.empty_dispose.max(rooms.seat_ttl);
        self.room = Some(RoomRun {
            shared,
            rooms,
            used: HashMap::new(),
            taken: Vec::new(),
            clients: members,
            empty_deadline: (members == 0).then(|| now + wait),
        });
        self
    }

    /// A durable channel: brought back from `store` to its last durable tick, every
    /// member held for its client to resume, and kept there from now on.
    ///
    /// # Errors
    /// What the store could not read, or the channel could not use.
    pub(crate) fn recover(
        shared: Arc<ChannelShared>,
        app: Box<dyn DynApp>,
        options: ChannelOptions,
        store: &dyn Store,
        policy: StorePolicy,
        now: Instant,
    ) -> Result<Self, crate::BackError> {
        Self::new(shared, app, options).restore(store, policy, now)
    }

    /// This channel brought back from `store` and kept there from now on.
    fn restore(
        self,
        store: &dyn Store,
        policy: StorePolicy,
        now: Instant,
    ) -> Result<Self, crate::BackError> {
        let mut channel = self;
        let name = channel.shared.name.clone();
        let opened = store.open(&name)?;
        for repair in &opened.recovered.repairs {
            warn!(channel = %name, "{repair}");
        }
        let replayed: u64 = opened
            .recovered
            .records
            .iter()
            .map(|r| r.bytes.len() as u64)
            .sum();
        let restored = journal::recover(
            &mut channel.game,
            &channel.shared.app_name,
            opened.recovered,
        )
        .map_err(|source| crate::BackError::Recover {
            channel: name.clone(),
            source,
        })?;
        if restored.divergences > 0 {
            warn!(channel = %name, ticks = restored.divergences, "replayed ticks came out other than they first did: the game is not deterministic (see the App docs); clients get the replayed state");
        }
        let m = &channel.shared.metrics;
        m.replay_divergences
            .fetch_add(restored.divergences, Relaxed);
        let held = restored.members.len();
        // Every member waits for its client (or its front) to come back: the game hears
        // that none is connected, at the first tick, and journals it like any change.
        let away = restored
            .members
            .iter()
            .map(|m| Effect::Disconnect(m.client));
        channel.effects.extend(away);
        // Their grace counts from the first tick, not from before the replay of every
        // channel of the back.
        channel.restored = restored.members;
        if restored.snapshot.is_some() || restored.replayed > 0 {
            info!(channel = %name, tick = channel.game.step, snapshot = restored.snapshot.as_deref().unwrap_or("none"), replayed = restored.replayed, held, "channel recovered");
        }
        channel.persist = Some(Persist::new(
            &name,
            opened.journal,
            opened.snapshots,
            policy,
            channel.shared.metrics.clone(),
            now,
            replayed,
        ));
        Ok(channel)
    }

    /// Ticks every period until `shutdown`. A tick that overruns is counted and the
    /// schedule skips ahead rather than bursting to catch up.
    ///
    /// # Errors
    /// [`crate::BackError::JournalFailed`] when the journal's writer failed: the back
    /// stops rather than run a channel that can no longer keep what it acknowledges.
    pub(crate) async fn run(
        mut self,
        shutdown: centrum_net::Shutdown,
    ) -> Result<(), crate::BackError> {
        let period = self.options.period;
        let first = self.options.next_tick(Instant::now(), self.shared.index);
        let mut interval = tokio::time::interval_at(first.into(), period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        info!(channel = %self.shared.name, app = %self.shared.app_name, period_ms = period.as_secs_f64() * 1e3, tick = self.game.step, "channel started");
        // A room's first tick journals its creation before it may sleep.
        let mut first = true;
        loop {
            // An empty room does no work at all until something arrives for it or its
            // time is up; a channel of the config ticks whatever happens.
            if let Some(deadline) = self
                .room
                .as_ref()
                .and_then(|r| r.empty_deadline)
                .filter(|_| !std::mem::take(&mut first))
            {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    () = self.shared.inbox.pushed() => {
                        let next = self.options.next_tick(Instant::now(), self.shared.index);
                        interval.reset_at(next.into());
                    }
                    () = tokio::time::sleep_until(deadline.into()) => {
                        self.dispose("it stayed empty", Instant::now());
                        return Ok(());
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = interval.tick() => {}
            }
            let started = Instant::now();
            self.step(started);
            let took = started.elapsed();
            self.shared.metrics.record_tick(took.as_micros() as u64);
            if took > period {
                self.shared.metrics.overruns.fetch_add(1, Relaxed);
                warn!(channel = %self.shared.name, took_ms = took.as_secs_f64() * 1e3, "tick overran its period");
            }
            match self.commit(&shutdown).await {
                Ok(()) => self.release(),
                Err(Stopped::Shutdown) => break,
                Err(Stopped::Failed) => {
                    return Err(crate::BackError::JournalFailed {
                        channel: self.shared.name.clone(),
                    });
                }
                Err(Stopped::Outage { limit, error }) => {
                    return Err(crate::BackError::StoreOutage {
                        channel: self.shared.name.clone(),
                        limit,
                        error,
                    });
                }
            }
            if self.game.room.as_ref().is_some_and(Room::dispose_requested) {
                self.dispose("the game asked", Instant::now());
                return Ok(());
            }
        }
        debug!(channel = %self.shared.name, "channel stopped");
        Ok(())
    }

    /// Writes this tick's record (without a store, there is nothing to wait for), and
    /// starts a snapshot when one is due.
    async fn commit(&mut self, shutdown: &centrum_net::Shutdown) -> Result<(), Stopped> {
        let Some(persist) = &mut self.persist else {
            self.entries.clear();
            return Ok(());
        };
        // A tick with entries acknowledges something: it is synced. A quiet one is
        // written and synced with the next.
        let durable = !self.entries.is_empty();
        let entries = std::mem::take(&mut self.entries);
        let (record, spare) = journal::encode_record(entries, self.patch_crc);
        self.entries = spare;
        persist
            .commit(self.game.step, record, durable, shutdown)
            .await?;
        let now = Instant::now();
        if persist.snapshot_due(now) {
            let body = self.snapshot_body();
            if let Some(persist) = &mut self.persist {
                persist.snapshot(self.game.step, body, now);
            }
        }
        Ok(())
    }

    /// The channel as a snapshot keeps it, or None when the game does not save. Copies
    /// on the tick's thread; encoding and writing happen in the background.
    fn snapshot_body(&self) -> Option<journal::SnapshotBody> {
        let started = Instant::now();
        let game = match self.game.app.save() {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) => {
                self.shared.metrics.store_errors.fetch_add(1, Relaxed);
                warn!(channel = %self.shared.name, error = %e, "the game does not save; no snapshot (the journal is kept whole)");
                return None;
            }
        };
        let body = journal::SnapshotBody {
            version: journal::BODY_VERSION,
            app: self.shared.app_name.clone(),
            step: self.game.step,
            state: self.game.state.save(),
            game,
            clients: self.game.clients.clone(),
            rng: self.game.rng.clone(),
            next_client: self.game.next_client,
            members: self.members.members(),
            room: self.game.room.clone(),
        };
        self.shared
            .metrics
            .snapshot_capture_us
            .fetch_max(started.elapsed().as_micros() as u64, Relaxed);
        Some(body)
    }

    /// Sends what the tick made, in order.
    pub(crate) fn release(&mut self) {
        for (link, frame) in self.outgoing.drain(..) {
            link.send(frame);
        }
    }

    /// One tick, synchronous: nothing here awaits, so a slow front cannot stall it.
    /// What it sends waits in `outgoing` for [`Channel::release`].
    pub(crate) fn step(&mut self, now: Instant) {
        if !self.restored.is_empty() {
            let restored = std::mem::take(&mut self.restored);
            self.members.restore(restored, now);
        }
        self.game.begin_tick();
        self.evict_oversized();
        let spare = std::mem::take(&mut self.events);
        let mut events = self.shared.inbox.take(spare);
        for event in events.drain(..) {
            self.handle(event, now);
        }
        self.events = events;
        self.members.expire(now, &mut self.effects);
        self.apply_effects();

        if let Err(e) = self.game.run_tick() {
            self.app_error("tick", &e);
        }

        // The order clients see: this tick's patch, the full states of its joiners,
        // then the messages the game sent during it, then the answers to calls.
        self.send_patch();
        self.send_states();
        self.send_messages();
        self.send_replies();
        if !self.snapshots.is_empty() {
            let body = self.full_state();
            for reply in self.snapshots.drain(..) {
                let _ = reply.send((self.game.tick(), body.clone()));
            }
        }
        self.room_after_tick(now);
        let m = &self.shared.metrics;
        m.tick.store(u64::from(self.game.tick().0), Relaxed);
        m.entities.store(self.game.state.len() as u64, Relaxed);
        m.clients.store(self.members.live_count() as u64, Relaxed);
        m.held.store(self.members.held_count() as u64, Relaxed);
    }

    fn handle(&mut self, event: Event, now: Instant) {
        let out = &mut self.effects;
        match event {
            Event::Attach {
                link,
                instance,
                sessions,
            } => {
                if self.room.is_some() {
                    let opened = BackToFront::Opened(LinkOpened {
                        channel: self.shared.index,
                        name: self.shared.name.clone(),
                    });
                    self.outgoing
                        .push((link.clone(), Bytes::from(encode(&opened))));
                } else {
                    info!(channel = %self.shared.name, front = %link.front(), "front attached");
                }
                self.members.attach(link, instance, sessions, now, out);
            }
            Event::Detach { link } => {
                self.members.detach(&link, now, out);
                info!(channel = %self.shared.name, front = %link.front(), "front detached; keeping its sessions for the grace period");
            }
            Event::Join {
                link,
                session,
                data,
                secret,
                resume,
                identity,
                seat,
            } => {
                let seat = Admission::Seat(seat.as_deref());
                return self.join(
                    &link,
                    session,
                    data,
                    secret,
                    resume.as_ref(),
                    identity,
                    seat,
                );
            }
            Event::Leave { link, session } => self.members.leave(&link, session, out),
            Event::Away { link, session } => self.members.away(&link, session, now, out),
            Event::Input {
                link,
                session,
                seq,
                data,
            } => return self.input(&link, session, seq, data),
            Event::Resync { link, sessions } => self.members.resync(&link, sessions),
            Event::Call { link, call, data } => return self.call(link, call, data),
            Event::Snapshot { reply } => self.snapshots.push(reply),
        }
        self.apply_effects();
    }

    /// Carries out what membership decided, in order.
    fn apply_effects(&mut self) {
        let mut effects = std::mem::take(&mut self.effects);
        for effect in effects.drain(..) {
            match effect {
                Effect::Leave { client, expired } => {
                    let m = &self.shared.metrics;
                    m.leaves.fetch_add(1, Relaxed);
                    if expired {
                        m.resumes_expired.fetch_add(1, Relaxed);
                    }
                    if let Applied::Leave(Err(e)) = self.play(Entry::Leave { client }) {
                        self.app_error("leave", &e);
                    }
                }
                Effect::Connect(client) => {
                    self.play(Entry::Connect { client });
                }
                Effect::Disconnect(client) => {
                    self.play(Entry::Disconnect { client });
                }
                Effect::Rejoin(link, listed) => {
                    let LinkSession {
                        session,
                        data,
                        secret,
                        identity,
                        ..
                    } = listed;
                    // A relinked front's session was admitted before: no seat again.
                    let again = Admission::Relisted;
                    self.join(&link, session, data, secret, None, identity, again);
                }
                Effect::Send(link, frame) => self.outgoing.push((link, frame)),
                Effect::Close(link) => link.close(),
            }
        }
        if self.effects.is_empty() {
            self.effects = effects;
        }
    }

    /// Applies `entry` through the game and keeps it for the tick's record.
    fn play(&mut self, entry: Entry) -> Applied {
        let applied = self.game.apply(&entry);
        self.entries.push(entry);
        applied
    }

    /// An error of the game's `tick` or `leave`: counted, and logged now and then.
    fn app_error(&mut self, during: &str, e: &AppError) {
        self.shared.metrics.app_errors.fetch_add(1, Relaxed);
        if self
            .app_error_logged
            .is_none_or(|t| t.elapsed() >= APP_ERROR_LOG_EVERY)
        {
            self.app_error_logged = Some(Instant::now());
            warn!(channel = %self.shared.name, app = %self.shared.app_name, during, error = %e, "the game returned an error (counted in centrum_back_app_errors_total; logged at most every 10 s)");
        }
    }

    #[allow(clippy::too_many_arguments)]
    /// A join: `admission` is what a new member must show besides what the game asks.
    fn join(
        &mut self,
        link: &LinkHandle,
        session: SessionKey,
        data: Bytes,
        secret: u64,
        resume: Option<&LinkResume>,
        identity: Option<Identity>,
        admission: Admission<'_>,
    ) {
        // A resume is the same player going on: only for the same subject (or an
        // anonymous client for an anonymous one); a resume token is no proof of who
        // the client is.
        let subject = identity.as_ref().map(|i| i.subject.as_str());
        let clients = &self.game.clients;
        let same_subject = |client| clients.identity(client).map(|i| i.subject.as_str()) == subject;
        let start = self.members.begin_join(
            link,
            session,
            secret,
            resume,
            same_subject,
            &mut self.effects,
        );
        // A new member of a room needs a good seat and a free place.
        let mut seat_number = None;
        if matches!(start, JoinStart::New { .. })
            && let Admission::Seat(token) = admission
        {
            match self.admit_seat(token) {
                Ok(number) => seat_number = number,
                Err(reason) => {
                    self.shared.metrics.joins_rejected.fetch_add(1, Relaxed);
                    self.reject(link, session, reason);
                    self.apply_effects();
                    return;
                }
            }
        }
        match start {
            JoinStart::Stale | JoinStart::Already => {}
            JoinStart::Resumed { client, seat } => {
                // The same player as before, with its ack: the game sees no leave and
                // no join, and the client gets a full state like any joiner.
                self.shared.metrics.resumes.fetch_add(1, Relaxed);
                self.play(Entry::Resume { client, seat });
            }
            JoinStart::New { .. } if !self.fits(data.len()) => {
                self.shared.metrics.joins_too_large.fetch_add(1, Relaxed);
                self.shared.metrics.joins_rejected.fetch_add(1, Relaxed);
                let reason = format!(
                    "channel {:?} is full: its state would not fit the cluster's {} byte frames",
                    self.shared.name, self.options.max_frame_bytes
                );
                self.reject(link, session, reason);
            }
            JoinStart::New { seat } => {
                self.full_len += data.len() + JOIN_GROWTH;
                let client = self.game.new_client();
                let joined = self.play(Entry::Join {
                    client,
                    data,
                    seat: seat.clone(),
                    identity,
                });
                match joined {
                    Applied::Join(Ok(())) => {
                        self.shared.metrics.joins.fetch_add(1, Relaxed);
                        self.members.admit(seat, client, &mut self.effects);
                        if let (Some(run), Some((number, expires))) = (&mut self.room, seat_number)
                        {
                            run.used.insert(number, expires);
                            run.taken.push(number);
                        }
                    }
                    Applied::Join(Err(rejection)) => {
                        self.shared.metrics.joins_rejected.fetch_add(1, Relaxed);
                        self.reject(link, session, rejection.message().to_owned());
                    }
                    other => unreachable!("a join entry is applied as a join, not {other:?}"),
                }
            }
        }
        self.apply_effects();
    }

    fn reject(&mut self, link: &LinkHandle, session: SessionKey, reason: String) {
        let msg = BackToFront::JoinRejected(LinkJoinRejected {
            session,
            channel: self.shared.name.clone(),
            reason,
        });
        self.outgoing
            .push((link.clone(), Bytes::from(encode(&msg))));
    }

    /// For a room, checks a new member's seat token and that the room has a place:
    /// `Ok(Some((seat number, expiry)))` to take once the game lets it in; `Ok(None)`
    /// for a channel of the config, which needs no seat.
    ///
    /// # Errors
    /// The rejection's reason, starting with its code (PROTOCOL.md, rooms).
    fn admit_seat(&mut self, token: Option<&str>) -> Result<Option<(u64, u64)>, String> {
        let members = (self.members.live_count() + self.members.held_count()) as u32;
        let Some(run) = &mut self.room else {
            return Ok(None);
        };
        let refused = |run: &RoomRun, reason: String| {
            run.rooms.metrics.seats_refused.fetch_add(1, Relaxed);
            Err(reason)
        };
        let now_ms = unix_ms();
        let Some(token) = token else {
            return refused(run, SeatError::Required.to_string());
        };
        let seat = match Seat::check(&run.rooms.key, token, &run.shared.id, now_ms) {
            Ok(seat) => seat,
            Err(e) => return refused(run, e.to_string()),
        };
        run.used.retain(|_, expires| *expires > now_ms);
        if run.used.contains_key(&seat.number) {
            return refused(run, SeatError::Used.to_string());
        }
        if members >= run.shared.max_clients {
            let reason = format!(
                "room_full: room {} has its {} clients",
                run.shared.id, run.shared.max_clients
            );
            return refused(run, reason);
        }
        Ok(Some((seat.number, seat.expires_ms)))
    }

    /// After a room's tick: what the matchmaker should hear, and whether it is empty.
    fn room_after_tick(&mut self, now: Instant) {
        let members = (self.members.live_count() + self.members.held_count()) as u32;
        let (Some(run), Some(room)) = (&mut self.room, &mut self.game.room) else {
            return;
        };
        let changed = room.take_changed();
        if changed || members != run.clients || !run.taken.is_empty() {
            run.clients = members;
            run.shared.update(members, room, &mut run.taken);
        }
        if members > 0 {
            run.empty_deadline = None;
        } else if run.empty_deadline.is_none() {
            run.empty_deadline = Some(now + run.shared.empty_dispose);
        }
    }

    /// The room ends: the game hears it, its last messages leave, every front is told
    /// (its members there get `Left`), and the back forgets it.
    fn dispose(&mut self, reason: &str, now: Instant) {
        if let Applied::Room(Err(e)) = self.play(Entry::Dispose) {
            self.app_error("dispose", &e);
        }
        self.send_messages();
        self.entries.clear();
        // Nothing more is journaled; what was kept of the room goes, then the room
        // leaves the directory, so that nothing new finds it. What arrived meanwhile
        // is answered, not dropped: a join is rejected, a call fails; inputs and
        // leaves of a gone room need no answer.
        self.persist = None;
        if let Some((store, _)) = self.room.as_ref().and_then(|r| r.rooms.store())
            && let Err(e) = store.remove(&self.shared.name)
        {
            self.shared.metrics.store_errors.fetch_add(1, Relaxed);
            warn!(room = %self.shared.name, error = %e, "what was kept of a disposed room could not be removed");
        }
        if let Some(run) = &self.room {
            run.rooms.disposed(&run.shared, self.shared.index, now);
        }
        for event in self.shared.inbox.close() {
            match event {
                Event::Join { link, session, .. } => {
                    let reason = format!("no_such_room: room {} was disposed of", self.shared.name);
                    self.reject(&link, session, reason);
                }
                Event::Call { link, call, .. } => {
                    let message = format!("room {} was disposed of", self.shared.name);
                    self.replies
                        .push((link, reply_failed(call, CallOutcome::Failed, message)));
                }
                Event::Snapshot { .. } | Event::Attach { .. } | Event::Detach { .. } => {}
                Event::Leave { .. } | Event::Away { .. } | Event::Input { .. } => {}
                Event::Resync { .. } => {}
            }
        }
        self.send_replies();
        self.release();
        // Clients hear only that the room is gone; the log says why.
        let closed = Bytes::from(encode(&BackToFront::Closed(LinkClosed {
            channel: self.shared.index,
            reason: "disposed".to_owned(),
        })));
        for link in self.members.links() {
            link.send(closed.clone());
        }
        info!(room = %self.shared.name, reason, "room disposed of");
    }

    /// Whether the full state, grown by a join with `data_len` bytes of data, would
    /// still fit a link frame. The state is measured (encoded) only when the estimate
    /// says it might not, so a channel far from the limit pays nothing.
    fn fits(&mut self, data_len: usize) -> bool {
        let limit = self
            .options
            .max_frame_bytes
            .saturating_sub(STATE_FRAME_OVERHEAD);
        let grown = |full: usize| full + data_len + JOIN_GROWTH <= limit;
        if grown(self.full_len) {
            return true;
        }
        self.full_len = self.full_state().len();
        grown(self.full_len)
    }

    /// Sessions whose full state could not be sent leave, told why: the channel's state
    /// has outgrown the cluster's frames. Done first in a tick, so that the leaves are
    /// journaled and replayed like any other.
    fn evict_oversized(&mut self) {
        for (link, session) in std::mem::take(&mut self.oversized) {
            if self.members.member(&link, session).is_none() {
                continue;
            }
            self.members.leave(&link, session, &mut self.effects);
            let msg = BackToFront::Evicted(LinkEvicted {
                session,
                channel: self.shared.index,
                reason: format!(
                    "channel {:?} has outgrown the cluster's {} byte frames",
                    self.shared.name, self.options.max_frame_bytes
                ),
            });
            self.outgoing.push((link, Bytes::from(encode(&msg))));
        }
        self.apply_effects();
    }

    fn input(&mut self, link: &LinkHandle, session: SessionKey, seq: Seq, data: Bytes) {
        let Some((client, ack)) = self.members.member(link, session) else {
            // Inputs of clients that left are dropped, as the workload specifies.
            self.shared
                .metrics
                .inputs_dropped_left
                .fetch_add(1, Relaxed);
            return;
        };
        if !seq.may_follow(ack) {
            // A repeated or older seq would move the ack backwards; 0 is never a seq.
            self.shared.metrics.inputs_bad_seq.fetch_add(1, Relaxed);
            let message = format!(
                "input {seq} dropped: channel {:?} already applied input {ack}; a seq must come after the last one applied and is never 0",
                self.shared.name
            );
            self.notice(link, session, "bad_seq", message);
            return;
        }
        let applied = self.play(Entry::Input { client, seq, data });
        self.shared.metrics.inputs.fetch_add(1, Relaxed);
        self.members.acked(link, session, seq);
        if let Applied::Input(Err(e)) = applied {
            self.shared.metrics.inputs_refused.fetch_add(1, Relaxed);
            self.notice(link, session, "input_refused", e.message().to_owned());
        }
    }

    fn notice(&mut self, link: &LinkHandle, session: SessionKey, code: &str, message: String) {
        let notice = BackToFront::Notice(LinkNotice {
            session,
            code: code.into(),
            message,
        });
        self.outgoing
            .push((link.clone(), Bytes::from(encode(&notice))));
    }

    /// A call from outside the game; its reply leaves after this tick's patch.
    fn call(&mut self, link: LinkHandle, call: u64, data: Bytes) {
        self.shared.metrics.calls.fetch_add(1, Relaxed);
        let limit = self.options.max_game_message_bytes;
        let Applied::Call(result) = self.play(Entry::Call { data }) else {
            unreachable!("a call entry is applied as a call")
        };
        let result = result.and_then(|reply| match reply.len() {
            // A reply travels in one link frame, like a message.
            size if size > limit => Err(CallFailure::Failed(format!(
                "the reply of {size} bytes is over the limit of {limit} bytes"
            ))),
            _ => Ok(reply),
        });
        let reply = match result {
            Ok(reply) => reply_ok(call, reply),
            Err(failure) => {
                self.shared.metrics.calls_failed.fetch_add(1, Relaxed);
                let outcome = match failure {
                    CallFailure::BadCall(_) => CallOutcome::BadCall,
                    CallFailure::NoCalls => CallOutcome::NoCalls,
                    CallFailure::Refused(_) => CallOutcome::Refused,
                    CallFailure::Failed(_) => CallOutcome::Failed,
                };
                reply_failed(call, outcome, failure.to_string())
            }
        };
        self.replies.push((link, reply));
    }
}

/// The game's reply to call number `call`.
pub(crate) fn reply_ok(call: u64, data: Vec<u8>) -> LinkReply {
    LinkReply {
        call,
        outcome: CallOutcome::Ok,
        message: String::new(),
        data: Bytes::from(data),
    }
}

/// Call number `call` got no reply from the game: `outcome` says why (PROTOCOL.md §14).
pub(crate) fn reply_failed(call: u64, outcome: CallOutcome, message: String) -> LinkReply {
    LinkReply {
        call,
        outcome,
        message,
        data: Bytes::new(),
    }
}
