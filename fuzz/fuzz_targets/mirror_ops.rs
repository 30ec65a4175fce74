//! The convergence property, with fuzzer-built histories: a channel's `State` goes
//! through spawns, sets (of any value, right type or wrong), removals, commits and
//! snapshot round trips; a client joins at some tick and applies every patch, as the
//! wire carries them (shared prefix, then body, decoded as a `FrontMsg`). After every
//! commit its `Mirror` must equal a fresh full state and the authoritative state, and
//! every refused mutation must be refused for the reason the API documents.
#![no_main]

use centrum_protocol::{
    EntityId, FieldDef, FieldType, FrontMsg, Mirror, SavedState, Schema, Seq, SharedKind,
    SharedPrefix, State, StateError, Tick, Value, decode, encode,
};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Ty {
    Bool,
    Int,
    Uint,
    F32,
    F64,
    Fixed(u32),
    Str,
    Bytes,
}

/// Stuff any field's value is made of.
#[derive(Arbitrary, Debug)]
struct Raw {
    n: u64,
    f: f64,
    s: String,
    b: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Spawn(u16),
    Set {
        pick: u16,
        field: u8,
        raw: Raw,
        /// Give a value of another type than the field's.
        wrong: Option<Ty>,
    },
    SetNumber {
        pick: u16,
        field: u8,
        v: f64,
    },
    Remove {
        pick: u16,
        /// Take `pick` as an id, live or not, instead of an index into the live ones.
        as_id: bool,
    },
    Commit {
        /// Then save the state, encode and decode the save, and carry on from its restore.
        save: bool,
    },
    /// The client joins (or resyncs): a full state replaces its mirror.
    Join,
}

#[derive(Arbitrary, Debug)]
struct History {
    kinds: Vec<Vec<Ty>>,
    start: u32,
    ops: Vec<Op>,
}

fn field_type(ty: Ty) -> FieldType {
    match ty {
        Ty::Bool => FieldType::Bool,
        Ty::Int => FieldType::Int,
        Ty::Uint => FieldType::Uint,
        Ty::F32 => FieldType::F32,
        Ty::F64 => FieldType::F64,
        Ty::Fixed(_) => FieldType::Fixed,
        Ty::Str => FieldType::Str,
        Ty::Bytes => FieldType::Bytes,
    }
}

fn value(ty: FieldType, raw: &Raw) -> Value {
    match ty {
        FieldType::Bool => Value::Bool(raw.n & 1 == 1),
        FieldType::Int => Value::Int(raw.n as i64),
        FieldType::Uint => Value::Uint(raw.n),
        FieldType::F32 => Value::F32(raw.f as f32),
        FieldType::F64 => Value::F64(raw.f),
        FieldType::Fixed => Value::Fixed(raw.n as i64),
        FieldType::Str => Value::Str(raw.s.clone()),
        FieldType::Bytes => Value::Bytes(raw.b.clone()),
    }
}

fn schema(kinds: &[Vec<Ty>]) -> Schema {
    let mut schema = Schema::new();
    for (k, fields) in kinds.iter().take(4).enumerate() {
        let fields = fields
            .iter()
            .take(centrum_protocol::MAX_FIELDS)
            .enumerate()
            .map(|(f, ty)| FieldDef {
                name: format!("f{f}"),
                ty: field_type(*ty),
                scale: match ty {
                    Ty::Fixed(scale) => (*scale).max(1),
                    _ => 0,
                },
            })
            .collect();
        schema = schema.kind_with(&format!("k{k}"), fields);
    }
    schema
        .validate()
        .expect("kinds and fields with distinct names and nonzero scales validate");
    schema
}

/// A client's view of the state at `tick`, through the wire: prefix, body, decode.
fn full_state(state: &State, tick: Tick, mirror: &mut Mirror) {
    let mut msg = SharedPrefix::new(SharedKind::State, Seq(7))
        .as_bytes()
        .to_vec();
    state.encode_full("c", tick, &mut msg);
    let FrontMsg::State(full) = decode(&msg, usize::MAX).expect("a full state decodes") else {
        panic!("a full state decodes as another message");
    };
    assert_eq!(
        (full.tick, full.ack, full.channel.as_str()),
        (tick, Seq(7), "c")
    );
    mirror.apply_state(&full).expect("a full state applies");
}

fn check(state: &State, mirror: &Mirror) {
    let mut fresh = Mirror::new();
    full_state(state, mirror.tick(), &mut fresh);
    assert_eq!(mirror, &fresh, "the mirror differs from a fresh full state");
    let authoritative: Vec<_> = state
        .entities()
        .map(|(id, k, v)| (id, k, v.to_vec()))
        .collect();
    let mirrored: Vec<_> = mirror
        .entities()
        .iter()
        .map(|(id, e)| (*id, e.kind, e.values.clone()))
        .collect();
    assert_eq!(authoritative, mirrored);
}

fuzz_target!(|history: History| {
    let schema = schema(&history.kinds);
    let mut state = State::new(schema.clone());
    let mut tick = Tick(history.start);
    let mut mirror: Option<Mirror> = None;
    for op in history.ops.iter().take(512) {
        let live: Vec<EntityId> = state.entities().map(|(id, _, _)| id).collect();
        let pick = |pick: u16| (!live.is_empty()).then(|| live[usize::from(pick) % live.len()]);
        match op {
            Op::Spawn(kind) => {
                let kind = kind % (schema.kinds.len() as u16 + 1);
                match state.spawn_kind(kind) {
                    Ok(id) => assert_eq!(state.kind_of(id), Some(kind)),
                    Err(e) => {
                        assert_eq!(e, StateError::NoKind(kind));
                        assert!(usize::from(kind) >= schema.kinds.len());
                    }
                }
            }
            Op::Set {
                pick: p,
                field,
                raw,
                wrong,
            } => {
                let Some(id) = pick(*p) else { continue };
                let def = &schema.kinds[usize::from(state.kind_of(id).unwrap())];
                let field = field % (def.fields.len() as u8 + 1);
                let ty = match (def.fields.get(usize::from(field)), wrong) {
                    (_, Some(wrong)) => field_type(*wrong),
                    (Some(f), None) => f.ty,
                    (None, None) => FieldType::Bool,
                };
                let v = value(ty, raw);
                let fits = def
                    .fields
                    .get(usize::from(field))
                    .is_some_and(|f| f.accepts(&v));
                match state.set_value(id, field, v.clone()) {
                    Ok(()) => {
                        assert!(fits);
                        assert_eq!(state.value(id, field), Some(&v));
                    }
                    Err(StateError::NoField { .. }) => {
                        assert!(usize::from(field) >= def.fields.len())
                    }
                    Err(StateError::WrongType { .. }) => assert!(!fits),
                    Err(e) => panic!("set: {e}"),
                }
            }
            Op::SetNumber { pick: p, field, v } => {
                let Some(id) = pick(*p) else { continue };
                let def = &schema.kinds[usize::from(state.kind_of(id).unwrap())];
                let field = field % (def.fields.len() as u8 + 1);
                let numeric = def.fields.get(usize::from(field)).map(|f| match f.ty {
                    FieldType::F32 | FieldType::F64 => true,
                    FieldType::Fixed => v.is_finite(),
                    _ => false,
                });
                match (state.set_number(id, field, *v), numeric) {
                    (Ok(()), Some(true)) => {}
                    (Err(StateError::NoField { .. }), None) => {}
                    (Err(StateError::WrongType { .. }), Some(false)) => {}
                    (got, numeric) => panic!("set_number {v}: {got:?}, numeric field: {numeric:?}"),
                }
            }
            Op::Remove { pick: p, as_id } => {
                let id = if *as_id {
                    EntityId(u32::from(*p))
                } else {
                    let Some(id) = pick(*p) else { continue };
                    id
                };
                assert_eq!(state.remove(id), live.contains(&id));
                assert_eq!(state.kind_of(id), None);
            }
            Op::Commit { save } => {
                tick = tick.next();
                let mut msg = SharedPrefix::new(SharedKind::Patch, Seq(9))
                    .as_bytes()
                    .to_vec();
                let before = msg.len();
                if state.commit_patch("c", tick, &mut msg) {
                    let FrontMsg::Patch(patch) = decode(&msg, usize::MAX).expect("a patch decodes")
                    else {
                        panic!("a patch decodes as another message");
                    };
                    assert_eq!((patch.tick, patch.ack), (tick, Seq(9)));
                    if let Some(mirror) = &mut mirror {
                        mirror.apply_patch(&patch).expect("a patch applies");
                    }
                } else {
                    assert_eq!(msg.len(), before, "no change, no patch");
                }
                assert!(!state.has_changes());
                if *save {
                    let saved = state.save();
                    let decoded: SavedState =
                        decode(&encode(&saved), usize::MAX).expect("a save decodes");
                    assert_eq!(decoded, saved);
                    state = State::restore(decoded).expect("a save restores");
                    assert_eq!(state.save(), saved);
                    assert!(!state.has_changes());
                }
                if let Some(mirror) = &mirror {
                    // The mirror is at the last tick that had changes.
                    check(&state, mirror);
                }
            }
            Op::Join => {
                // A join sees the state as of the last commit: commit what is pending
                // (the patch went to the clients already there).
                state.commit_patch("c", tick, &mut Vec::new());
                full_state(&state, tick, mirror.get_or_insert_with(Mirror::new));
            }
        }
    }
    if let Some(mirror) = &mut mirror {
        tick = tick.next();
        let mut msg = SharedPrefix::new(SharedKind::Patch, Seq(9))
            .as_bytes()
            .to_vec();
        if state.commit_patch("c", tick, &mut msg) {
            let Ok(FrontMsg::Patch(patch)) = decode(&msg, usize::MAX) else {
                panic!("a patch does not decode");
            };
            mirror.apply_patch(&patch).expect("a patch applies");
        }
        check(&state, mirror);
    }
});
