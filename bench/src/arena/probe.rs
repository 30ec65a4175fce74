//! A measuring client: the real client library with a live mirror. It resolves its
//! pending inputs against its own player's `seq` after every patch (latency) and
//! checks its own position against the inputs it sent (correctness).

use std::collections::VecDeque;
use tokio::time::Instant;

use centrum_client::{Client, ClientError, EntityId, Event, Seq, Value};

use super::{ClientRun, Tally, Workload};

/// The position the workload predicts after each seq, from (0.1, 0.1).
#[derive(Debug)]
struct Expected(Vec<(f64, f64)>);

impl Expected {
    fn new() -> Self {
        Self(vec![(0.1, 0.1)])
    }

    fn push(&mut self, dx: f64, dy: f64) {
        let (x, y) = self.0.last().copied().unwrap_or((0.1, 0.1));
        self.0.push((x + dx, y + dy));
    }

    fn at(&self, seq: usize) -> Option<(f64, f64)> {
        self.0.get(seq).copied()
    }
}

/// Finds this client's own player, keyed by the name it joined with.
pub(crate) fn own_player(client: &Client, channel: &str, name: &str) -> Option<EntityId> {
    let mirror = client.mirror(channel)?;
    mirror
        .entities()
        .keys()
        .copied()
        .find(|id| matches!(mirror.field(*id, "name"), Some((_, Value::Str(n))) if n == name))
}

/// Runs one measuring client until the run stops; returns it for the leave phase.
pub(crate) async fn run(mut client: Client, me: EntityId, mut run: ClientRun) -> (Client, Tally) {
    let mut tally = Tally::default();
    let mut pending: VecDeque<(u32, Instant)> = VecDeque::new();
    let mut expected = Expected::new();
    let mut resolved = 0u32;
    let (mut msgs, mut bytes) = (0, 0);
    loop {
        tokio::select! {
            seq = run.next_input() => {
                let Some(seq) = seq else { break };
                let (dx, dy, data) = Workload::input(seq);
                expected.push(dx, dy);
                let now = Instant::now();
                if let Err(e) = client.send_input_with_seq(&run.channel, Seq(seq), &data).await {
                    tally.dropped(format!("sending input {seq}: {e}"));
                    break;
                }
                pending.push_back((seq, now));
                tally.count_input(run.in_window(now));
            }
            event = client.next_event() => {
                let now = Instant::now();
                let counting = run.in_window(now);
                let (m, b) = (client.messages_received(), client.bytes_received());
                let (dm, db) = (m - msgs, b - bytes);
                (msgs, bytes) = (m, b);
                match event {
                    Ok(Event::Patch { .. } | Event::State { .. }) => {
                        let patch = matches!(event, Ok(Event::Patch { .. }));
                        tally.count_received(counting, dm, db, patch);
                        let Some(mirror) = client.mirror(&run.channel) else { continue };
                        let (Some(s), Some(x), Some(y)) = (
                            mirror.number(me, "seq"),
                            mirror.number(me, "x"),
                            mirror.number(me, "y"),
                        ) else {
                            tally.error("own player missing from the mirror".into());
                            continue;
                        };
                        let s = s as u32;
                        while let Some(&(q, sent)) = pending.front() {
                            if q > s {
                                break;
                            }
                            pending.pop_front();
                            if run.in_window(sent) {
                                tally.latencies_ms.push((now - sent).as_secs_f64() * 1e3);
                            }
                        }
                        if s > resolved {
                            resolved = s;
                            tally.checks += 1;
                            let ok = expected.at(s as usize).is_some_and(|(ex, ey)| {
                                (x - ex).abs() <= 1e-3 && (y - ey).abs() <= 1e-3
                            });
                            if !ok {
                                tally.mismatches += 1;
                            }
                        }
                    }
                    Ok(Event::Closed { reason }) => {
                        tally.dropped(reason);
                        break;
                    }
                    Ok(Event::Error { code, message }) => {
                        tally.count_received(counting, dm, db, false);
                        tally.error(format!("{code}: {message}"));
                    }
                    Ok(_) => tally.count_received(counting, dm, db, false),
                    Err(ClientError::Closed(reason)) => {
                        tally.dropped(reason);
                        break;
                    }
                    Err(e) => tally.error(e.to_string()),
                }
            }
        }
    }
    tally.unresolved = pending.iter().filter(|(_, t)| run.in_window(*t)).count() as u64;
    (client, tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_positions_accumulate_from_the_start() {
        let mut e = Expected::new();
        assert_eq!(e.at(0), Some((0.1, 0.1)));
        for seq in 1..=25 {
            let (dx, dy, _) = Workload::input(seq);
            e.push(dx, dy);
        }
        // 19 steps of +0.25 (seq 1..19), then 6 of -0.25 (seq 20..25).
        let (x, y) = e.at(25).expect("25 inputs");
        assert!((x - (0.1 + 13.0 * 0.25)).abs() < 1e-9);
        assert!((y - (0.1 - 13.0 * 0.25)).abs() < 1e-9);
        assert_eq!(e.at(26), None);
    }
}
