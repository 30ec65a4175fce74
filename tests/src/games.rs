//! A small game for testing what the platform does around games: it greets joiners,
//! broadcasts what clients say, sends oversized messages on request and answers
//! calls. Registered by tests as `echo`.

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
