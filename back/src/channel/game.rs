//! The hosted game and everything a replay must reproduce with it: its state, its
//! clients as it sees them, its random source and the tick count. It changes only
//! through [`Game::apply`], with the same [`Entry`]s live and in a replay from the
//! journal, so the two cannot drift apart.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use centrum_app::{AppError, CallFailure, ClientId, Clients, Ctx, DynApp, Outbox, Rng, Room};
use centrum_protocol::{Identity, Seq, State, Tick};

use super::membership::Seat;

/// One thing that happened to the game, in the order it happened: what the journal
/// keeps of a tick, besides the tick itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Entry {
    /// A new client asked to join with `data`; it is in on `seat` if the game accepts.
    /// `identity`: what its token proved, none for an anonymous client (and in
    /// records written before identities).
    Join {
        client: ClientId,
        data: Bytes,
        seat: Seat,
        #[serde(default)]
        identity: Option<Identity>,
    },
    /// A held or moved membership now sits on `seat`.
    Resume {
        client: ClientId,
        seat: Seat,
    },
    /// The client is gone for good.
    Leave {
        client: ClientId,
    },
    Connect {
        client: ClientId,
    },
    Disconnect {
        client: ClientId,
    },
    Input {
        client: ClientId,
        seq: Seq,
        data: Bytes,
    },
    Call {
        data: Bytes,
    },
    /// The room was made with these options (a room's first entry).
    Create {
        options: Bytes,
    },
    /// The room is being disposed of (its last entry).
    Dispose,
}

/// What the game made of an entry.
#[derive(Debug)]
pub(crate) enum Applied {
    /// Nothing the game decides on.
    Done,
    Join(Result<(), AppError>),
    Leave(Result<(), AppError>),
    Input(Result<(), AppError>),
    Call(Result<Vec<u8>, CallFailure>),
    /// The game's `create` or `dispose`.
    Room(Result<(), AppError>),
}

pub(crate) struct Game {
    pub(crate) app: Box<dyn DynApp>,
    pub(crate) state: State,
    pub(crate) clients: Clients,
    pub(crate) rng: Rng,
    /// Messages the game sent during this tick.
    pub(crate) outbox: Outbox,
    /// Ticks since the channel was first started, across restarts; the protocol's
    /// tick is its low 32 bits.
    pub(crate) step: u64,
    /// The id the next new client gets.
    pub(crate) next_client: u64,
    /// For a room: its metadata, lock and disposal, as the game sets them.
    pub(crate) room: Option<Room>,
    channel: String,
    period: Duration,
}

impl std::fmt::Debug for Game {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Game")
            .field("channel", &self.channel)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

impl Game {
    pub(crate) fn new(
        app: Box<dyn DynApp>,
        channel: &str,
        period: Duration,
        outbox: Outbox,
    ) -> Self {
        let state = State::new(app.schema());
        Self {
            app,
            state,
            clients: Clients::new(),
            rng: Rng::from_name(channel),
            outbox,
            step: 0,
            next_client: 1,
            room: None,
            channel: channel.to_owned(),
            period,
        }
    }

    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    /// The tick being computed, as the protocol numbers it.
    pub(crate) fn tick(&self) -> Tick {
        Tick(self.step as u32)
    }

    /// A tick begins: what is applied from now on belongs to it.
    pub(crate) fn begin_tick(&mut self) {
        self.step += 1;
    }

    /// A new client's id.
    pub(crate) fn new_client(&mut self) -> ClientId {
        let client = ClientId(self.next_client);
        self.next_client += 1;
        client
    }

    /// Applies one entry through the game.
    pub(crate) fn apply(&mut self, entry: &Entry) -> Applied {
        match entry {
            Entry::Join {
                client,
                data,
                identity,
                ..
            } => {
                let client = *client;
                self.next_client = self.next_client.max(client.0 + 1);
                // In the channel during its own join, so that the game can already
                // message it; what it sends arrives after the joiner's first state.
                self.clients.connect(client);
                if let Some(identity) = identity {
                    self.clients.set_identity(client, identity.clone());
                }
                let result = self.with_app(|app, ctx| app.join(ctx, client, data));
                if result.is_err() {
                    self.clients.remove(client);
                }
                Applied::Join(result)
            }
            Entry::Resume { .. } => Applied::Done,
            Entry::Leave { client } => {
                let client = *client;
                self.clients.remove(client);
                Applied::Leave(self.with_app(|app, ctx| app.leave(ctx, client)))
            }
            Entry::Connect { client } => {
                self.clients.connect(*client);
                Applied::Done
            }
            Entry::Disconnect { client } => {
                self.clients.disconnect(*client);
                Applied::Done
            }
            Entry::Input { client, seq, data } => {
                let (client, seq) = (*client, *seq);
                Applied::Input(self.with_app(|app, ctx| app.input(ctx, client, seq, data)))
            }
            Entry::Call { data } => Applied::Call(self.with_app(|app, ctx| app.call(ctx, data))),
            Entry::Create { options } => {
                Applied::Room(self.with_app(|app, ctx| app.create(ctx, options)))
            }
            Entry::Dispose => Applied::Room(self.with_app(|app, ctx| app.dispose(ctx))),
        }
    }

    /// The game's tick, after the tick's entries.
    pub(crate) fn run_tick(&mut self) -> Result<(), AppError> {
        self.with_app(|app, ctx| app.tick(ctx))
    }

    /// Calls the game with a context over this channel's state, clients and outbox.
    fn with_app<R>(&mut self, call: impl FnOnce(&mut dyn DynApp, &mut Ctx<'_>) -> R) -> R {
        let mut ctx = Ctx::new(
            &mut self.state,
            &self.channel,
            Tick(self.step as u32),
            self.period,
            &self.clients,
            &mut self.outbox,
            &mut self.rng,
        )
        .with_room(self.room.as_mut());
        call(self.app.as_mut(), &mut ctx)
    }
}
