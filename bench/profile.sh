#!/usr/bin/env bash
# Where the server's CPU goes under the arena workload at one N: centrum's processes
# (front, back, master) and the floor's server, each profiled inside its measurement
# window: `perf record` for PROFILE_S seconds (cpu-clock samples with call chains; this
# VM has no hardware counters), then `perf stat` for STAT_S seconds (context switches and
# syscalls by kind, from tracepoints). One JSON line per process goes to OUT;
# bench/compare/summarize.py turns them into BENCHMARKS.md's "Where the CPU goes".
#
#   bash bench/profile.sh [N]        # default 1000; needs root (or perf_event_paranoid <= 0)
#
# Environment: CENTRUM_BIN (default target/release/centrum), LIMIT_DIR (the floor's
# staged copy with its release build, default target/compare/limit, which
# bench/compare.sh makes), B (the floor's bytes per player, default 11),
# PROFILE_WARMUP=5 and PROFILE_WINDOW=14 (the runs' phases), PROFILE_S=6, STAT_S=4,
# HZ=499, OUT (default target/compare/results/profile.jsonl, replaced), ROOMS=R (also
# profile centrum's `bench rooms R --clients ROOM_CLIENTS`, default 8 clients a room).
# Sampling adds to the CPU it measures, by different amounts for different programs:
# compare the columns with each other, and take CPU totals from the result tables,
# which run without perf.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N="${1:-1000}"
CENTRUM="${CENTRUM_BIN:-$REPO/target/release/centrum}"
LIMIT_DIR="${LIMIT_DIR:-$REPO/target/compare/limit}"
B="${B:-11}"
WARMUP="${PROFILE_WARMUP:-5}"
WINDOW="${PROFILE_WINDOW:-14}"
PROFILE_S="${PROFILE_S:-6}"
STAT_S="${STAT_S:-4}"
HZ="${HZ:-499}"
OUT="${OUT:-$REPO/target/compare/results/profile.jsonl}"
ROOMS="${ROOMS-}"
ROOM_CLIENTS="${ROOM_CLIENTS:-8}"
WORK="$REPO/target/compare/profile"

log() { echo "[profile] $*" >&2; }
die() { log "error: $*"; exit 1; }

command -v perf >/dev/null || die "perf is not installed (Debian: apt-get install linux-perf)"
[ "$N" -gt 0 ] 2>/dev/null || die "N must be a positive number, got '$N'"
[ $((PROFILE_S + STAT_S + 2)) -le "$WINDOW" ] \
  || die "PROFILE_S + STAT_S + 2 s ($PROFILE_S + $STAT_S + 2) must fit in PROFILE_WINDOW ($WINDOW)"
[ -x "$CENTRUM" ] || die "$CENTRUM not found: cargo build --release -p centrum, or set CENTRUM_BIN"
for bin in limit-server limit-loadgen; do
  [ -x "$LIMIT_DIR/target/release/$bin" ] \
    || die "$LIMIT_DIR/target/release/$bin not found: bench/compare.sh stages and builds the floor there, or set LIMIT_DIR"
done
perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1 \
  || die "perf cannot read syscall tracepoints: run as root (or lower /proc/sys/kernel/perf_event_paranoid)"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
rm -rf "$WORK"
mkdir -p "$WORK" "$(dirname "$OUT")"
LINES="$WORK/lines.jsonl"   # moved to OUT once every profile is done

# Syscalls counted per process: the socket work, waiting, waking, and the journal's sync.
EVENTS="task-clock,context-switches,raw_syscalls:sys_enter"
for s in writev sendto write recvfrom read epoll_wait futex fdatasync syncfs; do
  EVENTS="$EVENTS,syscalls:sys_enter_$s"
done

PIDS=()   # every process this script started, stopped on exit
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}
trap stop_all EXIT
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap 'log "failed at line $LINENO"' ERR

# wait_for FILE TEXT SECONDS PID: until FILE has TEXT, bounded, and while PID lives.
wait_for() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$4" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# profile SYSTEM CLIENTS WORKLOAD NAME:PID...: one perf record over the processes for PROFILE_S
# seconds, then perf stat on each for STAT_S seconds (after, not beside: counting syscalls
# through tracepoints slows every syscall, which the samples must not see), then one JSON
# line per process.
profile() {
  local system="$1" n="$2" workload="$3"; shift 3
  local names=() pids=() stats=() waits=() item i
  for item in "$@"; do
    names+=("${item%%:*}"); pids+=("${item##*:}")
  done
  local csv; csv="$(IFS=,; echo "${pids[*]}")"
  perf record -q -F "$HZ" -e cpu-clock -g -p "$csv" -o "$WORK/$system.data" -- sleep "$PROFILE_S" \
    >/dev/null 2>&1 || die "perf record failed for $system"
  for i in "${!pids[@]}"; do
    stats+=("$WORK/$system-${names[$i]}.stat")
    perf stat -x, -e "$EVENTS" -p "${pids[$i]}" -o "${stats[$i]}" -- sleep "$STAT_S" >/dev/null 2>&1 &
    waits+=("$!")
    PIDS+=("$!")
  done
  for i in "${waits[@]}"; do wait "$i" || true; done
  perf script -i "$WORK/$system.data" -F pid,ip,sym 2>/dev/null >"$WORK/$system.script" \
    || die "perf script failed for $system"
  local args=()
  for i in "${!pids[@]}"; do args+=("${names[$i]}:${pids[$i]}:${stats[$i]}"); done
  python3 "$REPO/bench/compare/profile.py" --system "$system" --n "$n" --hz "$HZ" \
    --seconds "$PROFILE_S" --stat-seconds "$STAT_S" --workload "$workload" \
    --script "$WORK/$system.script" "${args[@]}" >>"$LINES"
}

# ---- centrum: its own load generator starts the cluster ---------------------------
# profile_centrum SYSTEM CLIENTS BENCH-ARGS...: `centrum bench ...` with these arguments.
profile_centrum() {
  local system="$1" n="$2"; shift 2
  log "$system: centrum bench $* (warm-up ${WARMUP}s, window ${WINDOW}s, profile ${PROFILE_S}s)"
  "$CENTRUM" bench "$@" --decode probe:20 --warmup "$WARMUP" --window "$WINDOW" --tail 1 \
    >"$WORK/$system.json" 2>"$WORK/$system.log" &
  local bench_pid=$! procs=() pid name argv
  PIDS+=("$bench_pid")
  wait_for "$WORK/$system.log" "window open" 300 "$bench_pid" \
    || die "centrum's bench never opened its window, see $WORK/$system.log"
  for pid in $(pgrep -P "$bench_pid"); do
    # argv: centrum ROLE [--id ID] ...; the id names fronts and backs, the role the master
    IFS=' ' read -r -a argv < <(tr '\0' ' ' <"/proc/$pid/cmdline"; echo) || continue
    name="${argv[1]:-}"
    [ -n "$name" ] || continue
    [ "${argv[2]:-}" = "--id" ] && name="${argv[3]}"
    procs+=("$name:$pid")
  done
  [ ${#procs[@]} -gt 0 ] || die "no cluster process found under the bench (pid $bench_pid)"
  profile "$system" "$n" "bench $*" "${procs[@]}"
  wait "$bench_pid" || die "centrum's bench failed, see $WORK/$system.log"
  PIDS=()
}
profile_centrum centrum "$N" arena "$N"
if [ -n "$ROOMS" ]; then
  profile_centrum centrum_rooms $((ROOMS * ROOM_CLIENTS)) rooms "$ROOMS" --clients "$ROOM_CLIENTS"
fi

# ---- the floor: its server and load generator, as its run.sh starts them ----------
log "floor N=$N B=$B"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$LIMIT_DIR/target/release/limit-server" --port "$port" --n "$N" --b "$B" --workers 2 \
  --report "$WORK/floor-report.json" --max-lifetime-s $((150 + WARMUP + WINDOW)) \
  >"$WORK/floor-server.log" 2>&1 &
server_pid=$!
PIDS+=("$server_pid")
wait_for "$WORK/floor-server.log" "^listening on" 10 "$server_pid" \
  || die "the floor's server did not start, see $WORK/floor-server.log"
"$LIMIT_DIR/target/release/limit-loadgen" --port "$port" --n "$N" --b "$B" --k 20 \
  --warmup "$WARMUP" --window "$WINDOW" --tail 1 --workers 2 --senders 2 \
  --server-pid "$server_pid" --server-report "$WORK/floor-report.json" \
  >"$WORK/floor.json" 2>"$WORK/floor-loadgen.log" &
loadgen_pid=$!
PIDS+=("$loadgen_pid")
wait_for "$WORK/floor-loadgen.log" "window open" 150 "$loadgen_pid" \
  || die "the floor's load generator never opened its window, see $WORK/floor-loadgen.log"
profile floor "$N" "limit-server --n $N --b $B" "server:$server_pid"
wait "$loadgen_pid" || die "the floor's load generator failed, see $WORK/floor-loadgen.log"
stop_all
mv "$LINES" "$OUT"
log "done: $(wc -l <"$OUT") lines in $OUT"
