//! What a channel's state is made of: kinds of entity, their typed fields, and the
//! values those fields hold.

use serde::{Deserialize, Serialize};

/// The most fields a kind may have: a patch names changed fields with a 64-bit mask.
pub const MAX_FIELDS: usize = 64;

/// The kinds of entity a channel holds, sent to every client with the full state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Schema {
    /// The kinds, in order: a kind's position is its id.
    pub kinds: Vec<KindDef>,
}

/// One kind of entity (for example `player`), with its fields in wire order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindDef {
    /// What clients look the kind up by.
    pub name: String,
    /// The fields; a field's position is its number (its bit in a patch mask).
    pub fields: Vec<FieldDef>,
}

/// A named, typed field. On the wire: `[name, type, scale]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDef {
    /// What clients look the field up by.
    pub name: String,
    /// What values it holds and how they travel.
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// For [`FieldType::Fixed`]: the value travels as `round(value * scale)`. 0 otherwise.
    pub scale: u32,
}

/// How a field's value is typed and encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// true or false.
    Bool,
    /// Signed 64-bit integer.
    Int,
    /// Unsigned 64-bit integer.
    Uint,
    /// 32-bit float, sent as float 32.
    F32,
    /// 64-bit float, sent as float 64.
    F64,
    /// A decimal number with a declared precision of `1/scale`, sent as an integer.
    Fixed,
    /// UTF-8 text.
    Str,
    /// Raw bytes.
    Bytes,
}

/// A field's value. `Fixed` holds the integer that travels (`round(value * scale)`).
/// Its serde form is exact (floats keep every bit); snapshots use it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Value {
    /// Of a [`FieldType::Bool`] field.
    Bool(bool),
    /// Of a [`FieldType::Int`] field.
    Int(i64),
    /// Of a [`FieldType::Uint`] field.
    Uint(u64),
    /// Of a [`FieldType::F32`] field.
    F32(f32),
    /// Of a [`FieldType::F64`] field.
    F64(f64),
    /// Of a [`FieldType::Fixed`] field: the integer that travels, `round(value * scale)`.
    Fixed(i64),
    /// Of a [`FieldType::Str`] field.
    Str(String),
    /// Of a [`FieldType::Bytes`] field.
    Bytes(Vec<u8>),
}

/// A schema that an application cannot use.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A kind with more than [`MAX_FIELDS`] fields.
    #[error("kind {kind:?} has {count} fields; at most {MAX_FIELDS} are allowed")]
    TooManyFields {
        /// The kind's name.
        kind: String,
        /// How many fields it has.
        count: usize,
    },
    /// A fixed-point field with scale 0.
    #[error("field {kind}.{field} is fixed-point but has scale 0")]
    ZeroScale {
        /// The kind's name.
        kind: String,
        /// The field's name.
        field: String,
    },
    /// More kinds than a kind id can number.
    #[error("the schema has {0} kinds; at most 65536 are allowed")]
    TooManyKinds(usize),
    /// Two kinds with one name: clients, and typed entities, find kinds by name.
    #[error("two kinds are called {0:?}")]
    DuplicateKind(String),
    /// Two fields of one kind with one name: clients find fields by name.
    #[error("kind {kind:?} has two fields called {field:?}")]
    DuplicateField {
        /// The kind's name.
        kind: String,
        /// The field's name.
        field: String,
    },
}

impl Schema {
    /// Starts a schema; add kinds with [`Schema::kind`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the kind `K` (a struct deriving `Kind`): its name and fields, in order.
    /// Kinds are numbered in the order they are added.
    pub fn kind<K: crate::Kind>(self) -> Self {
        self.kind_with(K::NAME, K::fields())
    }

    /// Adds a kind with `(name, type)` fields and no fixed-point scale; use
    /// [`Schema::kind_with`] for fixed-point fields.
    pub fn kind_plain(mut self, name: &str, fields: &[(&str, FieldType)]) -> Self {
        let fields = fields
            .iter()
            .map(|&(n, ty)| FieldDef {
                name: n.to_owned(),
                ty,
                scale: 0,
            })
            .collect();
        self.kinds.push(KindDef {
            name: name.to_owned(),
            fields,
        });
        self
    }

    /// Adds a kind with fully specified fields.
    pub fn kind_with(mut self, name: &str, fields: Vec<FieldDef>) -> Self {
        self.kinds.push(KindDef {
            name: name.to_owned(),
            fields,
        });
        self
    }

    /// Checks the limits the wire format puts on a schema.
    ///
    /// # Errors
    /// [`SchemaError`] naming the first kind or field that breaks a limit.
    pub fn validate(&self) -> Result<(), SchemaError> {
        if self.kinds.len() > usize::from(u16::MAX) + 1 {
            return Err(SchemaError::TooManyKinds(self.kinds.len()));
        }
        for (i, kind) in self.kinds.iter().enumerate() {
            if self.kinds[..i].iter().any(|k| k.name == kind.name) {
                return Err(SchemaError::DuplicateKind(kind.name.clone()));
            }
            if let Some((_, field)) = kind
                .fields
                .iter()
                .enumerate()
                .find(|(j, f)| kind.fields[..*j].iter().any(|g| g.name == f.name))
            {
                return Err(SchemaError::DuplicateField {
                    kind: kind.name.clone(),
                    field: field.name.clone(),
                });
            }
            if kind.fields.len() > MAX_FIELDS {
                return Err(SchemaError::TooManyFields {
                    kind: kind.name.clone(),
                    count: kind.fields.len(),
                });
            }
            if let Some(f) = kind
                .fields
                .iter()
                .find(|f| f.ty == FieldType::Fixed && f.scale == 0)
            {
                return Err(SchemaError::ZeroScale {
                    kind: kind.name.clone(),
                    field: f.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// The index of the kind called `name`.
    pub fn kind_id(&self, name: &str) -> Option<crate::KindId> {
        self.kinds
            .iter()
            .position(|k| k.name == name)
            .and_then(|i| u16::try_from(i).ok())
    }

    /// The definition of kind `id`.
    pub fn kind_def(&self, id: crate::KindId) -> Option<&KindDef> {
        self.kinds.get(usize::from(id))
    }
}

impl KindDef {
    /// The index of the field called `name`.
    pub fn field_id(&self, name: &str) -> Option<crate::FieldId> {
        self.fields
            .iter()
            .position(|f| f.name == name)
            .and_then(|i| u8::try_from(i).ok())
    }
}

impl FieldDef {
    /// A field of a type that needs no scale.
    pub fn new(name: &str, ty: FieldType) -> Self {
        Self {
            name: name.to_owned(),
            ty,
            scale: 0,
        }
    }

    /// A fixed-point field with precision `1/scale`.
    pub fn fixed(name: &str, scale: u32) -> Self {
        Self {
            name: name.to_owned(),
            ty: FieldType::Fixed,
            scale,
        }
    }

    /// The zero value a new entity's field starts with.
    pub fn zero(&self) -> Value {
        match self.ty {
            FieldType::Bool => Value::Bool(false),
            FieldType::Int => Value::Int(0),
            FieldType::Uint => Value::Uint(0),
            FieldType::F32 => Value::F32(0.0),
            FieldType::F64 => Value::F64(0.0),
            FieldType::Fixed => Value::Fixed(0),
            FieldType::Str => Value::Str(String::new()),
            FieldType::Bytes => Value::Bytes(Vec::new()),
        }
    }

    /// Converts a number to this field's representation: quantized for `Fixed`, where
    /// a number beyond the integer's range pins to its extreme. `None` when the field
    /// does not hold numbers, or for a NaN or infinite number in a fixed-point field
    /// (which has no integer for it).
    pub fn number(&self, v: f64) -> Option<Value> {
        Some(match self.ty {
            FieldType::F32 => Value::F32(v as f32),
            FieldType::F64 => Value::F64(v),
            // `as` saturates, so an out-of-range number pins to the extreme instead of wrapping.
            FieldType::Fixed if v.is_finite() => {
                Value::Fixed((v * f64::from(self.scale)).round() as i64)
            }
            _ => return None,
        })
    }

    /// Whether `value` has this field's type.
    pub fn accepts(&self, value: &Value) -> bool {
        matches!(
            (self.ty, value),
            (FieldType::Bool, Value::Bool(_))
                | (FieldType::Int, Value::Int(_))
                | (FieldType::Uint, Value::Uint(_))
                | (FieldType::F32, Value::F32(_))
                | (FieldType::F64, Value::F64(_))
                | (FieldType::Fixed, Value::Fixed(_))
                | (FieldType::Str, Value::Str(_))
                | (FieldType::Bytes, Value::Bytes(_))
        )
    }

    /// Reads a numeric value of this field as `f64` (undoing the fixed-point scale).
    pub fn as_f64(&self, value: &Value) -> Option<f64> {
        match value {
            Value::F32(v) => Some(f64::from(*v)),
            Value::F64(v) => Some(*v),
            Value::Fixed(q) if self.scale > 0 => Some(*q as f64 / f64::from(self.scale)),
            Value::Int(v) => Some(*v as f64),
            Value::Uint(v) => Some(*v as f64),
            _ => None,
        }
    }
}

/// Values compare bit for bit, so that a mirror equals the state even for NaN.
impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) | (Value::Fixed(a), Value::Fixed(b)) => a == b,
            (Value::Uint(a), Value::Uint(b)) => a == b,
            (Value::F32(a), Value::F32(b)) => a.to_bits() == b.to_bits(),
            (Value::F64(a), Value::F64(b)) => a.to_bits() == b.to_bits(),
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Value {}
