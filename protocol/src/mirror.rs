//! A client's copy of a channel's state, built from a full state and kept current by
//! applying patches. Convergence: it equals, value for value, a full state encoded at
//! the same tick.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::{EntityId, FieldType, KindId, PatchMsg, Schema, StateMsg, Tick, Value};

/// One scalar MessagePack value as it came off the wire; typed by the schema later.
#[derive(Clone, Debug, PartialEq)]
pub enum WireValue {
    Bool(bool),
    Int(i64),
    Uint(u64),
    F32(f32),
    F64(f64),
    Str(String),
    Bin(Vec<u8>),
}

/// A state or patch that does not fit the schema or the mirror.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum MirrorError {
    #[error("a patch arrived before any full state")]
    NoState,
    #[error("entity list ends in the middle of an entity")]
    Truncated,
    #[error("expected {0} in the entity list")]
    Expected(&'static str),
    #[error("no kind {0} in the schema")]
    NoKind(u64),
    #[error("entity {0} is updated but does not exist")]
    NoEntity(u32),
    #[error("value for field {field} of kind {kind} has the wrong type")]
    WrongType { kind: KindId, field: usize },
    #[error("mask {mask:#x} names fields kind {kind} does not have")]
    BadMask { kind: KindId, mask: u64 },
    #[error("patch for tick {patch} is not after the mirror's tick {mirror}")]
    Stale { patch: Tick, mirror: Tick },
}

/// A decoded entity: its kind and its field values in schema order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorEntity {
    pub kind: KindId,
    pub values: Vec<Value>,
}

/// A client-side mirror of one channel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mirror {
    schema: Schema,
    tick: Tick,
    entities: BTreeMap<EntityId, MirrorEntity>,
    has_state: bool,
}

impl Mirror {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the mirror with a full state.
    ///
    /// # Errors
    /// [`MirrorError`] when the entity list does not fit the schema; the mirror is unchanged.
    pub fn apply_state(&mut self, msg: &StateMsg) -> Result<(), MirrorError> {
        let mut entities = BTreeMap::new();
        let mut rest = msg.entities.as_slice();
        while !rest.is_empty() {
            let (id, entity) = read_whole_entity(&msg.schema, &mut rest)?;
            entities.insert(id, entity);
        }
        *self = Self {
            schema: msg.schema.clone(),
            tick: msg.tick,
            entities,
            has_state: true,
        };
        Ok(())
    }

    /// Applies one patch.
    ///
    /// # Errors
    /// [`MirrorError`] when the patch is stale or does not fit; the mirror may then be
    /// partly updated and should be replaced by a fresh full state.
    pub fn apply_patch(&mut self, msg: &PatchMsg) -> Result<(), MirrorError> {
        /// Ids this far apart or less are walked to rather than looked up.
        const WALK_BEFORE_SEEK: u32 = 8;
        if !self.has_state {
            return Err(MirrorError::NoState);
        }
        if !msg.tick.is_after(self.tick) {
            return Err(MirrorError::Stale {
                patch: msg.tick,
                mirror: self.tick,
            });
        }
        for id in &msg.removed {
            self.entities.remove(&EntityId(*id));
        }
        let mut rest = msg.spawned.as_slice();
        while !rest.is_empty() {
            let (id, entity) = read_whole_entity(&self.schema, &mut rest)?;
            self.entities.insert(id, entity);
        }
        let mut rest = msg.updated.as_slice();
        let mut id = 0u32;
        // Updated ids come in ascending order, and in a busy channel most entities
        // change: the next one to update is then a step or two on in the map. Ids are
        // unique integers, so an id `delta` past the last one is at most `delta` steps
        // on: a cursor walks there when that is short; a far one is looked up.
        let mut cursor = None;
        while !rest.is_empty() {
            let delta = u32::try_from(next_uint(&mut rest)?)
                .map_err(|_| MirrorError::Expected("an id delta"))?;
            id = id.wrapping_add(delta);
            let mask = next_uint(&mut rest)?;
            let entity = if delta > WALK_BEFORE_SEEK {
                cursor = None;
                self.entities.get_mut(&EntityId(id))
            } else {
                if cursor.is_none() {
                    cursor = Some(self.entities.range_mut(EntityId(id)..));
                }
                cursor.as_mut().and_then(|walk| {
                    loop {
                        match walk.next() {
                            Some((k, e)) if k.0 == id => break Some(e),
                            Some((k, _)) if k.0 < id => {}
                            _ => break None,
                        }
                    }
                })
            }
            .ok_or(MirrorError::NoEntity(id))?;
            let fields = &self.schema.kinds[usize::from(entity.kind)].fields;
            if fields.len() < 64 && mask >> fields.len() != 0 {
                return Err(MirrorError::BadMask {
                    kind: entity.kind,
                    mask,
                });
            }
            let mut bits = mask;
            while bits != 0 {
                let field = bits.trailing_zeros() as usize;
                let raw = rest.first().ok_or(MirrorError::Truncated)?;
                rest = &rest[1..];
                entity.values[field] =
                    typed(fields[field].ty, raw).ok_or(MirrorError::WrongType {
                        kind: entity.kind,
                        field,
                    })?;
                bits &= bits - 1;
            }
        }
        self.tick = msg.tick;
        Ok(())
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The tick of the last state or patch applied.
    pub fn tick(&self) -> Tick {
        self.tick
    }

    pub fn entities(&self) -> &BTreeMap<EntityId, MirrorEntity> {
        &self.entities
    }

    pub fn entity(&self, id: EntityId) -> Option<&MirrorEntity> {
        self.entities.get(&id)
    }

    /// A field by name, as `f64` for numeric fields (fixed-point scaled back).
    pub fn number(&self, id: EntityId, field: &str) -> Option<f64> {
        let (def, value) = self.field(id, field)?;
        def.as_f64(value)
    }

    /// A field by name.
    pub fn field(&self, id: EntityId, field: &str) -> Option<(&crate::FieldDef, &Value)> {
        let e = self.entities.get(&id)?;
        let kind = self.schema.kind_def(e.kind)?;
        let f = kind.field_id(field)?;
        Some((&kind.fields[usize::from(f)], &e.values[usize::from(f)]))
    }
}

fn next_uint(rest: &mut &[WireValue]) -> Result<u64, MirrorError> {
    let (first, tail) = rest.split_first().ok_or(MirrorError::Truncated)?;
    *rest = tail;
    match first {
        WireValue::Uint(v) => Ok(*v),
        WireValue::Int(v) if *v >= 0 => Ok(*v as u64),
        _ => Err(MirrorError::Expected("an unsigned integer")),
    }
}

fn read_whole_entity(
    schema: &Schema,
    rest: &mut &[WireValue],
) -> Result<(EntityId, MirrorEntity), MirrorError> {
    let id = u32::try_from(next_uint(rest)?).map_err(|_| MirrorError::Expected("an entity id"))?;
    let kind_raw = next_uint(rest)?;
    let kind = u16::try_from(kind_raw)
        .ok()
        .filter(|k| usize::from(*k) < schema.kinds.len())
        .ok_or(MirrorError::NoKind(kind_raw))?;
    let fields = &schema.kinds[usize::from(kind)].fields;
    if rest.len() < fields.len() {
        return Err(MirrorError::Truncated);
    }
    let (raw, tail) = rest.split_at(fields.len());
    *rest = tail;
    let values = fields
        .iter()
        .zip(raw)
        .enumerate()
        .map(|(field, (def, raw))| typed(def.ty, raw).ok_or(MirrorError::WrongType { kind, field }))
        .collect::<Result<_, _>>()?;
    Ok((EntityId(id), MirrorEntity { kind, values }))
}

/// A wire value read as a field of type `ty`; integers may come in any MessagePack width.
fn typed(ty: FieldType, raw: &WireValue) -> Option<Value> {
    Some(match (ty, raw) {
        (FieldType::Bool, WireValue::Bool(b)) => Value::Bool(*b),
        (FieldType::Int, WireValue::Int(v)) => Value::Int(*v),
        (FieldType::Int, WireValue::Uint(v)) => Value::Int(i64::try_from(*v).ok()?),
        (FieldType::Uint, WireValue::Uint(v)) => Value::Uint(*v),
        (FieldType::Uint, WireValue::Int(v)) => Value::Uint(u64::try_from(*v).ok()?),
        (FieldType::Fixed, WireValue::Int(v)) => Value::Fixed(*v),
        (FieldType::Fixed, WireValue::Uint(v)) => Value::Fixed(i64::try_from(*v).ok()?),
        (FieldType::F32, WireValue::F32(v)) => Value::F32(*v),
        (FieldType::F64, WireValue::F64(v)) => Value::F64(*v),
        (FieldType::Str, WireValue::Str(s)) => Value::Str(s.clone()),
        (FieldType::Bytes, WireValue::Bin(b)) => Value::Bytes(b.clone()),
        _ => return None,
    })
}

impl Serialize for WireValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            WireValue::Bool(v) => s.serialize_bool(*v),
            WireValue::Int(v) => s.serialize_i64(*v),
            WireValue::Uint(v) => s.serialize_u64(*v),
            WireValue::F32(v) => s.serialize_f32(*v),
            WireValue::F64(v) => s.serialize_f64(*v),
            WireValue::Str(v) => s.serialize_str(v),
            WireValue::Bin(v) => s.serialize_bytes(v),
        }
    }
}

impl<'de> Deserialize<'de> for WireValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WireValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar MessagePack value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<WireValue, E> {
                Ok(WireValue::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<WireValue, E> {
                Ok(if v >= 0 {
                    WireValue::Uint(v as u64)
                } else {
                    WireValue::Int(v)
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<WireValue, E> {
                Ok(WireValue::Uint(v))
            }
            fn visit_f32<E: de::Error>(self, v: f32) -> Result<WireValue, E> {
                Ok(WireValue::F32(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<WireValue, E> {
                Ok(WireValue::F64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<WireValue, E> {
                Ok(WireValue::Str(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<WireValue, E> {
                Ok(WireValue::Str(v))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<WireValue, E> {
                Ok(WireValue::Bin(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<WireValue, E> {
                Ok(WireValue::Bin(v))
            }
        }
        d.deserialize_any(V)
    }
}
