//! One channel's tick loop: take the inbox, apply joins, leaves, inputs and calls in
//! arrival order through the hosted game, run its tick, then hand everything the
//! tick produced to `fanout` (one patch, shared full states, messages, replies).
//! Memberships live here too: which front holds which client, and the ones held for
//! a resume.

mod fanout;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use centrum_app::{AppError, CallFailure, ClientId, Clients, Ctx, DynApp, Outbox};
use centrum_protocol::{
    BackToFront, CallOutcome, ChannelIndex, LinkEvicted, LinkJoinRejected, LinkNotice, LinkReply,
    LinkResume, LinkSession, Seq, SessionKey, State, Tick, encode,
};

use crate::inbox::{Event, Inbox};
use crate::link::LinkHandle;
use crate::metrics::ChannelMetrics;

/// What the rest of the back shares with a channel's task.
#[derive(Debug)]
pub(crate) struct ChannelShared {
    pub(crate) name: String,
    pub(crate) app_name: String,
    pub(crate) index: ChannelIndex,
    pub(crate) inbox: Inbox,
    pub(crate) metrics: ChannelMetrics,
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
}

/// The task-owned side of a channel.
pub(crate) struct Channel {
    shared: Arc<ChannelShared>,
    app: Box<dyn DynApp>,
    state: State,
    tick: Tick,
    options: ChannelOptions,
    /// Keyed by front id: a front's sessions outlive one link, for `link_grace`.
    fronts: HashMap<Arc<str>, FrontSessions>,
    /// Memberships of clients whose connection closed, by the front and key they had,
    /// kept for `resume_grace` so that the client can resume them on any front.
    held: HashMap<(Arc<str>, SessionKey), Held>,
    /// Where each client with a session is: the way a message to it goes.
    routes: HashMap<ClientId, Route>,
    /// The clients as the game sees them (held ones included, not connected).
    clients: Clients,
    /// Messages the game sent during this tick.
    outbox: Outbox,
    /// Answers to this tick's calls, sent after its patch.
    replies: Vec<(LinkHandle, LinkReply)>,
    next_client: u64,
    /// The last time an error of the game was logged; errors are counted always,
    /// logged at most once per [`APP_ERROR_LOG_EVERY`].
    app_error_logged: Option<Instant>,
    /// Reused buffers, so that a steady tick allocates only its patch.
    events: Vec<Event>,
}

/// A game that fails every tick is logged this often, not every tick.
const APP_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

struct FrontSessions {
    /// The front's current link; None while it is away.
    link: Option<LinkHandle>,
    away_since: Option<Instant>,
    sessions: HashMap<SessionKey, Session>,
    /// Sessions that need a full state after this tick (joined, resync, relinked).
    want_state: Vec<SessionKey>,
    /// The link is new: its first frame for this channel is a full state, even when
    /// the front has no session here.
    just_attached: bool,
    /// Sessions that resumed elsewhere while this front was away: if it relinks
    /// still listing one (a half-open client connection), that one is evicted, not
    /// joined again.
    moved: Vec<SessionKey>,
}

struct Session {
    client: ClientId,
    ack: Seq,
    ack_moved: bool,
    /// What a resume of this membership must present.
    secret: u64,
}

struct Held {
    session: Session,
    since: Instant,
}

#[derive(Clone)]
struct Route {
    front: Arc<str>,
    session: SessionKey,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.shared.name)
            .field("tick", &self.tick)
            .finish_non_exhaustive()
    }
}

impl Channel {
    pub(crate) fn new(
        shared: Arc<ChannelShared>,
        app: Box<dyn DynApp>,
        options: ChannelOptions,
    ) -> Self {
        let state = State::new(app.schema());
        Self {
            shared,
            app,
            state,
            tick: Tick(0),
            options,
            fronts: HashMap::new(),
            held: HashMap::new(),
            routes: HashMap::new(),
            clients: Clients::new(),
            outbox: Outbox::new(options.max_game_message_bytes, options.max_game_messages),
            replies: Vec::new(),
            next_client: 1,
            app_error_logged: None,
            events: Vec::new(),
        }
    }

    /// Ticks every period until `shutdown`. A tick that overruns is counted and the
    /// schedule skips ahead rather than bursting to catch up.
    pub(crate) async fn run(mut self, shutdown: centrum_net::Shutdown) {
        let period = self.options.period;
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        info!(channel = %self.shared.name, app = %self.shared.app_name, period_ms = period.as_secs_f64() * 1e3, "channel started");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = interval.tick() => {}
            }
            let started = Instant::now();
            self.step();
            let took = started.elapsed();
            self.shared.metrics.record_tick(took.as_micros() as u64);
            if took > period {
                self.shared.metrics.overruns.fetch_add(1, Relaxed);
                warn!(channel = %self.shared.name, took_ms = took.as_secs_f64() * 1e3, "tick overran its period");
            }
        }
        debug!(channel = %self.shared.name, "channel stopped");
    }

    /// One tick, synchronous: nothing here awaits, so a slow front cannot stall it.
    pub(crate) fn step(&mut self) {
        self.tick = self.tick.next();
        let spare = std::mem::take(&mut self.events);
        let mut events = self.shared.inbox.take(spare);
        let mut snapshots = Vec::new();
        for event in events.drain(..) {
            match event {
                Event::Attach { link, sessions } => self.attach(link, sessions),
                Event::Detach { link } => self.detach(&link),
                Event::Join {
                    link,
                    session,
                    data,
                    secret,
                    resume,
                } => self.join(&link, session, data, secret, resume),
                Event::Leave { link, session } => self.leave(&link, session),
                Event::Away { link, session } => self.away(&link, session),
                Event::Input {
                    link,
                    session,
                    seq,
                    data,
                } => self.input(&link, session, seq, &data),
                Event::Resync { link, sessions } => {
                    if let Some(front) = self.current(&link) {
                        front.want_state.extend(
                            sessions
                                .into_iter()
                                .filter(|s| front.sessions.contains_key(s)),
                        );
                    }
                }
                Event::Call { link, call, data } => self.call(link, call, &data),
                Event::Snapshot { reply } => snapshots.push(reply),
            }
        }
        self.events = events;
        self.expire_away_fronts();
        self.expire_held();

        if let Err(e) = self.with_app(|app, ctx| app.tick(ctx)) {
            self.app_error("tick", &e);
        }

        // The order clients see: this tick's patch, the full states of its joiners,
        // then the messages the game sent during it.
        self.send_patch();
        self.send_states();
        self.send_messages();
        self.send_replies();
        if !snapshots.is_empty() {
            let body = self.full_state();
            for reply in snapshots {
                let _ = reply.send((self.tick, body.clone()));
            }
        }
        let m = &self.shared.metrics;
        m.tick.store(u64::from(self.tick.0), Relaxed);
        m.entities.store(self.state.len() as u64, Relaxed);
        m.clients.store(
            self.fronts.values().map(|f| f.sessions.len() as u64).sum(),
            Relaxed,
        );
        m.held.store(self.held.len() as u64, Relaxed);
    }

    /// Calls the game with a context over this channel's state, clients and outbox.
    fn with_app<R>(&mut self, call: impl FnOnce(&mut dyn DynApp, &mut Ctx<'_>) -> R) -> R {
        let mut ctx = Ctx::new(
            &mut self.state,
            &self.shared.name,
            self.tick,
            self.options.period,
            &self.clients,
            &mut self.outbox,
        );
        call(self.app.as_mut(), &mut ctx)
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

    /// The entry of the front that owns `link`, if `link` is still its current link.
    /// Events from a replaced link are stale and ignored.
    fn current(&mut self, link: &LinkHandle) -> Option<&mut FrontSessions> {
        self.fronts
            .get_mut(link.front())
            .filter(|f| f.link.as_ref().is_some_and(|l| l.id() == link.id()))
    }

    fn attach(&mut self, link: LinkHandle, listed: Vec<LinkSession>) {
        let front = self
            .fronts
            .entry(link.front_arc())
            .or_insert_with(|| FrontSessions {
                link: None,
                away_since: None,
                sessions: HashMap::new(),
                want_state: Vec::new(),
                just_attached: false,
                moved: Vec::new(),
            });
        // A newer link from the same front supersedes the old one (a restarted front,
        // or a half-open connection): close the old link rather than leave it open
        // and silently ignored.
        if let Some(old) = front
            .link
            .replace(link.clone())
            .filter(|old| old.id() != link.id())
        {
            old.close();
        }
        front.just_attached = true;
        front.away_since = None;
        let moved = std::mem::take(&mut front.moved);
        let listed_keys: std::collections::HashSet<SessionKey> =
            listed.iter().map(|s| s.session).collect();
        let gone: Vec<SessionKey> = front
            .sessions
            .keys()
            .filter(|s| !listed_keys.contains(s))
            .copied()
            .collect();
        for session in gone {
            self.remove_session(link.front(), session);
        }
        for listed in listed {
            let session = listed.session;
            let known = self
                .fronts
                .get(link.front())
                .and_then(|f| f.sessions.get(&session))
                .map(|s| s.client);
            if moved.contains(&session) {
                self.evict(&link, session);
            } else if let Some(client) = known {
                self.clients.connect(client);
                if let Some(f) = self.fronts.get_mut(link.front()) {
                    f.want_state.push(session);
                }
            } else {
                // The back lost this session (it restarted, or the grace ran out): join again.
                self.join(&link, session, listed.data, listed.secret, None);
            }
        }
        info!(channel = %self.shared.name, front = %link.front(), "front attached");
    }

    fn detach(&mut self, link: &LinkHandle) {
        let Some(front) = self.current(link) else {
            return;
        };
        front.link = None;
        front.away_since = Some(Instant::now());
        front.want_state.clear();
        let clients: Vec<ClientId> = front.sessions.values().map(|s| s.client).collect();
        for client in clients {
            self.clients.disconnect(client);
        }
        info!(channel = %self.shared.name, front = %link.front(), "front detached; keeping its sessions for the grace period");
    }

    fn expire_away_fronts(&mut self) {
        let grace = self.options.link_grace;
        let expired: Vec<Arc<str>> = self
            .fronts
            .iter()
            .filter(|(_, f)| f.away_since.is_some_and(|t| t.elapsed() >= grace))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            let sessions: Vec<SessionKey> = self.fronts[&id].sessions.keys().copied().collect();
            info!(channel = %self.shared.name, front = %id, sessions = sessions.len(), "front did not return; its clients leave");
            for s in sessions {
                self.remove_session(&id, s);
            }
            self.fronts.remove(&id);
        }
    }

    /// Memberships held for clients that never resumed leave, as if they had left.
    fn expire_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let grace = self.options.resume_grace;
        let expired: Vec<(Arc<str>, SessionKey)> = self
            .held
            .iter()
            .filter(|(_, h)| h.since.elapsed() >= grace)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            if let Some(held) = self.held.remove(&key) {
                self.shared.metrics.resumes_expired.fetch_add(1, Relaxed);
                self.app_leave(held.session.client);
            }
        }
    }

    /// Records a membership: the session on its front, the route for messages, and
    /// the client as connected for the game.
    fn insert_session(&mut self, front: &Arc<str>, key: SessionKey, session: Session) {
        let client = session.client;
        if let Some(f) = self.fronts.get_mut(front) {
            f.sessions.insert(key, session);
            f.want_state.push(key);
        }
        self.routes.insert(
            client,
            Route {
                front: front.clone(),
                session: key,
            },
        );
        self.clients.connect(client);
    }

    fn join(
        &mut self,
        link: &LinkHandle,
        session: SessionKey,
        data: Bytes,
        secret: u64,
        resume: Option<LinkResume>,
    ) {
        let Some(front) = self.current(link) else {
            return;
        };
        if front.sessions.contains_key(&session) {
            front.want_state.push(session);
            return;
        }
        let front_id = link.front_arc();
        if let Some(restored) = resume.and_then(|claim| self.take_resumable(&claim)) {
            // The same player as before, with its ack: the game sees no leave and no
            // join, and the client gets a full state like any joiner.
            self.shared.metrics.resumes.fetch_add(1, Relaxed);
            let session_state = Session {
                secret,
                ack_moved: false,
                ..restored
            };
            self.insert_session(&front_id, session, session_state);
            return;
        }
        let client = ClientId(self.next_client);
        self.next_client += 1;
        // In the channel during its own join, so that the game can already message it;
        // what it sends arrives after the joiner's first state.
        self.clients.connect(client);
        self.routes.insert(
            client,
            Route {
                front: front_id.clone(),
                session,
            },
        );
        match self.with_app(|app, ctx| app.join(ctx, client, &data)) {
            Ok(()) => {
                self.shared.metrics.joins.fetch_add(1, Relaxed);
                let joined = Session {
                    client,
                    ack: Seq::NONE,
                    ack_moved: false,
                    secret,
                };
                self.insert_session(&front_id, session, joined);
            }
            Err(rejection) => {
                self.clients.remove(client);
                self.routes.remove(&client);
                self.shared.metrics.joins_rejected.fetch_add(1, Relaxed);
                let msg = BackToFront::JoinRejected(LinkJoinRejected {
                    session,
                    channel: self.shared.index,
                    reason: rejection.message().to_owned(),
                });
                link.send(Bytes::from(encode(&msg)));
            }
        }
    }

    /// Takes the membership a resuming client claims, if this channel still has it
    /// (held after a disconnect, or still with its old front) and the secret matches.
    /// A claim that does not match is an ordinary join: telling why would help
    /// someone guessing secrets.
    fn take_resumable(&mut self, claim: &LinkResume) -> Option<Session> {
        // A zero secret is what a front sends when it had no random source.
        if claim.secret == 0 {
            return None;
        }
        let key: (Arc<str>, SessionKey) = (Arc::from(claim.front.as_str()), claim.session);
        if self
            .held
            .get(&key)
            .is_some_and(|h| h.session.secret == claim.secret)
        {
            return self.held.remove(&key).map(|h| h.session);
        }
        let front = self.fronts.get_mut(claim.front.as_str())?;
        if front
            .sessions
            .get(&claim.session)
            .is_none_or(|s| s.secret != claim.secret)
        {
            return None;
        }
        let session = front.sessions.remove(&claim.session)?;
        // The old connection may still be open (or half-open): its front is told that
        // the membership moved, now or when it relinks.
        match front.link.clone() {
            Some(link) => self.evict(&link, claim.session),
            None => front.moved.push(claim.session),
        }
        Some(session)
    }

    /// Tells a front that its session is no longer in this channel.
    fn evict(&self, link: &LinkHandle, session: SessionKey) {
        let msg = BackToFront::Evicted(LinkEvicted {
            session,
            channel: self.shared.index,
            reason: "the session resumed on another connection".into(),
        });
        link.send(Bytes::from(encode(&msg)));
    }

    fn leave(&mut self, link: &LinkHandle, session: SessionKey) {
        if self.current(link).is_some() {
            self.remove_session(link.front(), session);
        }
    }

    /// The client's connection closed without a leave: its membership is held for a
    /// resume, or leaves at once when resuming is off.
    fn away(&mut self, link: &LinkHandle, session: SessionKey) {
        if self.options.resume_grace.is_zero() {
            return self.leave(link, session);
        }
        let Some(held) = self.current(link).and_then(|f| f.sessions.remove(&session)) else {
            return;
        };
        self.routes.remove(&held.client);
        self.clients.disconnect(held.client);
        let earlier = self.held.insert(
            (link.front_arc(), session),
            Held {
                session: held,
                since: Instant::now(),
            },
        );
        // A restarted front numbers its sessions from 1 again, so its key can name a
        // membership still held from before: that one can no longer be claimed (its
        // key now means another session), so it leaves.
        if let Some(earlier) = earlier {
            self.shared.metrics.resumes_expired.fetch_add(1, Relaxed);
            self.app_leave(earlier.session.client);
        }
    }

    fn remove_session(&mut self, front: &str, session: SessionKey) {
        let Some(s) = self
            .fronts
            .get_mut(front)
            .and_then(|f| f.sessions.remove(&session))
        else {
            return;
        };
        self.routes.remove(&s.client);
        self.app_leave(s.client);
    }

    fn app_leave(&mut self, client: ClientId) {
        self.shared.metrics.leaves.fetch_add(1, Relaxed);
        self.clients.remove(client);
        if let Err(e) = self.with_app(|app, ctx| app.leave(ctx, client)) {
            self.app_error("leave", &e);
        }
    }

    fn input(&mut self, link: &LinkHandle, session: SessionKey, seq: Seq, data: &Bytes) {
        let Some((client, ack)) = self
            .current(link)
            .and_then(|f| f.sessions.get(&session))
            .map(|s| (s.client, s.ack))
        else {
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
        let result = self.with_app(|app, ctx| app.input(ctx, client, seq, data));
        self.shared.metrics.inputs.fetch_add(1, Relaxed);
        if let Some(s) = self
            .current(link)
            .and_then(|f| f.sessions.get_mut(&session))
        {
            s.ack = seq;
            s.ack_moved = true;
        }
        if let Err(e) = result {
            self.shared.metrics.inputs_refused.fetch_add(1, Relaxed);
            self.notice(link, session, "input_refused", e.message().to_owned());
        }
    }

    fn notice(&self, link: &LinkHandle, session: SessionKey, code: &str, message: String) {
        let notice = BackToFront::Notice(LinkNotice {
            session,
            code: code.into(),
            message,
        });
        link.send(Bytes::from(encode(&notice)));
    }

    /// A call from outside the game; its reply leaves after this tick's patch.
    fn call(&mut self, link: LinkHandle, call: u64, data: &Bytes) {
        self.shared.metrics.calls.fetch_add(1, Relaxed);
        let limit = self.options.max_game_message_bytes;
        let result = self
            .with_app(|app, ctx| app.call(ctx, data))
            .and_then(|reply| match reply.len() {
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
