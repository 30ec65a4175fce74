//! What a channel keeps in its store and how it comes back from it. The journal holds
//! one record per tick: the entries the game applied, in order, and a checksum of
//! the patch the tick made. A snapshot holds the game itself, its state, clients,
//! random source and members. Recovery restores the newest snapshot and replays the
//! records after it through the game; a replayed tick whose patch differs from the
//! one clients got is counted as a divergence (a game that is not deterministic).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use centrum_app::{ClientId, Clients, Rng};
use centrum_protocol::{SavedState, Seq, State};
use centrum_store::{Record, Recovered};

use super::game::{Applied, Entry, Game};
use super::membership::SavedMember;

/// The version of [`TickRecord`] and [`SnapshotBody`]; a back refuses others by name.
pub(crate) const BODY_VERSION: u32 = 1;

/// One tick in the journal.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TickRecord {
    pub(crate) version: u32,
    pub(crate) entries: Vec<Entry>,
    /// CRC-32 of the patch body the tick made (0 for a tick that changed nothing).
    pub(crate) patch_crc: u32,
}

/// A channel as a snapshot keeps it, after tick `step`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SnapshotBody {
    pub(crate) version: u32,
    /// The application it is a snapshot of.
    pub(crate) app: String,
    pub(crate) step: u64,
    pub(crate) state: SavedState,
    /// The game itself ([`centrum_app::DynApp::save`]).
    pub(crate) game: Bytes,
    pub(crate) clients: Clients,
    pub(crate) rng: Rng,
    pub(crate) next_client: u64,
    pub(crate) members: Vec<SavedMember>,
    /// A room's metadata and lock (none for a channel of the config, and in snapshots
    /// written before rooms).
    #[serde(default)]
    pub(crate) room: Option<centrum_app::Room>,
}

/// Why a channel cannot come back from its store. Each names where and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// A snapshot that does not decode or restore.
    #[error(
        "{file}: not a snapshot this back can read ({why}); move the channel's directory away to start it empty"
    )]
    Snapshot { file: String, why: String },
    /// A snapshot of another application.
    #[error(
        "{file}: a snapshot of application {found:?}, but the channel runs {app:?}; move the channel's directory away to start it empty, or run it with {found:?}"
    )]
    OtherApp {
        file: String,
        found: String,
        app: String,
    },
    /// A snapshot whose schema the application no longer declares.
    #[error(
        "{file}: the saved state's schema is not the one the application declares now; run the build that wrote it, or move the channel's directory away to start it empty"
    )]
    Schema { file: String },
    /// A journal record that does not decode or does not follow.
    #[error(
        "journal record of tick {step}: {why}; move the journal files from this tick on away to recover up to the tick before"
    )]
    Record { step: u64, why: String },
    /// A room whose game refuses to be made again.
    #[error("the room cannot be made again: {0}; move its directory away to drop the room")]
    Room(String),
}

/// What recovery restored.
#[derive(Debug, Default)]
pub(crate) struct Restored {
    /// Every member, each to be held for its client to resume.
    pub(crate) members: Vec<SavedMember>,
    pub(crate) snapshot: Option<String>,
    pub(crate) replayed: usize,
    /// Replayed ticks whose patch differed from the journal's.
    pub(crate) divergences: u64,
}

/// The CRC-32 of a patch body.
pub(crate) fn patch_crc(body: &[u8]) -> u32 {
    if body.is_empty() {
        0
    } else {
        crc32fast::hash(body)
    }
}

pub(crate) fn encode_record(entries: Vec<Entry>, patch_crc: u32) -> (Vec<u8>, Vec<Entry>) {
    let mut record = TickRecord {
        version: BODY_VERSION,
        entries,
        patch_crc,
    };
    let bytes = rmp_serde::to_vec(&record).expect("entries are plain data and always encode");
    record.entries.clear();
    (bytes, record.entries)
}

/// Brings `game` back to where the store left it: the snapshot, then every record.
///
/// # Errors
/// [`RecoverError`] for a snapshot or record this back cannot use.
pub(crate) fn recover(
    game: &mut Game,
    app_name: &str,
    recovered: Recovered,
) -> Result<Restored, RecoverError> {
    let mut restored = Restored::default();
    let mut members: BTreeMap<ClientId, SavedMember> = BTreeMap::new();
    if let Some(snapshot) = recovered.snapshot {
        let file = snapshot.source;
        let bad = |why: String| RecoverError::Snapshot {
            file: file.clone(),
            why,
        };
        let body: SnapshotBody =
            rmp_serde::from_slice(&snapshot.bytes).map_err(|e| bad(e.to_string()))?;
        if body.version != BODY_VERSION {
            return Err(bad(format!(
                "version {}, this back reads version {BODY_VERSION}",
                body.version
            )));
        }
        if body.app != app_name {
            return Err(RecoverError::OtherApp {
                file,
                found: body.app,
                app: app_name.to_owned(),
            });
        }
        if body.state.schema != *game.state.schema() {
            return Err(RecoverError::Schema { file });
        }
        game.state = State::restore(body.state).map_err(|e| bad(e.to_string()))?;
        game.app
            .restore(&body.game)
            .map_err(|e| bad(e.message().to_owned()))?;
        game.clients = body.clients;
        game.rng = body.rng;
        game.next_client = body.next_client;
        game.step = body.step;
        if body.room.is_some() {
            game.room = body.room;
        }
        members = body.members.into_iter().map(|m| (m.client, m)).collect();
        restored.snapshot = Some(file);
    }
    for record in recovered.records {
        restored.divergences += u64::from(!replay(game, &mut members, record)?);
        restored.replayed += 1;
    }
    restored.members = members.into_values().collect();
    Ok(restored)
}

/// Replays one tick; false when its patch came out other than the journal says.
fn replay(
    game: &mut Game,
    members: &mut BTreeMap<ClientId, SavedMember>,
    record: Record,
) -> Result<bool, RecoverError> {
    let step = record.step;
    let bad = |why: String| RecoverError::Record { step, why };
    let tick: TickRecord = rmp_serde::from_slice(&record.bytes).map_err(|e| bad(e.to_string()))?;
    if tick.version != BODY_VERSION {
        return Err(bad(format!(
            "version {}, this back reads version {BODY_VERSION}",
            tick.version
        )));
    }
    game.begin_tick();
    if game.step != step {
        return Err(bad(format!("it follows tick {}", game.step - 1)));
    }
    for entry in &tick.entries {
        let applied = game.apply(entry);
        seat(members, entry, &applied);
    }
    // Errors and messages of a replayed tick were dealt with when it first ran.
    let _ = game.run_tick();
    game.outbox.drain().for_each(drop);
    let mut body = Vec::new();
    let tick_number = game.tick();
    let channel = game.channel().to_owned();
    game.state.commit_patch(&channel, tick_number, &mut body);
    Ok(patch_crc(&body) == tick.patch_crc)
}

/// Where the members sit after `entry`.
fn seat(members: &mut BTreeMap<ClientId, SavedMember>, entry: &Entry, applied: &Applied) {
    match (entry, applied) {
        (Entry::Join { client, seat, .. }, Applied::Join(Ok(()))) => {
            let member = SavedMember {
                client: *client,
                seat: seat.clone(),
                ack: Seq::NONE,
            };
            members.insert(*client, member);
        }
        (Entry::Resume { client, seat }, _) => {
            if let Some(m) = members.get_mut(client) {
                m.seat = seat.clone();
            }
        }
        (Entry::Leave { client }, _) => {
            members.remove(client);
        }
        (Entry::Input { client, seq, .. }, _) => {
            if let Some(m) = members.get_mut(client) {
                m.ack = *seq;
            }
        }
        _ => {}
    }
}
