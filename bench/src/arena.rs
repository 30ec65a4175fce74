//! The arena workload of shared/bench/ARENA.md, exactly: N clients join one channel
//! (at most 25 joins in flight), then client i sends an input every 50 ms from
//! `start + i/N * 50 ms`; after a warm-up, a measurement window and a tail, every
//! client leaves and one result ([`ArenaResult`]) describes the window. [`drive`]
//! runs the same phases for clients that each join a channel of their own (rooms).

mod probe;
pub(crate) mod raw;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use centrum_client::{Client, ClientOptions, SeatReservation};

use crate::procfs::{self, CpuTime};
use crate::stats::{self, round};
use crate::{BenchError, scrape};

/// The input period of the workload (20 Hz), independent of the server's tick.
const PERIOD: Duration = Duration::from_millis(50);

/// Which clients decode and measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decode {
    /// Every client decodes every patch and measures latency.
    All,
    /// K clients, spread evenly over the indices, decode and measure; the rest only
    /// count what they receive. The server does the same work.
    Probe(usize),
}

impl std::str::FromStr for Decode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "all" {
            return Ok(Decode::All);
        }
        s.strip_prefix("probe:")
            .and_then(|k| k.parse().ok())
            .filter(|k| *k > 0)
            .map(Decode::Probe)
            .ok_or_else(|| format!("{s:?}: expected \"all\" or \"probe:K\" with K >= 1"))
    }
}

impl std::fmt::Display for Decode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decode::All => f.write_str("all"),
            Decode::Probe(k) => write!(f, "probe:{k}"),
        }
    }
}

/// One run of the workload.
#[derive(Clone, Debug)]
pub struct ArenaOptions {
    pub n: usize,
    pub decode: Decode,
    pub warmup: Duration,
    pub window: Duration,
    pub tail: Duration,
    pub join_concurrency: usize,
    pub join_timeout: Duration,
    pub join_budget: Duration,
    pub channel: String,
    /// Print progress to stderr.
    pub progress: bool,
}

impl ArenaOptions {
    /// The workload as ARENA.md specifies it, for `n` clients.
    pub fn new(n: usize) -> Self {
        Self {
            n,
            decode: Decode::All,
            warmup: Duration::from_secs(5),
            window: Duration::from_secs(20),
            tail: Duration::from_secs(2),
            join_concurrency: 25,
            join_timeout: Duration::from_secs(30),
            join_budget: Duration::from_secs(180),
            channel: "arena".into(),
            progress: false,
        }
    }
}

/// The cluster under load.
#[derive(Clone, Debug)]
pub struct Server {
    /// ws:// URLs of the fronts; client i uses front i mod len.
    pub fronts: Vec<String>,
    /// The master's HTTP address, for the back's own counters; optional.
    pub master: Option<SocketAddr>,
    /// Every process of the cluster, for CPU and memory; may be empty.
    pub pids: Vec<u32>,
    /// How it runs, for the record ("processes", "one-process", "external").
    pub layout: String,
    /// Where its back keeps channels, for the record ("disk", "memory", "unknown").
    pub store: String,
}

/// One JSON line: the Colyseus reference's metric names, plus centrum's own.
#[derive(Clone, Debug, Serialize)]
pub struct ArenaResult {
    pub n: usize,
    pub decode: String,
    pub decoding_clients: usize,
    pub cluster: String,
    /// Where the back kept the channel: "disk" (journal and snapshots) or "memory".
    pub store: String,
    pub joined: usize,
    pub join_failures: usize,
    pub join_errors: Vec<String>,
    pub join_s: f64,
    pub drops: usize,
    pub drop_reasons: Vec<String>,
    pub client_errors: u64,
    pub warmup_s: f64,
    pub window_s: f64,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_per_wall_s: Option<f64>,
    pub server_cpu_user_s: Option<f64>,
    pub server_cpu_sys_s: Option<f64>,
    pub server_rss_peak_mb: Option<f64>,
    pub server_processes: usize,
    pub client_msgs_per_s: f64,
    pub client_bytes_per_s: f64,
    pub inputs_sent_per_s: f64,
    pub inputs_expected_per_s: f64,
    pub server_inputs_applied_per_s: Option<f64>,
    /// Patches per second received by the client that got the fewest, and the mean
    /// over clients, in the window.
    pub patches_per_client_per_s_min: Option<f64>,
    pub patches_per_client_per_s_mean: Option<f64>,
    pub server_ticks_per_s: Option<f64>,
    pub server_patches_sent_per_s: Option<f64>,
    /// The fronts' mean delay from a patch's arrival from the back to its write to a
    /// client's socket, over the window: the front's share of the latency.
    pub front_patch_delay_ms: Option<f64>,
    /// The back's mean time per tick of the channel, over the window.
    pub server_tick_ms: Option<f64>,
    /// The back's mean time to write (and sync) a tick's journal record; null when
    /// it keeps the channel in memory.
    pub journal_commit_ms: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p90_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    pub latency_samples: usize,
    pub latency_unresolved: u64,
    pub state_checks: u64,
    pub state_mismatches: u64,
    pub loadgen_cpu_per_wall_s: Option<f64>,
    pub loadgen_rss_mb: Option<f64>,
    pub bytes_per_player_per_patch: Option<f64>,
    pub valid: bool,
    pub invalid_reasons: Vec<String>,
    pub cpus: usize,
    pub versions: Versions,
}

#[derive(Clone, Debug, Serialize)]
pub struct Versions {
    pub centrum: &'static str,
    pub protocol: u32,
}

/// The inputs of the workload: `dir = +1` while `floor(seq / 20)` is even, else -1;
/// `dx = 0.25 * dir`, `dy = -0.25 * dir`, as a MessagePack map `{dx, dy}`.
struct Workload;

impl Workload {
    fn input(seq: u32) -> (f64, f64, Bytes) {
        static DATA: OnceLock<[Bytes; 2]> = OnceLock::new();
        let data = DATA.get_or_init(|| [Self::encode(0.25), Self::encode(-0.25)]);
        if (seq / 20).is_multiple_of(2) {
            (0.25, -0.25, data[0].clone())
        } else {
            (-0.25, 0.25, data[1].clone())
        }
    }

    fn encode(dx: f64) -> Bytes {
        #[derive(Serialize)]
        struct Move {
            dx: f64,
            dy: f64,
        }
        // Serialising two floats into a Vec cannot fail.
        Bytes::from(rmp_serde::to_vec_named(&Move { dx, dy: -dx }).unwrap_or_default())
    }

    fn join_data(name: &str) -> Bytes {
        Bytes::from(rmp_serde::to_vec_named(&JoinData { name }).unwrap_or_default())
    }
}

/// The join data of the workload: `{name}`, the key a client finds its player by.
#[derive(Serialize)]
struct JoinData<'a> {
    name: &'a str,
}

/// The run's instants, fixed once every client has joined.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeline {
    start: Instant,
    window_start: Instant,
    window_end: Instant,
}

/// What a client task knows about the run, and when its inputs are due.
#[derive(Debug)]
pub(crate) struct ClientRun {
    index: usize,
    channel: String,
    timeline: watch::Receiver<Option<Timeline>>,
    current: Option<Timeline>,
    /// Every client's phase, by index, set before the timeline is published.
    phases: Arc<OnceLock<Vec<f64>>>,
    /// This client's, read when the timeline arrives.
    phase: f64,
    /// Inputs sent so far; the last one's seq.
    sent: u32,
    next_due: Pin<Box<Sleep>>,
    /// Made once: each `cancelled()` registers with the token, which a turn of a
    /// client's loop must not pay.
    stopped: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl ClientRun {
    fn new(
        index: usize,
        n: usize,
        channel: String,
        stop: CancellationToken,
        timeline: watch::Receiver<Option<Timeline>>,
        phases: Arc<OnceLock<Vec<f64>>>,
    ) -> Self {
        Self {
            index,
            channel,
            timeline,
            current: None,
            phases,
            phase: index as f64 / n as f64,
            sent: 0,
            // Far off until the timeline is published.
            next_due: Box::pin(tokio::time::sleep(Duration::from_secs(86_400))),
            stopped: Box::pin(stop.cancelled_owned()),
        }
    }

    /// Waits until the next input is due and returns its seq; None once the run stops.
    /// Cancel-safe: nothing changes unless it returns or the timeline arrives.
    async fn next_input(&mut self) -> Option<u32> {
        loop {
            tokio::select! {
                biased;
                _ = &mut self.stopped => return None,
                changed = self.timeline.changed(), if self.current.is_none() => {
                    changed.ok()?;
                    self.current = *self.timeline.borrow();
                    if let Some(p) = self.phases.get().and_then(|p| p.get(self.index)) {
                        self.phase = *p;
                    }
                    if let Some(t) = self.current {
                        let first = t.start + self.offset();
                        self.next_due.as_mut().reset(first);
                    }
                }
                _ = &mut self.next_due, if self.current.is_some() => {
                    self.sent += 1;
                    let next = self.next_send(self.sent);
                    self.next_due.as_mut().reset(next);
                    return Some(self.sent);
                }
            }
        }
    }

    /// Client i's phase: `i/N` of the input period with one channel (see [`phases`]).
    fn offset(&self) -> Duration {
        PERIOD.mul_f64(self.phase)
    }

    /// When the input after `sent` inputs is due.
    fn next_send(&self, sent: u32) -> Instant {
        let start = self.current.map_or_else(Instant::now, |t| t.start);
        start + self.offset() + PERIOD * sent
    }

    fn in_window(&self, t: Instant) -> bool {
        self.current
            .is_some_and(|tl| t >= tl.window_start && t < tl.window_end)
    }
}

/// What one client saw over the run.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    inputs: u64,
    msgs: u64,
    bytes: u64,
    /// Patches received in the window.
    pub(crate) patches: u64,
    /// Bytes of those patches.
    pub(crate) patch_bytes: u64,
    latencies_ms: Vec<f64>,
    unresolved: u64,
    checks: u64,
    mismatches: u64,
    errors: u64,
    first_error: Option<String>,
    drop: Option<String>,
}

impl Tally {
    fn count_input(&mut self, counting: bool) {
        if counting {
            self.inputs += 1;
        }
    }

    fn count_received(&mut self, counting: bool, msgs: u64, bytes: u64, patch: bool) {
        if counting {
            self.msgs += msgs;
            self.bytes += bytes;
            if patch {
                self.patches += msgs;
                self.patch_bytes += bytes;
            }
        }
    }

    fn dropped(&mut self, reason: String) {
        self.drop.get_or_insert(reason);
    }

    fn error(&mut self, message: String) {
        self.errors += 1;
        self.first_error.get_or_insert(message);
    }
}

/// A joined connection of either kind.
pub(crate) enum Conn {
    // Boxed: a measuring client carries its mirror and buffers, a counting one a socket.
    Probe(Box<Client>),
    Raw(raw::RawClient),
}

impl Conn {
    async fn close(self) {
        match self {
            Conn::Probe(c) => {
                let _ = c.close().await;
            }
            Conn::Raw(r) => r.close().await,
        }
    }
}

macro_rules! progress {
    ($opts:expr, $($arg:tt)*) => {
        if $opts.progress {
            eprintln!("[arena n={}] {}", $opts.n, format_args!($($arg)*));
        }
    };
}

/// How client `index` gets into its channel: given the index and whether it measures
/// (a probe), a joined connection and the name of the channel it joined.
pub(crate) type JoinFn = Arc<
    dyn Fn(usize, bool) -> Pin<Box<dyn Future<Output = Result<(Conn, String), String>> + Send>>
        + Send
        + Sync,
>;

/// A run's result before its verdict, with what each client received, by channel.
#[derive(Debug)]
pub(crate) struct Driven {
    pub(crate) result: ArenaResult,
    /// Each client that joined: its channel and what it saw.
    pub(crate) clients: Vec<(String, Tally)>,
}

/// Runs the workload once against `server`.
///
/// # Errors
/// Only when the run cannot start (no front given, N of 0); failing clients are
/// counted in the result, which then says it is not valid.
pub async fn run(options: &ArenaOptions, server: &Server) -> Result<ArenaResult, BenchError> {
    if server.fronts.is_empty() {
        return Err(BenchError::Setup("no front to connect to".into()));
    }
    let fronts = server.fronts.clone();
    let channel = options.channel.clone();
    let join: JoinFn = Arc::new(move |index, probe| {
        let url = fronts[index % fronts.len()].clone();
        let channel = channel.clone();
        Box::pin(async move {
            let conn = join(index, &url, &channel, probe, None).await?;
            Ok((conn, channel))
        })
    });
    let counted = Some(options.channel.clone());
    let mut driven = drive(options, server, join, counted, None).await?;
    judge(&mut driven.result);
    Ok(driven.result)
}

/// The phases of the workload for clients that `join` places; `counted` names the
/// channel whose server counters the result reads (None: none are read, the server
/// rates stay null); `joined_tx` hears when the join phase is over. The result has no
/// verdict yet.
///
/// # Errors
/// As [`run`].
pub(crate) async fn drive(
    options: &ArenaOptions,
    server: &Server,
    join: JoinFn,
    counted: Option<String>,
    joined_tx: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<Driven, BenchError> {
    if options.n == 0 {
        return Err(BenchError::Setup("N must be at least 1".into()));
    }
    let n = options.n;
    let probes = probe_indices(n, options.decode);
    let stop = CancellationToken::new();
    let (timeline_tx, timeline_rx) = watch::channel(None);
    let mut tasks: JoinSet<(Option<Conn>, Tally, String)> = JoinSet::new();

    // Join phase.
    progress!(options, "joining {n} clients ({} decode)", options.decode);
    let join_started = Instant::now();
    let join_deadline = join_started + options.join_budget;
    let permits = Arc::new(Semaphore::new(options.join_concurrency.max(1)));
    let mut joins = JoinSet::new();
    for index in 0..n {
        let Ok(permit) =
            tokio::time::timeout_at(join_deadline, permits.clone().acquire_owned()).await
        else {
            break;
        };
        let joining = join(index, probes.contains(&index));
        let timeout = options.join_timeout;
        joins.spawn(async move {
            let joined = tokio::time::timeout(timeout, joining).await;
            drop(permit);
            (
                index,
                joined.unwrap_or_else(|_| Err("the join took over 30 s".into())),
            )
        });
        if (index + 1) % 500 == 0 {
            progress!(options, "{} joins started", index + 1);
        }
    }
    let mut join_errors = Vec::new();
    let mut joined = 0;
    let phases = Arc::new(OnceLock::new());
    let mut placed = Vec::with_capacity(n);
    loop {
        let next = tokio::time::timeout_at(join_deadline, joins.join_next()).await;
        let Ok(Some(result)) = next else {
            break;
        };
        match result {
            Ok((index, Ok((conn, channel)))) => {
                joined += 1;
                placed.push((index, channel.clone()));
                let run = ClientRun::new(
                    index,
                    n,
                    channel,
                    stop.clone(),
                    timeline_rx.clone(),
                    phases.clone(),
                );
                tasks.spawn(client_task(conn, run));
            }
            Ok((_, Err(e))) => join_errors.push(e),
            Err(e) => join_errors.push(format!("join task failed: {e}")),
        }
    }
    joins.abort_all();
    let join_failures = n - joined;
    let join_s = join_started.elapsed().as_secs_f64();
    if let Some(tx) = joined_tx {
        let _ = tx.send(());
    }
    progress!(
        options,
        "{joined} joined in {join_s:.1} s, {join_failures} failed"
    );

    // Inputs, warm-up, window, tail.
    let _ = phases.set(phases_of(n, &placed));
    let start = Instant::now() + Duration::from_millis(100);
    let timeline = Timeline {
        start,
        window_start: start + options.warmup,
        window_end: start + options.warmup + options.window,
    };
    let stop_at = timeline.window_end + options.tail;
    let _ = timeline_tx.send(Some(timeline));
    progress!(
        options,
        "inputs start; {:.0} s warm-up",
        options.warmup.as_secs_f64()
    );

    tokio::time::sleep_until(timeline.window_start).await;
    let cpu_before = procfs::cpu_of(&server.pids);
    let me_before = procfs::cpu(std::process::id());
    let counters_before = server
        .master
        .zip(counted.clone())
        .map(|(m, c)| tokio::spawn(scrape::fresh(m, c)));
    progress!(
        options,
        "window open ({:.0} s)",
        options.window.as_secs_f64()
    );
    let mut tick = timeline.window_start;
    while tick + Duration::from_secs(5) < timeline.window_end {
        tick += Duration::from_secs(5);
        tokio::time::sleep_until(tick).await;
        progress!(
            options,
            "window {:.0}/{:.0} s",
            (tick - timeline.window_start).as_secs_f64(),
            options.window.as_secs_f64()
        );
    }
    tokio::time::sleep_until(timeline.window_end).await;
    let cpu_after = procfs::cpu_of(&server.pids);
    let me_after = procfs::cpu(std::process::id());
    let wall = (Instant::now() - timeline.window_start).as_secs_f64();
    let counters_after = server
        .master
        .zip(counted)
        .map(|(m, c)| tokio::spawn(scrape::fresh(m, c)));
    progress!(
        options,
        "window closed; {:.0} s tail",
        options.tail.as_secs_f64()
    );
    tokio::time::sleep_until(stop_at).await;
    let rss_peak_kib = procfs::rss_peak_kib_of(&server.pids);
    stop.cancel();

    // Collect, then everyone leaves.
    let mut clients = Vec::new();
    let mut conns = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((conn, tally, channel)) => {
                conns.extend(conn);
                clients.push((channel, tally));
            }
            Err(e) => {
                let mut t = Tally::default();
                t.dropped(format!("client task failed: {e}"));
                clients.push((String::new(), t));
            }
        }
    }
    crate::settle(conns.into_iter().map(Conn::close), Duration::from_secs(5)).await;
    progress!(options, "all left");

    let server_cpu = match (cpu_before, cpu_after) {
        (Some(b), Some(a)) => Some(a.since(&b)),
        _ => None,
    };
    let rates = match (counters_before, counters_after) {
        (Some(b), Some(a)) => match (b.await.ok().flatten(), a.await.ok().flatten()) {
            (Some(b), Some(a)) => a.rates_since(&b),
            _ => None,
        },
        _ => None,
    };
    let result = summarize(Summary {
        options,
        server,
        probes: probes.len(),
        joined,
        join_failures,
        join_errors,
        join_s,
        wall,
        tallies: &clients,
        server_cpu,
        rss_peak_kib,
        loadgen_cpu: match (me_before, me_after) {
            (Some(b), Some(a)) => Some(a.since(&b)),
            _ => None,
        },
        rates,
    });
    Ok(Driven { result, clients })
}

/// Connects and joins client `index`: a measuring client or a counting one; with a
/// seat from the matchmaker, to the seat's room.
pub(crate) async fn join(
    index: usize,
    url: &str,
    channel: &str,
    probe: bool,
    seat: Option<&SeatReservation>,
) -> Result<Conn, String> {
    let name = format!("c{index}");
    let data = Workload::join_data(&name);
    if probe {
        let options = ClientOptions {
            connect_timeout: Duration::from_secs(30),
            ..ClientOptions::default()
        };
        let mut client = Client::connect(url, options)
            .await
            .map_err(|e| e.to_string())?;
        match seat {
            Some(seat) => client.join_room(seat, &JoinData { name: &name }).await,
            None => client.join(channel, &data).await,
        }
        .map_err(|e| e.to_string())?;
        if probe::own_player(&client, channel, &name).is_none() {
            return Err(format!(
                "{name} is not in the state it was sent after joining"
            ));
        }
        Ok(Conn::Probe(Box::new(client)))
    } else {
        let seed = 0x9E37_79B9_7F4A_7C15 ^ index as u64;
        let mut client = raw::RawClient::connect(url, channel, seed)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        client
            .join(data, seat.map(|s| s.seat.clone()))
            .await
            .map_err(|e| e.to_string())?;
        Ok(Conn::Raw(client))
    }
}

async fn client_task(conn: Conn, run: ClientRun) -> (Option<Conn>, Tally, String) {
    let channel = run.channel.clone();
    let (conn, tally) = client_loop(conn, run).await;
    (conn, tally, channel)
}

async fn client_loop(conn: Conn, run: ClientRun) -> (Option<Conn>, Tally) {
    match conn {
        Conn::Probe(client) => {
            let name = format!("c{}", run.index);
            let Some(me) = probe::own_player(&client, &run.channel, &name) else {
                let mut t = Tally::default();
                t.dropped(format!("{name} lost its player"));
                return (Some(Conn::Probe(client)), t);
            };
            let (client, tally) = probe::run(*client, me, run).await;
            (Some(Conn::Probe(Box::new(client))), tally)
        }
        Conn::Raw(client) => {
            let (client, tally) = counting_run(client, run).await;
            (client.map(Conn::Raw), tally)
        }
    }
}

/// The loop of a counting client: inputs on schedule, everything else only counted.
async fn counting_run(
    mut client: raw::RawClient,
    mut run: ClientRun,
) -> (Option<raw::RawClient>, Tally) {
    let mut tally = Tally::default();
    loop {
        tokio::select! {
            seq = run.next_input() => {
                let Some(seq) = seq else { break };
                let (_, _, data) = Workload::input(seq);
                let now = Instant::now();
                if let Err(e) = client.send_input(centrum_client::Seq(seq), data).await {
                    tally.dropped(format!("sending input {seq}: {e}"));
                    return (None, tally);
                }
                tally.count_input(run.in_window(now));
            }
            readable = client.readable() => {
                let mut got = raw::Received::default();
                let counting = run.in_window(Instant::now());
                if let Err(e) = readable.and_then(|()| client.drain(counting, &mut got)) {
                    tally.dropped(e.to_string());
                    return (None, tally);
                }
                tally.msgs += got.msgs;
                tally.bytes += got.bytes;
                tally.patches += got.patches;
                tally.patch_bytes += got.patch_bytes;
                if got.closed {
                    tally.dropped("closed by the server".into());
                    return (None, tally);
                }
            }
        }
    }
    (Some(client), tally)
}

/// Each client's phase in the input period, by index, from the channel it joined:
/// client j (by index) of a channel's M sends at `j/M`, shifted by `r/(R*M)` for the
/// r-th of R channels. With one channel that is ARENA.md's `i/N`; with many, each
/// channel's inputs are spread over the period as one channel's are (so that no tick
/// of a small room goes without an input), and the channels' over each other.
fn phases_of(n: usize, placed: &[(usize, String)]) -> Vec<f64> {
    let mut by_channel: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
    for (index, channel) in placed {
        by_channel.entry(channel).or_default().push(*index);
    }
    let channels = by_channel.len() as f64;
    let mut phases: Vec<f64> = (0..n).map(|i| i as f64 / n.max(1) as f64).collect();
    for (r, indices) in by_channel.values_mut().enumerate() {
        indices.sort_unstable();
        let m = indices.len() as f64;
        for (j, index) in indices.iter().enumerate() {
            if let Some(p) = phases.get_mut(*index) {
                *p = (j as f64 + r as f64 / channels) / m;
            }
        }
    }
    phases
}

/// K indices spread evenly over 0..n (`j * n / K`), or all of them.
fn probe_indices(n: usize, decode: Decode) -> std::collections::HashSet<usize> {
    match decode {
        Decode::All => (0..n).collect(),
        Decode::Probe(k) => {
            let k = k.min(n);
            (0..k).map(|j| j * n / k).collect()
        }
    }
}

struct Summary<'a> {
    options: &'a ArenaOptions,
    server: &'a Server,
    probes: usize,
    joined: usize,
    join_failures: usize,
    join_errors: Vec<String>,
    join_s: f64,
    wall: f64,
    tallies: &'a [(String, Tally)],
    server_cpu: Option<CpuTime>,
    rss_peak_kib: Option<u64>,
    loadgen_cpu: Option<CpuTime>,
    rates: Option<scrape::Rates>,
}

fn summarize(s: Summary<'_>) -> ArenaResult {
    let wall = s.wall.max(1e-9);
    let tallies: Vec<&Tally> = s.tallies.iter().map(|(_, t)| t).collect();
    let sum = |f: fn(&Tally) -> u64| tallies.iter().map(|t| f(t)).sum::<u64>() as f64;
    let mut latencies: Vec<f64> = tallies
        .iter()
        .flat_map(|t| t.latencies_ms.iter().copied())
        .collect();
    latencies.sort_by(f64::total_cmp);
    let drop_reasons: Vec<String> = tallies
        .iter()
        .filter_map(|t| t.drop.clone())
        .take(5)
        .collect();
    let patches = sum(|t| t.patches);
    let per_client: Vec<f64> = tallies.iter().map(|t| t.patches as f64 / wall).collect();
    let players = s.joined as f64;
    let mut join_errors = s.join_errors;
    join_errors.truncate(5);
    let mut client_errors: Vec<String> = tallies
        .iter()
        .filter_map(|t| t.first_error.clone())
        .collect();
    client_errors.truncate(5);
    join_errors.extend(client_errors);
    ArenaResult {
        n: s.options.n,
        decode: s.options.decode.to_string(),
        decoding_clients: s.probes,
        cluster: s.server.layout.clone(),
        store: s.server.store.clone(),
        joined: s.joined,
        join_failures: s.join_failures,
        join_errors,
        join_s: round(s.join_s, 2),
        drops: tallies.iter().filter(|t| t.drop.is_some()).count(),
        drop_reasons,
        client_errors: sum(|t| t.errors) as u64,
        warmup_s: s.options.warmup.as_secs_f64(),
        window_s: round(wall, 3),
        server_cpu_s: s.server_cpu.map(|c| round(c.total(), 3)),
        server_cpu_per_wall_s: s.server_cpu.map(|c| round(c.total() / wall, 3)),
        server_cpu_user_s: s.server_cpu.map(|c| round(c.user_s, 3)),
        server_cpu_sys_s: s.server_cpu.map(|c| round(c.sys_s, 3)),
        server_rss_peak_mb: s.rss_peak_kib.map(|k| round(k as f64 / 1024.0, 1)),
        server_processes: s.server.pids.len(),
        client_msgs_per_s: round(sum(|t| t.msgs) / wall, 1),
        client_bytes_per_s: round(sum(|t| t.bytes) / wall, 0),
        inputs_sent_per_s: round(sum(|t| t.inputs) / wall, 1),
        inputs_expected_per_s: (s.options.n as f64 * 20.0),
        server_ticks_per_s: s.rates.map(|r| round(r.ticks_per_s, 2)),
        server_inputs_applied_per_s: s.rates.map(|r| round(r.inputs_per_s, 1)),
        patches_per_client_per_s_min: per_client
            .iter()
            .copied()
            .min_by(f64::total_cmp)
            .map(|v| round(v, 2)),
        patches_per_client_per_s_mean: (!per_client.is_empty())
            .then(|| round(per_client.iter().sum::<f64>() / per_client.len() as f64, 2)),
        server_patches_sent_per_s: s.rates.map(|r| round(r.patches_per_s, 2)),
        front_patch_delay_ms: s
            .rates
            .and_then(|r| r.front_patch_delay_ms)
            .map(|v| round(v, 3)),
        server_tick_ms: s.rates.and_then(|r| r.tick_ms).map(|v| round(v, 3)),
        journal_commit_ms: s
            .rates
            .and_then(|r| r.journal_commit_ms)
            .map(|v| round(v, 3)),
        latency_p50_ms: stats::percentile(&latencies, 50.0).map(|v| round(v, 1)),
        latency_p90_ms: stats::percentile(&latencies, 90.0).map(|v| round(v, 1)),
        latency_p99_ms: stats::percentile(&latencies, 99.0).map(|v| round(v, 1)),
        latency_max_ms: latencies.last().map(|v| round(*v, 1)),
        latency_samples: latencies.len(),
        latency_unresolved: sum(|t| t.unresolved) as u64,
        state_checks: sum(|t| t.checks) as u64,
        state_mismatches: sum(|t| t.mismatches) as u64,
        loadgen_cpu_per_wall_s: s.loadgen_cpu.map(|c| round(c.total() / wall, 3)),
        loadgen_rss_mb: procfs::rss_peak_kib(std::process::id())
            .map(|k| round(k as f64 / 1024.0, 1)),
        bytes_per_player_per_patch: (patches > 0.0 && players > 0.0)
            .then(|| round(sum(|t| t.patch_bytes) / patches / players, 2)),
        valid: false,
        invalid_reasons: Vec::new(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        versions: Versions {
            centrum: env!("CARGO_PKG_VERSION"),
            protocol: centrum_protocol::PROTOCOL_VERSION,
        },
    }
}

/// A row is a valid server measurement when the workload was produced in full:
/// everyone joined and stayed, about every input was delivered (at least 97 %), the
/// patches went out at the input rate (at least 97.5 % of 20 per second), and every
/// state check passed.
pub(crate) fn judge(r: &mut ArenaResult) {
    let mut reasons = Vec::new();
    if r.join_failures > 0 {
        reasons.push(format!("{} joins failed", r.join_failures));
    }
    if r.drops > 0 {
        reasons.push(format!("{} connections dropped", r.drops));
    }
    let delivered = r.server_inputs_applied_per_s.unwrap_or(r.inputs_sent_per_s);
    if delivered < 0.97 * r.inputs_expected_per_s {
        reasons.push(format!(
            "inputs delivered {:.1} % of N*20/s",
            100.0 * delivered / r.inputs_expected_per_s
        ));
    }
    if let Some(p) = r.server_patches_sent_per_s
        && p < 19.5
    {
        reasons.push(format!("{p:.2} patches per second"));
    }
    if r.state_mismatches > 0 {
        reasons.push(format!("{} state mismatches", r.state_mismatches));
    }
    if r.latency_samples == 0 {
        reasons.push("no latency samples".into());
    }
    r.valid = reasons.is_empty();
    r.invalid_reasons = reasons;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_modes_parse_and_print() {
        assert_eq!("all".parse::<Decode>(), Ok(Decode::All));
        assert_eq!("probe:20".parse::<Decode>(), Ok(Decode::Probe(20)));
        assert!("probe:0".parse::<Decode>().is_err());
        assert!("some".parse::<Decode>().is_err());
        assert_eq!(Decode::Probe(3).to_string(), "probe:3");
    }

    #[test]
    fn probes_are_spread_over_the_indices() {
        let mut p: Vec<_> = probe_indices(100, Decode::Probe(4)).into_iter().collect();
        p.sort();
        assert_eq!(p, vec![0, 25, 50, 75]);
        assert_eq!(probe_indices(3, Decode::Probe(20)).len(), 3);
        assert_eq!(probe_indices(5, Decode::All).len(), 5);
    }

    #[test]
    fn phases_spread_each_channel_over_the_period() {
        let one: Vec<_> = (0..4).map(|i| (i, "arena".to_owned())).collect();
        assert_eq!(phases_of(4, &one), vec![0.0, 0.25, 0.5, 0.75]);
        // Two rooms of two: each room's two clients half a period apart, the rooms a
        // quarter apart.
        let rooms = [(0, "b"), (1, "a"), (2, "b"), (3, "a")].map(|(i, c)| (i, c.to_owned()));
        assert_eq!(phases_of(4, &rooms), vec![0.25, 0.0, 0.75, 0.5]);
    }

    #[test]
    fn inputs_flip_direction_every_twenty() {
        assert_eq!(Workload::input(1).0, 0.25);
        assert_eq!(Workload::input(19).0, 0.25);
        assert_eq!(Workload::input(20).0, -0.25);
        assert_eq!(Workload::input(40).1, -0.25);
    }
}
