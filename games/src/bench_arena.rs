//! `bench-arena`: exactly the arena benchmark workload (shared/bench/ARENA.md) and no
//! more. Players `{x, y, seq}`, keyed by the `name` a client gives in its join data;
//! each input adds `(dx, dy)` and records its seq.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use centrum_app::{App, AppError, ClientId, Ctx, Entity, Kind, NoCalls, Schema, Seq};

/// The longest name a player may join with: a name is shown, not stored as a payload,
/// and a client must not grow the state every other client receives at will.
pub const MAX_NAME: usize = 64;

/// A player of the workload. Positions are declared with a precision of 1/1000, the
/// workload's own tolerance, so they travel as small integers instead of floats.
#[derive(Kind, Debug)]
pub struct Player {
    #[field(fixed = 1000)]
    pub x: f64,
    #[field(fixed = 1000)]
    pub y: f64,
    /// The seq of the last input applied to this player.
    pub seq: u32,
    /// What the client joined with; it never changes, so it travels in full states only.
    pub name: String,
}

/// Join data: `{name}`, the key a client finds its own player by (the workload keys
/// players by client).
#[derive(Deserialize, Default, Debug)]
pub struct Join {
    #[serde(default)]
    pub name: String,
}

/// An input: `{dx, dy}`, added to the position as is.
#[derive(Deserialize, Debug)]
pub struct Move {
    pub dx: f64,
    pub dy: f64,
}

/// The benchmark application.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct BenchArena {
    players: BTreeMap<ClientId, Entity<Player>>,
}

impl BenchArena {
    pub fn new() -> Self {
        Self::default()
    }
}

impl App for BenchArena {
    type Join = Option<Join>;
    type Input = Move;
    type Call = NoCalls;
    type Reply = NoCalls;
    type Options = ();

    fn schema(&self) -> Schema {
        Schema::new().kind::<Player>()
    }

    fn join(
        &mut self,
        ctx: &mut Ctx<'_>,
        client: ClientId,
        join: Option<Join>,
    ) -> Result<(), AppError> {
        let name = join.unwrap_or_default().name;
        if name.chars().count() > MAX_NAME {
            return Err(AppError::new(format!(
                "a name is at most {MAX_NAME} characters"
            )));
        }
        let player = ctx.state.spawn(Player {
            x: 0.1,
            y: 0.1,
            seq: 0,
            name,
        })?;
        self.players.insert(client, player);
        Ok(())
    }

    fn leave(&mut self, ctx: &mut Ctx<'_>, client: ClientId) -> Result<(), AppError> {
        if let Some(player) = self.players.remove(&client) {
            ctx.state.remove(player);
        }
        Ok(())
    }

    fn input(
        &mut self,
        ctx: &mut Ctx<'_>,
        client: ClientId,
        seq: Seq,
        m: Move,
    ) -> Result<(), AppError> {
        if !m.dx.is_finite() || !m.dy.is_finite() {
            return Err(AppError::new("dx and dy must be finite numbers"));
        }
        let Some(&player) = self.players.get(&client) else {
            return Ok(());
        };
        let x = ctx.state.get(player, Player::X)? + m.dx;
        let y = ctx.state.get(player, Player::Y)? + m.dy;
        ctx.state.set(player, Player::X, x)?;
        ctx.state.set(player, Player::Y, y)?;
        ctx.state.set(player, Player::SEQ, seq.0)?;
        Ok(())
    }

    fn tick(&mut self, _ctx: &mut Ctx<'_>) -> Result<(), AppError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use centrum_app::{ClientId, EntityId, Sandbox};
    use serde::Serialize;

    use super::*;

    #[derive(Serialize)]
    struct Name<'a> {
        name: &'a str,
    }

    #[derive(Serialize)]
    struct M {
        dx: f64,
        dy: f64,
    }

    #[test]
    fn each_input_moves_its_player_and_records_its_seq() {
        let mut arena = Sandbox::new(BenchArena::new());
        arena.join(ClientId(7), &Name { name: "c7" }).unwrap();
        let p = arena.state().entity_of::<Player>(EntityId(0)).unwrap();
        assert_eq!(arena.state().get(p, Player::NAME).unwrap(), "c7");
        arena
            .input(
                ClientId(7),
                &M {
                    dx: 0.25,
                    dy: -0.25,
                },
            )
            .unwrap();
        arena.input(ClientId(7), &M { dx: 0.25, dy: 0.0 }).unwrap();
        let refused = arena.input(
            ClientId(7),
            &M {
                dx: f64::NAN,
                dy: 0.0,
            },
        );
        assert!(refused.is_err(), "a NaN step is refused");
        let refused = arena.input(
            ClientId(7),
            &M {
                dx: 0.0,
                dy: f64::INFINITY,
            },
        );
        assert!(refused.is_err(), "an infinite step is refused");
        assert_eq!(arena.state().get(p, Player::X).unwrap(), 0.6);
        assert_eq!(arena.state().get(p, Player::Y).unwrap(), -0.15);
        assert_eq!(arena.state().get(p, Player::SEQ).unwrap(), 2);
        arena.leave(ClientId(7)).unwrap();
        assert!(arena.state().is_empty());
    }

    #[test]
    fn a_name_longer_than_the_limit_is_refused() {
        let mut arena = Sandbox::new(BenchArena::new());
        let long = "n".repeat(MAX_NAME + 1);
        let refused = arena.join(ClientId(1), &Name { name: &long });
        assert!(refused.is_err_and(|e| e.to_string().contains("at most 64 characters")));
        assert!(arena.state().is_empty());
        let longest = "n".repeat(MAX_NAME);
        arena.join(ClientId(2), &Name { name: &longest }).unwrap();
    }
}
