"""BENCHMARKS.md's profile section, and why each missed fan-out target is missed.

Reads the lines of bench/profile.sh (results/profile.jsonl): one per profiled process,
with perf samples bucketed by bench/compare/profile.py and perf stat counters. Every
number shown is computed from this run's lines; the text around them only says which
way they point.
"""

KERNEL = ["socket writes", "socket reads", "epoll_wait", "futex", "other syscalls",
          "journal sync", "interrupts and scheduling"]
USER = ["own code", "tokio", "WebSocket", "MessagePack", "allocator", "libc and other"]
SYSCALLS = [("writes", ("writev", "sendto", "write")), ("reads", ("recvfrom", "read")),
            ("epoll_wait", ("epoll_wait",)), ("futex", ("futex",))]


def num(r, key):
    """r[key] when it is a number (not a bool), else None; summarize.py uses it too."""
    v = r.get(key)
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


class Part:
    """One process, or the sum of several, profiled under one workload."""

    def __init__(self, lines):
        self.lines = lines
        self.samples = {}
        for r in lines:
            for cat, count in (r.get("samples") or {}).items():
                self.samples[cat] = self.samples.get(cat, 0) + count

    def _per_write(self, samples):
        """Samples -> µs of CPU per client per tick (one patch written, one input read)."""
        r = self.lines[0]
        return samples / r["hz"] / r["seconds"] / r["client_writes_per_s"] * 1e6

    def us(self, kind, cat=None):
        """µs per client per tick in one category ("kernel", "socket writes") or a side."""
        if cat is not None:
            return self._per_write(self.samples.get(f"{kind}: {cat}", 0))
        return self._per_write(sum(v for c, v in self.samples.items() if c.startswith(kind)))

    def total(self):
        return self._per_write(sum(self.samples.values()))

    def cpu(self):
        """Cores, from the samples."""
        r = self.lines[0]
        return sum(self.samples.values()) / r["hz"] / r["seconds"]

    def per_write(self, counter_names):
        """perf stat counters summed over the processes, per client per tick."""
        total, seen = 0.0, False
        for r in self.lines:
            counters = r.get("counters") or {}
            for name in counter_names:
                v = num(counters, name)
                if v is not None:
                    total, seen = total + v, True
        r = self.lines[0]
        return total / r["stat_seconds"] / r["client_writes_per_s"] if seen else None


def parts(lines):
    """{column name: Part} for the columns this run has, in table order."""
    by = {}
    for r in lines:
        keys = ("system", "process", "n", "hz", "seconds", "stat_seconds", "client_writes_per_s")
        if all(k in r for k in keys) and all(num(r, k) for k in keys[2:]):
            by.setdefault(r["system"], []).append(r)
    out = {}
    if "floor" in by:
        out["floor server"] = Part(by["floor"])
    for system, label in (("centrum", "arena"), ("centrum_rooms", "rooms")):
        procs = by.get(system, [])
        fronts = [r for r in procs if r["process"].startswith("front")]
        rest = [r for r in procs if not r["process"].startswith("front")]
        if fronts and rest:
            n = procs[0]["n"]
            out[f"centrum {label} N={n}: front"] = Part(fronts)
            out[f"centrum {label} N={n}: back and master"] = Part(rest)
            out[f"centrum {label} N={n}: all"] = Part(procs)
    return out


def f(v, digits=2):
    return "—" if v is None else f"{v:.{digits}f}"


def profile_table(cols):
    names = list(cols)
    rows = []
    for kind, cats in (("kernel", KERNEL), ("user", USER)):
        for cat in cats:
            if any(p.samples.get(f"{kind}: {cat}") for p in cols.values()):
                rows.append([f"{kind}: {cat}"] + [f(p.us(kind, cat)) for p in cols.values()])
        rows.append([f"**{kind}**"] + [f"**{f(p.us(kind))}**" for p in cols.values()])
    rows.append(["**total, µs per client per tick**"] + [f"**{f(p.total())}**" for p in cols.values()])
    rows.append(["total, CPU s/s (under perf)"] + [f(p.cpu(), 3) for p in cols.values()])
    for label, counters in [("syscalls per client per tick", ("syscalls",))] + [
            (f"… {name}", cs) for name, cs in SYSCALLS]:
        rows.append([label] + [f(p.per_write(counters)) for p in cols.values()])
    rows.append(["context switches per client per tick"]
                + [f(p.per_write(("context-switches",))) for p in cols.values()])
    header = ["µs of CPU per client per tick"] + names
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


PROFILE_NOTES = """\
Each process was profiled inside the measurement window of its own run (`bash
bench/profile.sh`, called by compare.sh): `perf record -e cpu-clock -g` for the samples,
then `perf stat` for the syscall and context-switch counts, so the tracepoints that count
syscalls do not slow the sampled seconds. The three runs (centrum's arena, its rooms, the
floor) follow each other within about two minutes. A client per tick is one patch
written to one client and one input read from it: N × 20 a second. Kernel samples are
filed by the syscall on their call chain ("socket writes" includes the loopback delivery
into the reader's socket, which runs inside the send); user samples by the function they
hit ("own code" is centrum's crates, or the floor's). "back and master" is work the
floor does not do at all: decoding and applying every input, the game's tick, encoding
the patch, the journal (the arena's; `bench rooms` keeps nothing), the link to the
front, and the master's heartbeats. Sampling adds to the CPU it measures, and not by the
same amount for every program: compare these columns with each other, and CPU totals
with the result tables."""


def why_text(cols, data, rooms, floor_rooms, cpus):
    """Bullets for the fan-out targets the run missed, from this run's numbers. The
    targets are at N=1000, so only a profile at N=1000 speaks to them."""
    out = []
    floor = cols.get("floor server")
    floor = floor if floor and floor.lines[0]["n"] == 1000 and floor.total() else None
    arena = {k.rsplit(": ", 1)[1]: p for k, p in cols.items()
             if k.startswith("centrum arena N=1000:")}
    room = {k.rsplit(": ", 1)[1]: p for k, p in cols.items()
            if k.startswith("centrum rooms N=1000:")}
    floor_row, arena_row = data["limit"].get(1000) or {}, data["centrum"].get(1000) or {}
    room_row = rooms.get((1000, "declared")) or {}
    floor_cpu, arena_cpu, room_cpu = floor_row.get("cpu"), arena_row.get("cpu"), room_row.get("cpu")
    if floor and arena and floor_cpu and arena_cpu and arena_cpu > floor_cpu:
        front, rest, total = arena["front"], arena["back and master"], arena["all"]
        need, base = rest.total(), floor.total()
        out.append(
            f"- **Arena N=1000, server CPU against the floor.** In the results table centrum "
            f"takes {f(arena_cpu, 3)} s/s and the floor {f(floor_cpu, 3)} "
            f"({f(arena_cpu / floor_cpu)}×). Profiled, per client per tick: centrum "
            f"{f(total.total())} µs and the floor {f(base)} ({f(total.total() / base)}×). "
            f"The front alone costs {f(front.total())} µs ({f(front.total() / base)}× the "
            f"floor): kernel {f(front.us('kernel'))} µs against the floor's "
            f"{f(floor.us('kernel'))}, with {f(front.per_write(('syscalls',)))} syscalls per "
            f"client per tick against {f(floor.per_write(('syscalls',)))}; user "
            f"{f(front.us('user'))} µs against {f(floor.us('user'))}. The back and master "
            f"add {f(need)} µs ({100 * need / base:.0f} % of the floor). At 1.0× the front "
            f"would have to cost {f(base - need)} µs, {100 * need / base:.0f} % less than the "
            f"floor's server, {100 * floor.us('kernel') / base:.0f} % of whose cost is kernel "
            f"work (socket writes, reads and waits).")
    if floor and room and floor_cpu and room_cpu and room_cpu > 1.1 * floor_cpu:
        n_rooms = room_row.get("rooms")
        ticks = f"{n_rooms * 20:,.0f} channel ticks a second" if n_rooms else "a channel per room"
        out.append(
            f"- **Rooms at N=1000 against the floor's arena.** The results table has "
            f"{f(room_cpu, 3)} s/s against {f(floor_cpu, 3)} ({f(room_cpu / floor_cpu)}×). "
            f"Profiled, the same 20,000 client writes a second in rooms cost "
            f"{f(room['all'].total())} µs per client per tick: the front "
            f"{f(room['front'].total())} (arena: "
            f"{f(arena['front'].total()) if arena else '—'}), the back and master "
            f"{f(room['back and master'].total())} (arena: "
            f"{f(arena['back and master'].total()) if arena else '—'}). The back ticks each "
            f"room on its own, with its own inbox, game tick, patch and frame to the front: "
            f"{ticks}, against 20 for the arena.")
    delay, floor_p50 = arena_row.get("front_delay"), floor_row.get("p50")
    if delay is not None and floor_p50 is not None and delay > floor_p50:
        out.append(
            f"- **The front's delay at N=1000.** A patch waits {f(delay)} ms on average in "
            f"the front, from its arrival to its write, against the floor's median delivery "
            f"delay of {f(floor_p50)} ms ({delay - floor_p50:+.2f} ms), which runs from its "
            f"tick to the load generator's read.")
    per_tick = {  # µs of server CPU per client per tick at N=1000, from the result rows
        "centrum": arena_cpu and arena_cpu / 20_000 * 1e6,
        "rooms": room_cpu and room_cpu / 20_000 * 1e6,
        "floor": floor_cpu and floor_cpu / 20_000 * 1e6,
    }
    rows = []
    for n, missed in ((2000, lambda c: (c.get("p99") or 0) > 150 or c.get("valid") is not True),
                      (3000, lambda c: c.get("valid") is not True)):
        c = data["centrum"].get(n)
        if c and missed(c):
            rows.append(machine_text(f"arena N={n}", n, c, data["limit"].get(n),
                                     f"the floor at N={n}", per_tick["centrum"],
                                     per_tick["floor"], cpus))
    r4 = rooms.get((4000, "declared"))
    if r4 and r4.get("valid") is not True:
        rows.append(machine_text("rooms 500 × 8", 4000, r4,
                                 floor_rooms.get(4000) or data["limit"].get(4000),
                                 "the floor at N=4000, the same client writes and inputs "
                                 "in larger frames (B=8)", per_tick["rooms"],
                                 per_tick["floor"], cpus))
    if rows:
        out.append("- **The targets at N ≥ 2000 and 500 × 8.**\n"
                   + "\n".join(f"  - {t}" for t in rows))
    return "\n".join(out)


def machine_text(what, n, row, floor, floor_label, centrum_us, floor_us, cpus):
    """A run that did not hold: its CPU beside the machine's, the floor's run at the same
    N, and what N clients take at the N=1000 rows' cost per client per tick."""
    lg = row.get("loadgen")
    text = (f"{what}: server {f(row.get('cpu'), 3)} + load generator {f(lg, 3)} = "
            f"{f((row.get('cpu') or 0) + (lg or 0))} of {cpus} cores busy")
    if floor:
        verdict = "valid" if floor.get("valid") is True else "**not valid** either"
        text += (f"; {floor_label} in this run: {verdict}, server "
                 f"{f(floor.get('cpu'), 3)} + load generator {f(floor.get('loadgen'), 3)}")
    if centrum_us and floor_us:
        per_s = n * 20
        text += (f". At the N=1000 rows' cost per client per tick (centrum {f(centrum_us, 1)} "
                 f"µs, the floor {f(floor_us, 1)} µs), {per_s:,} client ticks a second take "
                 f"{f(centrum_us * per_s / 1e6)} cores of centrum's server and "
                 f"{f(floor_us * per_s / 1e6)} of the floor's, before the load generator")
    return text + "."
