#!/usr/bin/env bash
# Side-by-side "arena" benchmark: centrum, the fan-out floor and Colyseus, measured in
# one run on this machine, summarised into BENCHMARKS.md (ratios are only meaningful
# when both sides were measured together).
#
#   bash bench/compare.sh                      # from any directory
#   NS="100" WINDOW=5 WARMUP=2 NO_WRITE=1 bash bench/compare.sh   # quick check
#
# Environment (all optional):
#   NS="100 500 1000 2000"  DECODE=probe:20  WARMUP=5  WINDOW=20  TAIL=2 (whole seconds)
#   QUIET_MAX=0.15 QUIET_WAIT_S=120   every sub-run first waits (bounded) for an idle machine
#   MEMORY_NS="1000"  also run centrum with its store in memory at these N, for the cost of
#                     durability (the centrum rows are durable: journal synced every tick)
#   IDLE=10000        idle connections opened on one front (0 skips that measurement)
#   ROOMS="125 500"   centrum in rooms of ROOM_CLIENTS=8 clients (N = rooms x 8), declared in
#                     the config and made by the matchmaker ("" skips both)
#   IDLE_ROOMS=5000   rooms made by the matchmaker and never joined: what they cost the back
#                     (0 skips)
#   MICRO=1           run the patch micro benchmarks (criterion, short); 0 skips them
#   PROFILE_N=1000    profile centrum (arena, and rooms of as many clients) and the floor at
#                     this N with perf (bench/profile.sh; needs root); "" skips
#   NO_WRITE=1        print the tables only, leave BENCHMARKS.md alone
#   CENTRUM_BIN=path  use this binary and skip `cargo build` (for testing the script)
#
# The shared benchmarks live read-only in $REPO/../shared/bench; they are copied to
# $REPO/target/compare/{limit,colyseus} because they build and write beside themselves.
# Raw JSON lines: $REPO/target/compare/results/{centrum,limit,colyseus}.jsonl.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="$(cd "$REPO/.." && pwd)/shared/bench"
SCRATCH="$REPO/target/compare"
RES="$SCRATCH/results"

NS="${NS:-100 500 1000 2000}"
DECODE="${DECODE:-probe:20}"
WARMUP="${WARMUP:-5}"
WINDOW="${WINDOW:-20}"
TAIL="${TAIL:-2}"
QUIET_MAX="${QUIET_MAX:-0.15}"
QUIET_WAIT_S="${QUIET_WAIT_S:-120}"
IDLE="${IDLE:-10000}"
ROOMS="${ROOMS-125 500}"
ROOM_CLIENTS="${ROOM_CLIENTS:-8}"
IDLE_ROOMS="${IDLE_ROOMS:-5000}"
MEMORY_NS="${MEMORY_NS:-1000}"
MICRO="${MICRO:-1}"
PROFILE_N="${PROFILE_N-1000}"
read -r -a NLIST <<<"$NS"

log() { echo "[compare] $*" >&2; }
die() { log "error: $*"; exit 1; }

[ -d "$SHARED/colyseus" ] && [ -d "$SHARED/limit" ] \
  || die "$SHARED/{colyseus,limit} not found; the shared benchmarks must sit beside the repository (\$REPO/../shared/bench)"
for tool in cargo node npm python3 timeout; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done
[ ${#NLIST[@]} -gt 0 ] || die "NS is empty"

# every process holds N sockets; raise the soft limit for all children
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

rm -rf "$RES"
mkdir -p "$RES"
: >"$RES/centrum.jsonl"; : >"$RES/centrum_memory.jsonl"; : >"$RES/limit.jsonl"; : >"$RES/colyseus.jsonl"
: >"$RES/idle.jsonl"; : >"$RES/micro.jsonl"
: >"$RES/rooms.jsonl"; : >"$RES/rooms_idle.jsonl"; : >"$RES/limit_rooms.jsonl"; : >"$RES/profile.jsonl"
STDOUT="$RES/.stdout"   # one sub-run's stdout, sorted into JSON lines and the rest
FAILED=()

# Record what is being measured before anything runs (the tree may change meanwhile).
commit="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
[ -n "$(git -C "$REPO" status --porcelain -- . ':!BENCHMARKS.md' 2>/dev/null)" ] && commit="$commit dirty"
cmd="NS=\"$NS\" DECODE=$DECODE WARMUP=$WARMUP WINDOW=$WINDOW TAIL=$TAIL"
[ -n "${CENTRUM_BIN:-}" ] && cmd="$cmd CENTRUM_BIN=$CENTRUM_BIN"
{
  printf 'command\t%s bash bench/compare.sh\n' "$cmd"
  printf 'started\t%s\n' "$(date -u +%s)"
  printf 'commit\t%s\n' "$commit"
} >"$RES/meta.tsv"

# run_one SYSTEM N DIR TIMEOUT_S CMD...: run one bounded sub-run in DIR, keep its JSON
# lines in SYSTEM.jsonl (other stdout goes to stderr); no line or an "error" line counts
# as a failure, recorded so the summary shows it and the script carries on.
run_one() {
  local sys="$1" n="$2" dir="$3" limit="$4"; shift 4
  local out="$RES/$sys.jsonl" before rc=0
  before="$(wc -l <"$out")"
  (cd "$dir" && timeout --kill-after=15 "$limit" "$@") >"$STDOUT" || rc=$?
  grep '^{' "$STDOUT" >>"$out" || true
  grep -v '^{' "$STDOUT" >&2 || true
  if [ "$(wc -l <"$out")" -eq "$before" ]; then
    local why="exited with status $rc"
    [ "$rc" -eq 124 ] && why="timed out after ${limit}s"
    echo "{\"n\":$n,\"error\":\"$sys $why and printed no result\"}" >>"$out"
  fi
  if [ "$rc" -ne 0 ] || tail -n +"$((before + 1))" "$out" | grep -q '"error"'; then
    FAILED+=("$sys N=$n")
    log "$sys N=$n failed (exit $rc), see stderr above"
  fi
}

# wait_quiet SYSTEM N: before a sub-run, wait (bounded by QUIET_WAIT_S) until the
# machine's busy CPU over 5 s, steal included, is below QUIET_MAX cores, so that no
# system is measured while the previous one's processes are still winding down or
# something else runs. The floor's run.sh does the same itself.
busy_cores() {
  local a b
  read -r -a a </proc/stat; sleep 5; read -r -a b </proc/stat
  # cpu user nice system idle iowait irq softirq steal
  local busy=$(( (b[1]-a[1]) + (b[2]-a[2]) + (b[3]-a[3]) + (b[6]-a[6]) + (b[7]-a[7]) + (b[8]-a[8]) ))
  awk -v u="$busy" -v t="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f", u / t / 5 }'
}
wait_quiet() {
  local t0=$SECONDS busy
  while :; do
    busy="$(busy_cores)"
    awk -v b="$busy" -v m="$QUIET_MAX" 'BEGIN { exit !(b < m) }' && return 0
    if (( SECONDS - t0 >= QUIET_WAIT_S )); then
      log "$1 N=$2: machine still busy ($busy cores) after ${QUIET_WAIT_S}s; running anyway"
      return 0
    fi
    log "$1 N=$2: machine busy ($busy cores), waiting"
  done
}

# stage SRC DST: fresh copy of a shared benchmark, keeping its build caches
# (node_modules, target) from earlier runs so that re-runs do not reinstall.
stage() {
  local src="$1" dst="$2"
  mkdir -p "$dst"
  chmod -R u+w "$dst"
  find "$dst" -mindepth 1 -maxdepth 1 ! -name node_modules ! -name target -exec rm -rf {} +
  tar -C "$src" --exclude=./node_modules --exclude=./target --exclude=./logs --exclude=./results -cf - . \
    | tar -C "$dst" -xf -
  chmod -R u+w "$dst"   # the source is read-only; the copy must stay replaceable
}

# ---- 1. centrum ------------------------------------------------------------------
if [ -n "${CENTRUM_BIN:-}" ]; then
  # absolute, because the sub-runs start in the repository root
  CENTRUM="$(realpath -e "$CENTRUM_BIN" 2>/dev/null || command -v "$CENTRUM_BIN")" \
    || die "CENTRUM_BIN=$CENTRUM_BIN not found"
  log "centrum: using CENTRUM_BIN=$CENTRUM (no build)"
else
  log "centrum: cargo build --release -p centrum"
  (cd "$REPO" && timeout 1800 cargo build --release -p centrum) || die "centrum build failed"
  CENTRUM="${CARGO_TARGET_DIR:-$REPO/target}/release/centrum"
fi
for n in "${NLIST[@]}"; do
  wait_quiet centrum "$n"
  log "centrum N=$n (decode $DECODE, warm-up ${WARMUP}s, window ${WINDOW}s)"
  # join budget 180 s + phases + margin for start and stop
  run_one centrum "$n" "$REPO" $((180 + WARMUP + WINDOW + TAIL + 120)) \
    "$CENTRUM" bench arena --decode "$DECODE" --warmup "$WARMUP" --window "$WINDOW" --tail "$TAIL" "$n"
done
# The same without durability: what the journal (one fsync per channel per tick) costs.
read -r -a MEMORY_LIST <<<"$MEMORY_NS"
for n in "${MEMORY_LIST[@]}"; do
  wait_quiet centrum_memory "$n"
  log "centrum, store in memory, N=$n"
  run_one centrum_memory "$n" "$REPO" $((180 + WARMUP + WINDOW + TAIL + 120)) \
    "$CENTRUM" bench arena --store memory --decode "$DECODE" --warmup "$WARMUP" --window "$WINDOW" --tail "$TAIL" "$n"
done

if [ "$IDLE" -gt 0 ]; then
  log "centrum: $IDLE idle connections on one front"
  run_one idle "$IDLE" "$REPO" 300 "$CENTRUM" bench idle --connections "$IDLE"
fi

# The same workload in rooms of ROOM_CLIENTS clients: declared in the config, then made
# by the matchmaker (each client takes a seat with join-or-create), at each room count.
read -r -a ROOM_LIST <<<"$ROOMS"
for r in "${ROOM_LIST[@]}"; do
  for mode in declared matchmaker; do
    flag=(); [ "$mode" = matchmaker ] && flag=(--matchmaker)
    wait_quiet "rooms_$mode" "$r"
    log "centrum: $r rooms of $ROOM_CLIENTS clients, $mode"
    run_one rooms "$((r * ROOM_CLIENTS))" "$REPO" $((180 + WARMUP + WINDOW + TAIL + 120)) \
      "$CENTRUM" bench rooms "$r" --clients "$ROOM_CLIENTS" "${flag[@]}" --decode "$DECODE" \
      --warmup "$WARMUP" --window "$WINDOW" --tail "$TAIL"
  done
done
if [ "$IDLE_ROOMS" -gt 0 ]; then
  wait_quiet rooms_idle "$IDLE_ROOMS"
  log "centrum: $IDLE_ROOMS idle rooms"
  run_one rooms_idle "$IDLE_ROOMS" "$REPO" 300 "$CENTRUM" bench rooms --idle "$IDLE_ROOMS"
fi

# Patch production and mirror application (criterion, shortened). CRITERION_HOME is
# emptied first, so only this run's estimates are read back.
if [ "$MICRO" = "1" ]; then
  log "centrum: patch micro benchmarks (cargo bench -p centrum-protocol --bench patch)"
  export CRITERION_HOME="$SCRATCH/criterion"
  rm -rf "$CRITERION_HOME"
  if (cd "$REPO" && timeout 1800 cargo bench -p centrum-protocol --bench patch -- \
        --warm-up-time 1 --measurement-time 3 --noplot >&2); then
    python3 - "$CRITERION_HOME" >"$RES/micro.jsonl" <<'EOF'
import json, pathlib, sys
# <group>/<bench>/new/{benchmark,estimates}.json -> one line per benchmark, mean in ns
for est in sorted(pathlib.Path(sys.argv[1]).glob("*/*/new/estimates.json")):
    meta = json.loads((est.parent / "benchmark.json").read_text())
    mean = json.loads(est.read_text())["mean"]["point_estimate"]
    print(json.dumps({"group": meta["group_id"], "bench": meta["function_id"], "mean_ns": mean}))
EOF
  else
    log "micro benchmarks failed"
    FAILED+=("micro benchmarks")
  fi
fi

# ---- 2. the floor (limit), B = centrum's bytes per player per patch --------------
# floor_b N: the median of centrum's bytes per player per patch at N, rounded up; 12
# (the target) if centrum has no line there.
floor_b() {
  local b
  b="$(python3 - "$RES/centrum.jsonl" "$1" <<'EOF'
import json, math, statistics, sys
vals = []
for line in open(sys.argv[1]):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    v = r.get("bytes_per_player_per_patch")
    if r.get("n") == int(sys.argv[2]) and isinstance(v, (int, float)) and v > 0:
        vals.append(v)
print(max(1, math.ceil(statistics.median(vals))) if vals else "")
EOF
)"
  if [ -z "$b" ]; then b=12; log "floor N=$1: no centrum bytes per player, using B=12"; fi
  echo "$b"
}
# run_floor STEM N B: one floor run, its line in STEM.jsonl.
run_floor() {
  run_one "$1" "$2" "$SCRATCH/limit" $((QUIET_WAIT_S + 240 + WARMUP + WINDOW)) \
    env -u CARGO_TARGET_DIR WARMUP="$WARMUP" WINDOW="$WINDOW" QUIET_MAX="$QUIET_MAX" \
    QUIET_WAIT_S="$QUIET_WAIT_S" RESULTS=results/results.jsonl ./run.sh "$2:$3"
}
stage "$SHARED/limit" "$SCRATCH/limit"
# The copy sits inside this repository's workspace; an empty [workspace] table keeps
# cargo from treating it as an undeclared member.
printf '\n[workspace]\n' >>"$SCRATCH/limit/Cargo.toml"
log "floor: building limit-server and limit-loadgen"
if (cd "$SCRATCH/limit" && timeout 1800 env -u CARGO_TARGET_DIR cargo build --release --quiet); then
  for n in "${NLIST[@]}"; do
    b="$(floor_b "$n")"
    log "floor N=$n B=$b (waits up to ${QUIET_WAIT_S}s for an idle machine)"
    run_floor limit "$n" "$b"
  done
  # As many clients as each rooms run, where no arena N had them: the same client writes
  # and inputs a second as the rooms. B=8 is the least the floor's server writes per
  # player (an id and a value), so its frames are far larger than a room's patch.
  for r in "${ROOM_LIST[@]}"; do
    n=$((r * ROOM_CLIENTS))
    [[ " ${NLIST[*]} " == *" $n "* ]] && continue
    log "floor N=$n B=8, as many clients as $r rooms of $ROOM_CLIENTS"
    run_floor limit_rooms "$n" 8
  done
  # Where the CPU goes: centrum's processes and the floor's server under perf, at one N
  # of the arena and in rooms of as many clients.
  if [ -n "$PROFILE_N" ]; then
    if ! command -v perf >/dev/null; then
      log "profile: perf is not installed, skipping it (Debian: apt-get install linux-perf)"
    else
      wait_quiet profile "$PROFILE_N"
      log "profile: arena and $((PROFILE_N / ROOM_CLIENTS)) rooms of $ROOM_CLIENTS at N=$PROFILE_N, and the floor"
      if ! timeout --kill-after=15 600 env CENTRUM_BIN="$CENTRUM" LIMIT_DIR="$SCRATCH/limit" \
          B="$(floor_b "$PROFILE_N")" ROOMS=$((PROFILE_N / ROOM_CLIENTS)) \
          ROOM_CLIENTS="$ROOM_CLIENTS" OUT="$RES/profile.jsonl" \
          bash "$REPO/bench/profile.sh" "$PROFILE_N"; then
        log "profile failed, see above"
        FAILED+=("profile")
      fi
    fi
  fi
else
  log "floor: build failed, skipping it"
  for n in "${NLIST[@]}"; do echo "{\"n\":$n,\"error\":\"limit build failed\"}" >>"$RES/limit.jsonl"; done
  FAILED+=("floor build")
fi

# ---- 3. Colyseus -------------------------------------------------------------------
stage "$SHARED/colyseus" "$SCRATCH/colyseus"
for n in "${NLIST[@]}"; do
  wait_quiet colyseus "$n"
  log "colyseus N=$n (decode $DECODE)"
  # install + server start + join budget 180 s + phases + margin
  run_one colyseus "$n" "$SCRATCH/colyseus" $((600 + WARMUP + WINDOW + TAIL)) \
    env DECODE="$DECODE" WARMUP="$WARMUP" WINDOW="$WINDOW" TAIL="$TAIL" \
    RESULTS=results/results.jsonl ./run.sh "$n"
done

# ---- 4. summary ----------------------------------------------------------------------
printf 'finished\t%s\n' "$(date -u +%s)" >>"$RES/meta.tsv"
rm -f "$STDOUT"
args=()
[ "${NO_WRITE:-0}" = "1" ] && args+=(--no-write)
python3 "$REPO/bench/compare/summarize.py" "${args[@]}"

if [ ${#FAILED[@]} -gt 0 ]; then
  log "finished with failures: ${FAILED[*]}"
  exit 1
fi
log "done"
