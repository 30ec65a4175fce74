//! The typed face of [`State`]: a Rust struct that is a kind of entity ([`Kind`],
//! usually derived), typed entity handles ([`Entity`]) and typed field handles
//! ([`Field`]), so that a game names each field once and a wrong type does not compile.

use std::fmt;
use std::marker::PhantomData;

use crate::{EntityId, FieldDef, FieldId, FieldType, KindId, State, StateError, Value};

/// A Rust type whose values are entities of one kind: its name in the schema, its
/// fields in wire order, and how a value becomes the fields of a new entity.
///
/// Derive it with `#[derive(Kind)]` (crate `centrum-derive`, re-exported by the game
/// API), which also gives the type one [`Field`] handle per field, named after the
/// field in capitals (`Player::SCORE`).
pub trait Kind: Sized {
    /// The kind's name in the schema, which clients look kinds up by.
    const NAME: &'static str;

    /// The fields, in wire order; at most [`MAX_FIELDS`](crate::MAX_FIELDS).
    fn fields() -> Vec<FieldDef>;

    /// The field values of a new entity, in the order of [`Kind::fields`], for the
    /// kind's fields as the state's schema has them (`fields`). `None` when a value does
    /// not fit its field (see [`FieldValue::into_value`]) or a field is missing.
    fn into_values(self, fields: &[FieldDef]) -> Option<Vec<Value>>;
}

/// A Rust type a field can hold, converted to and from the field's [`Value`].
///
/// | Rust | field type |
/// |---|---|
/// | `bool` | `bool` |
/// | `i64`, `i32`, `i16`, `i8` | `int` |
/// | `u64`, `u32`, `u16`, `u8` | `uint` |
/// | `f32` | `f32` (or `fixed`) |
/// | `f64` | `f64` (or `fixed`) |
/// | `String` | `str` |
/// | `Vec<u8>` | `bytes` |
pub trait FieldValue: Sized {
    /// The field type a field of this Rust type has unless declared fixed-point.
    const FIELD_TYPE: FieldType;

    /// This value as a field of `def`: numbers are quantized for fixed-point fields.
    /// `None` when `def` does not hold this kind of value, or the number does not fit.
    fn into_value(self, def: &FieldDef) -> Option<Value>;

    /// The value of a field of `def` as this type. `None` when it is of another type.
    fn from_value(value: &Value, def: &FieldDef) -> Option<Self>;
}

/// The Rust types a fixed-point field (`#[field(fixed = 100)]`) may have.
pub trait FixedPoint: FieldValue {}

impl FixedPoint for f64 {}
impl FixedPoint for f32 {}

/// A live entity of kind `K`, as [`State::spawn`] returned it. It stays valid until
/// the entity is removed; after that, operations on it fail with
/// [`StateError::NoEntity`] (or, once its id is reused by an entity of the same kind,
/// reach that entity).
pub struct Entity<K> {
    id: EntityId,
    kind: KindId,
    _kind: PhantomData<fn() -> K>,
}

/// Field number `index` of kind `K`, holding a `T`. The derive makes one per field.
pub struct Field<K, T> {
    index: FieldId,
    _field: PhantomData<fn() -> (K, T)>,
}

impl<K> Entity<K> {
    /// The entity's id, as it appears in full states and patches.
    pub fn id(self) -> EntityId {
        self.id
    }
}

impl<K> From<Entity<K>> for EntityId {
    fn from(entity: Entity<K>) -> EntityId {
        entity.id
    }
}

// Manual impls: the derives would require `K: Clone` and so on, which a handle does not need.
impl<K> Clone for Entity<K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for Entity<K> {}

impl<K> PartialEq for Entity<K> {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.kind == other.kind
    }
}

impl<K> Eq for Entity<K> {}

impl<K> std::hash::Hash for Entity<K> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

/// An entity handle saves as `[id, kind]`, so that a game holding handles can be
/// saved in a snapshot and restored.
impl<K> serde::Serialize for Entity<K> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&(self.id, self.kind), s)
    }
}

impl<'de, K> serde::Deserialize<'de> for Entity<K> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (id, kind) = <(EntityId, KindId) as serde::Deserialize>::deserialize(d)?;
        Ok(Self {
            id,
            kind,
            _kind: PhantomData,
        })
    }
}

impl<K: Kind> fmt::Debug for Entity<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", K::NAME, self.id.0)
    }
}

impl<K, T> Field<K, T> {
    /// The handle of field number `index`. Made by the derive; by hand, the index must
    /// be the field's position in [`Kind::fields`].
    pub const fn new(index: FieldId) -> Self {
        Self {
            index,
            _field: PhantomData,
        }
    }

    /// The field's number: its position in the kind and its bit in a patch mask.
    pub const fn index(self) -> FieldId {
        self.index
    }
}

impl<K, T> Clone for Field<K, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, T> Copy for Field<K, T> {}

impl<K: Kind, T> fmt::Debug for Field<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.field{}", K::NAME, self.index)
    }
}

impl State {
    /// Creates an entity of kind `K` from `value`.
    ///
    /// # Errors
    /// [`StateError::UnknownKind`] when the schema has no kind `K::NAME`,
    /// [`StateError::WrongType`] when a value does not fit its field,
    /// [`StateError::Full`] past `u32::MAX` entities.
    pub fn spawn<K: Kind>(&mut self, value: K) -> Result<Entity<K>, StateError> {
        let kind = self
            .schema()
            .kind_id(K::NAME)
            .ok_or(StateError::UnknownKind(K::NAME))?;
        // The schema's own field definitions: nothing to build per spawn.
        let fields = &self.schema().kinds[usize::from(kind)].fields;
        let values = value.into_values(fields).ok_or(StateError::WrongType {
            kind,
            field: FieldId::MAX,
        })?;
        let id = self.spawn_with(kind, values)?;
        Ok(Entity {
            id,
            kind,
            _kind: PhantomData,
        })
    }

    /// The entity `id` as a `K`, if it is a live entity of that kind.
    pub fn entity_of<K: Kind>(&self, id: EntityId) -> Option<Entity<K>> {
        let kind = self.kind_of(id)?;
        (self.schema().kinds[usize::from(kind)].name == K::NAME).then_some(Entity {
            id,
            kind,
            _kind: PhantomData,
        })
    }

    /// Sets one field of an entity. An unchanged value costs nothing in the patch.
    ///
    /// # Errors
    /// [`StateError::NoEntity`] when the entity is gone; [`StateError::WrongType`] when
    /// the value does not fit (a NaN or infinite number in a fixed-point field; finite
    /// numbers beyond its range pin to its extreme).
    pub fn set<K, T: FieldValue>(
        &mut self,
        entity: Entity<K>,
        field: Field<K, T>,
        value: T,
    ) -> Result<(), StateError> {
        let def = self.typed_field(entity, field.index)?;
        let value = value.into_value(def).ok_or(StateError::WrongType {
            kind: entity.kind,
            field: field.index,
        })?;
        self.set_value(entity.id, field.index, value)
    }

    /// Reads one field of an entity.
    ///
    /// # Errors
    /// [`StateError::NoEntity`] when the entity is gone.
    pub fn get<K, T: FieldValue>(
        &self,
        entity: Entity<K>,
        field: Field<K, T>,
    ) -> Result<T, StateError> {
        let def = self.typed_field(entity, field.index)?;
        self.value(entity.id, field.index)
            .and_then(|v| T::from_value(v, def))
            .ok_or(StateError::WrongType {
                kind: entity.kind,
                field: field.index,
            })
    }

    /// The definition of a typed handle's field, once the entity is known to still be
    /// of the handle's kind (its id may have been reused by another kind).
    fn typed_field<K>(&self, entity: Entity<K>, field: FieldId) -> Result<&FieldDef, StateError> {
        if self.kind_of(entity.id) != Some(entity.kind) {
            return Err(StateError::NoEntity(entity.id));
        }
        self.schema().kinds[usize::from(entity.kind)]
            .fields
            .get(usize::from(field))
            .ok_or(StateError::NoField {
                kind: entity.kind,
                field,
            })
    }
}

impl FieldValue for bool {
    const FIELD_TYPE: FieldType = FieldType::Bool;

    fn into_value(self, def: &FieldDef) -> Option<Value> {
        (def.ty == FieldType::Bool).then_some(Value::Bool(self))
    }

    fn from_value(value: &Value, _: &FieldDef) -> Option<Self> {
        match value {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

macro_rules! integer_field {
    ($field_type:ident, $variant:ident, $wide:ty: $($t:ty),*) => {$(
        impl FieldValue for $t {
            const FIELD_TYPE: FieldType = FieldType::$field_type;

            fn into_value(self, def: &FieldDef) -> Option<Value> {
                (def.ty == FieldType::$field_type).then_some(Value::$variant(<$wide>::from(self)))
            }

            fn from_value(value: &Value, _: &FieldDef) -> Option<Self> {
                match value {
                    Value::$variant(v) => <$t>::try_from(*v).ok(),
                    _ => None,
                }
            }
        }
    )*};
}

integer_field!(Uint, Uint, u64: u64, u32, u16, u8);
integer_field!(Int, Int, i64: i64, i32, i16, i8);

impl FieldValue for f64 {
    const FIELD_TYPE: FieldType = FieldType::F64;

    fn into_value(self, def: &FieldDef) -> Option<Value> {
        def.number(self)
    }

    fn from_value(value: &Value, def: &FieldDef) -> Option<Self> {
        match value {
            Value::F64(_) | Value::Fixed(_) => def.as_f64(value),
            _ => None,
        }
    }
}

impl FieldValue for f32 {
    const FIELD_TYPE: FieldType = FieldType::F32;

    fn into_value(self, def: &FieldDef) -> Option<Value> {
        match def.ty {
            FieldType::F32 => Some(Value::F32(self)),
            FieldType::Fixed => def.number(f64::from(self)),
            _ => None,
        }
    }

    fn from_value(value: &Value, def: &FieldDef) -> Option<Self> {
        match value {
            Value::F32(v) => Some(*v),
            Value::Fixed(_) => def.as_f64(value).map(|v| v as f32),
            _ => None,
        }
    }
}

impl FieldValue for String {
    const FIELD_TYPE: FieldType = FieldType::Str;

    fn into_value(self, def: &FieldDef) -> Option<Value> {
        (def.ty == FieldType::Str).then_some(Value::Str(self))
    }

    fn from_value(value: &Value, _: &FieldDef) -> Option<Self> {
        match value {
            Value::Str(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl FieldValue for Vec<u8> {
    const FIELD_TYPE: FieldType = FieldType::Bytes;

    fn into_value(self, def: &FieldDef) -> Option<Value> {
        (def.ty == FieldType::Bytes).then_some(Value::Bytes(self))
    }

    fn from_value(value: &Value, _: &FieldDef) -> Option<Self> {
        match value {
            Value::Bytes(b) => Some(b.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Schema;

    /// What `#[derive(Kind)]` writes for a player with a fixed-point position.
    struct Player {
        x: f64,
        name: String,
        score: u32,
    }

    impl Player {
        const X: Field<Player, f64> = Field::new(0);
        const NAME: Field<Player, String> = Field::new(1);
        const SCORE: Field<Player, u32> = Field::new(2);
    }

    impl Kind for Player {
        const NAME: &'static str = "player";

        fn fields() -> Vec<FieldDef> {
            vec![
                FieldDef::fixed("x", 100),
                FieldDef::new("name", <String as FieldValue>::FIELD_TYPE),
                FieldDef::new("score", <u32 as FieldValue>::FIELD_TYPE),
            ]
        }

        fn into_values(self, fields: &[FieldDef]) -> Option<Vec<Value>> {
            Some(vec![
                self.x.into_value(fields.first()?)?,
                self.name.into_value(fields.get(1)?)?,
                self.score.into_value(fields.get(2)?)?,
            ])
        }
    }

    /// A player with every field at zero.
    fn nobody() -> Player {
        Player {
            x: 0.0,
            name: String::new(),
            score: 0,
        }
    }

    /// A state of players holding one.
    fn alone() -> (State, Entity<Player>) {
        let mut state = State::new(Schema::new().kind::<Player>());
        let p = state.spawn(nobody()).unwrap();
        (state, p)
    }

    struct Coin;

    impl Kind for Coin {
        const NAME: &'static str = "coin";
        fn fields() -> Vec<FieldDef> {
            Vec::new()
        }
        fn into_values(self, _: &[FieldDef]) -> Option<Vec<Value>> {
            Some(Vec::new())
        }
    }

    #[test]
    fn typed_handles_spawn_set_and_get_through_the_schema() {
        let mut state = State::new(Schema::new().kind::<Coin>().kind::<Player>());
        let coin = state.spawn(Coin).unwrap();
        let p = state
            .spawn(Player {
                x: 1.234,
                name: "ana".into(),
                score: 0,
            })
            .unwrap();
        assert_eq!(state.kind_of(p.id()), Some(1));
        assert_eq!(state.get(p, Player::X).unwrap(), 1.23, "quantized to 1/100");
        state.set(p, Player::SCORE, 7).unwrap();
        state.set(p, Player::NAME, "bo".into()).unwrap();
        assert_eq!(state.get(p, Player::SCORE).unwrap(), 7);
        assert_eq!(state.value(p.id(), 1), Some(&Value::Str("bo".into())));
        assert_eq!(state.entity_of::<Player>(p.id()), Some(p));
        assert_eq!(state.entity_of::<Player>(coin.id()), None);

        // Gone, then its id taken by a coin: the old handle does not reach the coin.
        state.remove(p.id());
        assert_eq!(
            state.set(p, Player::SCORE, 1),
            Err(StateError::NoEntity(p.id()))
        );
        state.commit();
        let reused = state.spawn(Coin).unwrap();
        assert_eq!(reused.id(), p.id());
        assert_eq!(
            state.get(p, Player::SCORE),
            Err(StateError::NoEntity(p.id()))
        );
    }

    #[test]
    fn a_kind_missing_from_the_schema_is_an_error_not_a_panic() {
        let mut state = State::new(Schema::new().kind::<Coin>());
        let err = state.spawn(nobody()).unwrap_err();
        assert_eq!(err, StateError::UnknownKind("player"));
        assert_eq!(
            err.to_string(),
            "the schema has no kind \"player\" (add it with Schema::kind)"
        );
    }

    #[test]
    fn a_number_a_fixed_point_field_cannot_hold_is_an_error() {
        let (mut state, p) = alone();
        assert_eq!(
            state.set(p, Player::X, f64::NAN),
            Err(StateError::WrongType { kind: 0, field: 0 })
        );
        state.set(p, Player::X, 1e300).unwrap();
        assert_eq!(
            state.value(p.id(), 0),
            Some(&Value::Fixed(i64::MAX)),
            "pinned"
        );
    }

    #[test]
    fn integers_that_do_not_fit_their_rust_type_read_as_wrong_type() {
        let (mut state, p) = alone();
        state.set_value(p.id(), 2, Value::Uint(u64::MAX)).unwrap();
        assert_eq!(
            state.get(p, Player::SCORE),
            Err(StateError::WrongType { kind: 0, field: 2 })
        );
    }
}
