//! Patch production must cost O(changes), never O(state): one tick that changes 1,000
//! players (x, y and seq each, ids spread over the whole id range) is measured in a state
//! of 1,000 players and in one of 100,000, whole and as `commit_patch` alone. The times
//! should be close; nothing here asserts a timing, the numbers are read off `cargo bench`.
//! The client side is measured the same way: a mirror applying that patch.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use centrum_protocol::{
    EntityId, FieldDef, FieldId, FieldType, FrontMsg, Mirror, Schema, Seq, SharedKind,
    SharedPrefix, State, Tick, Value, decode,
};

/// Players changed per tick, in every state size.
const CHANGES: u32 = 1_000;
const SIZES: [(u32, &str); 2] = [(1_000, "1k_entities"), (100_000, "100k_entities")];

const X: FieldId = 0;
const Y: FieldId = 1;
const SEQ: FieldId = 2;

/// The bench-arena schema (games/src/bench_arena.rs): x and y at 1/1000, seq, and a
/// `name` that never changes after the spawn.
fn schema() -> Schema {
    Schema::new().kind_with(
        "player",
        vec![
            FieldDef::fixed("x", 1000),
            FieldDef::fixed("y", 1000),
            FieldDef::new("seq", FieldType::Uint),
            FieldDef::new("name", FieldType::Str),
        ],
    )
}

/// A committed state of `players` players, ids `0..players`.
fn state(players: u32) -> State {
    let mut state = State::new(schema());
    for i in 0..players {
        let values = vec![
            Value::Fixed(100),
            Value::Fixed(100),
            Value::Uint(0),
            Value::Str(format!("c{i}")),
        ];
        // The values match the schema above, so spawning cannot fail.
        let _ = state.spawn_with(0, values);
    }
    state.commit();
    state
}

/// Moves every `stride`-th player and records its seq: 1,000 players, three fields each.
/// Every value differs from the previous tick's (a same-value `set` is not a change), and
/// stays in the same MessagePack width, so every tick encodes the same number of bytes.
fn mutate(state: &mut State, stride: u32, tick: u32) {
    let step = if tick.is_multiple_of(2) { 250 } else { -250 };
    let seq = u64::from(tick % 50_000 + 1_000);
    for n in 0..CHANGES {
        let id = EntityId(n * stride);
        // Live ids, declared fields, matching types: these cannot fail.
        let _ = state.set_value(id, X, Value::Fixed(100_000 + step));
        let _ = state.set_value(id, Y, Value::Fixed(-100_000 - step));
        let _ = state.set_value(id, SEQ, Value::Uint(seq));
    }
}

/// Advances `tick` and makes its mutations, with `out` emptied for its patch.
fn next_tick(state: &mut State, stride: u32, tick: &mut u32, out: &mut Vec<u8>) -> u32 {
    *tick = tick.wrapping_add(1);
    mutate(state, stride, *tick);
    out.clear();
    *tick
}

/// One whole tick: the mutations, then the patch into a reused buffer.
fn tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("patch/1000_changes");
    group.throughput(Throughput::Elements(u64::from(CHANGES)));
    for (players, name) in SIZES {
        let mut state = state(players);
        let stride = players / CHANGES;
        let mut out = Vec::new();
        let mut tick = 0u32;
        group.bench_function(name, |b| {
            b.iter(|| {
                let tick = next_tick(&mut state, stride, &mut tick, &mut out);
                black_box(state.commit_patch("arena", Tick(tick), &mut out));
                black_box(out.len())
            })
        });
    }
    group.finish();
}

/// `commit_patch` alone. The state is too big to clone per iteration for
/// `iter_batched`, so each iteration mutates untimed and times only the commit.
fn commit_only(c: &mut Criterion) {
    let mut group = c.benchmark_group("commit_patch/1000_changes");
    group.throughput(Throughput::Elements(u64::from(CHANGES)));
    for (players, name) in SIZES {
        let mut state = state(players);
        let stride = players / CHANGES;
        let mut out = Vec::new();
        let mut tick = 0u32;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let tick = next_tick(&mut state, stride, &mut tick, &mut out);
                    let start = Instant::now();
                    black_box(state.commit_patch("arena", Tick(tick), &mut out));
                    total += start.elapsed();
                    black_box(out.len());
                }
                total
            })
        });
    }
    group.finish();
}

/// A client message from a shared body, as a front sends it.
fn client_message(kind: SharedKind, body: &[u8]) -> FrontMsg {
    let mut msg = SharedPrefix::new(kind, Seq(0)).as_bytes().to_vec();
    msg.extend_from_slice(body);
    // The bodies come from the state's own encoder: they decode.
    decode(&msg, usize::MAX).expect("a client message")
}

/// `Mirror::apply_patch` alone, for the patch of one tick (decoded untimed).
fn mirror_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("mirror_apply/1000_changes");
    group.throughput(Throughput::Elements(u64::from(CHANGES)));
    for (players, name) in SIZES {
        let mut state = state(players);
        let stride = players / CHANGES;
        let mut out = Vec::new();
        state.encode_full("arena", Tick(0), &mut out);
        let FrontMsg::State(full) = client_message(SharedKind::State, &out) else {
            unreachable!("a State body decodes as a State")
        };
        let mut mirror = Mirror::new();
        mirror.apply_state(&full).expect("the full state fits");
        let mut tick = 0u32;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let tick = next_tick(&mut state, stride, &mut tick, &mut out);
                    state.commit_patch("arena", Tick(tick), &mut out);
                    let FrontMsg::Patch(patch) = client_message(SharedKind::Patch, &out) else {
                        unreachable!("a Patch body decodes as a Patch")
                    };
                    let start = Instant::now();
                    black_box(mirror.apply_patch(&patch)).expect("the patch fits");
                    total += start.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, tick, commit_only, mirror_apply);
criterion_main!(benches);
