//! One channel's tick loop: take the inbox, apply joins, leaves and inputs in arrival
//! order, run the application's tick, encode ONE patch and send the same bytes to
//! every front that has clients here, then answer joiners with one shared full state.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use centrum_protocol::{
    BackToFront, ChannelIndex, LinkEvicted, LinkJoinRejected, LinkNotice, LinkPatch, LinkResume,
    LinkSession, LinkState, Seq, SessionKey, State, Tick, encode,
};

use crate::inbox::{Event, Inbox};
use crate::link::LinkHandle;
use crate::metrics::ChannelMetrics;
use crate::{App, ClientId, Ctx};

/// What the rest of the back shares with a channel's task.
#[derive(Debug)]
pub(crate) struct ChannelShared {
    pub(crate) name: String,
    pub(crate) app_name: String,
    pub(crate) index: ChannelIndex,
    pub(crate) inbox: Inbox,
    pub(crate) metrics: ChannelMetrics,
}

/// The task-owned side of a channel.
pub(crate) struct Channel {
    shared: Arc<ChannelShared>,
    app: Box<dyn App>,
    state: State,
    tick: Tick,
    period: Duration,
    link_grace: Duration,
    resume_grace: Duration,
    /// Keyed by front id: a front's sessions outlive one link, for `link_grace`.
    fronts: HashMap<Arc<str>, FrontSessions>,
    /// Memberships of clients whose connection closed, by the front and key they had,
    /// kept for `resume_grace` so that the client can resume them on any front.
    held: HashMap<(Arc<str>, SessionKey), Held>,
    next_client: u64,
    /// Reused buffers, so that a steady tick allocates only its patch.
    events: Vec<Event>,
}

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
        app: Box<dyn App>,
        period: Duration,
        link_grace: Duration,
        resume_grace: Duration,
    ) -> Self {
        let state = State::new(app.schema());
        Self {
            shared,
            app,
            state,
            tick: Tick(0),
            period,
            link_grace,
            resume_grace,
            fronts: HashMap::new(),
            held: HashMap::new(),
            next_client: 1,
            events: Vec::new(),
        }
    }

    /// Ticks every period until `shutdown`. A tick that overruns is counted and the
    /// schedule skips ahead rather than bursting to catch up.
    pub(crate) async fn run(mut self, shutdown: centrum_net::Shutdown) {
        let mut interval = tokio::time::interval(self.period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        info!(channel = %self.shared.name, app = %self.shared.app_name, period_ms = self.period.as_secs_f64() * 1e3, "channel started");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = interval.tick() => {}
            }
            let started = Instant::now();
            self.step();
            let took = started.elapsed();
            self.shared.metrics.record_tick(took.as_micros() as u64);
            if took > self.period {
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
                Event::Snapshot { reply } => snapshots.push(reply),
            }
        }
        self.events = events;
        self.expire_away_fronts();
        self.expire_held();

        let mut ctx = Ctx {
            state: &mut self.state,
            tick: self.tick,
            period: self.period,
        };
        self.app.tick(&mut ctx);

        self.send_patch();
        self.send_states();
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
                .is_some_and(|f| f.sessions.contains_key(&session));
            if moved.contains(&session) {
                self.evict(&link, session);
            } else if !known {
                // The back lost this session (it restarted, or the grace ran out): join again.
                self.join(&link, session, listed.data, listed.secret, None);
            } else if let Some(f) = self.fronts.get_mut(link.front()) {
                f.want_state.push(session);
            }
        }
        info!(channel = %self.shared.name, front = %link.front(), "front attached");
    }

    fn detach(&mut self, link: &LinkHandle) {
        if let Some(front) = self.current(link) {
            front.link = None;
            front.away_since = Some(Instant::now());
            front.want_state.clear();
            info!(channel = %self.shared.name, front = %link.front(), "front detached; keeping its sessions for the grace period");
        }
    }

    fn expire_away_fronts(&mut self) {
        let grace = self.link_grace;
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
        let grace = self.resume_grace;
        if self.held.is_empty() {
            return;
        }
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

    fn join(
        &mut self,
        link: &LinkHandle,
        session: SessionKey,
        data: Bytes,
        secret: u64,
        resume: Option<LinkResume>,
    ) {
        if self.current(link).is_none() {
            return;
        }
        if self
            .current(link)
            .is_some_and(|f| f.sessions.contains_key(&session))
        {
            if let Some(f) = self.current(link) {
                f.want_state.push(session);
            }
            return;
        }
        if let Some(restored) = resume.and_then(|claim| self.take_resumable(&claim)) {
            // The same player as before, with its ack: the application sees no leave
            // and no join, and the client gets a full state like any joiner.
            self.shared.metrics.resumes.fetch_add(1, Relaxed);
            if let Some(f) = self.current(link) {
                f.sessions.insert(
                    session,
                    Session {
                        secret,
                        ack_moved: false,
                        ..restored
                    },
                );
                f.want_state.push(session);
            }
            return;
        }
        let client = ClientId(self.next_client);
        self.next_client += 1;
        let mut ctx = Ctx {
            state: &mut self.state,
            tick: self.tick,
            period: self.period,
        };
        match self.app.join(&mut ctx, client, &data) {
            Ok(()) => {
                self.shared.metrics.joins.fetch_add(1, Relaxed);
                if let Some(f) = self.current(link) {
                    f.sessions.insert(
                        session,
                        Session {
                            client,
                            ack: Seq(0),
                            ack_moved: false,
                            secret,
                        },
                    );
                    f.want_state.push(session);
                }
            }
            Err(rejection) => {
                self.shared.metrics.joins_rejected.fetch_add(1, Relaxed);
                let msg = BackToFront::JoinRejected(LinkJoinRejected {
                    session,
                    channel: self.shared.index,
                    reason: rejection.0,
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
        if self.resume_grace.is_zero() {
            return self.leave(link, session);
        }
        let Some(held) = self.current(link).and_then(|f| f.sessions.remove(&session)) else {
            return;
        };
        self.held.insert(
            (link.front_arc(), session),
            Held {
                session: held,
                since: Instant::now(),
            },
        );
    }

    fn remove_session(&mut self, front: &str, session: SessionKey) {
        let Some(s) = self
            .fronts
            .get_mut(front)
            .and_then(|f| f.sessions.remove(&session))
        else {
            return;
        };
        self.app_leave(s.client);
    }

    fn app_leave(&mut self, client: ClientId) {
        self.shared.metrics.leaves.fetch_add(1, Relaxed);
        let mut ctx = Ctx {
            state: &mut self.state,
            tick: self.tick,
            period: self.period,
        };
        self.app.leave(&mut ctx, client);
    }

    fn input(&mut self, link: &LinkHandle, session: SessionKey, seq: Seq, data: &[u8]) {
        let Some(client) = self
            .current(link)
            .and_then(|f| f.sessions.get(&session))
            .map(|s| s.client)
        else {
            // Inputs of clients that left are dropped, as the workload specifies.
            self.shared
                .metrics
                .inputs_dropped_left
                .fetch_add(1, Relaxed);
            return;
        };
        let mut ctx = Ctx {
            state: &mut self.state,
            tick: self.tick,
            period: self.period,
        };
        let result = self.app.input(&mut ctx, client, seq, data);
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
            let notice = BackToFront::Notice(LinkNotice {
                session,
                code: "input_refused".into(),
                message: e.0,
            });
            link.send(Bytes::from(encode(&notice)));
        }
    }

    /// Encodes this tick's changes once and sends the same body to every front that
    /// has clients here, each with the acks of its own clients.
    fn send_patch(&mut self) {
        let mut body = Vec::new();
        let changed = self
            .state
            .commit_patch(&self.shared.name, self.tick, &mut body);
        if changed {
            self.shared.metrics.patches.fetch_add(1, Relaxed);
            self.shared
                .metrics
                .patch_bytes
                .fetch_add(body.len() as u64, Relaxed);
        }
        let mut body = Bytes::from(body);
        for front in self.fronts.values_mut() {
            let Some(link) = &front.link else { continue };
            if front.sessions.is_empty() {
                continue;
            }
            let acks: Vec<(SessionKey, Seq)> = front
                .sessions
                .iter_mut()
                .filter(|(_, s)| s.ack_moved)
                .map(|(k, s)| {
                    s.ack_moved = false;
                    (*k, s.ack)
                })
                .collect();
            if !changed && acks.is_empty() {
                continue;
            }
            if !changed && body.is_empty() {
                // Only acks moved: clients still get a (change-free) patch carrying them.
                let mut empty = Vec::new();
                centrum_protocol::encode_empty_patch(&self.shared.name, self.tick, &mut empty);
                body = Bytes::from(empty);
            }
            let msg = BackToFront::Patch(LinkPatch {
                channel: self.shared.index,
                tick: self.tick,
                changed,
                acks,
                body: body.clone(),
            });
            link.send(Bytes::from(encode(&msg)));
        }
    }

    /// One full-state encoding, shared by every session that needs it at this tick.
    fn send_states(&mut self) {
        if self
            .fronts
            .values()
            .all(|f| (f.want_state.is_empty() && !f.just_attached) || f.link.is_none())
        {
            return;
        }
        let body = self.full_state();
        for front in self.fronts.values_mut() {
            let Some(link) = &front.link else { continue };
            if front.want_state.is_empty() && !front.just_attached {
                continue;
            }
            front.just_attached = false;
            front.want_state.sort_unstable();
            front.want_state.dedup();
            let sessions: Vec<(SessionKey, Seq)> = front
                .want_state
                .drain(..)
                .filter_map(|k| front.sessions.get(&k).map(|s| (k, s.ack)))
                .collect();
            let msg = BackToFront::State(LinkState {
                channel: self.shared.index,
                tick: self.tick,
                sessions,
                body: body.clone(),
            });
            link.send(Bytes::from(encode(&msg)));
        }
    }

    fn full_state(&self) -> Bytes {
        let mut body = Vec::new();
        self.state
            .encode_full(&self.shared.name, self.tick, &mut body);
        self.shared.metrics.full_states.fetch_add(1, Relaxed);
        Bytes::from(body)
    }
}

#[cfg(test)]
mod tests {
    use centrum_protocol::{BackToFront, decode};
    use tokio::sync::mpsc;

    use super::*;
    use crate::apps::BenchArena;

    fn channel() -> Channel {
        let shared = Arc::new(ChannelShared {
            name: "arena".into(),
            app_name: "bench-arena".into(),
            index: 0,
            inbox: Inbox::new(4),
            metrics: ChannelMetrics::default(),
        });
        Channel::new(
            shared,
            Box::new(BenchArena::new()),
            Duration::from_millis(50),
            Duration::from_secs(10),
            Duration::from_secs(15),
        )
    }

    /// A link attaching with no sessions listed.
    fn attach(link: &LinkHandle) -> Event {
        Event::Attach {
            link: link.clone(),
            sessions: vec![],
        }
    }

    fn join(link: LinkHandle, session: SessionKey) -> Event {
        Event::Join {
            link,
            session,
            data: Bytes::new(),
            secret: session * 1000,
            resume: None,
        }
    }

    fn listed(session: SessionKey) -> LinkSession {
        LinkSession {
            session,
            channel: "arena".into(),
            data: Bytes::new(),
            secret: session * 1000,
        }
    }

    fn frames(rx: &mut mpsc::Receiver<Bytes>) -> Vec<BackToFront> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|f| decode(&f, usize::MAX).unwrap())
            .collect()
    }

    fn input(dx: f64) -> Bytes {
        #[derive(serde::Serialize)]
        struct Move {
            dx: f64,
            dy: f64,
        }
        Bytes::from(rmp_serde::to_vec_named(&Move { dx, dy: 0.0 }).unwrap())
    }

    #[test]
    fn joins_get_a_shared_state_after_the_patch_and_inputs_are_acked() {
        let mut ch = channel();
        let (link, mut rx) = LinkHandle::for_test("front-1", 64);
        let inbox = &ch.shared.inbox;
        inbox.push(attach(&link)).unwrap();
        inbox.push(join(link.clone(), 1)).unwrap();
        inbox.push(join(link.clone(), 2)).unwrap();
        ch.step();
        let out = frames(&mut rx);
        // One full state, after the patch: the link's first, shared by both joiners.
        let [BackToFront::Patch(p), BackToFront::State(s)] = &out[..] else {
            panic!("got {out:?}")
        };
        assert_eq!((p.tick, s.tick), (Tick(1), Tick(1)));
        assert_eq!(s.sessions, vec![(1, Seq(0)), (2, Seq(0))]);

        ch.shared
            .inbox
            .push(Event::Input {
                link: link.clone(),
                session: 1,
                seq: Seq(7),
                data: input(0.25),
            })
            .unwrap();
        ch.shared
            .inbox
            .push(Event::Input {
                link: link.clone(),
                session: 9,
                seq: Seq(1),
                data: input(0.25),
            })
            .unwrap();
        ch.step();
        let out = frames(&mut rx);
        let [BackToFront::Patch(p)] = &out[..] else {
            panic!("got {out:?}")
        };
        assert!(p.changed);
        assert_eq!(p.acks, vec![(1, Seq(7))]);
        assert_eq!(
            ch.shared.metrics.inputs_dropped_left.load(Relaxed),
            1,
            "input of an unknown session is dropped"
        );

        // Nothing happened: no patch at all.
        ch.step();
        assert!(frames(&mut rx).is_empty());
    }

    #[test]
    fn a_new_link_gets_the_full_state_first_even_without_sessions() {
        let mut ch = channel();
        let (link, mut rx) = LinkHandle::for_test("front-2", 64);
        ch.shared
            .inbox
            .push(Event::Attach {
                link,
                sessions: vec![],
            })
            .unwrap();
        ch.step();
        let out = frames(&mut rx);
        let [BackToFront::State(s)] = &out[..] else {
            panic!("got {out:?}")
        };
        assert!(s.sessions.is_empty());
        assert!(!s.body.is_empty());
    }

    #[test]
    fn the_inbox_refuses_inputs_past_its_capacity() {
        let ch = channel();
        let (link, _rx) = LinkHandle::for_test("front-1", 64);
        for seq in 0..4 {
            ch.shared
                .inbox
                .push(Event::Input {
                    link: link.clone(),
                    session: 1,
                    seq: Seq(seq),
                    data: Bytes::new(),
                })
                .unwrap();
        }
        assert_eq!(
            ch.shared.inbox.push(Event::Input {
                link: link.clone(),
                session: 1,
                seq: Seq(5),
                data: Bytes::new()
            }),
            Err(crate::inbox::Full)
        );
        assert!(
            ch.shared
                .inbox
                .push(Event::Leave { link, session: 1 })
                .is_ok(),
            "leaves are still queued"
        );
    }

    #[test]
    fn a_relinking_front_keeps_listed_sessions_and_loses_the_rest() {
        let mut ch = channel();
        let (old, _old_rx) = LinkHandle::for_test("front-1", 64);
        ch.shared.inbox.push(attach(&old)).unwrap();
        for session in [1, 2] {
            ch.shared.inbox.push(join(old.clone(), session)).unwrap();
        }
        ch.shared
            .inbox
            .push(Event::Detach { link: old.clone() })
            .unwrap();
        ch.step();
        assert_eq!(
            ch.state.len(),
            2,
            "sessions outlive the link for the grace period"
        );

        let (new, mut rx) = LinkHandle::for_test("front-1", 64);
        // Session 1 is still held by the front; 3 is one the back never saw (re-joined).
        ch.shared
            .inbox
            .push(Event::Attach {
                link: new.clone(),
                sessions: vec![listed(1), listed(3)],
            })
            .unwrap();
        // A stale event from the old link is ignored.
        ch.shared
            .inbox
            .push(Event::Leave {
                link: old,
                session: 1,
            })
            .unwrap();
        ch.step();
        assert_eq!(ch.state.len(), 2);
        let out = frames(&mut rx);
        let Some(BackToFront::State(s)) = out.last() else {
            panic!("got {out:?}")
        };
        assert_eq!(
            s.sessions.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            vec![1, 3]
        );
    }

    #[test]
    fn a_newer_link_from_the_same_front_closes_the_older_one() {
        let mut ch = channel();
        let (old, _old_rx) = LinkHandle::for_test("front-1", 64);
        let (new, mut rx) = LinkHandle::for_test("front-1", 64);
        ch.shared.inbox.push(attach(&old)).unwrap();
        ch.step();
        ch.shared.inbox.push(attach(&new)).unwrap();
        ch.step();
        assert!(old.is_closed());
        assert!(!new.is_closed());
        assert!(matches!(frames(&mut rx)[..], [BackToFront::State(_)]));
    }

    #[test]
    fn a_full_link_queue_closes_the_link_instead_of_waiting() {
        let mut ch = channel();
        let (link, _rx) = LinkHandle::for_test("front-1", 1);
        ch.shared.inbox.push(attach(&link)).unwrap();
        ch.shared.inbox.push(join(link.clone(), 1)).unwrap();
        ch.step();
        assert!(link.is_closed());
    }

    /// Front-1's client (session 1) joins, sends input 5, and its connection closes.
    fn held_after_input() -> (Channel, LinkHandle, mpsc::Receiver<Bytes>) {
        let mut ch = channel();
        let (front1, rx1) = LinkHandle::for_test("front-1", 64);
        let inbox = &ch.shared.inbox;
        inbox.push(attach(&front1)).unwrap();
        inbox.push(join(front1.clone(), 1)).unwrap();
        ch.step();
        let input = Event::Input {
            link: front1.clone(),
            session: 1,
            seq: Seq(5),
            data: input(0.5),
        };
        ch.shared.inbox.push(input).unwrap();
        ch.step();
        ch.shared
            .inbox
            .push(Event::Away {
                link: front1.clone(),
                session: 1,
            })
            .unwrap();
        ch.step();
        (ch, front1, rx1)
    }

    fn resume_on(
        ch: &mut Channel,
        front: &str,
        session: SessionKey,
        claim_secret: u64,
    ) -> mpsc::Receiver<Bytes> {
        let (link, rx) = LinkHandle::for_test(front, 64);
        let inbox = &ch.shared.inbox;
        inbox.push(attach(&link)).unwrap();
        inbox
            .push(Event::Join {
                link,
                session,
                data: Bytes::new(),
                secret: 77,
                resume: Some(LinkResume {
                    front: "front-1".into(),
                    session: 1,
                    secret: claim_secret,
                }),
            })
            .unwrap();
        ch.step();
        rx
    }

    fn states(rx: &mut mpsc::Receiver<Bytes>) -> Vec<(SessionKey, Seq)> {
        frames(rx)
            .into_iter()
            .filter_map(|f| match f {
                BackToFront::State(s) => Some(s.sessions),
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn a_disconnected_client_resumes_on_another_front_as_the_same_player() {
        let (mut ch, _front1, _rx1) = held_after_input();
        assert_eq!(
            ch.state.len(),
            1,
            "the player stays while its client is away"
        );
        assert_eq!(ch.shared.metrics.held.load(Relaxed), 1);

        let mut rx2 = resume_on(&mut ch, "front-2", 9, 1000);
        assert_eq!(ch.state.len(), 1, "no second player");
        assert_eq!(states(&mut rx2), vec![(9, Seq(5))], "the ack survives");
        let m = &ch.shared.metrics;
        assert_eq!(
            (m.joins.load(Relaxed), m.leaves.load(Relaxed)),
            (1, 0),
            "the application saw neither a leave nor a second join"
        );
        assert_eq!(m.resumes.load(Relaxed), 1);
        assert_eq!(m.held.load(Relaxed), 0);

        // Inputs now flow from the new front's session.
        ch.shared
            .inbox
            .push(Event::Input {
                link: ch.fronts["front-2"].link.clone().unwrap(),
                session: 9,
                seq: Seq(6),
                data: input(0.5),
            })
            .unwrap();
        ch.step();
        let acks: Vec<_> = frames(&mut rx2)
            .into_iter()
            .filter_map(|f| match f {
                BackToFront::Patch(p) => Some(p.acks),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(acks, vec![(9, Seq(6))]);
    }

    #[test]
    fn a_wrong_secret_joins_afresh_and_the_held_player_stays_until_the_grace_ends() {
        let (mut ch, _front1, _rx1) = held_after_input();
        let mut rx2 = resume_on(&mut ch, "front-2", 9, 999);
        assert_eq!(states(&mut rx2), vec![(9, Seq(0))]);
        assert_eq!(
            ch.state.len(),
            2,
            "a new player; the held one is not handed over"
        );
        assert_eq!(ch.shared.metrics.resumes.load(Relaxed), 0);

        // The grace runs out (moved back in time rather than waited for).
        for held in ch.held.values_mut() {
            held.since = Instant::now()
                .checked_sub(ch.resume_grace)
                .expect("the clock is past the grace");
        }
        ch.step();
        assert_eq!(ch.state.len(), 1);
        let m = &ch.shared.metrics;
        assert_eq!(m.resumes_expired.load(Relaxed), 1);
        assert_eq!(m.leaves.load(Relaxed), 1);
        assert_eq!(m.held.load(Relaxed), 0);
    }

    #[test]
    fn resuming_while_the_old_connection_is_still_linked_evicts_it() {
        let mut ch = channel();
        let (front1, mut rx1) = LinkHandle::for_test("front-1", 64);
        ch.shared.inbox.push(attach(&front1)).unwrap();
        ch.shared.inbox.push(join(front1.clone(), 1)).unwrap();
        ch.step();
        let _ = frames(&mut rx1);

        let mut rx2 = resume_on(&mut ch, "front-2", 9, 1000);
        assert_eq!(states(&mut rx2), vec![(9, Seq(0))]);
        assert_eq!(ch.state.len(), 1);
        let evicted: Vec<_> = frames(&mut rx1)
            .into_iter()
            .filter_map(|f| match f {
                BackToFront::Evicted(e) => Some(e.session),
                _ => None,
            })
            .collect();
        assert_eq!(evicted, vec![1]);
    }

    #[test]
    fn a_session_that_moved_while_its_front_was_away_is_evicted_when_it_relinks() {
        let mut ch = channel();
        let (front1, _rx1) = LinkHandle::for_test("front-1", 64);
        ch.shared.inbox.push(attach(&front1)).unwrap();
        ch.shared.inbox.push(join(front1.clone(), 1)).unwrap();
        ch.shared
            .inbox
            .push(Event::Detach { link: front1 })
            .unwrap();
        ch.step();

        let _rx2 = resume_on(&mut ch, "front-2", 9, 1000);
        let (again, mut rx1) = LinkHandle::for_test("front-1", 64);
        ch.shared
            .inbox
            .push(Event::Attach {
                link: again,
                sessions: vec![listed(1)],
            })
            .unwrap();
        ch.step();
        assert_eq!(ch.state.len(), 1, "not joined a second time");
        let out = frames(&mut rx1);
        assert!(
            out.iter()
                .any(|f| matches!(f, BackToFront::Evicted(e) if e.session == 1)),
            "got {out:?}"
        );
    }
}
