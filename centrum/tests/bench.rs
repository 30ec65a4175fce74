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

/// The process ids of `pid`'s children, from procfs.
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
                .flat_map(|c| {
                    c.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect::<Vec<u32>>()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_bench_stopped_by_a_signal_takes_its_cluster_with_it() {
    // bench/compare.sh stops an overrunning run with `timeout`, which sends SIGTERM: no
    // destructor runs, and the cluster must not stay behind to skew the next run.
    let mut bench = Command::new(env!("CARGO_BIN_EXE_centrum"))
        .args(["bench", "arena", "4", "--warmup", "1", "--window", "60"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("centrum starts");
    // The cluster is up once the clients have joined.
    let mut stderr = std::io::BufReader::new(bench.stderr.take().expect("stderr"));
    let mut line = String::new();
    loop {
        line.clear();
        let read = std::io::BufRead::read_line(&mut stderr, &mut line).expect("read stderr");
        assert!(read > 0, "the bench ended before its clients joined");
        if line.contains("joined in") {
            break;
        }
    }
    let cluster = children_of(bench.id());
    assert_eq!(cluster.len(), 3, "master, back and front: {cluster:?}");
    // SAFETY: a signal to the child this test started
    unsafe { libc::kill(bench.id() as libc::pid_t, libc::SIGTERM) };
    assert!(!bench.wait().expect("wait").success());
    // Gone, or a zombie waiting for an init that does not reap (a bare container's).
    let alive = |pid: &u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
            state != Some(Some('Z'))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.iter().any(alive) {
        assert!(
            Instant::now() < deadline,
            "cluster processes {cluster:?} outlived their bench"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a script of bench/compare with python3; returns its stdout.
fn python(script: &str, args: &[&str]) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/compare/");
    let out = Command::new("python3")
        .arg(format!("{path}{script}"))
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn the_profile_files_samples_by_syscall_and_the_summary_shows_cost_per_client_write() {
    let dir = scratch("profile");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    // `perf script -F pid,ip,sym`: a header with the pid (right-aligned), then frames.
    let script = "\
 4321 \n\tffffffff8200e18f tcp_sendmsg\n\tffffffff816b826c do_writev\n\tffffffff821ed511 do_syscall_64\n\t           fde9d __GI___writev\n\n\
 4321 \n\tffffffff8200e18f tcp_sendmsg\n\tffffffff821ed511 do_syscall_64\n\n\
 4321 \n\tffffffff8143b42d do_futex\n\tffffffff821ed511 do_syscall_64\n\n\
 4321 \n\t          5a1b2c centrum_front::hub::Hub::input\n\n\
 4321 \n\t          5a1b2c malloc\n\n\
 98765 \n\tffffffff817302b8 do_epoll_wait\n\tffffffff821ed511 do_syscall_64\n\n\
 98765 \n\tffffffff81000000 asm_sysvec_apic_timer_interrupt\n\n\
 98765 \n\t          1234 tokio::runtime::task::raw::poll\n";
    std::fs::write(dir.join("perf.script"), script).expect("write script");
    // `perf stat -x,`: value,unit,event,...
    std::fs::write(
        dir.join("front.stat"),
        "# started\n\n4000.0,msec,task-clock,4000,100.00\n800,,context-switches,4000,100.00\n\
         16000,,raw_syscalls:sys_enter,4000,100.00\n8000,,syscalls:sys_enter_writev,4000,100.00\n\
         <not counted>,,syscalls:sys_enter_read,0,0.00\n",
    )
    .expect("write stat");
    std::fs::write(dir.join("back.stat"), "").expect("write stat");
    let front = format!("front-1:4321:{}", dir.join("front.stat").display());
    let back = format!("back-1:98765:{}", dir.join("back.stat").display());
    let script_path = dir.join("perf.script").display().to_string();
    let out = python(
        "profile.py",
        &[
            "--system",
            "centrum",
            "--n",
            "100",
            "--hz",
            "100",
            "--seconds",
            "1",
            "--stat-seconds",
            "2",
            "--workload",
            "bench arena 100",
            "--script",
            &script_path,
            &front,
            &back,
        ],
    );
    let procs = lines(&out);
    assert_eq!(procs.len(), 2, "{out}");
    let front = &procs[0];
    assert_eq!(front["process"], "front-1");
    assert_eq!(front["samples"]["kernel: socket writes"], 2, "{front}");
    assert_eq!(front["samples"]["kernel: futex"], 1, "{front}");
    assert_eq!(front["samples"]["user: own code"], 1, "{front}");
    assert_eq!(front["samples"]["user: allocator"], 1, "{front}");
    assert_eq!(front["counters"]["syscalls"], 16000.0, "{front}");
    assert_eq!(front["counters"]["writev"], 8000.0, "{front}");
    assert!(front["counters"].get("read").is_none(), "{front}");
    let back = &procs[1];
    assert_eq!(back["samples"]["kernel: epoll_wait"], 1, "{back}");
    assert_eq!(
        back["samples"]["kernel: interrupts and scheduling"], 1,
        "{back}"
    );
    assert_eq!(back["samples"]["user: tokio"], 1, "{back}");

    // The summary: 2 write samples at 100 Hz over 1 s, for 100 clients at 20 Hz, are
    // 10 ms / 2,000 client ticks = 10 µs per client per tick; 16,000 syscalls in 2 s
    // are 4 per client per tick.
    let results = dir.join("results");
    std::fs::create_dir_all(&results).expect("results dir");
    std::fs::write(results.join("profile.jsonl"), out).expect("write profile lines");
    let summary = python(
        "summarize.py",
        &["--no-write", "--results", &results.display().to_string()],
    );
    let row = |name: &str| {
        summary
            .lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("no row {name:?} in:\n{summary}"))
            .to_string()
    };
    assert!(summary.contains("## Where the CPU goes"), "{summary}");
    assert!(
        row("kernel: socket writes").contains("| 10.00 |"),
        "{summary}"
    );
    assert!(
        row("syscalls per client per tick").contains("| 4.00 |"),
        "{summary}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
