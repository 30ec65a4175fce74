#!/usr/bin/env bash
# Runs every fuzz target briefly on a copy of its committed corpus, so that a change
# that makes one crash fails CI (FUZZING.md). Called by .ci/run after the cargo tests.
#   FUZZ_SECONDS   how long each target runs (default 10; 0 skips fuzzing)
#   CARGO_TARGET_DIR  where the fuzz build goes (default fuzz/target)
# Needs the nightly toolchain (rustup toolchain install nightly); installs cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-10}

say() { echo "fuzz/ci.sh: $*" >&2; }

if [[ $seconds == 0 ]]; then
  say "FUZZ_SECONDS=0: not fuzzing"
  exit 0
fi

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  say "the nightly toolchain is missing; install it with: rustup toolchain install nightly"
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz (once; a few minutes)"
  cargo install cargo-fuzz --locked --quiet
fi

# A short run is mostly the build: unoptimised, it compiles in under half the time and
# still replays the corpus and explores for the rest of its seconds (at about a tenth of
# the rate). Longer runs get the optimised build.
if ((seconds > 60)); then mode=(--release) dir=release; else mode=(--dev) dir=debug; fi
say "building every target (nightly, ${mode[0]#--}, debug assertions on, no sanitizer: the code is safe Rust)"
cargo +nightly fuzz build "${mode[@]}" --sanitizer none --debug-assertions
host=$(rustup run nightly rustc -vV | sed -n 's/^host: //p')
bin=${CARGO_TARGET_DIR:-fuzz/target}/$host/$dir

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for target in $(cargo +nightly fuzz list); do
  # A copy: a run adds what it finds to its corpus, and CI must not change the repository's.
  mkdir -p "$work/$target/corpus" "$work/$target/artifacts"
  cp fuzz/corpus/"$target"/* "$work/$target/corpus/" 2>/dev/null || true
  dict=()
  [[ -f fuzz/$target.dict ]] && dict=(-dict="fuzz/$target.dict")
  log=$work/$target/log
  set +e
  "$bin/$target" "$work/$target/corpus" "${dict[@]}" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/$target/artifacts/" \
    >"$log" 2>&1 &
  pid=$!
  wait "$pid"
  rc=$?
  set -e
  # The store target keeps its scratch directory on tmpfs under its pid.
  rm -rf "/dev/shm/centrum-fuzz-store-$pid" "${TMPDIR:-/tmp}/centrum-fuzz-store-$pid"
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
  if [[ $rc == 0 ]]; then
    printf '%-14s ok    %9s runs  %6s/s  %s\n' "$target" "${runs:-?}" "${speed:-?}" "$cov"
  else
    printf '%-14s CRASH (exit %s)\n' "$target" "$rc"
    mkdir -p fuzz/artifacts/"$target"
    cp "$work/$target/artifacts/"* fuzz/artifacts/"$target"/ 2>/dev/null || true
    grep -m1 -A12 -E 'panicked|ERROR: libFuzzer' "$log" >&2 || tail -20 "$log" >&2
    say "input kept in fuzz/artifacts/$target/; reproduce with: cargo +nightly fuzz run --sanitizer none -a $target fuzz/artifacts/$target/<file>"
    failed+=("$target")
  fi
done
if ((${#failed[@]})); then
  say "crashed: ${failed[*]}"
  exit 1
fi
