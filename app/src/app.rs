//! The contract between centrum and a game: the [`App`] trait, the id of a client
//! in a channel, and the one error type every callback returns.

use centrum_protocol::{Schema, Seq, StateError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Ctx, Payload, SendError};

/// A client in a channel, as the game sees it. Unique within a back for as long as the
/// back runs; a client that resumes after a dropped connection keeps its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientId(pub u64);

/// A game hosted by a back: one value per channel, called on that channel's tick, one
/// call at a time, in arrival order: joins, leaves, inputs and calls first, then
/// [`App::tick`].
///
/// A game declares what its clients and callers send as serde types. The channel
/// decodes each message once; one that does not decode never reaches the game: a join
/// is rejected, an input refused (`input_refused`), a call answered `400`. Use
/// [`Raw`](crate::Raw) to get the bytes instead, `()` or `Option<T>` where a message may
/// be empty, and [`NoCalls`](crate::NoCalls) when the game takes no calls.
///
/// A back keeps its channels durable: it saves the game itself (its serde form) in
/// snapshots, and journals every call into it; after a crash it restores the last
/// snapshot and replays the journal through the game. So a game must be
/// **deterministic**: the same calls on the same state do the same thing. Take time
/// from [`Ctx::time`] and chance from [`Ctx::rng`] (or a generator kept in the game),
/// never from the wall clock or an unseeded source, and iterate in a fixed order
/// (`BTreeMap`, `Vec`; not `HashMap`, whose order differs between runs). Fields that
/// need not survive a restart may be `#[serde(skip)]`.
///
/// ```
/// use centrum_app::{App, AppError, ClientId, Ctx, Kind, NoCalls, Schema, Seq, Entity};
/// use serde::{Deserialize, Serialize};
/// use std::collections::BTreeMap;
///
/// #[derive(Kind)]
/// struct Counter {
///     clicks: u64,
/// }
///
/// #[derive(Deserialize)]
/// enum Input {
///     Click,
///     Reset,
/// }
///
/// #[derive(Default, Serialize, Deserialize)]
/// struct Clicks {
///     counters: BTreeMap<ClientId, Entity<Counter>>,
/// }
///
/// impl App for Clicks {
///     type Join = ();
///     type Input = Input;
///     type Call = NoCalls;
///     type Reply = NoCalls;
///     type Options = ();
///
///     fn schema(&self) -> Schema {
///         Schema::new().kind::<Counter>()
///     }
///
///     fn join(&mut self, ctx: &mut Ctx<'_>, client: ClientId, _: ()) -> Result<(), AppError> {
///         let counter = ctx.state.spawn(Counter { clicks: 0 })?;
///         self.counters.insert(client, counter);
///         Ok(())
///     }
///
///     fn leave(&mut self, ctx: &mut Ctx<'_>, client: ClientId) -> Result<(), AppError> {
///         if let Some(counter) = self.counters.remove(&client) {
///             ctx.state.remove(counter);
///         }
///         Ok(())
///     }
///
///     fn input(&mut self, ctx: &mut Ctx<'_>, client: ClientId, _: Seq, input: Input) -> Result<(), AppError> {
///         let counter = self.counters[&client];
///         let clicks = match input {
///             Input::Click => ctx.state.get(counter, Counter::CLICKS)? + 1,
///             Input::Reset => 0,
///         };
///         ctx.state.set(counter, Counter::CLICKS, clicks)?;
///         Ok(())
///     }
///
///     fn tick(&mut self, _: &mut Ctx<'_>) -> Result<(), AppError> {
///         Ok(())
///     }
/// }
/// ```
pub trait App: Serialize + DeserializeOwned + Send + 'static {
    /// What a client sends when it joins. Empty join data decodes as MessagePack
    /// `nil`, so `()` and `Option<T>` accept it.
    type Join: Payload;
    /// What a client sends as an input. Empty input data decodes as `nil`.
    type Input: Payload;
    /// What a server-side caller sends to the channel over HTTP
    /// (`POST /v1/channels/{channel}/call` on a front); [`NoCalls`](crate::NoCalls) for none.
    type Call: Payload;
    /// The answer to a call, sent back as MessagePack (or JSON, if the caller sent JSON).
    type Reply: Serialize;
    /// The options a room of this game is created with (`joinOrCreate` and `create`
    /// through the matchmaker); `()` for a game that takes none. Channels of the config
    /// are not created with options.
    type Options: Payload;

    /// The kinds and fields of this game's state; called once, before anything else.
    fn schema(&self) -> Schema;

    /// A client asks to join. During the call `client` already counts among the
    /// channel's clients, so the game can send it a message (it arrives after the
    /// client's first state).
    ///
    /// # Errors
    /// An [`AppError`] rejects the join; its message is the reason the client gets. A
    /// rejected join gets no [`App::leave`]: undo what the join changed before
    /// returning the error (remove the entity it spawned, say).
    fn join(
        &mut self,
        ctx: &mut Ctx<'_>,
        client: ClientId,
        join: Self::Join,
    ) -> Result<(), AppError>;

    /// A client left, or its connection is gone for good (it did not resume in time).
    ///
    /// # Errors
    /// An [`AppError`] is logged and counted; the client is gone either way.
    fn leave(&mut self, ctx: &mut Ctx<'_>, client: ClientId) -> Result<(), AppError>;

    /// One input of a joined client, in arrival order. `seq` is the client's number for
    /// it, increasing per channel.
    ///
    /// # Errors
    /// An [`AppError`] refuses the input: the client gets `input_refused` with the
    /// message. The input still counts as applied (its seq is acknowledged).
    fn input(
        &mut self,
        ctx: &mut Ctx<'_>,
        client: ClientId,
        seq: Seq,
        input: Self::Input,
    ) -> Result<(), AppError>;

    /// Advances the game by one period, after this tick's joins, leaves, inputs and calls.
    ///
    /// # Errors
    /// An [`AppError`] is logged and counted; what the tick changed before it still goes out.
    fn tick(&mut self, ctx: &mut Ctx<'_>) -> Result<(), AppError>;

    /// A room of this game was just made with `options`, before any client joins: the
    /// place to read them, set the room's metadata (`ctx.room()`), or refuse them.
    /// Not called for a channel of the config.
    ///
    /// # Errors
    /// An [`AppError`] refuses the options: the room is not made, and whoever asked
    /// gets `bad_options` with the message.
    fn create(&mut self, ctx: &mut Ctx<'_>, options: Self::Options) -> Result<(), AppError> {
        let _ = (ctx, options);
        Ok(())
    }

    /// The room is about to be disposed of (it stayed empty for its type's
    /// `empty_dispose_s`, or the game asked with `Room::dispose`): the last call the
    /// game gets. Members still in it leave without [`App::leave`].
    ///
    /// # Errors
    /// An [`AppError`] is logged and counted; the room goes either way.
    fn dispose(&mut self, ctx: &mut Ctx<'_>) -> Result<(), AppError> {
        let _ = ctx;
        Ok(())
    }

    /// A call from a server-side system (a lobby, a web back end, an admin script),
    /// answered with a reply. It runs on the channel's tick like everything else, so it
    /// sees the same consistent state, and what it changes goes out in this tick's patch.
    /// A game that takes no calls declares `type Call = NoCalls` (callers get HTTP 501)
    /// and keeps this default, which is never called then.
    ///
    /// # Errors
    /// An [`AppError`] answers the caller with HTTP 422 and the message.
    fn call(&mut self, ctx: &mut Ctx<'_>, call: Self::Call) -> Result<Self::Reply, AppError> {
        let _ = (ctx, call);
        Err(AppError::new("this game takes no calls"))
    }
}

/// Why a game refused something or failed: a join (the message is the rejection
/// reason), an input (`input_refused`), a call (HTTP 422), or a tick or leave (logged).
///
/// State and message errors convert into it, so `?` works in every callback.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    message: String,
}

impl AppError {
    /// An error with a message for people (a client, a caller, the log).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<StateError> for AppError {
    fn from(e: StateError) -> Self {
        Self::new(e.to_string())
    }
}

impl From<SendError> for AppError {
    fn from(e: SendError) -> Self {
        Self::new(e.to_string())
    }
}

impl From<String> for AppError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for AppError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}
