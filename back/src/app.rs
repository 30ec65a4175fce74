//! The contract between a back and the game it hosts: a Rust trait with join, leave,
//! input and tick, called from the channel's tick loop with the channel's state.

use std::time::Duration;

use centrum_protocol::{Schema, Seq, State, Tick};

/// A client in a channel, as the application sees it; unique within a back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

/// What an application gets on every call: the channel's change-tracked state and time.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub state: &'a mut State,
    /// The tick being computed.
    pub tick: Tick,
    /// The fixed tick period (1 / tick_hz).
    pub period: Duration,
}

/// A join the application refused; the reason reaches the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejection(pub String);

/// An input the application could not use; the client gets an `input_refused` error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// A game hosted by a back. One instance per channel; every call happens on that
/// channel's tick, in arrival order: joins, leaves and inputs first, then `tick`.
pub trait App: Send + 'static {
    /// The kinds and fields of this game's state; called once, before anything else.
    fn schema(&self) -> Schema;

    /// A client asks to join. `data` is the client's join data (application-defined
    /// MessagePack, possibly empty).
    ///
    /// # Errors
    /// A [`Rejection`] refuses the join with a reason for the client.
    fn join(&mut self, ctx: &mut Ctx<'_>, client: ClientId, data: &[u8]) -> Result<(), Rejection>;

    /// A client left (or its connection is gone for good).
    fn leave(&mut self, ctx: &mut Ctx<'_>, client: ClientId);

    /// One input of a joined client, in arrival order.
    ///
    /// # Errors
    /// An [`InputError`] tells the client the input was refused; it is still acked.
    fn input(
        &mut self,
        ctx: &mut Ctx<'_>,
        client: ClientId,
        seq: Seq,
        data: &[u8],
    ) -> Result<(), InputError>;

    /// Advances the simulation by one period, after this tick's inputs.
    fn tick(&mut self, ctx: &mut Ctx<'_>);
}
