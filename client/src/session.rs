//! A connection's state without the connection: what the welcome said, the channels
//! this client is in (mirror, ack, input seq), the pings awaiting their pong, and
//! whether the front is still there (see [`Session::liveness`]). No I/O: time comes in
//! as `now`, messages to send go out as return values, and the driver in `client.rs`
//! moves the bytes.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::trace;

use centrum_protocol::{
    ClientMsg, FrontMsg, Hello, Input, Join, Leave, MessageMsg, Mirror, PROTOCOL_VERSION, PatchMsg,
    Ping, Seq, StateMsg, decode,
};

use crate::{ClientError, Event};

/// Unanswered pings remembered for their round-trip time; when full, the oldest is
/// forgotten and its pong, should it still come, is reported as a protocol error.
const MAX_PENDING_PINGS: usize = 64;

/// Set in the nonce of the pings the session sends by itself to probe a silent front,
/// and never in those of [`Session::ping`] (which count up from 1): their pongs are
/// recognised by it and not reported.
const PROBE_NONCE: u64 = 1 << 63;

/// What keeping the connection alive asks of the driver at a given moment.
#[derive(Debug, PartialEq)]
pub(crate) enum Due {
    /// Nothing until this instant (or until something arrives).
    Wait(Instant),
    /// Send this ping: the front has been silent for the ping interval.
    Ping(ClientMsg),
    /// The front answered nothing, not even the ping, within the silence timeout: the
    /// connection is as good as dropped. `silent` is how long nothing has arrived.
    Silent { silent: Duration },
}

/// One welcomed session: everything the client knows, and nothing about how the bytes
/// travel.
pub(crate) struct Session {
    id: String,
    resume_token: String,
    front: String,
    resumed: bool,
    channels: HashMap<String, Channel>,
    /// The last seq [`Session::input`] assigned, per channel; a new membership starts
    /// after the ack of its first state (0 for a fresh join, the last applied input
    /// for a resumed one).
    seqs: HashMap<String, Seq>,
    pings: VecDeque<(u64, Instant)>,
    next_nonce: u64,
    /// When the last message or control frame arrived from the front.
    heard: Instant,
    /// When the probe sent since then left; `None` while the front talks.
    probe: Option<Instant>,
    next_probe: u64,
}

/// A channel this client is in: from its first `State` until `Left` or `Rejected`.
#[derive(Debug, Default)]
struct Channel {
    mirror: Mirror,
    ack: Seq,
    /// A state or patch did not fit: the mirror is wrong until the next full state,
    /// so it is hidden and patches are skipped.
    broken: bool,
    /// `Leave` was sent: the channel is hidden, and what is still on its way for it
    /// is ignored until `Left` ends the membership.
    leaving: bool,
}

impl Session {
    /// The first message of a connection.
    pub(crate) fn hello(token: &str, resume: Option<&str>) -> ClientMsg {
        ClientMsg::Hello(Hello {
            version: PROTOCOL_VERSION,
            token: token.to_owned(),
            resume: resume.map(str::to_owned),
        })
    }

    /// The session the front's answer to the hello opens.
    ///
    /// # Errors
    /// [`ClientError::Handshake`] when the front refused the hello or speaks another
    /// protocol version, [`ClientError::Protocol`] when the answer is not a welcome.
    pub(crate) fn welcome(bytes: &[u8], now: Instant) -> Result<Session, ClientError> {
        match decode_front(bytes)? {
            FrontMsg::Welcome(w) if w.version == PROTOCOL_VERSION => Ok(Session {
                id: w.session,
                resume_token: w.resume,
                front: w.front,
                resumed: w.resumed,
                channels: HashMap::new(),
                seqs: HashMap::new(),
                pings: VecDeque::new(),
                next_nonce: 1,
                heard: now,
                probe: None,
                next_probe: PROBE_NONCE,
            }),
            FrontMsg::Welcome(w) => Err(ClientError::Handshake {
                code: "version".into(),
                message: format!(
                    "the front speaks protocol version {}, this client {PROTOCOL_VERSION}",
                    w.version
                ),
            }),
            FrontMsg::Error(e) => Err(ClientError::Handshake {
                code: e.code,
                message: e.message,
            }),
            other => Err(ClientError::Protocol(format!(
                "expected a Welcome, got {}",
                other.name()
            ))),
        }
    }

    /// The session id; a resumed session keeps its id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The token that resumes this session from another connection. A secret.
    pub(crate) fn resume_token(&self) -> &str {
        &self.resume_token
    }

    /// The id of the front serving this connection.
    pub(crate) fn front(&self) -> &str {
        &self.front
    }

    /// Whether the welcome resumed an earlier session.
    pub(crate) fn resumed(&self) -> bool {
        self.resumed
    }

    /// A join of `channel`.
    ///
    /// # Errors
    /// [`ClientError::AlreadyJoined`] when the client is in the channel and not
    /// leaving it (a channel being left may be joined again at once).
    pub(crate) fn join(
        &self,
        channel: &str,
        data: Bytes,
        seat: Option<String>,
    ) -> Result<ClientMsg, ClientError> {
        if self.is_joined(channel) {
            return Err(ClientError::AlreadyJoined(channel.to_owned()));
        }
        Ok(ClientMsg::Join(Join {
            channel: channel.to_owned(),
            data,
            seat,
        }))
    }

    /// A leave of `channel`. From now on the channel is hidden and what still arrives
    /// for it is ignored, until `Left` ends the membership.
    pub(crate) fn leave(&mut self, channel: &str) -> ClientMsg {
        if let Some(joined) = self.channels.get_mut(channel) {
            joined.leaving = true;
        }
        ClientMsg::Leave(Leave {
            channel: channel.to_owned(),
        })
    }

    /// An input with the channel's next seq ([`Seq::next`]: +1, skipping 0 when it
    /// wraps), and that seq. The seq is used up whether or not the message is sent.
    pub(crate) fn input(&mut self, channel: &str, data: Bytes) -> (Seq, ClientMsg) {
        let seq = self.seqs.entry(channel.to_owned()).or_default();
        *seq = seq.next();
        let seq = *seq;
        let msg = ClientMsg::Input(Input {
            channel: channel.to_owned(),
            seq,
            data,
        });
        (seq, msg)
    }

    /// A ping sent at `now`; its pong's event carries the time since.
    pub(crate) fn ping(&mut self, now: Instant) -> ClientMsg {
        let nonce = self.next_nonce;
        self.next_nonce = self.next_nonce.wrapping_add(1);
        if self.pings.len() == MAX_PENDING_PINGS {
            self.pings.pop_front();
        }
        self.pings.push_back((nonce, now));
        ClientMsg::Ping(Ping { nonce })
    }

    /// Something arrived from the front at `now` (any message or WebSocket frame): it
    /// is there, whatever [`Session::liveness`] was waiting for.
    pub(crate) fn heard(&mut self, now: Instant) {
        self.heard = now;
        self.probe = None;
    }

    /// What keeping the connection alive needs at `now`: once nothing has arrived for
    /// `ping_after`, a ping (which the front answers, so the silence ends if it is
    /// there); once that ping has gone unanswered, and nothing else arrived, for
    /// `silence_timeout`, [`Due::Silent`]: the driver drops the connection, exactly as
    /// if it had closed. A front that goes silent is found within
    /// `ping_after + silence_timeout` of its last message.
    pub(crate) fn liveness(
        &mut self,
        now: Instant,
        ping_after: Duration,
        silence_timeout: Duration,
    ) -> Due {
        if let Some(sent) = self.probe {
            let deadline = sent + silence_timeout;
            if now >= deadline {
                return Due::Silent {
                    silent: now.saturating_duration_since(self.heard),
                };
            }
            return Due::Wait(deadline);
        }
        let ping_at = self.heard + ping_after;
        if now < ping_at {
            return Due::Wait(ping_at);
        }
        self.probe = Some(now);
        let nonce = self.next_probe;
        self.next_probe = PROBE_NONCE | self.next_probe.wrapping_add(1);
        Due::Ping(ClientMsg::Ping(Ping { nonce }))
    }

    /// Applies one server message received at `now`; `None` when it is not reported
    /// (what still arrives for a channel being left, a patch for a mirror waiting for
    /// a full state, a message for a channel the client is not in).
    ///
    /// # Errors
    /// [`ClientError::Protocol`] for a message that cannot be decoded or applied; the
    /// session stays usable, and a channel whose mirror no longer fits is hidden until
    /// its next full state.
    pub(crate) fn apply(
        &mut self,
        bytes: &[u8],
        now: Instant,
    ) -> Result<Option<Event>, ClientError> {
        self.heard(now);
        let msg = decode_front(bytes)?;
        trace!(message = msg.name(), bytes = bytes.len(), "received");
        let event = match msg {
            FrontMsg::Welcome(_) => {
                return Err(ClientError::Protocol(
                    "a second Welcome on one connection".into(),
                ));
            }
            FrontMsg::State(m) => return self.apply_state(m),
            FrontMsg::Patch(m) => return self.apply_patch(m),
            FrontMsg::Message(m) => return Ok(self.apply_message(m)),
            FrontMsg::Rejected(m) => {
                // Outside a join: the back refused to take back a client it had lost
                // while the channel was unavailable. Either way the client is out.
                self.forget(&m.channel);
                Event::Rejected {
                    channel: m.channel,
                    reason: m.reason,
                }
            }
            FrontMsg::Left(m) => {
                self.forget(&m.channel);
                Event::Left {
                    channel: m.channel,
                    reason: m.reason,
                }
            }
            FrontMsg::Unavailable(m) => Event::Unavailable { channel: m.channel },
            FrontMsg::Error(m) => Event::Error {
                code: m.code,
                message: m.message,
            },
            // The answer to a probe: it has done its job by arriving.
            FrontMsg::Pong(m) if m.nonce & PROBE_NONCE != 0 => return Ok(None),
            FrontMsg::Pong(m) => {
                let sent = self
                    .pings
                    .iter()
                    .position(|&(nonce, _)| nonce == m.nonce)
                    .and_then(|i| self.pings.remove(i))
                    .map(|(_, sent)| sent)
                    .ok_or_else(|| {
                        ClientError::Protocol(format!(
                            "a Pong for nonce {}, which no ping of this client awaits",
                            m.nonce
                        ))
                    })?;
                Event::Pong {
                    nonce: m.nonce,
                    rtt: now.saturating_duration_since(sent),
                }
            }
        };
        Ok(Some(event))
    }

    /// The mirror of a channel this client is in: `None` before its first state, once
    /// leaving or out, and while a state or patch that did not fit waits for the next
    /// full state.
    pub(crate) fn mirror(&self, channel: &str) -> Option<&Mirror> {
        self.joined(channel)
            .filter(|c| !c.broken)
            .map(|c| &c.mirror)
    }

    /// The last of this client's inputs on `channel` the back has applied;
    /// [`Seq::NONE`] when none, or not in the channel.
    pub(crate) fn ack(&self, channel: &str) -> Seq {
        self.joined(channel).map_or(Seq::NONE, |c| c.ack)
    }

    /// Whether the client is in `channel` (has had its state) and is not leaving it.
    pub(crate) fn is_joined(&self, channel: &str) -> bool {
        self.joined(channel).is_some()
    }

    fn joined(&self, channel: &str) -> Option<&Channel> {
        self.channels.get(channel).filter(|c| !c.leaving)
    }

    /// Ends a membership: the next one starts with a fresh mirror and seq count.
    fn forget(&mut self, channel: &str) {
        self.channels.remove(channel);
        self.seqs.remove(channel);
    }

    fn apply_state(&mut self, msg: StateMsg) -> Result<Option<Event>, ClientError> {
        if self.channels.get(&msg.channel).is_some_and(|c| c.leaving) {
            trace!(channel = %msg.channel, tick = %msg.tick, "state ignored: leaving");
            return Ok(None);
        }
        let mut mirror = Mirror::new();
        let applied = mirror.apply_state(&msg);
        if !self.channels.contains_key(&msg.channel) {
            // A new membership: inputs continue after the last one the back applied.
            self.seqs.insert(msg.channel.clone(), msg.ack);
        }
        let channel = self.channels.entry(msg.channel.clone()).or_default();
        channel.ack = msg.ack;
        match applied {
            Ok(()) => {
                channel.mirror = mirror;
                channel.broken = false;
                Ok(Some(Event::State {
                    channel: msg.channel,
                    tick: msg.tick,
                    ack: msg.ack,
                }))
            }
            Err(e) => {
                channel.broken = true;
                Err(ClientError::Protocol(format!(
                    "the state of channel {:?} does not fit its schema: {e}",
                    msg.channel
                )))
            }
        }
    }

    fn apply_patch(&mut self, msg: PatchMsg) -> Result<Option<Event>, ClientError> {
        let Some(channel) = self.channels.get_mut(&msg.channel) else {
            return Err(ClientError::Protocol(format!(
                "a patch for channel {:?}, which this client is not in",
                msg.channel
            )));
        };
        if channel.leaving {
            trace!(channel = %msg.channel, tick = %msg.tick, "patch ignored: leaving");
            return Ok(None);
        }
        channel.ack = msg.ack;
        if channel.broken {
            trace!(channel = %msg.channel, tick = %msg.tick, "patch skipped until a full state");
            return Ok(None);
        }
        match channel.mirror.apply_patch(&msg) {
            Ok(()) => Ok(Some(Event::Patch {
                channel: msg.channel,
                tick: msg.tick,
                ack: msg.ack,
            })),
            Err(e) => {
                // Part of it may be applied, or it is out of order: either way the
                // mirror can no longer be trusted (PROTOCOL.md 9.5).
                channel.broken = true;
                Err(ClientError::Protocol(format!(
                    "a patch for channel {:?} does not fit its mirror: {e}",
                    msg.channel
                )))
            }
        }
    }

    fn apply_message(&mut self, msg: MessageMsg) -> Option<Event> {
        // Not an error: a Leave (or the Left it caused) may cross the game's message.
        if !self.is_joined(&msg.channel) {
            trace!(channel = %msg.channel, tick = %msg.tick, "message ignored: not in the channel");
            return None;
        }
        Some(Event::Message {
            channel: msg.channel,
            tick: msg.tick,
            data: msg.data,
        })
    }
}

/// The resume token is a secret: it is not printed.
impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut channels: Vec<_> = self.channels.keys().collect();
        channels.sort();
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("front", &self.front)
            .field("resumed", &self.resumed)
            .field("channels", &channels)
            .field("pings", &self.pings.len())
            .finish_non_exhaustive()
    }
}

fn decode_front(bytes: &[u8]) -> Result<FrontMsg, ClientError> {
    // No size limit here: the socket bounds every message before it is decoded.
    decode::<FrontMsg>(bytes, usize::MAX)
        .map_err(|e| ClientError::Protocol(format!("undecodable message: {e}")))
}

#[cfg(test)]
mod tests;
