//! A small game for testing what the platform does around games: it greets joiners,
//! broadcasts what clients say, sends oversized messages on request and answers
//! calls. Registered by tests as `echo`; and a room game, `match`, for the matchmaker.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use centrum_app::{App, AppError, ClientId, Ctx, Entity, Kind, Schema, Seq};

/// One speaker: how many lines it said.
#[derive(Kind, Debug)]
pub struct Speaker {
    pub name: String,
    pub lines: u32,
}

/// What a client sends.
#[derive(Deserialize, Serialize, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Say {
    /// Broadcast `text` to the channel.
    Line { text: String },
    /// Send this client a message of `bytes` bytes (to try the size limit).
    Big { bytes: usize },
}

/// What the game sends clients.
#[derive(Deserialize, Serialize, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Heard {
    Hello { name: String },
    Said { name: String, text: String },
    Big { payload: Vec<u8> },
}

/// What a caller asks.
#[derive(Deserialize, Serialize, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Ask {
    /// Who is here and how many lines each said.
    Lines,
    /// Says `text` to everyone as "server".
    Announce { text: String },
    /// Always refused.
    Refuse,
}

/// The echo game.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Echo {
    speakers: BTreeMap<ClientId, Entity<Speaker>>,
}

impl App for Echo {
    type Join = Option<String>;
    type Input = Say;
    type Call = Ask;
    type Reply = BTreeMap<String, u32>;
    type Options = ();

    fn schema(&self) -> Schema {
        Schema::new().kind::<Speaker>()
    }

    fn join(
        &mut self,
        ctx: &mut Ctx<'_>,
        client: ClientId,
        name: Option<String>,
    ) -> Result<(), AppError> {
        let name = name.unwrap_or_else(|| format!("client {}", client.0));
        let speaker = ctx.state.spawn(Speaker {
            name: name.clone(),
            lines: 0,
        })?;
        self.speakers.insert(client, speaker);
        ctx.send(client, &Heard::Hello { name })?;
        Ok(())
    }

    fn leave(&mut self, ctx: &mut Ctx<'_>, client: ClientId) -> Result<(), AppError> {
        if let Some(speaker) = self.speakers.remove(&client) {
            ctx.state.remove(speaker);
        }
        Ok(())
    }

    fn input(
        &mut self,
        ctx: &mut Ctx<'_>,
        client: ClientId,
        _: Seq,
        say: Say,
    ) -> Result<(), AppError> {
        let speaker = *self
            .speakers
            .get(&client)
            .ok_or_else(|| AppError::new("not a speaker"))?;
        match say {
            Say::Line { text } => {
                let lines = ctx.state.get(speaker, Speaker::LINES)? + 1;
                ctx.state.set(speaker, Speaker::LINES, lines)?;
                let name = ctx.state.get(speaker, Speaker::NAME)?;
                ctx.broadcast(&Heard::Said { name, text })?;
            }
            Say::Big { bytes } => {
                ctx.send(
                    client,
                    &Heard::Big {
                        payload: vec![7; bytes],
                    },
                )?;
            }
        }
        Ok(())
    }

    fn tick(&mut self, _: &mut Ctx<'_>) -> Result<(), AppError> {
        Ok(())
    }

    fn call(&mut self, ctx: &mut Ctx<'_>, ask: Ask) -> Result<Self::Reply, AppError> {
        match ask {
            Ask::Lines => {
                let mut lines = BTreeMap::new();
                for &speaker in self.speakers.values() {
                    lines.insert(
                        ctx.state.get(speaker, Speaker::NAME)?,
                        ctx.state.get(speaker, Speaker::LINES)?,
                    );
                }
                Ok(lines)
            }
            Ask::Announce { text } => {
                ctx.broadcast(&Heard::Said {
                    name: "server".into(),
                    text,
                })?;
                Ok(BTreeMap::new())
            }
            Ask::Refuse => Err(AppError::new("the echo refuses")),
        }
    }
}

/// A room game for the matchmaker's tests (registered as `match`): its creation
/// options become its metadata, and a player can lock, unlock or end the room.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Match {
    players: BTreeMap<ClientId, Entity<Speaker>>,
}

/// A match's creation options: `{mode}`; mode `"refuse"` is refused.
#[derive(Deserialize, Serialize, Debug)]
pub struct MatchOptions {
    pub mode: String,
}

/// What a player of a match sends.
#[derive(Deserialize, Serialize, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    Lock,
    Unlock,
    End,
}

impl App for Match {
    type Join = ();
    type Input = Order;
    type Call = centrum_app::NoCalls;
    type Reply = centrum_app::NoCalls;
    type Options = Option<MatchOptions>;

    fn schema(&self) -> Schema {
        Schema::new().kind::<Speaker>()
    }

    fn create(&mut self, ctx: &mut Ctx<'_>, options: Option<MatchOptions>) -> Result<(), AppError> {
        let mode = options.map_or_else(|| "casual".to_owned(), |o| o.mode);
        if mode == "refuse" {
            return Err(AppError::new("this match refuses mode \"refuse\""));
        }
        let room = ctx.room().ok_or("a match is a room")?;
        room.set_metadata(&BTreeMap::from([("mode", mode)]))?;
        Ok(())
    }

    fn join(&mut self, ctx: &mut Ctx<'_>, client: ClientId, (): ()) -> Result<(), AppError> {
        let player = ctx.state.spawn(Speaker {
            name: format!("player {}", client.0),
            lines: 0,
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
        _: ClientId,
        _: Seq,
        order: Order,
    ) -> Result<(), AppError> {
        let room = ctx.room().ok_or("a match is a room")?;
        match order {
            Order::Lock => room.lock(),
            Order::Unlock => room.unlock(),
            Order::End => room.dispose(),
        }
        Ok(())
    }

    fn tick(&mut self, _: &mut Ctx<'_>) -> Result<(), AppError> {
        Ok(())
    }

    fn dispose(&mut self, ctx: &mut Ctx<'_>) -> Result<(), AppError> {
        ctx.broadcast(&Heard::Said {
            name: "server".into(),
            text: "the match is over".into(),
        })?;
        Ok(())
    }
}
