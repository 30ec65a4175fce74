//! `arena`: the demo game. Players steer around a walled field and collect coins;
//! each coin scores a point and reappears elsewhere. Inputs set a direction, which
//! holds until the next input, so players move smoothly between inputs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use centrum_app::{App, AppError, ClientId, Ctx, Entity, Kind, NoCalls, Schema, Seq};

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

/// A player: where it is, who it is, what it scored.
#[derive(Kind, Debug)]
pub struct Player {
    #[field(fixed = 100)]
    pub x: f64,
    #[field(fixed = 100)]
    pub y: f64,
    pub name: String,
    /// 0-359, golden-angle steps so that successive players look apart.
    pub hue: u32,
    pub score: u64,
}

/// A coin to pick up.
#[derive(Kind, Debug)]
pub struct Coin {
    #[field(fixed = 100)]
    pub x: f64,
    #[field(fixed = 100)]
    pub y: f64,
}

/// Join data: `{name}`, or nothing.
#[derive(Deserialize, Default, Debug)]
pub struct Join {
    #[serde(default)]
    pub name: String,
}

/// A room's creation options: `{label}`, or nothing.
#[derive(Deserialize, Default, Debug)]
pub struct RoomOptions {
    #[serde(default)]
    pub label: Option<String>,
}

/// What a room of the arena lists: `{label}`.
#[derive(Serialize, Debug)]
pub struct RoomMetadata {
    pub label: String,
}

/// An input: the direction to steer in, `{dx, dy}`.
#[derive(Deserialize, Debug)]
pub struct Steer {
    pub dx: f64,
    pub dy: f64,
}

/// What the arena tells clients besides its state.
#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// To a client that joined: its own player's entity id.
    You { player: u32 },
    /// To everyone: a player picked up a coin.
    Scored { player: u32, score: u64 },
}

/// The arena game. Players live in a `BTreeMap` so that every run visits them in the
/// same order (a replay after a restart picks the same coin winner).
#[derive(Debug, Serialize, Deserialize)]
pub struct Arena {
    players: BTreeMap<ClientId, Steering>,
    coins: Vec<Entity<Coin>>,
    rng: u64,
    joined: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Steering {
    player: Entity<Player>,
    dx: f64,
    dy: f64,
}

impl Arena {
    pub fn new() -> Self {
        Self {
            players: BTreeMap::new(),
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

    /// A random spot away from the walls.
    fn spot(&mut self) -> (f64, f64) {
        let x = 2.0 + self.random() * (WIDTH - 4.0);
        let y = 2.0 + self.random() * (HEIGHT - 4.0);
        (x, y)
    }
}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

impl App for Arena {
    type Join = Option<Join>;
    type Input = Steer;
    type Call = NoCalls;
    type Reply = NoCalls;
    type Options = Option<RoomOptions>;

    fn schema(&self) -> Schema {
        Schema::new().kind::<Player>().kind::<Coin>()
    }

    /// A room of the arena shows its label in the lobby's listing.
    fn create(&mut self, ctx: &mut Ctx<'_>, options: Option<RoomOptions>) -> Result<(), AppError> {
        let label: String = options
            .and_then(|o| o.label)
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_NAME)
            .collect();
        if let Some(room) = ctx.room() {
            room.set_metadata(&RoomMetadata { label })?;
        }
        Ok(())
    }

    fn join(
        &mut self,
        ctx: &mut Ctx<'_>,
        client: ClientId,
        join: Option<Join>,
    ) -> Result<(), AppError> {
        if self.players.len() >= MAX_PLAYERS {
            return Err(AppError::new(format!(
                "the arena is full ({MAX_PLAYERS} players)"
            )));
        }
        self.joined += 1;
        // A client that joined with a token plays under the name its token gives (its
        // `name` claim, else its subject): other players cannot take it.
        let proven = ctx.identity(client).map(|id| {
            id.claim::<String>("name")
                .unwrap_or_else(|| id.subject.clone())
        });
        let mut name: String = proven
            .unwrap_or_else(|| join.unwrap_or_default().name)
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_NAME)
            .collect();
        if name.trim().is_empty() {
            name = format!("player {}", self.joined);
        }
        let (x, y) = self.spot();
        let player = ctx.state.spawn(Player {
            x,
            y,
            name,
            hue: ((self.joined * 137) % 360) as u32,
            score: 0,
        })?;
        // Tell the client which player is its own. A rejected join gets no `leave`, so if
        // that fails, the player goes again before the join is refused.
        let you = Event::You {
            player: player.id().0,
        };
        if let Err(e) = ctx.send(client, &you) {
            ctx.state.remove(player);
            return Err(e.into());
        }
        self.players.insert(
            client,
            Steering {
                player,
                dx: 0.0,
                dy: 0.0,
            },
        );
        Ok(())
    }

    fn leave(&mut self, ctx: &mut Ctx<'_>, client: ClientId) -> Result<(), AppError> {
        if let Some(p) = self.players.remove(&client) {
            ctx.state.remove(p.player);
        }
        Ok(())
    }

    fn input(
        &mut self,
        _ctx: &mut Ctx<'_>,
        client: ClientId,
        _seq: Seq,
        steer: Steer,
    ) -> Result<(), AppError> {
        if !steer.dx.is_finite() || !steer.dy.is_finite() {
            return Err(AppError::new("dx and dy must be finite numbers"));
        }
        if let Some(p) = self.players.get_mut(&client) {
            // A diagonal is no faster than a straight line.
            let len = steer.dx.hypot(steer.dy).max(1.0);
            p.dx = steer.dx / len;
            p.dy = steer.dy / len;
        }
        Ok(())
    }

    fn tick(&mut self, ctx: &mut Ctx<'_>) -> Result<(), AppError> {
        while self.coins.len() < COINS {
            let (x, y) = self.spot();
            self.coins.push(ctx.state.spawn(Coin { x, y })?);
        }
        let step = SPEED * ctx.period().as_secs_f64();
        let mut reached = Vec::new();
        for p in self.players.values() {
            if p.dx == 0.0 && p.dy == 0.0 {
                continue;
            }
            let x = (ctx.state.get(p.player, Player::X)? + p.dx * step).clamp(0.0, WIDTH);
            let y = (ctx.state.get(p.player, Player::Y)? + p.dy * step).clamp(0.0, HEIGHT);
            ctx.state.set(p.player, Player::X, x)?;
            ctx.state.set(p.player, Player::Y, y)?;
            for (i, &coin) in self.coins.iter().enumerate() {
                let (cx, cy) = (ctx.state.get(coin, Coin::X)?, ctx.state.get(coin, Coin::Y)?);
                if (cx - x).hypot(cy - y) <= REACH {
                    reached.push((p.player, i));
                }
            }
        }
        for (player, i) in reached {
            let coin = self.coins[i];
            // Two players reaching one coin in the same tick: the first scores, the
            // coin has moved by the time the second is considered.
            let (cx, cy) = (ctx.state.get(coin, Coin::X)?, ctx.state.get(coin, Coin::Y)?);
            let (px, py) = (
                ctx.state.get(player, Player::X)?,
                ctx.state.get(player, Player::Y)?,
            );
            if (cx - px).hypot(cy - py) > REACH {
                continue;
            }
            let score = ctx.state.get(player, Player::SCORE)? + 1;
            ctx.state.set(player, Player::SCORE, score)?;
            let (x, y) = self.spot();
            ctx.state.set(coin, Coin::X, x)?;
            ctx.state.set(coin, Coin::Y, y)?;
            ctx.broadcast(&Event::Scored {
                player: player.id().0,
                score,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use centrum_app::{Recipient, Sandbox};
    use serde::Serialize;

    use super::*;

    #[derive(Serialize)]
    struct Name<'a> {
        name: &'a str,
    }

    #[derive(Serialize)]
    struct Move {
        dx: f64,
        dy: f64,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Heard {
        You { player: u32 },
        Scored { player: u32, score: u64 },
    }

    #[test]
    fn a_client_with_a_token_plays_under_its_name_claim_or_else_its_subject() {
        let mut arena = Sandbox::new(Arena::new());
        let named = centrum_app::Identity::new("user-1").with_claim("name", "Ann");
        arena
            .join_as(ClientId(1), named, &Name { name: "mallory" })
            .unwrap();
        let unnamed = centrum_app::Identity::new("user-2");
        arena.join_as(ClientId(2), unnamed, &()).unwrap();
        let names: Vec<String> = arena
            .take_messages()
            .iter()
            .map(|m| match m.decode().unwrap() {
                Heard::You { player: id } => {
                    arena.state().get(player(&arena, id), Player::NAME).unwrap()
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["Ann", "user-2"]);
    }

    fn player(arena: &Sandbox, id: u32) -> Entity<Player> {
        arena
            .state()
            .entity_of::<Player>(centrum_app::EntityId(id))
            .expect("a player")
    }

    #[test]
    fn a_joiner_is_told_its_player_which_moves_by_its_direction_and_stays_inside() {
        let mut arena = Sandbox::new(Arena::new());
        let me = ClientId(1);
        arena.join(me, &Name { name: "ana" }).unwrap();
        let sent = arena.take_messages();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].to, Recipient::One(me));
        let Heard::You { player: id } = sent[0].decode().unwrap() else {
            panic!("expected `you`")
        };
        let p = player(&arena, id);
        assert_eq!(arena.state().get(p, Player::NAME).unwrap(), "ana");
        let x0 = arena.state().get(p, Player::X).unwrap();

        arena.input(me, &Move { dx: 1.0, dy: 0.0 }).unwrap();
        arena.tick().unwrap();
        let x1 = arena.state().get(p, Player::X).unwrap();
        assert!((x1 - (x0 + 0.7).min(WIDTH)).abs() < 0.011, "{x0} -> {x1}");
        for _ in 0..200 {
            arena.tick().unwrap();
        }
        assert_eq!(arena.state().get(p, Player::X).unwrap(), WIDTH);
    }

    #[test]
    fn what_is_not_a_direction_is_refused_before_or_by_the_game() {
        let mut arena = Sandbox::new(Arena::new());
        arena.join(ClientId(1), &()).unwrap();
        let err = arena
            .input_raw(ClientId(1), centrum_app::Bytes::from_static(b"\xc1"))
            .unwrap_err();
        assert!(
            err.message().starts_with("input does not decode as Steer"),
            "{err}"
        );
        let err = arena
            .input(
                ClientId(1),
                &Move {
                    dx: f64::NAN,
                    dy: 0.0,
                },
            )
            .unwrap_err();
        assert_eq!(err.message(), "dx and dy must be finite numbers");
        let err = arena.join(ClientId(2), &[1, 2]).unwrap_err();
        assert!(
            err.message()
                .starts_with("join data does not decode as Option<Join>"),
            "{err}"
        );
    }

    #[test]
    fn a_collected_coin_scores_is_broadcast_and_moves() {
        let mut arena = Sandbox::new(Arena::new());
        arena.join(ClientId(1), &()).unwrap();
        arena.tick().unwrap();
        // Put the player on the first coin.
        let coin = arena
            .state()
            .entities()
            .find(|(_, kind, _)| *kind == 1)
            .map(|(id, _, _)| arena.state().entity_of::<Coin>(id).unwrap())
            .unwrap();
        let Heard::You { player: id } = arena.take_messages()[0].decode().unwrap() else {
            panic!("expected `you`")
        };
        let p = player(&arena, id);
        let (cx, cy) = (
            arena.state().get(coin, Coin::X).unwrap(),
            arena.state().get(coin, Coin::Y).unwrap(),
        );
        let (px, py) = (
            arena.state().get(p, Player::X).unwrap(),
            arena.state().get(p, Player::Y).unwrap(),
        );
        // Steer straight at the coin until it is reached.
        let (dx, dy) = (cx - px, cy - py);
        arena.input(ClientId(1), &Move { dx, dy }).unwrap();
        let mut scored = Vec::new();
        for _ in 0..200 {
            arena.tick().unwrap();
            scored.extend(arena.take_messages());
            if !scored.is_empty() {
                break;
            }
        }
        assert_eq!(scored.len(), 1, "one coin, one point");
        assert_eq!(scored[0].to, Recipient::All);
        assert_eq!(
            scored[0].decode::<Heard>().unwrap(),
            Heard::Scored {
                player: id,
                score: 1
            }
        );
        assert_eq!(arena.state().get(p, Player::SCORE).unwrap(), 1);
    }
}
