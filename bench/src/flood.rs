//! The flood workload: N honest clients play the arena workload ([`crate::arena`])
//! through one front while F flooders send inputs as fast as their sockets take them,
//! connecting again whenever they are closed; the result says what service the honest
//! clients kept and what became of the flooders.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use centrum_protocol::{ClientMsg, FrontMsg, Hello, Input, Join, PROTOCOL_VERSION, Seq, decode};

use crate::BenchError;
use crate::arena::{self, ArenaOptions, ArenaResult, Server};

/// One run.
#[derive(Clone, Debug)]
pub struct FloodOptions {
    /// Honest clients.
    pub honest: usize,
    pub flooders: usize,
    /// Seconds measured; the flooders flood from before the warm-up to its end.
    pub window: Duration,
    pub warmup: Duration,
    pub progress: bool,
}

/// One JSON line.
#[derive(Clone, Debug, Serialize)]
pub struct FloodResult {
    pub honest: usize,
    pub flooders: usize,
    pub window_s: f64,
    /// The patches per second of the honest client that got the fewest, and the mean.
    pub honest_patches_per_s_min: Option<f64>,
    pub honest_patches_per_s_mean: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// Honest inputs never acked.
    pub inputs_lost: u64,
    pub honest_drops: usize,
    pub server_cpu_per_wall_s: Option<f64>,
    pub flooder_runs: Vec<FlooderRun>,
    /// The whole arena result of the honest clients.
    pub arena: ArenaResult,
}

/// One flooder connection, from its first input to its end.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FlooderRun {
    pub inputs_sent: u64,
    pub rate_limited_notices: u64,
    pub close_code: Option<u16>,
    pub close_reason: Option<String>,
    /// Seconds from the first input to the server's close; none when the flood ended
    /// first.
    pub closed_after_s: Option<f64>,
}

/// Runs the workload once against `server` (its first front).
///
/// # Errors
/// When the honest run cannot start (see [`arena::run`]).
pub async fn run(options: &FloodOptions, server: &Server) -> Result<FloodResult, BenchError> {
    let Some(url) = server.fronts.first().cloned() else {
        return Err(BenchError::Setup("no front to connect to".into()));
    };
    let honest_server = Server {
        fronts: vec![url.clone()],
        ..server.clone()
    };
    let arena_options = ArenaOptions {
        warmup: options.warmup,
        window: options.window,
        tail: Duration::from_secs(1),
        progress: options.progress,
        ..ArenaOptions::new(options.honest)
    };
    // The honest clients join within a second or two; the flood then covers the
    // warm-up and the whole window.
    let flood_until = Instant::now() + Duration::from_secs(2) + options.warmup + options.window;
    let mut flooders = JoinSet::new();
    for i in 0..options.flooders {
        let url = url.clone();
        flooders.spawn(async move {
            let mut runs = Vec::new();
            while Instant::now() < flood_until {
                match flood_once(&url, i, flood_until).await {
                    Ok(run) => runs.push(run),
                    // Refused at connect (a per-address limit, say): try again shortly.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
            runs
        });
    }
    let arena = arena::run(&arena_options, &honest_server).await?;
    let mut flooder_runs = Vec::new();
    while let Some(runs) = flooders.join_next().await {
        flooder_runs.extend(runs.unwrap_or_default());
    }
    Ok(FloodResult {
        honest: options.honest,
        flooders: options.flooders,
        window_s: arena.window_s,
        honest_patches_per_s_min: arena.patches_per_client_per_s_min,
        honest_patches_per_s_mean: arena.patches_per_client_per_s_mean,
        latency_p50_ms: arena.latency_p50_ms,
        latency_p99_ms: arena.latency_p99_ms,
        inputs_lost: arena.latency_unresolved,
        honest_drops: arena.drops,
        server_cpu_per_wall_s: arena.server_cpu_per_wall_s,
        flooder_runs,
        arena,
    })
}

/// One flooder connection: hello, join, then inputs as fast as the socket takes them
/// until the server closes it or `until`.
async fn flood_once(url: &str, index: usize, until: Instant) -> Result<FlooderRun, String> {
    let limit = Duration::from_secs(10);
    let (mut ws, _) = tokio::time::timeout(limit, tokio_tungstenite::connect_async(url))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let hello = ClientMsg::Hello(Hello {
        version: PROTOCOL_VERSION,
        token: String::new(),
        resume: None,
    });
    let join = ClientMsg::Join(Join {
        channel: "arena".into(),
        data: Bytes::new(),
        seat: None,
    });
    for msg in [hello, join] {
        ws.send(Message::Binary(centrum_protocol::encode(&msg).into()))
            .await
            .map_err(|e| e.to_string())?;
    }
    // Ready-made frames, sent over and over: the front drops what is over the budget.
    let batch: Vec<Bytes> = (1..=256u32)
        .map(|seq| {
            let input = ClientMsg::Input(Input {
                channel: "arena".into(),
                seq: Seq(seq + index as u32),
                data: Bytes::from_static(&[0x82, 0xa2, b'd', b'x', 0x00, 0xa2, b'd', b'y', 0x00]),
            });
            Bytes::from(centrum_protocol::encode(&input))
        })
        .collect();
    let (mut sink, mut stream) = ws.split();
    let started = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn({
        let sent = sent.clone();
        async move {
            while Instant::now() < until {
                for frame in &batch {
                    if sink.feed(Message::Binary(frame.clone())).await.is_err() {
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
                sent.fetch_add(batch.len() as u64, Relaxed);
            }
        }
    });
    let mut run = FlooderRun::default();
    let end = tokio::time::sleep_until(until + Duration::from_secs(1));
    tokio::pin!(end);
    loop {
        tokio::select! {
            _ = &mut end => break,
            msg = stream.next() => match msg {
                Some(Ok(Message::Binary(bytes))) => {
                    if let Ok(FrontMsg::Error(e)) = decode::<FrontMsg>(&bytes, usize::MAX)
                        && e.code == "rate_limited"
                    {
                        run.rate_limited_notices += 1;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    run.closed_after_s = Some(started.elapsed().as_secs_f64());
                    if let Some(f) = frame {
                        run.close_code = Some(u16::from(f.code));
                        run.close_reason = Some(f.reason.to_string());
                    }
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    run.closed_after_s = Some(started.elapsed().as_secs_f64());
                    break;
                }
            }
        }
    }
    writer.abort();
    run.inputs_sent = sent.load(Relaxed);
    Ok(run)
}
