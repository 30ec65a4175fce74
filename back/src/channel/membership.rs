//! Who is in a channel, and through which front: each front's live sessions, the
//! memberships held for a client to resume, and the route of a message to a client.
//! Pure bookkeeping: it takes `now` and returns [`Effect`]s (what the game must hear,
//! what to send to a front) instead of reading a clock or touching a socket.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use centrum_app::ClientId;
use centrum_protocol::{
    BackToFront, ChannelIndex, IdMap, LinkEvicted, LinkResume, LinkSession, Seq, SessionKey, encode,
};

use crate::link::LinkHandle;

/// What a membership change asks of the channel, in order.
#[derive(Debug)]
pub(crate) enum Effect {
    /// The client is gone for good: the game hears `leave`. `expired` when it never
    /// came back in time (counted apart from plain leaves).
    Leave { client: ClientId, expired: bool },
    /// The client's connection came back.
    Connect(ClientId),
    /// The client's connection is gone; it stays in the channel for a while.
    Disconnect(ClientId),
    /// A relinking front listed a session this channel does not know (it restarted,
    /// or the grace ran out): the session joins afresh.
    Rejoin(LinkHandle, LinkSession),
    /// A frame for a front.
    Send(LinkHandle, Bytes),
    /// A link that a newer one from the same front superseded.
    Close(LinkHandle),
}

/// Where a member sits: the front, its session there, and the secret a resume of it
/// must present. Journaled, so that a restarted back holds every member for resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Seat {
    pub(crate) front: Arc<str>,
    pub(crate) session: SessionKey,
    pub(crate) secret: u64,
}

/// A member as a snapshot keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedMember {
    pub(crate) client: ClientId,
    pub(crate) seat: Seat,
    pub(crate) ack: Seq,
}

/// How a join turned out, before the game is asked.
#[derive(Debug)]
pub(crate) enum JoinStart {
    /// From a link that was replaced: ignored.
    Stale,
    /// The session is already in: it gets a full state again.
    Already,
    /// The client resumed its membership: the same player, with its ack.
    Resumed { client: ClientId, seat: Seat },
    /// A new client: ask the game, then [`Membership::admit`] it.
    New { seat: Seat },
}

/// The `instance` of a front restored from a store: no live process has it, so the
/// front's first link counts as a new process.
const RESTORED: u64 = 0;

#[derive(Debug)]
pub(crate) struct Membership {
    channel: ChannelIndex,
    link_grace: Duration,
    resume_grace: Duration,
    /// Keyed by front id: a front's sessions outlive one link, for `link_grace`.
    fronts: HashMap<Arc<str>, FrontSessions>,
    /// Memberships of clients whose connection closed, by the seat they had, kept for
    /// `resume_grace` so that the client can resume them on any front. The secret is
    /// part of the key: a restarted front numbers its sessions afresh, and the same
    /// key then names two clients.
    held: HashMap<(Arc<str>, SessionKey, u64), Held>,
    /// Where each connected member is: the way a message to it goes.
    routes: HashMap<ClientId, (Arc<str>, SessionKey)>,
}

#[derive(Debug)]
pub(crate) struct FrontSessions {
    /// The front's current link; None while it is away.
    pub(crate) link: Option<LinkHandle>,
    /// The front process the sessions belong to (its `LinkHello.instance`).
    instance: u64,
    away_since: Option<Instant>,
    pub(crate) sessions: IdMap<SessionKey, Session>,
    /// Sessions that need a full state after this tick (joined, resync, relinked).
    pub(crate) want_state: Vec<SessionKey>,
    /// The link is new: its first frame for this channel is a full state, even when
    /// the front has no session here.
    pub(crate) just_attached: bool,
    /// Sessions that resumed elsewhere while this front was away: if it relinks
    /// still listing one (a half-open client connection), that one is evicted.
    moved: Vec<SessionKey>,
}

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) client: ClientId,
    pub(crate) ack: Seq,
    pub(crate) ack_moved: bool,
    secret: u64,
}

#[derive(Debug)]
struct Held {
    client: ClientId,
    ack: Seq,
    since: Instant,
}

impl Membership {
    pub(crate) fn new(channel: ChannelIndex, link_grace: Duration, resume_grace: Duration) -> Self {
        Self {
            channel,
            link_grace,
            resume_grace,
            fronts: HashMap::new(),
            held: HashMap::new(),
            routes: HashMap::new(),
        }
    }

    /// How a restarted back starts: every member is a session of its front, and every
    /// front is away since `now`, as if each link had just dropped. A front that
    /// relinks listing a session goes on with it; the others (its process restarted:
    /// a front's `instance` is never the restored one) are held for resume; a client
    /// that resumes elsewhere first moves its membership, and the old front's listing
    /// of it is evicted. A front that never comes back takes `link_grace`.
    pub(crate) fn restore(&mut self, members: Vec<SavedMember>, now: Instant) {
        for m in members {
            let front = self
                .fronts
                .entry(m.seat.front.clone())
                .or_insert_with(|| FrontSessions {
                    link: None,
                    instance: RESTORED,
                    away_since: Some(now),
                    sessions: IdMap::default(),
                    want_state: Vec::new(),
                    just_attached: false,
                    moved: Vec::new(),
                });
            if front.sessions.contains_key(&m.seat.session) {
                // Two members of one front under one key: a restarted front numbered
                // its sessions again. The second waits among the held ones.
                let held = Held {
                    client: m.client,
                    ack: m.ack,
                    since: now,
                };
                self.held
                    .insert((m.seat.front, m.seat.session, m.seat.secret), held);
                continue;
            }
            let session = Session {
                client: m.client,
                ack: m.ack,
                ack_moved: false,
                secret: m.seat.secret,
            };
            self.routes
                .insert(m.client, (m.seat.front.clone(), m.seat.session));
            front.sessions.insert(m.seat.session, session);
        }
    }

    /// Every member, live or held, for a snapshot.
    pub(crate) fn members(&self) -> Vec<SavedMember> {
        let live = self.fronts.iter().flat_map(|(front, f)| {
            f.sessions.iter().map(|(&session, s)| SavedMember {
                client: s.client,
                seat: Seat {
                    front: front.clone(),
                    session,
                    secret: s.secret,
                },
                ack: s.ack,
            })
        });
        let held = self
            .held
            .iter()
            .map(|((front, session, secret), h)| SavedMember {
                client: h.client,
                seat: Seat {
                    front: front.clone(),
                    session: *session,
                    secret: *secret,
                },
                ack: h.ack,
            });
        let mut all: Vec<SavedMember> = live.chain(held).collect();
        all.sort_by_key(|m| m.client);
        all
    }

    /// The current link of `front`, for tests.
    #[cfg(test)]
    pub(crate) fn link_of(&self, front: &str) -> Option<LinkHandle> {
        self.fronts.get(front)?.link.clone()
    }

    pub(crate) fn fronts(&self) -> impl Iterator<Item = &FrontSessions> {
        self.fronts.values()
    }

    pub(crate) fn fronts_mut(&mut self) -> impl Iterator<Item = &mut FrontSessions> {
        self.fronts.values_mut()
    }

    /// The link and session a message to `client` goes on, if it is connected.
    pub(crate) fn route(&self, client: ClientId) -> Option<(&LinkHandle, SessionKey)> {
        let (front, session) = self.routes.get(&client)?;
        Some((self.fronts.get(front)?.link.as_ref()?, *session))
    }

    /// Sessions in the channel, connected ones.
    pub(crate) fn live_count(&self) -> usize {
        self.fronts.values().map(|f| f.sessions.len()).sum()
    }

    pub(crate) fn held_count(&self) -> usize {
        self.held.len()
    }

    /// The links of the fronts attached now.
    pub(crate) fn links(&self) -> impl Iterator<Item = &LinkHandle> {
        self.fronts.values().filter_map(|f| f.link.as_ref())
    }

    /// The entry of the front that owns `link`, if `link` is still its current link.
    /// Events from a replaced link are stale and ignored.
    fn current(&mut self, link: &LinkHandle) -> Option<&mut FrontSessions> {
        self.fronts
            .get_mut(link.front())
            .filter(|f| f.link.as_ref().is_some_and(|l| l.id() == link.id()))
    }

    /// A front linked, from process `instance`, holding `listed` sessions here.
    pub(crate) fn attach(
        &mut self,
        link: LinkHandle,
        instance: u64,
        listed: Vec<LinkSession>,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let front_id = link.front_arc();
        let front = self
            .fronts
            .entry(front_id.clone())
            .or_insert_with(|| FrontSessions {
                link: None,
                instance,
                away_since: None,
                sessions: IdMap::default(),
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
            out.push(Effect::Close(old));
        }
        front.just_attached = true;
        front.away_since = None;
        let restarted = std::mem::replace(&mut front.instance, instance) != instance;
        let moved = std::mem::take(&mut front.moved);
        let listed_keys: HashSet<SessionKey> = listed.iter().map(|s| s.session).collect();
        let gone: Vec<SessionKey> = front
            .sessions
            .keys()
            .filter(|s| restarted || !listed_keys.contains(s))
            .copied()
            .collect();
        for session in gone {
            if restarted {
                // A new process of the front: its predecessor's clients are
                // reconnecting somewhere, so their memberships wait for them.
                self.hold(&front_id, session, now, out);
            } else {
                self.remove(&front_id, session, false, out);
            }
        }
        for listed in listed {
            let session = listed.session;
            let front = self.fronts.get_mut(&front_id).expect("inserted above");
            if moved.contains(&session) {
                out.push(self.evicted(&link, session));
            } else if let Some(s) = front.sessions.get(&session) {
                out.push(Effect::Connect(s.client));
                front.want_state.push(session);
            } else if let Some(held) = (listed.secret != 0)
                .then(|| {
                    self.held
                        .remove(&(front_id.clone(), session, listed.secret))
                })
                .flatten()
            {
                // Held while the front was away or the back restarted, and the front
                // still has the client: the same membership goes on.
                let s = Session {
                    client: held.client,
                    ack: held.ack,
                    ack_moved: false,
                    secret: listed.secret,
                };
                self.insert(&front_id, session, s, out);
            } else {
                out.push(Effect::Rejoin(link.clone(), listed));
            }
        }
    }

    /// A front's link closed: its sessions wait `link_grace` for it to relink.
    pub(crate) fn detach(&mut self, link: &LinkHandle, now: Instant, out: &mut Vec<Effect>) {
        let Some(front) = self.current(link) else {
            return;
        };
        front.link = None;
        front.away_since = Some(now);
        front.want_state.clear();
        out.extend(
            front
                .sessions
                .values()
                .map(|s| Effect::Disconnect(s.client)),
        );
    }

    /// Starts a join of `session` on `link`: a resume when `resume` claims a membership
    /// this channel holds with that secret and whose client `may_resume` (the same
    /// identity); a claim that does not match is an ordinary join (telling why would
    /// help someone guessing secrets), and the claimed membership stays as it was.
    pub(crate) fn begin_join(
        &mut self,
        link: &LinkHandle,
        session: SessionKey,
        secret: u64,
        resume: Option<&LinkResume>,
        may_resume: impl Fn(ClientId) -> bool,
        out: &mut Vec<Effect>,
    ) -> JoinStart {
        let Some(front) = self.current(link) else {
            return JoinStart::Stale;
        };
        if front.sessions.contains_key(&session) {
            front.want_state.push(session);
            return JoinStart::Already;
        }
        let seat = Seat {
            front: link.front_arc(),
            session,
            secret,
        };
        let Some((client, ack)) =
            resume.and_then(|claim| self.take_resumable(claim, &may_resume, out))
        else {
            return JoinStart::New { seat };
        };
        let s = Session {
            client,
            ack,
            ack_moved: false,
            secret,
        };
        self.insert(&seat.front, session, s, out);
        JoinStart::Resumed { client, seat }
    }

    /// The game accepted a new client on `seat`.
    pub(crate) fn admit(&mut self, seat: Seat, client: ClientId, out: &mut Vec<Effect>) {
        let s = Session {
            client,
            ack: Seq::NONE,
            ack_moved: false,
            secret: seat.secret,
        };
        self.insert(&seat.front, seat.session, s, out);
    }

    /// Takes the membership a resuming client claims, if this channel still has it
    /// (held after a disconnect, or still with its old front), the secret matches and
    /// its client `may_resume`.
    fn take_resumable(
        &mut self,
        claim: &LinkResume,
        may_resume: &impl Fn(ClientId) -> bool,
        out: &mut Vec<Effect>,
    ) -> Option<(ClientId, Seq)> {
        // A zero secret is what a front sends when it had no random source.
        if claim.secret == 0 {
            return None;
        }
        let front_id: Arc<str> = Arc::from(claim.front.as_str());
        let key = (front_id.clone(), claim.session, claim.secret);
        if let Some(h) = self.held.get(&key) {
            if !may_resume(h.client) {
                return None;
            }
            return self.held.remove(&key).map(|h| (h.client, h.ack));
        }
        let front = self.fronts.get_mut(&front_id)?;
        if front
            .sessions
            .get(&claim.session)
            .is_none_or(|s| s.secret != claim.secret || !may_resume(s.client))
        {
            return None;
        }
        let s = front.sessions.remove(&claim.session)?;
        self.routes.remove(&s.client);
        // The old connection may still be open (or half-open): its front is told that
        // the membership moved, now or when it relinks.
        match front.link.clone() {
            Some(link) => out.push(self.evicted(&link, claim.session)),
            None => front.moved.push(claim.session),
        }
        Some((s.client, s.ack))
    }

    fn evicted(&self, link: &LinkHandle, session: SessionKey) -> Effect {
        let msg = BackToFront::Evicted(LinkEvicted {
            session,
            channel: self.channel,
            reason: "the session resumed on another connection".into(),
        });
        Effect::Send(link.clone(), Bytes::from(encode(&msg)))
    }

    /// The client left.
    pub(crate) fn leave(&mut self, link: &LinkHandle, session: SessionKey, out: &mut Vec<Effect>) {
        if self.current(link).is_some() {
            self.remove(link.front(), session, false, out);
        }
    }

    /// The client's connection closed without a leave: its membership is held for a
    /// resume, or leaves at once when resuming is off.
    pub(crate) fn away(
        &mut self,
        link: &LinkHandle,
        session: SessionKey,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        if self.current(link).is_none() {
            return;
        }
        if self.resume_grace.is_zero() {
            return self.remove(link.front(), session, false, out);
        }
        self.hold(&link.front_arc(), session, now, out);
    }

    /// Moves a live session to the held ones.
    fn hold(&mut self, front: &Arc<str>, session: SessionKey, now: Instant, out: &mut Vec<Effect>) {
        let Some(s) = self.take(front, session) else {
            return;
        };
        out.push(Effect::Disconnect(s.client));
        let held = Held {
            client: s.client,
            ack: s.ack,
            since: now,
        };
        if let Some(earlier) = self.held.insert((front.clone(), session, s.secret), held) {
            // The same seat and secret held twice cannot happen short of a front
            // reusing a secret; the older one could never be claimed again.
            out.push(Effect::Leave {
                client: earlier.client,
                expired: true,
            });
        }
    }

    /// The session's client and ack, if `link` is current and has it.
    pub(crate) fn member(
        &mut self,
        link: &LinkHandle,
        session: SessionKey,
    ) -> Option<(ClientId, Seq)> {
        let s = self.current(link)?.sessions.get(&session)?;
        Some((s.client, s.ack))
    }

    /// The session's input `seq` was applied.
    pub(crate) fn acked(&mut self, link: &LinkHandle, session: SessionKey, seq: Seq) {
        if let Some(s) = self
            .current(link)
            .and_then(|f| f.sessions.get_mut(&session))
        {
            s.ack = seq;
            s.ack_moved = true;
        }
    }

    /// The front asks for full states for these sessions.
    pub(crate) fn resync(&mut self, link: &LinkHandle, sessions: Vec<SessionKey>) {
        if let Some(front) = self.current(link) {
            let known = sessions
                .into_iter()
                .filter(|s| front.sessions.contains_key(s));
            front.want_state.extend(known);
        }
    }

    /// Ends what ran out by `now`: the sessions of fronts away longer than
    /// `link_grace`, and held memberships older than `resume_grace`.
    pub(crate) fn expire(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let link_grace = self.link_grace;
        let expired: Vec<Arc<str>> = self
            .fronts
            .iter()
            .filter(|(_, f)| {
                f.away_since
                    .is_some_and(|t| now.duration_since(t) >= link_grace)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            let sessions: Vec<SessionKey> = self.fronts[&id].sessions.keys().copied().collect();
            tracing::info!(front = %id, sessions = sessions.len(), "front did not return; its clients leave");
            for s in sessions {
                self.remove(&id, s, false, out);
            }
            self.fronts.remove(&id);
        }
        if self.held.is_empty() {
            return;
        }
        let grace = self.resume_grace;
        let mut expired: Vec<_> = self
            .held
            .iter()
            .filter(|(_, h)| now.duration_since(h.since) >= grace)
            .map(|(k, h)| (h.client, k.clone()))
            .collect();
        // In client order, so that the game hears them the same way on every run.
        expired.sort_unstable_by_key(|(client, _)| *client);
        for (client, key) in expired {
            self.held.remove(&key);
            out.push(Effect::Leave {
                client,
                expired: true,
            });
        }
    }

    /// Records a live membership: the session on its front, the route for messages,
    /// and the client as connected for the game.
    fn insert(
        &mut self,
        front: &Arc<str>,
        key: SessionKey,
        session: Session,
        out: &mut Vec<Effect>,
    ) {
        let client = session.client;
        if let Some(f) = self.fronts.get_mut(front) {
            f.sessions.insert(key, session);
            f.want_state.push(key);
        }
        self.routes.insert(client, (front.clone(), key));
        out.push(Effect::Connect(client));
    }

    fn remove(&mut self, front: &str, session: SessionKey, expired: bool, out: &mut Vec<Effect>) {
        let Some(s) = self.take(front, session) else {
            return;
        };
        out.push(Effect::Leave {
            client: s.client,
            expired,
        });
    }

    /// Takes a live session off its front, with its route.
    fn take(&mut self, front: &str, session: SessionKey) -> Option<Session> {
        let s = self.fronts.get_mut(front)?.sessions.remove(&session)?;
        self.routes.remove(&s.client);
        Some(s)
    }
}
