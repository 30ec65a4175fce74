//! A channel's queue of everything its linked fronts forwarded since the last tick.
//! Link readers push; the channel takes the whole batch at its tick, so there is no
//! wake-up per message. Bounded: see [`Inbox::push`].

use bytes::Bytes;
use parking_lot::Mutex;

use centrum_protocol::{IdMap, Identity, LinkResume, LinkSession, Seq, SessionKey};

use crate::link::LinkHandle;

/// One thing for a channel to do at its next tick, in arrival order.
#[derive(Debug)]
pub(crate) enum Event {
    /// A front (re)linked; `sessions` are the ones it holds in this channel.
    Attach {
        link: LinkHandle,
        /// The front's process (`LinkHello::instance`).
        instance: u64,
        sessions: Vec<LinkSession>,
    },
    /// A front's link closed.
    Detach { link: LinkHandle },
    Join {
        link: LinkHandle,
        session: SessionKey,
        data: Bytes,
        secret: u64,
        resume: Option<LinkResume>,
        identity: Option<Identity>,
        /// For a room: the seat token from the matchmaker.
        seat: Option<String>,
    },
    Leave {
        link: LinkHandle,
        session: SessionKey,
    },
    /// The client's connection closed: hold its membership for a resume.
    Away {
        link: LinkHandle,
        session: SessionKey,
    },
    Input {
        link: LinkHandle,
        session: SessionKey,
        seq: Seq,
        data: Bytes,
    },
    Resync {
        link: LinkHandle,
        sessions: Vec<SessionKey>,
    },
    /// A call from outside the game (HTTP, through the front), answered on `link`.
    Call {
        link: LinkHandle,
        call: u64,
        data: Bytes,
    },
    /// A test or tool asks for the full state after the next tick.
    Snapshot {
        reply: tokio::sync::oneshot::Sender<(centrum_protocol::Tick, Bytes)>,
    },
}

/// The queue was full; the event was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Full;

#[derive(Debug)]
pub(crate) struct Inbox {
    inner: Mutex<Queue>,
    /// Wakes a room that sleeps while it is empty (channels of the config tick always).
    wake: tokio::sync::Notify,
    /// At most this many inputs and calls, and as many joins, wait between two ticks.
    capacity: usize,
}

#[derive(Debug, Default)]
struct Queue {
    /// The channel is gone (a disposed room): nothing more is queued.
    closed: bool,
    events: Vec<Event>,
    inputs: usize,
    joins: usize,
    /// Inputs queued per session (link, session key) since the last tick. Cleared, not
    /// freed, at each tick; it holds at most as many entries as inputs fit the queue.
    per_session: IdMap<(u64, SessionKey), usize>,
}

impl Inbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Queue::default()),
            wake: tokio::sync::Notify::new(),
            capacity,
        }
    }

    /// Queues an event. Inputs, joins and calls are refused with [`Full`] past the
    /// capacity (the caller tells the client or caller). The capacity is shared: a
    /// session may queue at most `capacity / (n + 1)` inputs between two ticks, where
    /// `n` is the number of sessions with inputs queued, so that one flooding client
    /// (one that gets past its front's rate limit) always leaves room for the others.
    /// Leaves, aways and resyncs are refused only past three times the capacity, which
    /// only a misbehaving front reaches (its link is then closed, and relinking
    /// reconciles its sessions). A link's attach and detach are always queued: there is
    /// one of each per link connection.
    pub(crate) fn push(&self, event: Event) -> Result<(), Full> {
        let mut q = self.inner.lock();
        if q.closed {
            return Err(Full);
        }
        let control = matches!(
            event,
            Event::Attach { .. } | Event::Detach { .. } | Event::Snapshot { .. }
        );
        if !control && q.events.len() >= self.capacity.saturating_mul(3) {
            return Err(Full);
        }
        match &event {
            Event::Input { .. } | Event::Call { .. } if q.inputs >= self.capacity => {
                return Err(Full);
            }
            Event::Input { link, session, .. } => {
                let key = (link.id(), *session);
                let sessions = q.per_session.len() + usize::from(!q.per_session.contains_key(&key));
                let share = (self.capacity / (sessions + 1)).max(1);
                let queued = q.per_session.entry(key).or_insert(0);
                if *queued >= share {
                    return Err(Full);
                }
                *queued += 1;
                q.inputs += 1;
            }
            Event::Join { .. } if q.joins >= self.capacity => return Err(Full),
            Event::Call { .. } => q.inputs += 1,
            Event::Join { .. } => q.joins += 1,
            _ => {}
        }
        q.events.push(event);
        drop(q);
        self.wake.notify_one();
        Ok(())
    }

    /// Closes the inbox for good (a disposed room) and hands back what was queued.
    pub(crate) fn close(&self) -> Vec<Event> {
        let mut q = self.inner.lock();
        q.closed = true;
        std::mem::take(&mut q.events)
    }

    /// Whether [`Inbox::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.inner.lock().closed
    }

    /// Returns once something was pushed since the last call (at once if it was).
    pub(crate) async fn pushed(&self) {
        self.wake.notified().await;
    }

    /// Takes every queued event, swapping in `spare` (an empty Vec with capacity) so
    /// the steady state allocates nothing.
    pub(crate) fn take(&self, spare: Vec<Event>) -> Vec<Event> {
        let mut q = self.inner.lock();
        q.inputs = 0;
        q.joins = 0;
        q.per_session.clear();
        std::mem::replace(&mut q.events, spare)
    }
}
