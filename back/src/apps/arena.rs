//! `arena`: the demo game. Players steer around a walled field and collect coins;
//! each coin scores a point and reappears elsewhere. Inputs set a direction, which
//! holds until the next input, so players move smoothly between inputs.

use std::collections::HashMap;

use serde::Deserialize;

use centrum_protocol::{EntityId, FieldDef, FieldType, Schema, Seq, Value};

use crate::{App, ClientId, Ctx, InputError, Rejection};

/// The field is `WIDTH` x `HEIGHT` units, origin top-left.
const WIDTH: f64 = 64.0;
const HEIGHT: f64 = 36.0;
/// Units per second at full stick.
const SPEED: f64 = 14.0;
const COINS: usize = 12;
/// A player picks up a coin within this distance.
const REACH: f64 = 1.5;
const MAX_PLAYERS: usize = 256;
const MAX_NAME: usize = 16;

const PLAYER: u16 = 0;
const COIN: u16 = 1;
// Player fields.
const X: u8 = 0;
const Y: u8 = 1;
const NAME: u8 = 2;
const HUE: u8 = 3;
const SCORE: u8 = 4;

/// The arena game.
#[derive(Debug)]
pub struct Arena {
    players: HashMap<ClientId, Player>,
    coins: Vec<EntityId>,
    rng: u64,
    joined: u64,
}

#[derive(Debug)]
struct Player {
    entity: EntityId,
    dx: f64,
    dy: f64,
}

#[derive(Deserialize, Default)]
struct JoinData {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct Steer {
    dx: f64,
    dy: f64,
}

impl Arena {
    pub fn new() -> Self {
        Self {
            players: HashMap::new(),
            coins: Vec::new(),
            rng: 0x2545_f491_4f6c_dd1d,
            joined: 0,
        }
    }

    /// A pseudo-random number in [0, 1): xorshift64*, deterministic for a given history.
    fn random(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn place(&mut self, ctx: &mut Ctx<'_>, id: EntityId) {
        let x = 2.0 + self.random() * (WIDTH - 4.0);
        let y = 2.0 + self.random() * (HEIGHT - 4.0);
        // Coins and players both have fixed-point x and y as fields 0 and 1.
        let _ = ctx.state.set_number(id, X, x);
        let _ = ctx.state.set_number(id, Y, y);
    }
}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

impl App for Arena {
    fn schema(&self) -> Schema {
        Schema::new()
            .kind_with(
                "player",
                vec![
                    FieldDef::fixed("x", 100),
                    FieldDef::fixed("y", 100),
                    FieldDef::new("name", FieldType::Str),
                    FieldDef::new("hue", FieldType::Uint),
                    FieldDef::new("score", FieldType::Uint),
                ],
            )
            .kind_with(
                "coin",
                vec![FieldDef::fixed("x", 100), FieldDef::fixed("y", 100)],
            )
    }

    fn join(&mut self, ctx: &mut Ctx<'_>, client: ClientId, data: &[u8]) -> Result<(), Rejection> {
        if self.players.len() >= MAX_PLAYERS {
            return Err(Rejection(format!(
                "the arena is full ({MAX_PLAYERS} players)"
            )));
        }
        let join: JoinData = if data.is_empty() {
            JoinData::default()
        } else {
            rmp_serde::from_slice(data)
                .map_err(|e| Rejection(format!("join data must be a map {{name}}: {e}")))?
        };
        self.joined += 1;
        let mut name: String = join
            .name
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_NAME)
            .collect();
        if name.trim().is_empty() {
            name = format!("player {}", self.joined);
        }
        let entity = ctx
            .state
            .spawn(PLAYER)
            .map_err(|e| Rejection(e.to_string()))?;
        self.place(ctx, entity);
        // Golden-angle hues keep successive players' colours far apart.
        let hue = (self.joined * 137) % 360;
        let _ = ctx.state.set(entity, NAME, Value::Str(name));
        let _ = ctx.state.set(entity, HUE, Value::Uint(hue));
        self.players.insert(
            client,
            Player {
                entity,
                dx: 0.0,
                dy: 0.0,
            },
        );
        Ok(())
    }

    fn leave(&mut self, ctx: &mut Ctx<'_>, client: ClientId) {
        if let Some(p) = self.players.remove(&client) {
            ctx.state.remove(p.entity);
        }
    }

    fn input(
        &mut self,
        _ctx: &mut Ctx<'_>,
        client: ClientId,
        _seq: Seq,
        data: &[u8],
    ) -> Result<(), InputError> {
        let steer: Steer = rmp_serde::from_slice(data)
            .map_err(|e| InputError(format!("expected {{dx, dy}}: {e}")))?;
        if !steer.dx.is_finite() || !steer.dy.is_finite() {
            return Err(InputError("dx and dy must be finite numbers".into()));
        }
        if let Some(p) = self.players.get_mut(&client) {
            // A diagonal is no faster than a straight line.
            let len = steer.dx.hypot(steer.dy).max(1.0);
            p.dx = steer.dx / len;
            p.dy = steer.dy / len;
        }
        Ok(())
    }

    fn tick(&mut self, ctx: &mut Ctx<'_>) {
        if self.coins.len() < COINS {
            for _ in self.coins.len()..COINS {
                if let Ok(id) = ctx.state.spawn(COIN) {
                    self.place(ctx, id);
                    self.coins.push(id);
                }
            }
        }
        let step = SPEED * ctx.period.as_secs_f64();
        let mut scored = Vec::new();
        for p in self.players.values() {
            if p.dx == 0.0 && p.dy == 0.0 {
                continue;
            }
            let (Some(x), Some(y)) = (ctx.state.number(p.entity, X), ctx.state.number(p.entity, Y))
            else {
                continue;
            };
            let x = (x + p.dx * step).clamp(0.0, WIDTH);
            let y = (y + p.dy * step).clamp(0.0, HEIGHT);
            let _ = ctx.state.set_number(p.entity, X, x);
            let _ = ctx.state.set_number(p.entity, Y, y);
            for (i, &coin) in self.coins.iter().enumerate() {
                let (Some(cx), Some(cy)) = (ctx.state.number(coin, X), ctx.state.number(coin, Y))
                else {
                    continue;
                };
                if (cx - x).hypot(cy - y) <= REACH {
                    scored.push((p.entity, i));
                }
            }
        }
        for (player, coin) in scored {
            let coin_id = self.coins[coin];
            // Two players reaching one coin in the same tick: the first scores, the
            // coin has moved by the time the second is considered.
            let still_here = match (ctx.state.number(coin_id, X), ctx.state.number(player, X)) {
                (Some(cx), Some(px)) => (cx - px).abs() <= REACH,
                _ => false,
            };
            if still_here {
                if let Some(Value::Uint(s)) = ctx.state.value(player, SCORE).cloned() {
                    let _ = ctx.state.set(player, SCORE, Value::Uint(s + 1));
                }
                self.place(ctx, coin_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use centrum_protocol::{State, Tick};

    use super::*;

    fn ctx(state: &mut State) -> Ctx<'_> {
        Ctx {
            state,
            tick: Tick(1),
            period: Duration::from_millis(50),
        }
    }

    #[test]
    fn players_move_by_their_direction_and_stay_inside() {
        let mut arena = Arena::new();
        let mut state = State::new(arena.schema());
        let me = ClientId(1);
        let name = rmp_serde::to_vec_named(&serde_json_like("ana")).unwrap();
        arena.join(&mut ctx(&mut state), me, &name).unwrap();
        let id = arena.players[&me].entity;
        assert_eq!(state.value(id, NAME), Some(&Value::Str("ana".into())));
        let x0 = state.number(id, X).unwrap();
        let input = rmp_serde::to_vec_named(&Steer2 { dx: 1.0, dy: 0.0 }).unwrap();
        arena
            .input(&mut ctx(&mut state), me, Seq(1), &input)
            .unwrap();
        arena.tick(&mut ctx(&mut state));
        let x1 = state.number(id, X).unwrap();
        assert!((x1 - (x0 + 0.7).min(WIDTH)).abs() < 0.011, "{x0} -> {x1}");
        for _ in 0..200 {
            arena.tick(&mut ctx(&mut state));
        }
        assert_eq!(state.number(id, X), Some(WIDTH));
        assert!(
            arena
                .input(&mut ctx(&mut state), me, Seq(2), b"\xc1")
                .is_err()
        );
    }

    #[derive(serde::Serialize)]
    struct Steer2 {
        dx: f64,
        dy: f64,
    }

    #[derive(serde::Serialize)]
    struct Named<'a> {
        name: &'a str,
    }

    fn serde_json_like(name: &str) -> Named<'_> {
        Named { name }
    }
}
