//! `centrum bench rooms`: the arena workload of shared/bench/ARENA.md in R rooms of M
//! clients each, the rooms declared in the config or made through the master's
//! matchmaker (every client takes a seat with join-or-create and joins with it); and
//! [`idle`], what rooms that nobody joins cost their back.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use centrum_client::Matchmaker;

use crate::arena::{self, ArenaOptions, ArenaResult, JoinFn, Server};
use crate::stats::{self, round};
use crate::{BenchError, procfs, scrape};

/// The room type the matchmaker makes rooms of, with the `bench-arena` application.
pub const ROOM_TYPE: &str = "arena";

/// The ticks (and so the patches) per second of every room.
const TICK_HZ: f64 = 20.0;

/// One run: `rooms` rooms of `clients` clients.
#[derive(Clone, Debug)]
pub struct RoomsOptions {
    pub rooms: usize,
    pub clients: usize,
    /// Rooms made by the matchmaker (join-or-create), not declared in the config.
    pub matchmaker: bool,
    /// The phases, decoding and join limits; `n` is set to rooms × clients.
    pub arena: ArenaOptions,
}

/// The names of `rooms` rooms declared in the config.
pub fn declared_rooms(rooms: usize) -> Vec<String> {
    (1..=rooms).map(|i| format!("room-{i}")).collect()
}

/// One JSON line: every field of `bench arena` (the server's own counters null: the
/// clients count inputs and patches), and the rooms' own.
#[derive(Clone, Debug, Serialize)]
pub struct RoomsResult {
    /// "declared" or "matchmaker".
    pub mode: &'static str,
    pub rooms: usize,
    pub clients_per_room: usize,
    #[serde(flatten)]
    pub arena: ArenaResult,
    /// Rooms the joined clients are in.
    pub rooms_joined: usize,
    /// Rooms of the type in the matchmaker's listing once everyone joined (matchmaker).
    pub rooms_listed: Option<usize>,
    /// Every room has exactly `clients_per_room` clients: by where the clients joined,
    /// by their seats and by the listing.
    pub rooms_exactly_full: bool,
    /// The first few rooms that were not exactly full, and why.
    pub room_problems: Vec<String>,
    /// Over rooms, the least of the mean patches per second its clients received.
    pub room_patches_per_s_min: Option<f64>,
    /// Patches received / (joined clients × 20 per second × window), in %.
    pub patches_received_pct: Option<f64>,
    /// Seats handed out by join-or-create, and the round trip of one request.
    pub seats: usize,
    pub seat_p50_ms: Option<f64>,
    pub seat_p99_ms: Option<f64>,
    pub seat_max_ms: Option<f64>,
}

/// Seats handed out during the join phase: the room and the round trip in ms.
type SeatLog = Arc<Mutex<Vec<(String, f64)>>>;

macro_rules! progress {
    ($on:expr, $($arg:tt)*) => {
        if $on {
            eprintln!("[rooms] {}", format_args!($($arg)*));
        }
    };
}

/// Runs the workload once in rooms against `server` (whose back declares the rooms,
/// or offers the room type [`ROOM_TYPE`] with `max_clients` = `clients`).
///
/// # Errors
/// When the run cannot start: no front, no room or client, the matchmaker's master
/// not given. Failing clients are counted in the result, which then is not valid.
pub async fn run(options: &RoomsOptions, server: &Server) -> Result<RoomsResult, BenchError> {
    if server.fronts.is_empty() {
        return Err(BenchError::Setup("no front to connect to".into()));
    }
    if options.rooms == 0 || options.clients == 0 {
        return Err(BenchError::Setup(
            "rooms and clients per room must be at least 1".into(),
        ));
    }
    let (r, m) = (options.rooms, options.clients);
    let arena_options = ArenaOptions {
        n: r * m,
        ..options.arena.clone()
    };
    let seats: SeatLog = Arc::default();
    let (join, master) = if options.matchmaker {
        let master = server.master.ok_or_else(|| {
            BenchError::Setup("rooms through the matchmaker need the master's address".into())
        })?;
        (matchmaker_join(master, seats.clone()), Some(master))
    } else {
        (declared_join(&server.fronts, m), None)
    };

    // The listing is read once everyone has joined, while they play.
    let (joined_tx, joined_rx) = oneshot::channel();
    let listing = async move {
        let master = master?;
        joined_rx.await.ok()?;
        Some(listing(master).await)
    };
    // The server's counters are not read: a back exports none per room, and reading
    // hundreds of declared channels' counters in the window would cost the master
    // CPU that the made rooms' run does not pay. Inputs and patches are counted by
    // the clients, alike in both modes.
    let driven = arena::drive(&arena_options, server, join, None, Some(joined_tx));
    let (driven, listed) = tokio::join!(driven, listing);
    let driven = driven?;
    let mut result = driven.result;

    // A patch carries the players of its room, not of the run.
    let (patches, patch_bytes) = driven
        .clients
        .iter()
        .fold((0, 0), |(p, b), (_, t)| (p + t.patches, b + t.patch_bytes));
    result.bytes_per_player_per_patch =
        (patches > 0).then(|| round(patch_bytes as f64 / patches as f64 / m as f64, 2));

    let wall = result.window_s.max(1e-9);
    let mut by_room: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for (channel, tally) in driven.clients.iter().filter(|(c, _)| !c.is_empty()) {
        let e = by_room.entry(channel).or_default();
        e.0 += 1;
        e.1 += tally.patches;
    }
    let room_patches_per_s_min = by_room
        .values()
        .map(|(clients, patches)| *patches as f64 / *clients as f64 / wall)
        .min_by(f64::total_cmp)
        .map(|v| round(v, 2));
    let patches_received_pct = (result.joined > 0).then(|| {
        round(
            100.0 * patches as f64 / (result.joined as f64 * TICK_HZ * wall),
            2,
        )
    });

    // Exactly full: where the clients joined, their seats, the listing.
    let mut problems = Vec::new();
    let joined_counts: BTreeMap<&str, usize> = by_room.iter().map(|(k, v)| (*k, v.0)).collect();
    check_full("joined", &joined_counts, r, m, &mut problems);
    let seat_log = std::mem::take(&mut *seats.lock().unwrap_or_else(PoisonError::into_inner));
    let mut rtts: Vec<f64> = seat_log.iter().map(|(_, ms)| *ms).collect();
    rtts.sort_by(f64::total_cmp);
    let mut rooms_listed = None;
    if options.matchmaker {
        let mut seat_counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (room, _) in &seat_log {
            *seat_counts.entry(room).or_default() += 1;
        }
        check_full("seats", &seat_counts, r, m, &mut problems);
        match listed {
            Some(Ok(listing)) => {
                rooms_listed = Some(listing.len());
                let counts: BTreeMap<&str, usize> =
                    listing.iter().map(|l| (l.id.as_str(), l.clients)).collect();
                check_full("listing", &counts, r, m, &mut problems);
                if let Some(l) = listing.iter().find(|l| l.max != m) {
                    problems.push(format!("listing: room {} has max {}", l.id, l.max));
                }
            }
            Some(Err(e)) => problems.push(format!("listing: {e}")),
            None => problems.push("listing: not read".into()),
        }
    }
    let rooms_exactly_full = problems.is_empty();
    problems.truncate(5);

    arena::judge(&mut result);
    let mut reasons = std::mem::take(&mut result.invalid_reasons);
    // Every room at 20 patches a second: 97.5 % of them, as `bench arena` asks of its
    // channel, less one that the window's edges may cut.
    let least = (0.975 * TICK_HZ * wall - 1.0) / wall;
    if let Some(p) = room_patches_per_s_min
        && p < least
    {
        reasons.push(format!(
            "a room's clients received {p:.2} patches per second (at least {least:.2})"
        ));
    }
    if !rooms_exactly_full {
        reasons.push("not every room had exactly its clients".into());
    }
    result.valid = reasons.is_empty();
    result.invalid_reasons = reasons;
    Ok(RoomsResult {
        mode: if options.matchmaker {
            "matchmaker"
        } else {
            "declared"
        },
        rooms: r,
        clients_per_room: m,
        arena: result,
        rooms_joined: by_room.len(),
        rooms_listed,
        rooms_exactly_full,
        room_problems: problems,
        room_patches_per_s_min,
        patches_received_pct,
        seats: seat_log.len(),
        seat_p50_ms: stats::percentile(&rtts, 50.0).map(|v| round(v, 2)),
        seat_p99_ms: stats::percentile(&rtts, 99.0).map(|v| round(v, 2)),
        seat_max_ms: rtts.last().map(|v| round(*v, 2)),
    })
}

/// A room as the matchmaker lists it.
#[derive(Debug, serde::Deserialize)]
struct Listed {
    id: String,
    clients: usize,
    max: usize,
}

/// The master's listing of the rooms of [`ROOM_TYPE`]. Read with the load generator's
/// own GET: the client library takes answers of at most 64 KiB, some 600 rooms.
async fn listing(master: SocketAddr) -> Result<Vec<Listed>, String> {
    let path = format!("/v1/rooms?type={ROOM_TYPE}");
    let body = tokio::time::timeout(Duration::from_secs(10), scrape::get(master, &path))
        .await
        .ok()
        .flatten()
        .ok_or_else(|| format!("GET {path} on the master did not answer 200"))?;
    serde_json::from_str(&body).map_err(|e| format!("GET {path}: {e}"))
}

/// Adds a problem unless `counts` holds exactly `rooms` rooms of `clients` each.
fn check_full(
    what: &str,
    counts: &BTreeMap<&str, usize>,
    rooms: usize,
    clients: usize,
    problems: &mut Vec<String>,
) {
    if counts.len() != rooms {
        problems.push(format!("{what}: {} rooms, not {rooms}", counts.len()));
    }
    problems.extend(
        counts
            .iter()
            .filter(|(_, n)| **n != clients)
            .take(5)
            .map(|(room, n)| format!("{what}: room {room} has {n} clients, not {clients}")),
    );
}

/// Client i joins declared room `room-{i / M + 1}` on front i mod fronts.
fn declared_join(fronts: &[String], clients: usize) -> JoinFn {
    let fronts = fronts.to_vec();
    Arc::new(move |index, probe| {
        let url = fronts[index % fronts.len()].clone();
        let room = format!("room-{}", index / clients + 1);
        Box::pin(async move {
            let conn = arena::join(index, &url, &room, probe, None).await?;
            Ok((conn, room))
        })
    })
}

/// Each client takes a seat with join-or-create, then joins its room with the seat
/// on the front the seat names; the seats go into `log`.
fn matchmaker_join(master: SocketAddr, log: SeatLog) -> JoinFn {
    let matchmaker = Matchmaker::new(&master.to_string());
    Arc::new(move |index, probe| {
        let matchmaker = matchmaker.clone();
        let log = log.clone();
        Box::pin(async move {
            let asked = Instant::now();
            let seat = matchmaker
                .join_or_create(ROOM_TYPE, &(), &())
                .await
                .map_err(|e| format!("join-or-create: {e}"))?;
            let ms = asked.elapsed().as_secs_f64() * 1e3;
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((seat.room.clone(), ms));
            let conn = arena::join(index, &seat.front, &seat.room, probe, Some(&seat)).await?;
            Ok((conn, seat.room))
        })
    })
}

/// What idle rooms cost: `rooms` rooms made through the matchmaker and never joined.
#[derive(Clone, Debug)]
pub struct IdleRoomsOptions {
    pub rooms: usize,
    /// Creations in flight at once.
    pub concurrency: usize,
    /// How long the back's CPU is measured, without rooms and with them.
    pub window: Duration,
    /// The master's HTTP address.
    pub master: SocketAddr,
    /// The back's process.
    pub back_pid: u32,
    pub progress: bool,
}

/// The measurement, one JSON object.
#[derive(Clone, Debug, Serialize)]
pub struct IdleRoomsReport {
    pub idle_rooms: usize,
    pub created: usize,
    pub create_failures: usize,
    pub first_error: Option<String>,
    pub create_s: f64,
    /// Rooms of the type listed once they were made, and again after the window.
    pub rooms_listed: usize,
    pub rooms_listed_after: usize,
    pub back_rss_before_mib: f64,
    pub back_rss_after_mib: f64,
    /// (after - before) / rooms made.
    pub kib_per_room: Option<f64>,
    pub window_s: f64,
    /// The back's CPU seconds per wall second over the window, without rooms and
    /// with the idle rooms.
    pub back_cpu_per_wall_s_no_rooms: f64,
    pub back_cpu_per_wall_s_idle_rooms: f64,
    pub valid: bool,
    pub invalid_reasons: Vec<String>,
}

/// Measures the back without rooms, makes the rooms, measures it again.
///
/// # Errors
/// When the back's process cannot be read or the master does not list the rooms.
pub async fn idle(options: &IdleRoomsOptions) -> Result<IdleRoomsReport, BenchError> {
    let pid = options.back_pid;
    let unreadable = || BenchError::Setup(format!("cannot read process {pid}"));
    let matchmaker = Matchmaker::new(&options.master.to_string());
    let list = || async {
        listing(options.master)
            .await
            .map(|l| l.len())
            .map_err(|e| BenchError::Setup(format!("the matchmaker's listing: {e}")))
    };
    // The back has just started: let it finish before the first window.
    tokio::time::sleep(Duration::from_secs(1)).await;
    progress!(options.progress, "back without rooms, {:?}", options.window);
    let quiet = back_cpu(pid, options.window).await.ok_or_else(unreadable)?;
    let before = procfs::rss_kib(pid).ok_or_else(unreadable)?;

    progress!(options.progress, "making {} rooms", options.rooms);
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut making = JoinSet::new();
    for _ in 0..options.rooms {
        // The semaphore is never closed, so acquiring cannot fail.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let matchmaker = matchmaker.clone();
        making.spawn(async move {
            let made =
                tokio::time::timeout(Duration::from_secs(30), matchmaker.create(ROOM_TYPE, &()))
                    .await;
            drop(permit);
            match made {
                Ok(Ok(_seat)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("the creation took over 30 s".to_owned()),
            }
        });
    }
    let (mut created, mut failures, mut first_error) = (0, 0, None);
    while let Some(done) = making.join_next().await {
        match done {
            Ok(Ok(())) => created += 1,
            Ok(Err(e)) => {
                failures += 1;
                first_error.get_or_insert(e);
            }
            Err(e) => {
                failures += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let create_s = started.elapsed().as_secs_f64();
    let listed = list().await?;
    progress!(
        options.progress,
        "{created} rooms made in {create_s:.1} s, {listed} listed; idle rooms, {:?}",
        options.window
    );
    // Their reports to the master go out with the next heartbeats; then all is quiet.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = back_cpu(pid, options.window).await.ok_or_else(unreadable)?;
    let after = procfs::rss_kib(pid).ok_or_else(unreadable)?;
    let listed_after = list().await?;

    let mut reasons = Vec::new();
    if created != options.rooms {
        reasons.push(format!("{created} of {} rooms made", options.rooms));
    }
    if listed != options.rooms || listed_after != options.rooms {
        reasons.push(format!(
            "{listed} rooms listed once made, {listed_after} after the window"
        ));
    }
    let mib = |kib: u64| round(kib as f64 / 1024.0, 1);
    Ok(IdleRoomsReport {
        idle_rooms: options.rooms,
        created,
        create_failures: failures,
        first_error,
        create_s: round(create_s, 2),
        rooms_listed: listed,
        rooms_listed_after: listed_after,
        back_rss_before_mib: mib(before),
        back_rss_after_mib: mib(after),
        kib_per_room: (created > 0)
            .then(|| round(after.saturating_sub(before) as f64 / created as f64, 2)),
        window_s: options.window.as_secs_f64(),
        back_cpu_per_wall_s_no_rooms: round(quiet, 4),
        back_cpu_per_wall_s_idle_rooms: round(idle, 4),
        valid: reasons.is_empty(),
        invalid_reasons: reasons,
    })
}

/// `pid`'s CPU seconds per wall second over `window`.
async fn back_cpu(pid: u32, window: Duration) -> Option<f64> {
    let before = procfs::cpu(pid)?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let after = procfs::cpu(pid)?;
    Some(after.since(&before).total() / started.elapsed().as_secs_f64().max(1e-9))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_rooms_pass_and_others_are_named() {
        let mut problems = Vec::new();
        let full: BTreeMap<&str, usize> = [("a", 2), ("b", 2)].into_iter().collect();
        check_full("seats", &full, 2, 2, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let uneven: BTreeMap<&str, usize> = [("a", 3), ("b", 1)].into_iter().collect();
        check_full("seats", &uneven, 2, 2, &mut problems);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("room a has 3"), "{problems:?}");
        problems.clear();
        check_full("listing", &full, 3, 2, &mut problems);
        assert_eq!(problems, vec!["listing: 2 rooms, not 3".to_owned()]);
    }

    #[test]
    fn declared_rooms_are_numbered_from_one() {
        assert_eq!(declared_rooms(2), vec!["room-1", "room-2"]);
    }
}
