//! What a tick sends, in the order clients see it: ONE patch body shared by every
//! front (each frame with that front's acks), one full state shared by every joiner,
//! then the game's messages, each encoded once, and the answers to calls. Frames
//! queue in `outgoing` until the tick's record is durable.

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;

use centrum_app::Recipient;
use centrum_protocol::{
    BackToFront, FrontMsg, LinkMessage, LinkPatch, LinkState, MessageMsg, Seq, SessionKey, encode,
};

use super::{Channel, journal};

impl Channel {
    /// Encodes this tick's changes once and sends the same body to every front that
    /// has clients here, each with the acks of its own clients.
    pub(super) fn send_patch(&mut self) {
        let mut body = Vec::new();
        let tick = self.game.tick();
        let changed = self
            .game
            .state
            .commit_patch(&self.shared.name, tick, &mut body);
        self.patch_crc = journal::patch_crc(&body);
        if changed {
            self.shared.metrics.patches.fetch_add(1, Relaxed);
            self.shared
                .metrics
                .patch_bytes
                .fetch_add(body.len() as u64, Relaxed);
            // What the state may have grown by; measured again when it matters.
            self.full_len += body.len();
        }
        let max_frame = self.options.max_frame_bytes;
        let mut body = Bytes::from(body);
        for front in self.members.fronts_mut() {
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
                centrum_protocol::encode_empty_patch(&self.shared.name, tick, &mut empty);
                body = Bytes::from(empty);
            }
            let msg = BackToFront::Patch(LinkPatch {
                channel: self.shared.index,
                tick,
                changed,
                acks,
                body: body.clone(),
            });
            let frame = encode(&msg);
            if frame.len() > max_frame {
                // A frame this large would close the link. The front's clients here
                // get a full state instead, or, if that does not fit either, leave.
                self.shared.metrics.frames_too_large.fetch_add(1, Relaxed);
                front.want_state.extend(front.sessions.keys().copied());
                continue;
            }
            self.outgoing.push((link.clone(), Bytes::from(frame)));
        }
    }

    /// One full-state encoding, shared by every session that needs it at this tick.
    pub(super) fn send_states(&mut self) {
        if self
            .members
            .fronts()
            .all(|f| (f.want_state.is_empty() && !f.just_attached) || f.link.is_none())
        {
            return;
        }
        let body = self.full_state();
        self.full_len = body.len();
        let tick = self.game.tick();
        let max_frame = self.options.max_frame_bytes;
        for front in self.members.fronts_mut() {
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
                tick,
                sessions,
                body: body.clone(),
            });
            let frame = encode(&msg);
            if frame.len() > max_frame {
                // Never sent: it would close the link, and with it every channel of
                // this back for that front. These sessions leave at the next tick.
                self.shared.metrics.frames_too_large.fetch_add(1, Relaxed);
                tracing::warn!(channel = %self.shared.name, bytes = frame.len(), max_frame, "a full state does not fit a link frame; its sessions leave the channel");
                if let BackToFront::State(state) = msg {
                    let evicted = state.sessions.into_iter().map(|(k, _)| (link.clone(), k));
                    self.oversized.extend(evicted);
                }
                continue;
            }
            self.outgoing.push((link.clone(), Bytes::from(frame)));
        }
    }

    pub(super) fn full_state(&self) -> Bytes {
        let mut body = Vec::new();
        self.game
            .state
            .encode_full(&self.shared.name, self.game.tick(), &mut body);
        self.shared.metrics.full_states.fetch_add(1, Relaxed);
        Bytes::from(body)
    }

    /// The game's messages of this tick, in the order it sent them: each becomes one
    /// client `Message`, encoded once, which fronts send unchanged. A broadcast goes
    /// to every linked front with clients here; a message to one client to its front.
    pub(super) fn send_messages(&mut self) {
        if self.game.outbox.is_empty() {
            return;
        }
        let metrics = &self.shared.metrics;
        let tick = self.game.tick();
        for out in self.game.outbox.drain() {
            metrics.messages.fetch_add(1, Relaxed);
            metrics
                .message_bytes
                .fetch_add(out.data.len() as u64, Relaxed);
            let body = Bytes::from(encode(&FrontMsg::Message(MessageMsg {
                channel: self.shared.name.clone(),
                tick,
                data: out.data,
            })));
            match out.to {
                Recipient::All => {
                    // The same frame for every front: encoded once.
                    let frame = Bytes::from(encode(&BackToFront::Message(LinkMessage {
                        channel: self.shared.index,
                        to: None,
                        body,
                    })));
                    for front in self.members.fronts() {
                        let Some(link) = &front.link else { continue };
                        if !front.sessions.is_empty() {
                            self.outgoing.push((link.clone(), frame.clone()));
                        }
                    }
                }
                Recipient::One(client) => {
                    let Some((link, session)) = self.members.route(client) else {
                        // Away (its connection dropped) or its front is unlinked: the
                        // game was told it is not connected (`Ctx::is_connected`).
                        metrics.messages_undelivered.fetch_add(1, Relaxed);
                        continue;
                    };
                    let msg = BackToFront::Message(LinkMessage {
                        channel: self.shared.index,
                        to: Some(vec![session]),
                        body,
                    });
                    self.outgoing
                        .push((link.clone(), Bytes::from(encode(&msg))));
                }
            }
        }
    }

    /// Answers this tick's calls, after its patch, so that a caller that then looks at
    /// the channel sees what its call changed.
    pub(super) fn send_replies(&mut self) {
        for (link, reply) in self.replies.drain(..) {
            let frame = Bytes::from(encode(&BackToFront::Reply(reply)));
            self.outgoing.push((link, frame));
        }
    }
}
