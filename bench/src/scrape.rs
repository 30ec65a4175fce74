//! The cluster's own counters for a channel, read from the master's Prometheus text
//! at `/metrics`. Nodes report them in heartbeats, so a reading is taken right after a
//! fresh heartbeat of the back lands: the back's counters then belong to a known
//! instant (the fronts' are at most one heartbeat older).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A channel's counters at one instant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Counters {
    pub(crate) at: Instant,
    pub(crate) ticks: f64,
    pub(crate) inputs: f64,
    pub(crate) patches: f64,
    /// Time the channel spent in its ticks, and in writing their journal records
    /// (absent for a back that keeps nothing).
    tick_s: Option<f64>,
    journal_commit_s: Option<f64>,
    journal_records: Option<f64>,
    /// Summed over fronts; absent when no front reports them.
    front_patch_delay_s: Option<f64>,
    front_patch_writes: Option<f64>,
}

/// What the cluster did between two readings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rates {
    pub(crate) ticks_per_s: f64,
    pub(crate) inputs_per_s: f64,
    pub(crate) patches_per_s: f64,
    /// The fronts' mean delay from a patch's arrival to its write to a client.
    pub(crate) front_patch_delay_ms: Option<f64>,
    /// The mean time of one tick of the channel (its game, patch and fan-out encoding).
    pub(crate) tick_ms: Option<f64>,
    /// The mean time to write (and sync) one tick's journal record.
    pub(crate) journal_commit_ms: Option<f64>,
}

/// `(a1 - a0) / (b1 - b0)` of two readings, when both are there and b moved.
fn mean_of(a1: Option<f64>, a0: Option<f64>, b1: f64, b0: f64) -> Option<f64> {
    Some((a1? - a0?) / (b1 - b0)).filter(|_| b1 > b0)
}

impl Counters {
    pub(crate) fn rates_since(&self, earlier: &Counters) -> Option<Rates> {
        let secs = (self.at - earlier.at).as_secs_f64();
        let delay = match (
            self.front_patch_delay_s,
            earlier.front_patch_delay_s,
            self.front_patch_writes,
            earlier.front_patch_writes,
        ) {
            (Some(d1), Some(d0), Some(w1), Some(w0)) if w1 > w0 => {
                Some((d1 - d0) / (w1 - w0) * 1e3)
            }
            _ => None,
        };
        (secs > 0.0).then(|| Rates {
            ticks_per_s: (self.ticks - earlier.ticks) / secs,
            inputs_per_s: (self.inputs - earlier.inputs) / secs,
            patches_per_s: (self.patches - earlier.patches) / secs,
            front_patch_delay_ms: delay,
            tick_ms: mean_of(self.tick_s, earlier.tick_s, self.ticks, earlier.ticks)
                .map(|s| s * 1e3),
            journal_commit_ms: match (self.journal_records, earlier.journal_records) {
                (Some(r1), Some(r0)) => {
                    mean_of(self.journal_commit_s, earlier.journal_commit_s, r1, r0)
                        .map(|s| s * 1e3)
                }
                _ => None,
            },
        })
    }
}

/// Waits (at most 3 s) for the channel's tick counter to move, i.e. for a heartbeat
/// that just arrived, and returns the counters it brought.
pub(crate) async fn fresh(master: SocketAddr, channel: String) -> Option<Counters> {
    let channel = channel.as_str();
    let first = read(master, channel).await?;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        // Heartbeats come every second or so; 20 ms bounds the reading's age.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let next = read(master, channel).await?;
        if next.ticks != first.ticks {
            return Some(next);
        }
    }
    None
}

async fn read(master: SocketAddr, channel: &str) -> Option<Counters> {
    let text = tokio::time::timeout(Duration::from_secs(2), get(master, "/metrics"))
        .await
        .ok()??;
    let at = Instant::now();
    Some(Counters {
        at,
        ticks: sample(&text, "centrum_back_ticks_total", Some(channel))?,
        inputs: sample(&text, "centrum_back_inputs_total", Some(channel))?,
        patches: sample(&text, "centrum_back_patches_total", Some(channel))?,
        tick_s: sample(&text, "centrum_back_tick_seconds_total", Some(channel)),
        journal_commit_s: sample(
            &text,
            "centrum_back_journal_commit_seconds_sum",
            Some(channel),
        ),
        journal_records: sample(&text, "centrum_back_journal_records_total", Some(channel)),
        front_patch_delay_s: sample(&text, "centrum_front_patch_delay_seconds_total", None),
        front_patch_writes: sample(&text, "centrum_front_patch_writes_total", None),
    })
}

/// A plain HTTP/1.0 GET: the body, when the status is 200.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    // Bounded: a metrics page is a few KiB per node.
    stream
        .take(16 << 20)
        .read_to_end(&mut response)
        .await
        .ok()?;
    let response = String::from_utf8(response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_owned())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_owned()))
}

/// The value of `name{...channel="C"...}` (any labels when `channel` is None), summed
/// over nodes.
fn sample(text: &str, name: &str, channel: Option<&str>) -> Option<f64> {
    let label = channel.map_or_else(String::new, |c| format!("channel=\"{c}\""));
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !rest.starts_with('{') || !rest.contains(&label) {
            continue;
        }
        let value: f64 = rest.rsplit(' ').next()?.parse().ok()?;
        *found.get_or_insert(0.0) += value;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_matched_by_name_and_channel() {
        let text = "# HELP centrum_back_ticks_total Ticks run.\n\
            centrum_back_ticks_total{node=\"back-1\",channel=\"arena\"} 120\n\
            centrum_back_ticks_total{node=\"back-1\",channel=\"other\"} 7\n\
            centrum_back_ticks_total_extra{node=\"back-1\",channel=\"arena\"} 9\n";
        assert_eq!(
            sample(text, "centrum_back_ticks_total", Some("arena")),
            Some(120.0)
        );
        assert_eq!(sample(text, "centrum_back_ticks_total", Some("nope")), None);
        assert_eq!(sample(text, "centrum_back_ticks_total", None), Some(127.0));
    }
}
