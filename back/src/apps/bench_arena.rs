//! `bench-arena`: exactly the arena benchmark workload (shared/bench/ARENA.md) and no
//! more. Players `{x, y, seq}`, keyed by the `name` a client gives in its join data;
//! each input adds `(dx, dy)` and records its seq.

use std::collections::HashMap;

use serde::Deserialize;

use centrum_protocol::{EntityId, FieldDef, FieldType, Schema, Seq, Value};

use crate::{App, ClientId, Ctx, InputError, Rejection};

const PLAYER: u16 = 0;
const X: u8 = 0;
const Y: u8 = 1;
const SEQ: u8 = 2;
/// Positions are declared with a precision of 1/1000, the workload's own tolerance,
/// so they travel as small integers instead of floats.
const SCALE: u32 = 1000;

/// The benchmark application.
#[derive(Debug, Default)]
pub struct BenchArena {
    players: HashMap<ClientId, EntityId>,
}

/// Join data: `{name}`, the key a client finds its own player by (the workload keys
/// players by client). It never changes, so it travels in full states only.
#[derive(Deserialize, Default)]
struct JoinData {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct Move {
    dx: f64,
    dy: f64,
}

impl BenchArena {
    pub fn new() -> Self {
        Self::default()
    }
}

impl App for BenchArena {
    fn schema(&self) -> Schema {
        Schema::new().kind_with(
            "player",
            vec![
                FieldDef::fixed("x", SCALE),
                FieldDef::fixed("y", SCALE),
                FieldDef::new("seq", FieldType::Uint),
                FieldDef::new("name", FieldType::Str),
            ],
        )
    }

    fn join(&mut self, ctx: &mut Ctx<'_>, client: ClientId, data: &[u8]) -> Result<(), Rejection> {
        let join = if data.is_empty() {
            JoinData::default()
        } else {
            rmp_serde::from_slice(data)
                .map_err(|e| Rejection(format!("join data must be a map {{name}}: {e}")))?
        };
        let start = i64::from(SCALE) / 10; // 0.1, exactly
        let id = ctx
            .state
            .spawn_with(
                PLAYER,
                vec![
                    Value::Fixed(start),
                    Value::Fixed(start),
                    Value::Uint(0),
                    Value::Str(join.name),
                ],
            )
            .map_err(|e| Rejection(e.to_string()))?;
        self.players.insert(client, id);
        Ok(())
    }

    fn leave(&mut self, ctx: &mut Ctx<'_>, client: ClientId) {
        if let Some(id) = self.players.remove(&client) {
            ctx.state.remove(id);
        }
    }

    fn input(
        &mut self,
        ctx: &mut Ctx<'_>,
        client: ClientId,
        seq: Seq,
        data: &[u8],
    ) -> Result<(), InputError> {
        let Some(&id) = self.players.get(&client) else {
            return Ok(());
        };
        let m: Move = rmp_serde::from_slice(data)
            .map_err(|e| InputError(format!("expected {{dx, dy}}: {e}")))?;
        let x = ctx.state.number(id, X).unwrap_or(0.0) + m.dx;
        let y = ctx.state.number(id, Y).unwrap_or(0.0) + m.dy;
        // The fields exist and are fixed-point (schema above), so these cannot fail.
        let _ = ctx.state.set_number(id, X, x);
        let _ = ctx.state.set_number(id, Y, y);
        let _ = ctx.state.set(id, SEQ, Value::Uint(u64::from(seq.0)));
        Ok(())
    }

    fn tick(&mut self, _ctx: &mut Ctx<'_>) {}
}
