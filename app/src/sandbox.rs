//! A channel without a network, for testing a game: it calls the game as a back does
//! (the same decoding of joins, inputs and calls, the same errors) and keeps what it
//! sent. Only its message limits are looser: 1 MiB a message and 65536 a call.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use centrum_protocol::{Identity, Seq, State, Tick};

use crate::{
    App, AppError, CallFailure, ClientId, Clients, Ctx, DynApp, Outbox, Outgoing, Payload, Rng,
};

/// One channel running one game, driven by hand.
///
/// ```
/// # use centrum_app::{App, AppError, ClientId, Ctx, NoCalls, Schema, Seq};
/// # #[derive(Default, serde::Serialize, serde::Deserialize)] struct Echo;
/// # impl App for Echo {
/// #     type Join = (); type Input = String; type Call = NoCalls; type Reply = NoCalls; type Options = ();
/// #     fn schema(&self) -> Schema { Schema::new() }
/// #     fn join(&mut self, _: &mut Ctx<'_>, _: ClientId, _: ()) -> Result<(), AppError> { Ok(()) }
/// #     fn leave(&mut self, _: &mut Ctx<'_>, _: ClientId) -> Result<(), AppError> { Ok(()) }
/// #     fn input(&mut self, ctx: &mut Ctx<'_>, _: ClientId, _: Seq, text: String) -> Result<(), AppError> {
/// #         Ok(ctx.broadcast(&text)?)
/// #     }
/// #     fn tick(&mut self, _: &mut Ctx<'_>) -> Result<(), AppError> { Ok(()) }
/// # }
/// use centrum_app::{Recipient, Sandbox};
///
/// let mut room = Sandbox::new(Echo);
/// room.join(ClientId(1), &()).unwrap();
/// room.input(ClientId(1), &"hello").unwrap();
/// room.tick().unwrap();
/// let sent = room.take_messages();
/// assert_eq!(sent[0].to, Recipient::All);
/// assert_eq!(sent[0].decode::<String>().unwrap(), "hello");
/// // What a client could send that the game does not take is refused before the game sees it.
/// assert!(room.input(ClientId(1), &42).is_err());
/// ```
pub struct Sandbox {
    app: Box<dyn DynApp>,
    state: State,
    clients: Clients,
    outbox: Outbox,
    sent: Vec<Outgoing>,
    seqs: HashMap<ClientId, Seq>,
    tick: Tick,
    period: Duration,
    rng: Rng,
}

impl Sandbox {
    /// A channel called `sandbox` running `app` at 20 ticks per second, at tick 0.
    pub fn new<A: App>(app: A) -> Self {
        let state = State::new(App::schema(&app));
        Self {
            app: Box::new(app),
            state,
            clients: Clients::new(),
            outbox: Outbox::new(1 << 20, 1 << 16),
            sent: Vec::new(),
            seqs: HashMap::new(),
            tick: Tick(0),
            period: Duration::from_millis(50),
            rng: Rng::from_name("sandbox"),
        }
    }

    /// The same, ticking `hz` times per second (what [`Ctx::period`] reports).
    pub fn with_tick_hz(mut self, hz: u32) -> Self {
        self.period = Duration::from_secs(1) / hz.max(1);
        self
    }

    /// The channel's state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The tick the next call belongs to.
    pub fn tick_number(&self) -> Tick {
        self.tick.next()
    }

    /// `client` joins with `data`, encoded as a client would send it.
    ///
    /// # Errors
    /// The game's rejection, or the decoding error a client would get.
    pub fn join<T: Serialize + ?Sized>(
        &mut self,
        client: ClientId,
        data: &T,
    ) -> Result<(), AppError> {
        self.join_raw(client, encode(data)?)
    }

    /// `client` joins with join data as bytes (empty for none).
    ///
    /// # Errors
    /// As [`Sandbox::join`].
    pub fn join_raw(&mut self, client: ClientId, data: Bytes) -> Result<(), AppError> {
        self.join_with(client, None, data)
    }

    /// `client` joins as a client whose token proved `identity` (see [`Ctx::identity`]).
    ///
    /// # Errors
    /// As [`Sandbox::join`].
    pub fn join_as<T: Serialize + ?Sized>(
        &mut self,
        client: ClientId,
        identity: Identity,
        data: &T,
    ) -> Result<(), AppError> {
        self.join_with(client, Some(identity), encode(data)?)
    }

    fn join_with(
        &mut self,
        client: ClientId,
        identity: Option<Identity>,
        data: Bytes,
    ) -> Result<(), AppError> {
        if self.clients.contains(client) {
            return Err(AppError::new(format!("client {} already joined", client.0)));
        }
        // In the channel during its own join, so that the game can already message it.
        self.clients.connect(client);
        if let Some(identity) = identity {
            self.clients.set_identity(client, identity);
        }
        if let Err(e) = self.with_ctx(|app, ctx| app.join(ctx, client, &data)) {
            self.clients.remove(client);
            return Err(e);
        }
        self.seqs.insert(client, Seq::NONE);
        Ok(())
    }

    /// `client` sends `input`, with the next seq.
    ///
    /// # Errors
    /// Why the input was refused (`input_refused` for a client).
    pub fn input<T: Serialize + ?Sized>(
        &mut self,
        client: ClientId,
        input: &T,
    ) -> Result<(), AppError> {
        self.input_raw(client, encode(input)?)
    }

    /// `client` sends an input as bytes.
    ///
    /// # Errors
    /// As [`Sandbox::input`].
    pub fn input_raw(&mut self, client: ClientId, data: Bytes) -> Result<(), AppError> {
        let Some(seq) = self.seqs.get_mut(&client) else {
            return Err(AppError::new(format!(
                "client {} is not in the channel",
                client.0
            )));
        };
        *seq = seq.next();
        let seq = *seq;
        self.with_ctx(|app, ctx| app.input(ctx, client, seq, &data))
    }

    /// `client`'s connection drops: it stays in the channel, not connected.
    pub fn disconnect(&mut self, client: ClientId) {
        self.clients.disconnect(client);
    }

    /// `client` leaves.
    ///
    /// # Errors
    /// The game's error.
    pub fn leave(&mut self, client: ClientId) -> Result<(), AppError> {
        if !self.clients.contains(client) {
            return Ok(());
        }
        self.clients.remove(client);
        self.seqs.remove(&client);
        self.with_ctx(|app, ctx| app.leave(ctx, client))
    }

    /// A server-side call, encoded as a caller would send it; its reply decoded as `R`.
    ///
    /// # Errors
    /// [`CallFailure`], as a caller would get it.
    pub fn call<T: Serialize + ?Sized, R: Payload>(&mut self, call: &T) -> Result<R, CallFailure> {
        let data = encode(call).map_err(|e| CallFailure::BadCall(e.message().to_owned()))?;
        let reply = self.with_ctx(|app, ctx| app.call(ctx, &data))?;
        R::decode(&Bytes::from(reply)).map_err(|e| CallFailure::Failed(e.to_string()))
    }

    /// Runs the game's tick and ends the tick: its changes are committed as a patch
    /// would commit them, and the tick number moves on.
    ///
    /// # Errors
    /// The game's error.
    pub fn tick(&mut self) -> Result<(), AppError> {
        let result = self.with_ctx(|app, ctx| app.tick(ctx));
        self.state.commit();
        self.tick = self.tick.next();
        result
    }

    /// Does what a back's restart does to the game: saves it and the state as a
    /// snapshot would, and restores both from those bytes. A game that loses
    /// something here loses it when its back restarts.
    ///
    /// # Errors
    /// The game does not save, or what it saved does not restore.
    pub fn restart(&mut self) -> Result<(), AppError> {
        let saved_game = self.app.save()?;
        let saved_state = self.state.save();
        self.app.restore(&saved_game)?;
        self.state = State::restore(saved_state)?;
        Ok(())
    }

    /// Every message the game sent since the last call of this, oldest first.
    pub fn take_messages(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.sent)
    }

    fn with_ctx<R>(&mut self, call: impl FnOnce(&mut dyn DynApp, &mut Ctx<'_>) -> R) -> R {
        let mut ctx = Ctx::new(
            &mut self.state,
            "sandbox",
            self.tick.next(),
            self.period,
            &self.clients,
            &mut self.outbox,
            &mut self.rng,
        );
        let result = call(self.app.as_mut(), &mut ctx);
        self.sent.extend(self.outbox.drain());
        result
    }
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("tick", &self.tick)
            .field("clients", &self.clients.len())
            .field("entities", &self.state.len())
            .finish_non_exhaustive()
    }
}

/// A value as a client sends it: MessagePack, structs as maps; `()` as no data at all.
fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, AppError> {
    let bytes = rmp_serde::to_vec_named(value)
        .map_err(|e| AppError::new(format!("the test value does not encode: {e}")))?;
    Ok(if bytes == [0xc0] {
        Bytes::new()
    } else {
        Bytes::from(bytes)
    })
}
