//! What a game gets on every call: the channel's state, its clock, its clients, and
//! the way to send them messages that are not state ([`Ctx::send`], [`Ctx::broadcast`]).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use centrum_protocol::{Identity, State, Tick};

use crate::{ClientId, Rng, Room};

/// The context of one call into a game.
///
/// Messages sent through it during tick T reach clients after the `State` or `Patch`
/// of tick T, in the order they were sent, so the state a message talks about is
/// already on screen when it arrives.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The channel's change-tracked state. Everything changed here goes out in this
    /// tick's patch.
    pub state: &'a mut State,
    channel: &'a str,
    tick: Tick,
    period: Duration,
    clients: &'a Clients,
    outbox: &'a mut Outbox,
    rng: &'a mut Rng,
    room: Option<&'a mut Room>,
}

/// The clients in a channel, as the game knows them: joined, not yet left. A client
/// whose connection dropped stays in while it may resume, but is not connected.
/// Ordered by id, so that a game iterating them does the same thing on every run.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clients {
    connected: BTreeMap<ClientId, bool>,
    /// The verified identity of each client that joined with a token.
    #[serde(default)]
    identities: BTreeMap<ClientId, Identity>,
}

/// The messages a game sent during one call, waiting for the host to deliver them.
/// Bounded: see [`Outbox::new`].
#[derive(Debug)]
pub struct Outbox {
    messages: Vec<Outgoing>,
    max_bytes: usize,
    max_messages: usize,
}

/// One message a game sent: the game's value, encoded once, and who gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Who gets it.
    pub to: Recipient,
    /// The value as MessagePack (structs as maps with field names).
    pub data: Bytes,
}

/// Who gets a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    /// One client of the channel.
    One(ClientId),
    /// Every connected client of the channel.
    All,
}

/// A message the game could not send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Not a client of this channel (it left, or never joined).
    #[error("client {} is not in this channel", .0.0)]
    NotInChannel(ClientId),
    /// Larger than a message may be.
    #[error("a message of {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// The message's size, encoded.
        size: usize,
        /// The most a message may be.
        limit: usize,
    },
    /// The game already sent as many messages as one tick may carry.
    #[error("this tick already has {limit} messages, the most one tick may send")]
    TooMany {
        /// The most messages one tick may send.
        limit: usize,
    },
    /// The value's `Serialize` failed.
    #[error("the message does not encode: {0}")]
    Encode(String),
}

impl<'a> Ctx<'a> {
    /// A context for one call. Made by the host that runs the game (a back, or a
    /// [`Sandbox`](crate::Sandbox) in tests).
    pub fn new(
        state: &'a mut State,
        channel: &'a str,
        tick: Tick,
        period: Duration,
        clients: &'a Clients,
        outbox: &'a mut Outbox,
        rng: &'a mut Rng,
    ) -> Self {
        Self {
            state,
            channel,
            tick,
            period,
            clients,
            outbox,
            rng,
            room: None,
        }
    }

    /// The same context, for a room made at run time.
    pub fn with_room(mut self, room: Option<&'a mut Room>) -> Self {
        self.room = room;
        self
    }

    /// The room this channel is, with its metadata, lock and disposal; `None` for a
    /// channel of the config.
    pub fn room(&mut self) -> Option<&mut Room> {
        self.room.as_deref_mut()
    }

    /// The channel's name.
    pub fn channel(&self) -> &str {
        self.channel
    }

    /// The tick being computed. It counts from 1 when the channel starts, and goes on
    /// from where it was when its back restarts from its store.
    pub fn tick(&self) -> Tick {
        self.tick
    }

    /// The fixed time between two ticks (1 / `tick_hz`).
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The game's clock: the tick times the period. Use it, not the wall clock, for
    /// anything that changes state, so that a replay of the channel's journal after a
    /// restart computes the same state again.
    pub fn time(&self) -> Duration {
        self.period.saturating_mul(self.tick.0)
    }

    /// The channel's random source, saved and restored with the channel: a replay
    /// draws the same numbers. Use it (or a generator kept in the game) rather than
    /// an unseeded one.
    pub fn rng(&mut self) -> &mut Rng {
        self.rng
    }

    /// The clients in the channel, connected or not, in id order.
    pub fn clients(&self) -> impl Iterator<Item = ClientId> + '_ {
        self.clients.connected.keys().copied()
    }

    /// Whether `client` is in the channel with a live connection. A client whose
    /// connection dropped is still in the channel for a while (it may resume), but
    /// messages sent to it meanwhile are lost.
    pub fn is_connected(&self, client: ClientId) -> bool {
        self.clients.is_connected(client)
    }

    /// Who `client` is, as the token it joined with says (PROTOCOL.md: authentication):
    /// its subject and the claims the cluster's `auth.claims` passes on. `None` for a
    /// client that joined without a token (a channel open to anonymous clients, or a
    /// cluster without `[auth]`), or that is not in the channel. Already set during
    /// the client's [`App::join`](crate::App::join), and the same after a resume or a
    /// restart of the back.
    ///
    /// ```
    /// use centrum_app::{AppError, ClientId, Ctx};
    ///
    /// /// The name a player shows: the token's `name` claim, else its subject.
    /// fn player_name(ctx: &Ctx<'_>, client: ClientId) -> Result<String, AppError> {
    ///     let identity = ctx.identity(client).ok_or("this game needs a token")?;
    ///     Ok(identity.claim("name").unwrap_or_else(|| identity.subject.clone()))
    /// }
    /// ```
    pub fn identity(&self, client: ClientId) -> Option<&Identity> {
        self.clients.identity(client)
    }

    /// Sends `value` to one client of the channel, as MessagePack (structs as maps).
    /// A client that is in the channel but not connected (see
    /// [`Ctx::is_connected`]) does not get it.
    ///
    /// # Errors
    /// [`SendError`] when `client` is not in the channel, the message is too large, this
    /// tick has too many, or the value does not encode.
    pub fn send<T: Serialize + ?Sized>(
        &mut self,
        client: ClientId,
        value: &T,
    ) -> Result<(), SendError> {
        if !self.clients.connected.contains_key(&client) {
            return Err(SendError::NotInChannel(client));
        }
        self.outbox.push(Recipient::One(client), value)
    }

    /// Sends `value` to every connected client of the channel. It is encoded once and
    /// the same bytes go to everyone.
    ///
    /// # Errors
    /// [`SendError`] when the message is too large, this tick has too many, or the
    /// value does not encode.
    pub fn broadcast<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SendError> {
        self.outbox.push(Recipient::All, value)
    }
}

impl Clients {
    /// No clients.
    pub fn new() -> Self {
        Self::default()
    }

    /// `client` joined, or its connection came back.
    pub fn connect(&mut self, client: ClientId) {
        self.connected.insert(client, true);
    }

    /// `client` joined with a verified `identity` (see [`Ctx::identity`]).
    pub fn set_identity(&mut self, client: ClientId, identity: Identity) {
        if self.connected.contains_key(&client) {
            self.identities.insert(client, identity);
        }
    }

    /// Who `client` is, if it joined with a token.
    pub fn identity(&self, client: ClientId) -> Option<&Identity> {
        self.identities.get(&client)
    }

    /// `client`'s connection dropped; it stays in the channel.
    pub fn disconnect(&mut self, client: ClientId) {
        if let Some(connected) = self.connected.get_mut(&client) {
            *connected = false;
        }
    }

    /// `client` left the channel.
    pub fn remove(&mut self, client: ClientId) {
        self.connected.remove(&client);
        self.identities.remove(&client);
    }

    /// Whether `client` is in the channel with a live connection.
    pub fn is_connected(&self, client: ClientId) -> bool {
        self.connected.get(&client) == Some(&true)
    }

    /// Whether `client` is in the channel.
    pub fn contains(&self, client: ClientId) -> bool {
        self.connected.contains_key(&client)
    }

    /// How many clients are in the channel.
    pub fn len(&self) -> usize {
        self.connected.len()
    }

    /// Whether the channel has no client.
    pub fn is_empty(&self) -> bool {
        self.connected.is_empty()
    }
}

impl Outbox {
    /// An empty outbox taking messages of at most `max_bytes` each, and at most
    /// `max_messages` until it is drained (once per tick).
    pub fn new(max_bytes: usize, max_messages: usize) -> Self {
        Self {
            messages: Vec::new(),
            max_bytes,
            max_messages,
        }
    }

    /// Takes every message, oldest first.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Outgoing> {
        self.messages.drain(..)
    }

    /// Whether no message waits.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    fn push<T: Serialize + ?Sized>(&mut self, to: Recipient, value: &T) -> Result<(), SendError> {
        if self.messages.len() >= self.max_messages {
            return Err(SendError::TooMany {
                limit: self.max_messages,
            });
        }
        let data = rmp_serde::to_vec_named(value).map_err(|e| SendError::Encode(e.to_string()))?;
        if data.len() > self.max_bytes {
            return Err(SendError::TooLarge {
                size: data.len(),
                limit: self.max_bytes,
            });
        }
        self.messages.push(Outgoing {
            to,
            data: Bytes::from(data),
        });
        Ok(())
    }
}

impl Outgoing {
    /// The message as the type it was sent as (or any type that decodes from it).
    ///
    /// # Errors
    /// [`PayloadError`](crate::PayloadError) when it is not a value of `T`.
    pub fn decode<T: crate::Payload>(&self) -> Result<T, crate::PayloadError> {
        T::decode(&self.data)
    }
}

#[cfg(test)]
mod tests {
    use centrum_protocol::Schema;

    use super::*;

    fn with_ctx<R>(clients: &Clients, outbox: &mut Outbox, f: impl FnOnce(&mut Ctx<'_>) -> R) -> R {
        let mut state = State::new(Schema::new());
        let mut rng = Rng::new(1);
        let mut ctx = Ctx::new(
            &mut state,
            "room",
            Tick(3),
            Duration::from_millis(50),
            clients,
            outbox,
            &mut rng,
        );
        f(&mut ctx)
    }

    #[test]
    fn messages_go_to_clients_in_the_channel_encoded_once() {
        let mut clients = Clients::new();
        clients.connect(ClientId(1));
        clients.connect(ClientId(2));
        clients.disconnect(ClientId(2));
        let mut outbox = Outbox::new(64, 3);
        with_ctx(&clients, &mut outbox, |ctx| {
            assert_eq!(ctx.channel(), "room");
            assert!(ctx.is_connected(ClientId(1)));
            assert!(!ctx.is_connected(ClientId(2)), "away, still in");
            assert_eq!(ctx.clients().count(), 2);
            ctx.send(ClientId(1), "hi").unwrap();
            ctx.send(ClientId(2), "missed, not an error").unwrap();
            assert_eq!(
                ctx.send(ClientId(9), "x"),
                Err(SendError::NotInChannel(ClientId(9)))
            );
            ctx.broadcast(&[1, 2]).unwrap();
            assert_eq!(
                ctx.broadcast("one too many"),
                Err(SendError::TooMany { limit: 3 })
            );
        });
        let sent: Vec<Outgoing> = outbox.drain().collect();
        assert_eq!(sent[0].to, Recipient::One(ClientId(1)));
        assert_eq!(sent[0].decode::<String>().unwrap(), "hi");
        assert_eq!(sent[2].to, Recipient::All);
        assert_eq!(&sent[2].data[..], &[0x92, 1, 2]);
        assert!(outbox.is_empty());
    }

    #[test]
    fn structs_travel_as_maps_and_large_ones_are_refused() {
        #[derive(Serialize)]
        struct Tagged<'a> {
            by: &'a str,
        }
        let clients = Clients::new();
        let mut outbox = Outbox::new(8, 10);
        with_ctx(&clients, &mut outbox, |ctx| {
            ctx.broadcast(&Tagged { by: "ann" }).unwrap();
            assert_eq!(
                ctx.broadcast(&"x".repeat(20)),
                Err(SendError::TooLarge { size: 21, limit: 8 })
            );
        });
        let sent: Vec<Outgoing> = outbox.drain().collect();
        assert_eq!(&sent[0].data[..], b"\x81\xa2by\xa3ann");
    }

    #[test]
    fn an_identity_lives_as_long_as_its_client_and_survives_a_snapshot() {
        let mut clients = Clients::new();
        clients.set_identity(ClientId(1), Identity::new("nobody"));
        assert_eq!(clients.identity(ClientId(1)), None, "not in the channel");
        clients.connect(ClientId(1));
        clients.connect(ClientId(2));
        clients.set_identity(ClientId(1), Identity::new("ann").with_claim("name", "Ann"));
        let mut outbox = Outbox::new(64, 3);
        with_ctx(&clients, &mut outbox, |ctx| {
            let ann = ctx.identity(ClientId(1)).unwrap();
            assert_eq!(ann.subject, "ann");
            assert_eq!(ann.claim::<String>("name").as_deref(), Some("Ann"));
            assert_eq!(ctx.identity(ClientId(2)), None, "anonymous");
        });
        // Snapshots encode clients as arrays; one from before identities still reads.
        let saved = rmp_serde::to_vec(&clients).unwrap();
        assert_eq!(rmp_serde::from_slice::<Clients>(&saved).unwrap(), clients);
        let older: Clients = rmp_serde::from_slice(
            &rmp_serde::to_vec(&(BTreeMap::from([(ClientId(2), true)]),)).unwrap(),
        )
        .unwrap();
        assert!(older.contains(ClientId(2)) && older.identity(ClientId(2)).is_none());
        clients.remove(ClientId(1));
        clients.connect(ClientId(1));
        assert_eq!(clients.identity(ClientId(1)), None, "gone with its client");
    }
}
