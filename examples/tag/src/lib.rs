//! Tag: players run around a field; one of them is "it" and chases the others. When
//! "it" touches someone, that player is "it" now (and frozen for a second, so no
//! tag-backs), the tagger scores a point, the tagged player hears who tagged it, and
//! everyone gets the new scoreboard. Players can also say short lines to everyone.
//!
//! It is written on centrum's public game API only, as docs/GUIDE.md explains step
//! by step; src/main.rs turns it into a binary with every centrum command.

use std::collections::BTreeMap;

use centrum::{App, AppError, ClientId, Ctx, Entity, Kind, Schema, Seq};
use serde::{Deserialize, Serialize};

/// A player, as every client sees it: the state is a set of these.
#[derive(Kind, Debug)]
pub struct Player {
    /// Positions travel as integers in hundredths: `x` 12.34 is sent as 1234.
    #[field(fixed = 100)]
    pub x: f64,
    #[field(fixed = 100)]
    pub y: f64,
    pub name: String,
    /// The player's colour, 0-359.
    pub hue: u32,
    /// True for the one player who is "it".
    pub it: bool,
    /// Players this one tagged.
    pub score: u32,
}

/// What a client sends when it joins: `{"name": "ann"}`, or nothing.
#[derive(Deserialize, Debug, Default)]
pub struct Join {
    #[serde(default)]
    pub name: String,
}

/// What a client sends while it plays: `{"move": {"dx": 1, "dy": 0}}` sets the
/// direction it runs in (until the next one), `{"say": {"text": "hi"}}` says a line.
#[derive(Deserialize, Serialize, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    Move { dx: f64, dy: f64 },
    Say { text: String },
}

/// What the game tells clients besides the state.
#[derive(Deserialize, Serialize, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// To a client that joined: which player is its own.
    You { player: u32 },
    /// To the player who was just tagged.
    Tagged { by: String },
    /// To everyone, after each tag: the scoreboard, best first.
    Scores { scores: Vec<Score> },
    /// To everyone: a line someone said.
    Said { name: String, text: String },
}

/// One line of the scoreboard.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
pub struct Score {
    pub name: String,
    pub score: u32,
}

/// What a server-side caller can ask over HTTP: `"scores"`, or `"reset"` (everyone
/// back to zero). Either way the reply is the scoreboard.
#[derive(Deserialize, Serialize, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    Scores,
    Reset,
}

/// The field is `WIDTH` x `HEIGHT` units, origin top-left.
pub const WIDTH: f64 = 48.0;
pub const HEIGHT: f64 = 27.0;
/// Units per second at full speed.
const SPEED: f64 = 12.0;
/// "It" tags a player within this distance.
const REACH: f64 = 1.2;
/// How long a player who was just tagged stands still.
const FROZEN_S: f64 = 1.0;
const MAX_PLAYERS: usize = 16;
const MAX_NAME: usize = 16;
const MAX_LINE: usize = 120;

/// The game of one channel.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Tag {
    players: BTreeMap<ClientId, Runner>,
    /// Players who joined so far, for default names and colours.
    joined: u32,
}

/// A player's entity and what only the game knows about it.
#[derive(Debug, Serialize, Deserialize)]
struct Runner {
    player: Entity<Player>,
    dx: f64,
    dy: f64,
    /// Ticks left standing still after being tagged.
    frozen: u32,
}

impl Tag {
    pub fn new() -> Self {
        Self::default()
    }
}

impl App for Tag {
    type Join = Option<Join>;
    type Input = Input;
    type Call = Call;
    type Reply = Vec<Score>;
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
        if self.players.len() >= MAX_PLAYERS {
            return Err(AppError::new(format!(
                "the game is full ({MAX_PLAYERS} players)"
            )));
        }
        self.joined += 1;
        let mut name = clean(&join.unwrap_or_default().name, MAX_NAME);
        if name.is_empty() {
            name = format!("player {}", self.joined);
        }
        // Spread newcomers around the field; the first one is "it".
        let spot = f64::from(self.joined);
        let player = ctx.state.spawn(Player {
            x: (spot * 17.0) % (WIDTH - 4.0) + 2.0,
            y: (spot * 11.0) % (HEIGHT - 4.0) + 2.0,
            name,
            hue: (self.joined * 137) % 360,
            it: self.players.is_empty(),
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
            Runner {
                player,
                dx: 0.0,
                dy: 0.0,
                frozen: 0,
            },
        );
        Ok(())
    }

    fn leave(&mut self, ctx: &mut Ctx<'_>, client: ClientId) -> Result<(), AppError> {
        let Some(gone) = self.players.remove(&client) else {
            return Ok(());
        };
        let was_it = ctx.state.get(gone.player, Player::IT)?;
        ctx.state.remove(gone.player);
        // Someone must be "it": the player who has been in the game longest.
        if was_it
            && let Some(next) = self
                .players
                .values()
                .map(|r| r.player)
                .min_by_key(|p| p.id())
        {
            ctx.state.set(next, Player::IT, true)?;
        }
        Ok(())
    }

    fn input(
        &mut self,
        ctx: &mut Ctx<'_>,
        client: ClientId,
        _seq: Seq,
        input: Input,
    ) -> Result<(), AppError> {
        let runner = self
            .players
            .get_mut(&client)
            .ok_or_else(|| AppError::new("not playing"))?;
        match input {
            Input::Move { dx, dy } => {
                if !dx.is_finite() || !dy.is_finite() {
                    return Err(AppError::new("dx and dy must be finite numbers"));
                }
                // A diagonal is no faster than a straight line.
                let len = dx.hypot(dy).max(1.0);
                (runner.dx, runner.dy) = (dx / len, dy / len);
            }
            Input::Say { text } => {
                let text = clean(&text, MAX_LINE);
                if text.is_empty() {
                    return Err(AppError::new("say something"));
                }
                let name = ctx.state.get(runner.player, Player::NAME)?;
                ctx.broadcast(&Event::Said { name, text })?;
            }
        }
        Ok(())
    }

    fn tick(&mut self, ctx: &mut Ctx<'_>) -> Result<(), AppError> {
        let step = SPEED * ctx.period().as_secs_f64();
        for runner in self.players.values_mut() {
            if runner.frozen > 0 {
                runner.frozen -= 1;
                continue;
            }
            if runner.dx == 0.0 && runner.dy == 0.0 {
                continue;
            }
            let p = runner.player;
            let x = (ctx.state.get(p, Player::X)? + runner.dx * step).clamp(0.0, WIDTH);
            let y = (ctx.state.get(p, Player::Y)? + runner.dy * step).clamp(0.0, HEIGHT);
            ctx.state.set(p, Player::X, x)?;
            ctx.state.set(p, Player::Y, y)?;
        }
        self.tag_someone(ctx)
    }

    fn call(&mut self, ctx: &mut Ctx<'_>, call: Call) -> Result<Vec<Score>, AppError> {
        if let Call::Reset = call {
            for runner in self.players.values() {
                ctx.state.set(runner.player, Player::SCORE, 0)?;
            }
        }
        self.scores(ctx)
    }
}

impl Tag {
    /// If "it" (not frozen) touches another player, that player is "it" now.
    fn tag_someone(&mut self, ctx: &mut Ctx<'_>) -> Result<(), AppError> {
        let mut chaser = None;
        for (client, runner) in &self.players {
            if ctx.state.get(runner.player, Player::IT)? && runner.frozen == 0 {
                chaser = Some((*client, runner.player));
            }
        }
        let Some((chaser_client, chaser)) = chaser else {
            return Ok(());
        };
        let (cx, cy) = (
            ctx.state.get(chaser, Player::X)?,
            ctx.state.get(chaser, Player::Y)?,
        );
        let mut caught = None;
        for (client, runner) in &self.players {
            if *client == chaser_client {
                continue;
            }
            let (x, y) = (
                ctx.state.get(runner.player, Player::X)?,
                ctx.state.get(runner.player, Player::Y)?,
            );
            if (x - cx).hypot(y - cy) <= REACH {
                caught = Some(*client);
                break;
            }
        }
        let Some(caught) = caught else {
            return Ok(());
        };
        let frozen_ticks = (FROZEN_S / ctx.period().as_secs_f64()).ceil() as u32;
        let runner = self
            .players
            .get_mut(&caught)
            .ok_or_else(|| AppError::new("the caught player is gone"))?;
        runner.frozen = frozen_ticks;
        let tagged = runner.player;
        ctx.state.set(chaser, Player::IT, false)?;
        ctx.state.set(tagged, Player::IT, true)?;
        let score = ctx.state.get(chaser, Player::SCORE)? + 1;
        ctx.state.set(chaser, Player::SCORE, score)?;
        let by = ctx.state.get(chaser, Player::NAME)?;
        ctx.send(caught, &Event::Tagged { by })?;
        let scores = self.scores(ctx)?;
        ctx.broadcast(&Event::Scores { scores })?;
        Ok(())
    }

    /// Everyone's score, best first.
    fn scores(&self, ctx: &Ctx<'_>) -> Result<Vec<Score>, AppError> {
        let mut scores = Vec::with_capacity(self.players.len());
        for runner in self.players.values() {
            scores.push(Score {
                name: ctx.state.get(runner.player, Player::NAME)?,
                score: ctx.state.get(runner.player, Player::SCORE)?,
            });
        }
        scores.sort_by(|a, b| b.score.cmp(&a.score).then_with(|| a.name.cmp(&b.name)));
        Ok(scores)
    }
}

/// `text` without control characters, trimmed, at most `max` characters.
fn clean(text: &str, max: usize) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use centrum::{ClientId, Recipient, Sandbox};

    use super::*;

    #[derive(Serialize)]
    struct Name<'a> {
        name: &'a str,
    }

    /// Ann joins first (so she is "it"), then Bo; Ann runs at Bo until she tags him.
    #[test]
    fn it_tags_the_player_it_touches_who_hears_it_and_everyone_gets_the_scores() {
        let mut game = Sandbox::new(Tag::new());
        let (ann, bo) = (ClientId(1), ClientId(2));
        game.join(ann, &Name { name: "ann" }).unwrap();
        game.join(bo, &Name { name: "bo" }).unwrap();
        let you = |sent: &centrum::Outgoing| match sent.decode::<Event>() {
            Ok(Event::You { player }) => player,
            other => panic!("expected `you`, got {other:?}"),
        };
        let sent = game.take_messages();
        let (ann_player, bo_player) = (you(&sent[0]), you(&sent[1]));
        let ann_p = game
            .state()
            .entity_of::<Player>(centrum::EntityId(ann_player))
            .unwrap();
        let bo_p = game
            .state()
            .entity_of::<Player>(centrum::EntityId(bo_player))
            .unwrap();
        assert!(game.state().get(ann_p, Player::IT).unwrap());

        for _ in 0..200 {
            let at = |p| {
                (
                    game.state().get(p, Player::X).unwrap(),
                    game.state().get(p, Player::Y).unwrap(),
                )
            };
            let ((ax, ay), (bx, by)) = (at(ann_p), at(bo_p));
            game.input(
                ann,
                &Input::Move {
                    dx: bx - ax,
                    dy: by - ay,
                },
            )
            .unwrap();
            game.tick().unwrap();
            if game.state().get(bo_p, Player::IT).unwrap() {
                break;
            }
        }
        assert!(game.state().get(bo_p, Player::IT).unwrap(), "bo was tagged");
        assert!(!game.state().get(ann_p, Player::IT).unwrap());
        assert_eq!(game.state().get(ann_p, Player::SCORE).unwrap(), 1);

        let sent = game.take_messages();
        assert_eq!(sent[0].to, Recipient::One(bo));
        assert_eq!(
            sent[0].decode::<Event>().unwrap(),
            Event::Tagged { by: "ann".into() }
        );
        assert_eq!(sent[1].to, Recipient::All);
        let Event::Scores { scores } = sent[1].decode().unwrap() else {
            panic!("expected the scores")
        };
        assert_eq!(
            scores[0],
            Score {
                name: "ann".into(),
                score: 1
            }
        );
    }

    #[test]
    fn what_is_not_a_move_or_a_line_is_refused() {
        let mut game = Sandbox::new(Tag::new());
        game.join(ClientId(1), &()).unwrap();
        #[derive(Serialize)]
        #[serde(rename_all = "snake_case")]
        enum Cheat {
            Teleport { x: f64 },
        }
        let err = game
            .input(ClientId(1), &Cheat::Teleport { x: 1.0 })
            .unwrap_err();
        assert!(
            err.message().contains("unknown variant `teleport`"),
            "{err}"
        );
        let err = game
            .input(ClientId(1), &Input::Say { text: "\n".into() })
            .unwrap_err();
        assert_eq!(err.message(), "say something");
    }

    #[test]
    fn a_restart_keeps_who_plays_whom() {
        let mut game = Sandbox::new(Tag::new());
        game.join(ClientId(1), &Name { name: "ann" }).unwrap();
        game.join(ClientId(2), &Name { name: "bo" }).unwrap();
        game.tick().unwrap();
        // What a back does when it restarts: save the game and its state, restore both.
        game.restart().unwrap();
        // The game still knows which player is whose: ann, who is "it", leaves, and
        // bo's player is "it" now.
        game.leave(ClientId(1)).unwrap();
        let players: Vec<_> = game
            .state()
            .entities()
            .filter_map(|(id, _, _)| game.state().entity_of::<Player>(id))
            .collect();
        let [bo] = players[..] else {
            panic!("one player left, not {}", players.len())
        };
        assert_eq!(game.state().get(bo, Player::NAME).unwrap(), "bo");
        assert!(game.state().get(bo, Player::IT).unwrap());
    }
}
