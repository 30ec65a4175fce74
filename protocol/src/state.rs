//! The authoritative, change-tracked state of one channel, and its two encodings:
//! the full state and the patch since the last commit. Cost of a patch is
//! proportional to what changed (the dirty list), never to the size of the state.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::wire;
use crate::{EntityId, FieldId, KindId, Schema, Tick, Value};

/// A mutation the schema does not allow. Application bugs, reported rather than panicking.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// No live entity has that id (it was removed, or never was).
    #[error("no entity {0:?}")]
    NoEntity(EntityId),
    /// No kind has that number.
    #[error("no kind {0}")]
    NoKind(KindId),
    /// The entity's kind has no field with that number.
    #[error("kind {kind} has no field {field}")]
    NoField {
        /// The entity's kind.
        kind: KindId,
        /// The field number asked for.
        field: FieldId,
    },
    /// The value is not of the field's type, or a number does not fit it.
    #[error("field {field} of kind {kind} does not take that value")]
    WrongType {
        /// The entity's kind.
        kind: KindId,
        /// The field.
        field: FieldId,
    },
    /// A new entity was given another number of values than its kind has fields.
    #[error("kind {kind} has {expected} fields, {given} values were given")]
    WrongArity {
        /// The kind.
        kind: KindId,
        /// Its number of fields.
        expected: usize,
        /// The number of values given.
        given: usize,
    },
    /// A saved state that does not fit its schema or contradicts itself.
    #[error("saved state does not restore: {0}")]
    Unrestorable(String),
    /// The state holds `u32::MAX` entities.
    #[error("the state holds the maximum number of entities")]
    Full,
    /// A typed entity's kind is not in the schema.
    #[error("the schema has no kind {0:?} (add it with Schema::kind)")]
    UnknownKind(&'static str),
}

/// A channel's entities with change tracking. Mutate it between two commits; each
/// commit produces one patch.
#[derive(Debug, Clone)]
pub struct State {
    schema: Arc<Schema>,
    /// Indexed by entity id; `None` is a free slot.
    slots: Vec<Option<Entity>>,
    /// Ids free to reuse. Ids freed since the last commit wait in `freed` instead, so
    /// that one patch never removes and re-creates the same id.
    free: Vec<u32>,
    freed: Vec<u32>,
    /// Ids touched since the last commit, each once (guarded by `Entity::listed`).
    dirty: Vec<u32>,
    /// Ids removed since the last commit that existed at the last commit.
    removed: Vec<u32>,
    len: usize,
}

#[derive(Debug, Clone)]
struct Entity {
    kind: KindId,
    values: Vec<Value>,
    /// Fields changed since the last commit, bit i for field i.
    changed: u64,
    /// Created since the last commit: goes out whole, not as field changes.
    spawned: bool,
    /// Already in `State::dirty`.
    listed: bool,
}

impl State {
    /// An empty state for `schema`. The schema should have passed [`Schema::validate`].
    pub fn new(schema: Schema) -> Self {
        Self {
            schema: Arc::new(schema),
            slots: Vec::new(),
            free: Vec::new(),
            freed: Vec::new(),
            dirty: Vec::new(),
            removed: Vec::new(),
            len: 0,
        }
    }

    /// The kinds and fields this state holds.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The number of live entities.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no entity is live.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Creates an entity of kind number `kind` with its fields at their zero values.
    /// Games usually spawn typed values instead ([`State::spawn`]).
    ///
    /// # Errors
    /// [`StateError::NoKind`] for an unknown kind, [`StateError::Full`] past `u32::MAX` entities.
    pub fn spawn_kind(&mut self, kind: KindId) -> Result<EntityId, StateError> {
        let def = self.schema.kind_def(kind).ok_or(StateError::NoKind(kind))?;
        let values = def.fields.iter().map(|f| f.zero()).collect();
        self.insert(kind, values)
    }

    /// Creates an entity of `kind` with the given field values, in field order.
    ///
    /// # Errors
    /// [`StateError`] when the kind is unknown or the values do not fit its fields.
    pub fn spawn_with(&mut self, kind: KindId, values: Vec<Value>) -> Result<EntityId, StateError> {
        let def = self.schema.kind_def(kind).ok_or(StateError::NoKind(kind))?;
        if def.fields.len() != values.len() {
            return Err(StateError::WrongArity {
                kind,
                expected: def.fields.len(),
                given: values.len(),
            });
        }
        if let Some(i) = def
            .fields
            .iter()
            .zip(&values)
            .position(|(f, v)| !f.accepts(v))
        {
            return Err(StateError::WrongType {
                kind,
                field: i as FieldId,
            });
        }
        self.insert(kind, values)
    }

    fn insert(&mut self, kind: KindId, values: Vec<Value>) -> Result<EntityId, StateError> {
        let entity = Entity {
            kind,
            values,
            changed: 0,
            spawned: true,
            listed: true,
        };
        let id = match self.free.pop() {
            Some(id) => id,
            None => u32::try_from(self.slots.len()).map_err(|_| StateError::Full)?,
        };
        let slot = id as usize;
        if slot == self.slots.len() {
            self.slots.push(Some(entity));
        } else {
            self.slots[slot] = Some(entity);
        }
        self.dirty.push(id);
        self.len += 1;
        Ok(EntityId(id))
    }

    /// Removes an entity (an [`EntityId`] or a typed [`Entity`](crate::Entity)).
    /// Returns false when there was none.
    pub fn remove(&mut self, id: impl Into<EntityId>) -> bool {
        let id = id.into();
        let Some(entity) = self.slots.get_mut(id.0 as usize).and_then(Option::take) else {
            return false;
        };
        // An entity created and removed between two commits never reaches a client.
        if !entity.spawned {
            self.removed.push(id.0);
        }
        self.freed.push(id.0);
        self.len -= 1;
        true
    }

    /// Sets field number `field` of entity `id`. Unchanged values are not marked, so
    /// they cost nothing in the patch. Games usually set through typed handles instead
    /// ([`State::set`]).
    ///
    /// # Errors
    /// [`StateError`] when the entity or field does not exist or the type is wrong.
    pub fn set_value(
        &mut self,
        id: EntityId,
        field: FieldId,
        value: Value,
    ) -> Result<(), StateError> {
        let schema = &self.schema;
        let entity = self
            .slots
            .get_mut(id.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(StateError::NoEntity(id))?;
        let kind = entity.kind;
        let def = schema.kinds[usize::from(kind)]
            .fields
            .get(usize::from(field))
            .ok_or(StateError::NoField { kind, field })?;
        if !def.accepts(&value) {
            return Err(StateError::WrongType { kind, field });
        }
        let slot = &mut entity.values[usize::from(field)];
        if *slot == value {
            return Ok(());
        }
        *slot = value;
        entity.changed |= 1 << field;
        if !entity.listed {
            entity.listed = true;
            self.dirty.push(id.0);
        }
        Ok(())
    }

    /// Sets a numeric field from an `f64`, quantizing fixed-point fields to their scale.
    ///
    /// # Errors
    /// As [`State::set`]; [`StateError::WrongType`] when the field is not a float or fixed.
    pub fn set_number(&mut self, id: EntityId, field: FieldId, v: f64) -> Result<(), StateError> {
        let (kind, def) = self.field_def(id, field)?;
        let value = def.number(v).ok_or(StateError::WrongType { kind, field })?;
        self.set_value(id, field, value)
    }

    /// A field's value.
    pub fn value(&self, id: EntityId, field: FieldId) -> Option<&Value> {
        self.entity(id)?.values.get(usize::from(field))
    }

    /// A numeric field as `f64` (fixed-point fields scaled back).
    pub fn number(&self, id: EntityId, field: FieldId) -> Option<f64> {
        let (_, def) = self.field_def(id, field).ok()?;
        def.as_f64(self.value(id, field)?)
    }

    /// The kind of a live entity.
    pub fn kind_of(&self, id: EntityId) -> Option<KindId> {
        self.entity(id).map(|e| e.kind)
    }

    /// Every live entity in id order: `(id, kind, values)`.
    pub fn entities(&self) -> impl Iterator<Item = (EntityId, KindId, &[Value])> {
        self.slots.iter().enumerate().filter_map(|(i, e)| {
            e.as_ref()
                .map(|e| (EntityId(i as u32), e.kind, e.values.as_slice()))
        })
    }

    fn entity(&self, id: EntityId) -> Option<&Entity> {
        self.slots.get(id.0 as usize)?.as_ref()
    }

    fn field_def(
        &self,
        id: EntityId,
        field: FieldId,
    ) -> Result<(KindId, &crate::FieldDef), StateError> {
        let kind = self.entity(id).ok_or(StateError::NoEntity(id))?.kind;
        let def = self.schema.kinds[usize::from(kind)]
            .fields
            .get(usize::from(field))
            .ok_or(StateError::NoField { kind, field })?;
        Ok((kind, def))
    }

    /// True when something changed since the last commit.
    pub fn has_changes(&self) -> bool {
        !self.dirty.is_empty() || !self.removed.is_empty()
    }

    /// Appends the full-state body `channel, tick, schema, entities` (see PROTOCOL.md).
    pub fn encode_full(&self, channel: &str, tick: Tick, out: &mut Vec<u8>) {
        wire::str(out, channel);
        wire::uint(out, u64::from(tick.0));
        crate::codec::encode_into(&*self.schema, out);
        let count: usize = self.entities().map(|(_, _, v)| 2 + v.len()).sum();
        wire::array_len(out, count);
        for (id, kind, values) in self.entities() {
            wire::uint(out, u64::from(id.0));
            wire::uint(out, u64::from(kind));
            values.iter().for_each(|v| wire::value(out, v));
        }
    }

    /// Appends the patch body `channel, tick, removed, spawned, updated` for every
    /// change since the last commit, then starts tracking afresh. With no changes it
    /// writes nothing and returns false.
    pub fn commit_patch(&mut self, channel: &str, tick: Tick, out: &mut Vec<u8>) -> bool {
        if !self.has_changes() {
            return false;
        }
        self.encode_patch(channel, tick, out);
        self.commit();
        true
    }

    /// Forgets the changes since the last commit without encoding them.
    pub fn commit(&mut self) {
        for id in self.dirty.drain(..) {
            if let Some(Some(e)) = self.slots.get_mut(id as usize) {
                e.changed = 0;
                e.spawned = false;
                e.listed = false;
            }
        }
        self.removed.clear();
        self.free.append(&mut self.freed);
    }

    fn encode_patch(&mut self, channel: &str, tick: Tick, out: &mut Vec<u8>) {
        wire::str(out, channel);
        wire::uint(out, u64::from(tick.0));

        self.removed.sort_unstable();
        wire::array_len(out, self.removed.len());
        self.removed
            .iter()
            .for_each(|&id| wire::uint(out, u64::from(id)));

        // Sorting the k dirty ids costs O(k log k) and lets updates carry id deltas.
        self.dirty.sort_unstable();

        let spawned: usize = self
            .dirty
            .iter()
            .filter_map(|&id| live(&self.slots, id))
            .filter(|e| e.spawned)
            .map(|e| 2 + e.values.len())
            .sum();
        wire::array_len(out, spawned);
        for &id in &self.dirty {
            if let Some(e) = live(&self.slots, id).filter(|e| e.spawned) {
                wire::uint(out, u64::from(id));
                wire::uint(out, u64::from(e.kind));
                e.values.iter().for_each(|v| wire::value(out, v));
            }
        }

        let is_update = |e: &&Entity| !e.spawned && e.changed != 0;
        let updated: usize = self
            .dirty
            .iter()
            .filter_map(|&id| live(&self.slots, id))
            .filter(is_update)
            .map(|e| 2 + e.changed.count_ones() as usize)
            .sum();
        wire::array_len(out, updated);
        let mut previous = 0;
        for &id in &self.dirty {
            if let Some(e) = live(&self.slots, id).filter(is_update) {
                wire::uint(out, u64::from(id - previous));
                previous = id;
                wire::uint(out, e.changed);
                let mut bits = e.changed;
                while bits != 0 {
                    let field = bits.trailing_zeros() as usize;
                    wire::value(out, &e.values[field]);
                    bits &= bits - 1;
                }
            }
        }
    }
}

/// A state's exact contents, for a snapshot: every live entity with its values, and
/// the order in which free ids are reused, so that a restored state hands out the
/// same ids as the original would have (a replay through the game stays identical).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedState {
    /// The schema the state was made for.
    pub schema: Schema,
    /// The number of id slots, live or free.
    pub slots: u32,
    /// Every live entity: `(id, kind, values in field order)`, in id order.
    pub entities: Vec<(u32, KindId, Vec<Value>)>,
    /// Free ids, in the order they are reused (the last one first).
    pub free: Vec<u32>,
}

impl State {
    /// The state's exact contents. Changes since the last commit are part of the
    /// contents but not of a patch: save right after a commit, as a back does.
    pub fn save(&self) -> SavedState {
        let mut free = self.free.clone();
        free.extend_from_slice(&self.freed);
        SavedState {
            schema: (*self.schema).clone(),
            slots: self.slots.len() as u32,
            entities: self
                .entities()
                .map(|(id, kind, values)| (id.0, kind, values.to_vec()))
                .collect(),
            free,
        }
    }

    /// A state with exactly the saved contents and no changes to send.
    ///
    /// # Errors
    /// [`StateError::Unrestorable`] when an entity does not fit the schema, two
    /// entities share an id, or the free ids do not match the empty slots.
    pub fn restore(saved: SavedState) -> Result<Self, StateError> {
        let bad = |why: String| StateError::Unrestorable(why);
        let mut slots: Vec<Option<Entity>> = Vec::new();
        slots.resize_with(saved.slots as usize, || None);
        let len = saved.entities.len();
        for (id, kind, values) in saved.entities {
            let def = saved.schema.kind_def(kind).ok_or_else(|| {
                bad(format!(
                    "entity {id} has kind {kind}, which the schema lacks"
                ))
            })?;
            if def.fields.len() != values.len()
                || def.fields.iter().zip(&values).any(|(f, v)| !f.accepts(v))
            {
                return Err(bad(format!(
                    "entity {id} does not fit kind {:?} of the schema",
                    def.name
                )));
            }
            let slot = slots
                .get_mut(id as usize)
                .ok_or_else(|| bad(format!("entity {id} is past the {} slots", saved.slots)))?;
            if slot.is_some() {
                return Err(bad(format!("entity {id} is saved twice")));
            }
            *slot = Some(Entity {
                kind,
                values,
                changed: 0,
                spawned: false,
                listed: false,
            });
        }
        let mut free_seen = vec![false; slots.len()];
        for &id in &saved.free {
            match slots.get(id as usize) {
                Some(None) if !free_seen[id as usize] => free_seen[id as usize] = true,
                _ => {
                    return Err(bad(format!(
                        "free id {id} is live, repeated or out of range"
                    )));
                }
            }
        }
        if saved.free.len() + len != slots.len() {
            return Err(bad("some empty slots are not in the free list".into()));
        }
        Ok(Self {
            schema: Arc::new(saved.schema),
            slots,
            free: saved.free,
            freed: Vec::new(),
            dirty: Vec::new(),
            removed: Vec::new(),
            len,
        })
    }
}

/// Appends a patch body with no changes, for a tick where only acks moved.
pub fn encode_empty_patch(channel: &str, tick: Tick, out: &mut Vec<u8>) {
    wire::str(out, channel);
    wire::uint(out, u64::from(tick.0));
    out.extend_from_slice(&[0x90, 0x90, 0x90]);
}

fn live(slots: &[Option<Entity>], id: u32) -> Option<&Entity> {
    slots[id as usize].as_ref()
}
