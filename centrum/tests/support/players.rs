//! Players for tests of real processes: clients that join a channel and send a move
//! every 50 ms, reconnecting and resuming when their connection closes, noting every
//! ack and full state so a test can count what was lost; and the master's view of a
//! node's pid.
#![allow(dead_code)] // Each test binary uses its own part.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use centrum_client::{Client, ClientError, ClientOptions, Event, Seq, Value};

/// The longest a step of a test may take.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(20);

/// The master's `GET /status` (at `http`, `host:port`), or None while it does not answer.
pub(crate) async fn status(http: &str) -> Option<serde_json::Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(http).await.ok()?;
    let request = format!("GET /status HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&response);
    let body = text.split_once("\r\n\r\n")?.1;
    serde_json::from_str(body).ok()
}

/// Live node `id` as the master's /status lists it.
pub(crate) async fn live_node(http: &str, id: &str) -> Option<serde_json::Value> {
    let status = status(http).await?;
    status["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["id"] == id)
        .cloned()
}

/// The pid of live node `id` as the master lists it.
pub(crate) async fn node_pid(http: &str, id: &str) -> Option<u32> {
    live_node(http, id).await?["pid"].as_u64().map(|p| p as u32)
}

pub(crate) fn kill9(pid: u32) {
    let status = Command::new("kill")
        .arg("-KILL")
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -9 {pid}");
}

/// Whether `pid` runs (a zombie, dead but not yet reaped, does not).
pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(") ")
                .map(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

#[derive(Serialize)]
pub(crate) struct Join {
    pub(crate) name: String,
}

#[derive(Serialize)]
pub(crate) struct Move {
    pub(crate) dx: f64,
    pub(crate) dy: f64,
}

/// What one playing client saw.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// The last ack the server gave, and when.
    pub(crate) ack: Seq,
    /// Full states received: when, their ack, and the player's `x` in them (each
    /// applied input moves it by 1).
    pub(crate) states: Vec<(Instant, Seq, f64)>,
    pub(crate) unavailable: u32,
    /// Connections that closed under the client (each followed by a resume).
    pub(crate) closed: u32,
    /// The last ack the client had when it last resumed: its resumed membership must
    /// not be behind it.
    pub(crate) acked_before_resume: Option<Seq>,
    /// The player's `x` in the last state or patch: the inputs the server has said it
    /// applied (an ack alone does not say it: inputs refused while the channel was
    /// unavailable took sequence numbers too).
    pub(crate) x: f64,
}

/// Connects to the front at `url` (retrying while it is down, as a game would), with
/// the resume token of an earlier connection if any, and joins `channel` as `name`.
pub(crate) async fn connect_and_join(
    url: &str,
    channel: &str,
    name: &str,
    resume: Option<String>,
) -> Client {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "{name} could not join");
        // Quick to give up on a front that is unreachable or silent (a host cut off):
        // the player tries again, as a game would.
        let options = ClientOptions {
            resume: resume.clone(),
            connect_timeout: Duration::from_secs(2),
            ping_after: Duration::from_millis(500),
            silence_timeout: Duration::from_secs(1),
            ..ClientOptions::default()
        };
        let Ok(mut client) = Client::connect(url, options).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let join = Join { name: name.into() };
        loop {
            assert!(Instant::now() < deadline, "{name} could not join");
            match client.join_value(channel, &join).await {
                Ok(()) => return client,
                // The front is still linking to the back.
                Err(ClientError::Rejected { .. }) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("{name}: join: {e}"),
            }
        }
    }
}

/// A client that joins `channel` on the front at `url` as `name` and sends a move
/// every 50 ms until `stop`, noting what it sees; when its connection closes, it
/// connects again and resumes. Returns the client when stopped.
pub(crate) async fn play(
    url: String,
    channel: String,
    name: String,
    seen: Arc<Mutex<Seen>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Client {
    let mut client = connect_and_join(&url, &channel, &name, None).await;
    let mut every = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = stop.changed() => return client,
            _ = every.tick() => {
                // Refused while the back is away ("unavailable"): not sent, not acked.
                let _ = client.send_value(&channel, &Move { dx: 1.0, dy: 0.0 }).await;
            }
            event = client.next_event() => match event.unwrap_or_else(|e| Event::Closed { reason: e.to_string() }) {
                Event::State { ack, .. } => {
                    let (_, x) = player_in(&client, &channel, &name);
                    let mut s = seen.lock();
                    s.ack = later(s.ack, ack);
                    s.x = x;
                    s.states.push((Instant::now(), ack, x));
                }
                Event::Patch { ack, .. } => {
                    let (_, x) = player_in(&client, &channel, &name);
                    let mut s = seen.lock();
                    s.ack = later(s.ack, ack);
                    s.x = x;
                }
                Event::Unavailable { .. } => seen.lock().unavailable += 1,
                Event::Closed { .. } => {
                    seen.lock().closed += 1;
                    let token = client.resume_token().to_owned();
                    client = connect_and_join(&url, &channel, &name, Some(token)).await;
                    // The join's own full state: the membership it resumed.
                    let (_, x) = player_in(&client, &channel, &name);
                    let ack = client.ack(&channel);
                    let mut s = seen.lock();
                    s.acked_before_resume = Some(s.ack);
                    s.ack = later(s.ack, ack);
                    s.states.push((Instant::now(), ack, x));
                }
                Event::Left { reason, .. } | Event::Rejected { reason, .. } => {
                    panic!("{name}: out of the channel: {reason}")
                }
                _ => {}
            },
        }
    }
}

/// The later of two acks.
pub(crate) fn later(a: Seq, b: Seq) -> Seq {
    if b.is_after(a) { b } else { a }
}

/// The player called `name` in `client`'s mirror: its entity id and its `x`, which
/// each input applied to it moved by 1. Fails when there is not exactly one.
pub(crate) fn player(client: &Client, name: &str) -> (u32, f64) {
    player_in(client, "arena", name)
}

/// As [`player`], in channel (or room) `channel`.
pub(crate) fn player_in(client: &Client, channel: &str, name: &str) -> (u32, f64) {
    let mirror = client.mirror(channel).expect("a mirror");
    let mine: Vec<_> = mirror
        .entities()
        .keys()
        .filter(|&&id| matches!(mirror.field(id, "name"), Some((_, Value::Str(n))) if n == name))
        .collect();
    assert_eq!(mine.len(), 1, "one player called {name}");
    let id = *mine[0];
    (id.0, mirror.number(id, "x").expect("x"))
}
