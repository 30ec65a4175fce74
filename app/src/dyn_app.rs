//! A game as its host calls it: the typed [`App`] behind one object-safe trait that
//! takes the bytes clients and callers sent, decodes them once, and encodes replies.

use bytes::Bytes;

use centrum_protocol::{Schema, Seq};

use crate::{App, AppError, ClientId, Ctx, Payload, PayloadError};

/// What a host (a back, a [`Sandbox`](crate::Sandbox)) calls. Every [`App`] is one.
pub trait DynApp: Send {
    /// As [`App::schema`].
    fn schema(&self) -> Schema;

    /// Decodes the join data and calls [`App::join`].
    ///
    /// # Errors
    /// The rejection: join data that does not decode, or the game's own.
    fn join(&mut self, ctx: &mut Ctx<'_>, client: ClientId, data: &Bytes) -> Result<(), AppError>;

    /// As [`App::leave`].
    ///
    /// # Errors
    /// The game's error, for the log.
    fn leave(&mut self, ctx: &mut Ctx<'_>, client: ClientId) -> Result<(), AppError>;

    /// Decodes the input and calls [`App::input`].
    ///
    /// # Errors
    /// Why the input is refused: it does not decode, or the game refused it.
    fn input(
        &mut self,
        ctx: &mut Ctx<'_>,
        client: ClientId,
        seq: Seq,
        data: &Bytes,
    ) -> Result<(), AppError>;

    /// As [`App::tick`].
    ///
    /// # Errors
    /// The game's error, for the log.
    fn tick(&mut self, ctx: &mut Ctx<'_>) -> Result<(), AppError>;

    /// Decodes the creation options and calls [`App::create`].
    ///
    /// # Errors
    /// The options do not decode, or the game refused them.
    fn create(&mut self, ctx: &mut Ctx<'_>, options: &Bytes) -> Result<(), AppError>;

    /// As [`App::dispose`].
    ///
    /// # Errors
    /// The game's error, for the log.
    fn dispose(&mut self, ctx: &mut Ctx<'_>) -> Result<(), AppError>;

    /// Decodes the call, calls [`App::call`] and encodes its reply as MessagePack.
    ///
    /// # Errors
    /// [`CallFailure`] says which of the ways a call can fail this was.
    fn call(&mut self, ctx: &mut Ctx<'_>, data: &Bytes) -> Result<Vec<u8>, CallFailure>;

    /// The game itself as MessagePack, for a snapshot.
    ///
    /// # Errors
    /// The game's `Serialize` failed.
    fn save(&self) -> Result<Vec<u8>, AppError>;

    /// Replaces the game with one [`DynApp::save`] made.
    ///
    /// # Errors
    /// The bytes are not a saved game of this type; the game is unchanged.
    fn restore(&mut self, saved: &[u8]) -> Result<(), AppError>;
}

/// Why a call got no reply from the game.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    /// The call's data does not decode as the game's `Call` type.
    #[error("call {0}")]
    BadCall(String),
    /// The game takes no calls.
    #[error("this game takes no calls")]
    NoCalls,
    /// The game refused the call.
    #[error("{0}")]
    Refused(String),
    /// The game's reply does not encode.
    #[error("the reply does not encode: {0}")]
    Failed(String),
}

impl<A: App> DynApp for A {
    fn schema(&self) -> Schema {
        App::schema(self)
    }

    fn join(&mut self, ctx: &mut Ctx<'_>, client: ClientId, data: &Bytes) -> Result<(), AppError> {
        let join = A::Join::decode(data).map_err(|e| AppError::new(format!("join data {e}")))?;
        App::join(self, ctx, client, join)
    }

    fn leave(&mut self, ctx: &mut Ctx<'_>, client: ClientId) -> Result<(), AppError> {
        App::leave(self, ctx, client)
    }

    fn input(
        &mut self,
        ctx: &mut Ctx<'_>,
        client: ClientId,
        seq: Seq,
        data: &Bytes,
    ) -> Result<(), AppError> {
        let input = A::Input::decode(data).map_err(|e| AppError::new(format!("input {e}")))?;
        App::input(self, ctx, client, seq, input)
    }

    fn tick(&mut self, ctx: &mut Ctx<'_>) -> Result<(), AppError> {
        App::tick(self, ctx)
    }

    fn create(&mut self, ctx: &mut Ctx<'_>, options: &Bytes) -> Result<(), AppError> {
        let options =
            A::Options::decode(options).map_err(|e| AppError::new(format!("options {e}")))?;
        App::create(self, ctx, options)
    }

    fn dispose(&mut self, ctx: &mut Ctx<'_>) -> Result<(), AppError> {
        App::dispose(self, ctx)
    }

    fn call(&mut self, ctx: &mut Ctx<'_>, data: &Bytes) -> Result<Vec<u8>, CallFailure> {
        let call = A::Call::decode(data).map_err(|e| match e {
            PayloadError::NotAccepted => CallFailure::NoCalls,
            invalid => CallFailure::BadCall(invalid.to_string()),
        })?;
        let reply =
            App::call(self, ctx, call).map_err(|e| CallFailure::Refused(e.message().to_owned()))?;
        rmp_serde::to_vec_named(&reply).map_err(|e| CallFailure::Failed(e.to_string()))
    }

    fn save(&self) -> Result<Vec<u8>, AppError> {
        rmp_serde::to_vec_named(self)
            .map_err(|e| AppError::new(format!("the game does not save: {e}")))
    }

    fn restore(&mut self, saved: &[u8]) -> Result<(), AppError> {
        *self = rmp_serde::from_slice(saved)
            .map_err(|e| AppError::new(format!("the saved game does not restore: {e}")))?;
        Ok(())
    }
}
