//! The back's own counters for a channel, read from the master's Prometheus text at
//! `/metrics`. Backs report them in heartbeats, so a reading is taken right after a
//! fresh heartbeat lands: the counters then belong to a known instant.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A channel's counters at one instant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct BackCounters {
    pub(crate) at: Instant,
    pub(crate) ticks: f64,
    pub(crate) inputs: f64,
    pub(crate) patches: f64,
}

impl BackCounters {
    /// Per-second rates between two readings: (ticks, inputs, patches).
    pub(crate) fn rates_since(&self, earlier: &BackCounters) -> Option<(f64, f64, f64)> {
        let secs = (self.at - earlier.at).as_secs_f64();
        (secs > 0.0).then(|| {
            (
                (self.ticks - earlier.ticks) / secs,
                (self.inputs - earlier.inputs) / secs,
                (self.patches - earlier.patches) / secs,
            )
        })
    }
}

/// Waits (at most 3 s) for the channel's tick counter to move, i.e. for a heartbeat
/// that just arrived, and returns the counters it brought.
pub(crate) async fn fresh(master: SocketAddr, channel: String) -> Option<BackCounters> {
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

async fn read(master: SocketAddr, channel: &str) -> Option<BackCounters> {
    let text = tokio::time::timeout(Duration::from_secs(2), get(master, "/metrics"))
        .await
        .ok()??;
    let at = Instant::now();
    Some(BackCounters {
        at,
        ticks: sample(&text, "centrum_back_ticks_total", channel)?,
        inputs: sample(&text, "centrum_back_inputs_total", channel)?,
        patches: sample(&text, "centrum_back_patches_total", channel)?,
    })
}

/// A plain HTTP/1.0 GET: the body, when the status is 200.
async fn get(addr: SocketAddr, path: &str) -> Option<String> {
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

/// The value of `name{...channel="C"...}`, summed over nodes.
fn sample(text: &str, name: &str, channel: &str) -> Option<f64> {
    let label = format!("channel=\"{channel}\"");
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
            sample(text, "centrum_back_ticks_total", "arena"),
            Some(120.0)
        );
        assert_eq!(sample(text, "centrum_back_ticks_total", "nope"), None);
    }
}
