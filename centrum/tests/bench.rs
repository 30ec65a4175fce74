//! The load generator, run as users run it: `centrum bench arena` at a small N against
//! a cluster it starts, so that the tool cannot silently rot. It asserts on validity
//! and correctness, never on timings.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Runs `centrum ARGS`, killing it after `limit`; returns (success, stdout, stderr).
fn centrum(args: &[&str], limit: Duration) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_centrum"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("centrum starts");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("centrum {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (mut out, mut err) = (String::new(), String::new());
    let _ = child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out);
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    (status.success(), out, err)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("centrum-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
        .collect()
}

fn assert_valid_run(r: &Value, n: u64, decoding: u64) {
    assert_eq!(r["n"], n, "{r}");
    assert_eq!(r["joined"], n, "{r}");
    assert_eq!(r["decoding_clients"], decoding, "{r}");
    assert_eq!(r["drops"], 0, "{r}");
    assert_eq!(r["state_mismatches"], 0, "{r}");
    assert!(r["state_checks"].as_u64().unwrap_or(0) > 0, "{r}");
    assert!(r["latency_samples"].as_u64().unwrap_or(0) > 0, "{r}");
    assert_eq!(r["valid"], true, "{r}");
    // Every player's x, y and seq changed at every tick; a patch holds all of them.
    let bytes = r["bytes_per_player_per_patch"]
        .as_f64()
        .expect("bytes per player");
    assert!(bytes > 5.0 && bytes < 40.0, "{r}");
    assert!(r["server_cpu_s"].as_f64().is_some(), "{r}");
    assert!(r["server_rss_peak_mb"].as_f64().unwrap_or(0.0) > 1.0, "{r}");
}

#[test]
fn bench_arena_runs_the_workload_on_separate_processes_and_writes_its_report() {
    let out = scratch("bench-arena");
    let out_arg = out.display().to_string();
    let (ok, stdout, stderr) = centrum(
        &[
            "bench", "arena", "20", "--decode", "probe:4", "--warmup", "1", "--window", "3",
            "--tail", "1", "--out", &out_arg,
        ],
        Duration::from_secs(120),
    );
    assert!(ok, "{stderr}");
    let results = lines(&stdout);
    assert_eq!(results.len(), 1, "{stdout}");
    let r = &results[0];
    assert_valid_run(r, 20, 4);
    assert_eq!(r["cluster"], "processes");
    assert_eq!(
        r["store"], "disk",
        "durable, as every cluster is by default"
    );
    assert_eq!(r["server_processes"], 3, "master, front, back");
    // The front's own fan-out delay, read from its heartbeats through the master.
    assert!(r["front_patch_delay_ms"].as_f64().is_some(), "{r}");
    assert!(
        stderr.contains("window open"),
        "progress is shown: {stderr}"
    );
    let svg = std::fs::read_to_string(out.join("arena.svg")).expect("plot written");
    assert!(svg.contains("<svg") && svg.contains("latency"), "{svg}");
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("results.json")).expect("results written"),
    )
    .expect("results.json is JSON");
    assert_eq!(json[0]["n"], 20);
}

#[test]
fn bench_arena_in_one_process_with_every_client_decoding() {
    let (ok, stdout, stderr) = centrum(
        &[
            "bench",
            "arena",
            "12",
            "--decode",
            "all",
            "--cluster",
            "one-process",
            "--fronts",
            "2",
            "--warmup",
            "1",
            "--window",
            "3",
            "--tail",
            "1",
            "--quiet",
        ],
        Duration::from_secs(120),
    );
    assert!(ok, "{stderr}");
    assert!(stderr.is_empty(), "--quiet prints nothing: {stderr}");
    let results = lines(&stdout);
    assert_valid_run(&results[0], 12, 12);
    assert_eq!(results[0]["server_processes"], 1);
}

#[test]
fn bench_idle_reports_memory_per_connection() {
    let (ok, stdout, stderr) = centrum(
        &["bench", "idle", "--connections", "300"],
        Duration::from_secs(120),
    );
    assert!(ok, "{stderr}");
    let r: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(r["opened"], 300, "{r}");
    assert_eq!(r["failures"], 0, "{r}");
    assert!(r["kib_per_connection"].as_f64().is_some(), "{r}");
}

#[test]
fn bench_arena_refuses_bad_arguments_clearly() {
    let (ok, _, stderr) = centrum(
        &["bench", "arena", "10", "--decode", "probe:0"],
        Duration::from_secs(20),
    );
    assert!(!ok);
    assert!(stderr.contains("probe:K"), "{stderr}");
    let (ok, _, stderr) = centrum(
        &["bench", "arena", "10", "--pid", "1"],
        Duration::from_secs(20),
    );
    assert!(!ok);
    assert!(stderr.contains("--front"), "{stderr}");
}

/// Every room of `r` has exactly its `m` clients, and the run is valid.
fn assert_full_rooms(r: &Value, rooms: u64, m: u64) {
    assert_eq!(r["rooms"], rooms, "{r}");
    assert_eq!(r["clients_per_room"], m, "{r}");
    assert_eq!(r["joined"], rooms * m, "{r}");
    assert_eq!(r["drops"], 0, "{r}");
    assert_eq!(r["state_mismatches"], 0, "{r}");
    assert!(r["latency_samples"].as_u64().unwrap_or(0) > 0, "{r}");
    assert_eq!(r["rooms_joined"], rooms, "{r}");
    assert_eq!(r["rooms_exactly_full"], true, "{r}");
    assert!(r["room_patches_per_s_min"].as_f64().is_some(), "{r}");
    assert!(r["server_cpu_s"].as_f64().is_some(), "{r}");
    assert_eq!(r["valid"], true, "{r}");
}

#[test]
fn bench_rooms_through_the_matchmaker_fills_every_room_exactly() {
    let (ok, stdout, stderr) = centrum(
        &[
            "bench",
            "rooms",
            "4",
            "--clients",
            "2",
            "--matchmaker",
            "--decode",
            "all",
            "--warmup",
            "1",
            "--window",
            "2",
            "--tail",
            "1",
            "--quiet",
        ],
        Duration::from_secs(120),
    );
    assert!(ok, "{stderr}");
    let results = lines(&stdout);
    assert_eq!(results.len(), 1, "{stdout}");
    let r = &results[0];
    assert_full_rooms(r, 4, 2);
    assert_eq!(r["mode"], "matchmaker");
    assert_eq!(r["decoding_clients"], 8, "{r}");
    // Every client took a seat, and the master lists the four rooms, two in each.
    assert_eq!(r["seats"], 8, "{r}");
    assert_eq!(r["rooms_listed"], 4, "{r}");
    assert!(r["seat_max_ms"].as_f64().is_some(), "{r}");
}

#[test]
fn bench_rooms_declared_runs_each_room_at_its_tick() {
    let (ok, stdout, stderr) = centrum(
        &[
            "bench",
            "rooms",
            "3",
            "--clients",
            "2",
            "--decode",
            "probe:2",
            "--warmup",
            "1",
            "--window",
            "2",
            "--tail",
            "1",
            "--quiet",
        ],
        Duration::from_secs(120),
    );
    assert!(ok, "{stderr}");
    let r = &lines(&stdout)[0];
    assert_full_rooms(r, 3, 2);
    assert_eq!(r["mode"], "declared");
    assert_eq!(r["seats"], 0, "{r}");
    assert_eq!(r["rooms_listed"], Value::Null, "{r}");
}

#[test]
fn bench_rooms_idle_makes_rooms_that_stay() {
    let (ok, stdout, stderr) = centrum(
        &["bench", "rooms", "--idle", "50", "--window", "1", "--quiet"],
        Duration::from_secs(120),
    );
    assert!(ok, "{stderr}");
    let r: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(r["created"], 50, "{r}");
    assert_eq!(r["rooms_listed"], 50, "{r}");
    assert_eq!(r["rooms_listed_after"], 50, "none disposed: {r}");
    assert_eq!(r["valid"], true, "{r}");
    assert!(r["kib_per_room"].as_f64().is_some(), "{r}");
    assert!(
        r["back_cpu_per_wall_s_idle_rooms"].as_f64().is_some(),
        "{r}"
    );
}

#[test]
fn bench_rooms_refuses_bad_arguments_clearly() {
    let (ok, _, stderr) = centrum(&["bench", "rooms"], Duration::from_secs(20));
    assert!(!ok);
    assert!(stderr.contains("--idle"), "{stderr}");
    let (ok, _, stderr) = centrum(
        &["bench", "rooms", "2", "--idle", "5"],
        Duration::from_secs(20),
    );
    assert!(!ok);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}
