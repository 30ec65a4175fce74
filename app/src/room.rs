//! A room as its game controls it: the searchable metadata the matchmaker lists, the
//! lock that keeps it out of `joinOrCreate`, and the request to dispose of it. The
//! host reads what the game changed after each call.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::AppError;

/// The largest metadata a room may carry, encoded: it travels in every report of the
/// room to the master and in every listing.
pub const MAX_METADATA_BYTES: usize = 1024;

/// A room made at run time (as opposed to a channel of the config). Reached through
/// [`Ctx::room`](crate::Ctx::room); saved with the channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    id: String,
    kind: String,
    max_clients: u32,
    metadata: Bytes,
    locked: bool,
    dispose: bool,
    /// The matchmaker's view changed (metadata or lock): the host reports it.
    #[serde(skip)]
    changed: bool,
}

impl Room {
    /// A room of type `kind` with `max_clients` seats. Made by the host.
    pub fn new(id: &str, kind: &str, max_clients: u32) -> Self {
        Self {
            id: id.to_owned(),
            kind: kind.to_owned(),
            max_clients,
            metadata: Bytes::new(),
            locked: false,
            dispose: false,
            changed: true,
        }
    }

    /// The room's id: its channel name.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its type, as the config names it.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// How many clients it seats.
    pub fn max_clients(&self) -> u32 {
        self.max_clients
    }

    /// The metadata as MessagePack (empty when none was set).
    pub fn metadata(&self) -> &Bytes {
        &self.metadata
    }

    /// Sets what the room's listing shows and what `joinOrCreate` filters on: a
    /// serde value, best a map of plain fields (`{"mode": "ranked"}`), since a
    /// filter compares fields of a map.
    ///
    /// # Errors
    /// When the value does not encode, or is over [`MAX_METADATA_BYTES`].
    pub fn set_metadata<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), AppError> {
        let bytes = rmp_serde::to_vec_named(value)
            .map_err(|e| AppError::new(format!("the room's metadata does not encode: {e}")))?;
        if bytes.len() > MAX_METADATA_BYTES {
            return Err(AppError::new(format!(
                "the room's metadata is {} bytes, over the limit of {MAX_METADATA_BYTES}",
                bytes.len()
            )));
        }
        if self.metadata != bytes {
            self.metadata = Bytes::from(bytes);
            self.changed = true;
        }
        Ok(())
    }

    /// Whether the room is locked.
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// Keeps the room out of `joinOrCreate` and `joinById` (seats already reserved
    /// still join, and members who drop may still resume).
    pub fn lock(&mut self) {
        self.changed |= !self.locked;
        self.locked = true;
    }

    /// Offers the room to the matchmaker again.
    pub fn unlock(&mut self) {
        self.changed |= self.locked;
        self.locked = false;
    }

    /// Asks for the room to be disposed of after this tick: its members leave (they
    /// get `Left` with reason `disposed`), the game hears
    /// [`App::dispose`](crate::App::dispose), and the room is gone.
    pub fn dispose(&mut self) {
        self.dispose = true;
    }

    /// Whether the game asked for the room's disposal.
    pub fn dispose_requested(&self) -> bool {
        self.dispose
    }

    /// Whether the metadata or the lock changed since the last call; clears it.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_told_once_and_oversized_metadata_is_refused() {
        let mut room = Room::new("duel.abc.back-1", "duel", 2);
        assert!(room.take_changed(), "a new room is reported");
        assert!(!room.take_changed());
        room.lock();
        room.lock();
        assert!(room.take_changed() && room.is_locked());
        room.set_metadata(
            &[("mode", "ranked")]
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
        .unwrap();
        assert!(room.take_changed());
        let big = "x".repeat(MAX_METADATA_BYTES);
        let err = room.set_metadata(&big).unwrap_err();
        assert!(err.message().contains("over the limit"), "{err}");
        assert!(!room.take_changed(), "a refused value changes nothing");
    }
}
