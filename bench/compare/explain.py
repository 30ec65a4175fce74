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
        if all(k in r for k in ("system", "process", "hz", "seconds", "client_writes_per_s")):
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
syscalls do not slow the sampled seconds. A client per tick is one patch written to one
client and one input read from it: N × 20 a second. Kernel samples are filed by the
syscall on their call chain ("socket writes" includes the loopback delivery into the
reader's socket, which runs inside the send); user samples by the function they hit
("own code" is centrum's crates, or the floor's). "back and master" is work the floor
does not do at all: decoding and applying every input, the game's tick, encoding the
patch, the journal and its fsync, the link to the front, and the master's heartbeats."""


def why_text(cols, data, rooms, floor_rooms, cpus):
    """Bullets for the fan-out targets the run missed, from this run's numbers."""
    out = []
    floor = cols.get("floor server")
    arena = {k.rsplit(": ", 1)[1]: p for k, p in cols.items() if k.startswith("centrum arena")}
    # (a missing profile leaves these empty: the text then gives the CPU alone)
    room = {k.rsplit(": ", 1)[1]: p for k, p in cols.items() if k.startswith("centrum rooms")}
    floor_row, arena_row = data["limit"].get(1000), data["centrum"].get(1000)
    missed_arena = (floor_row and arena_row and floor_row.get("cpu") and arena_row.get("cpu")
                    and arena_row["cpu"] > floor_row["cpu"])
    room_row = rooms.get((1000, "declared"))
    missed_rooms = (floor_row and room_row and floor_row.get("cpu") and room_row.get("cpu")
                    and room_row["cpu"] > 1.1 * floor_row["cpu"])
    if floor and arena and missed_arena:
        front, rest, total = arena["front"], arena["back and master"], arena["all"]
        need = rest.total()
        out.append(
            f"- **Arena N=1000, server CPU against the floor.** Under the profiler centrum "
            f"costs {f(total.total())} µs per client per tick and the floor "
            f"{f(floor.total())} ({f(total.total() / floor.total())}×). The front alone costs "
            f"{f(front.total())} ({f(front.total() / floor.total())}× the floor): its kernel "
            f"work is {f(front.us('kernel'))} µs against the floor's {f(floor.us('kernel'))}, "
            f"with {f(front.per_write(('syscalls',)))} syscalls per client per tick against "
            f"{f(floor.per_write(('syscalls',)))}, and its user work {f(front.us('user'))} µs "
            f"against {f(floor.us('user'))}. The back and master add {f(need)} µs "
            f"({100 * need / floor.total():.0f} % of the floor). So at 1.0× the front would "
            f"have to cost {f(floor.total() - need)} µs, {100 * need / floor.total():.0f} % "
            f"less than the floor's server, whose own user work is {f(floor.us('user'))} µs "
            f"and whose kernel work is the writes and reads both must make. The profiled "
            f"runs ran back to back; the unprofiled ones of the results table, minutes "
            f"apart, put centrum at {f(arena_row['cpu'] / floor_row['cpu'])}× the floor.")
    if floor and room and missed_rooms:
        out.append(
            f"- **Rooms 125 × 8 against the floor's arena.** The same 20,000 client writes "
            f"a second in 125 rooms cost {f(room['all'].total())} µs per client per tick: "
            f"the front {f(room['front'].total())} (arena: "
            f"{f(arena['front'].total()) if arena else '—'}), the back and master "
            f"{f(room['back and master'].total())} (arena: "
            f"{f(arena['back and master'].total()) if arena else '—'}). The back ticks 125 "
            f"channels instead of one, each with its own inbox, game tick, patch and frame "
            f"to the front: 2,500 channel ticks a second.")
    delay, floor_p50 = arena_row and arena_row.get("front_delay"), floor_row and floor_row.get("p50")
    if delay is not None and floor_p50 is not None and delay > floor_p50:
        out.append(
            f"- **The front's delay at N=1000.** A patch waits {f(delay)} ms on average in "
            f"the front, from its arrival to its write, against the floor's median delivery "
            f"delay of {f(floor_p50)} ms ({delay - floor_p50:+.2f} ms)."
            + (f" Both are the time to write 1,000 sockets at the kernel's cost per write: "
               f"{f(arena['front'].us('kernel', 'socket writes'))} µs per client per tick in "
               f"the front's writes against {f(floor.us('kernel', 'socket writes'))} in the "
               f"floor's." if floor and arena else ""))
    lg_ratio = (arena_row["loadgen"] / arena_row["cpu"]
                if arena_row and arena_row.get("loadgen") and arena_row.get("cpu") else None)
    full = []
    for n, missed in ((2000, lambda c: (c.get("p99") or 0) > 150 or c.get("valid") is not True),
                      (3000, lambda c: c.get("valid") is not True)):
        c, fl = data["centrum"].get(n), data["limit"].get(n)
        if c and missed(c):
            full.append(machine_text(f"arena N={n}", n, c, arena.get("all"), fl,
                                     f"the floor at N={n}", floor, cpus, lg_ratio))
    r4 = rooms.get((4000, "declared"))
    if r4 and r4.get("valid") is not True:
        full.append(machine_text("rooms 500 × 8", 4000, r4, room.get("all"),
                                 floor_rooms.get(4000) or data["limit"].get(4000),
                                 "the floor at N=4000, the same client writes and inputs "
                                 "in larger frames (B=8)", floor, cpus, lg_ratio))
    if full:
        out.append("- **The targets at N ≥ 2000 and 500 × 8: the machine is full.**\n"
                   + "\n".join(f"  - {t}" for t in full))
    return "\n".join(out)


def machine_text(what, n, row, profiled, floor, floor_label, floor_profiled, cpus, lg_ratio):
    """A run that did not fit: its CPU beside the machine's, and what the profile says
    N clients need."""
    lg = row.get("loadgen")
    text = (f"{what}: server {f(row.get('cpu'), 3)} + load generator {f(lg, 3)} = "
            f"{f((row.get('cpu') or 0) + (lg or 0))} of {cpus} cores busy")
    if floor:
        verdict = "valid" if floor.get("valid") is True else "**not valid** either"
        text += (f"; {floor_label} in this run: {verdict}, server "
                 f"{f(floor.get('cpu'), 3)} + load generator {f(floor.get('loadgen'), 3)}")
    if profiled and floor_profiled:
        per_s = n * 20
        text += (f". At the profiled cost per client per tick, {per_s:,} client ticks a "
                 f"second take {f(profiled.total() * per_s / 1e6)} cores of centrum's server "
                 f"and {f(floor_profiled.total() * per_s / 1e6)} of the floor's, before the "
                 f"load generator")
        if lg_ratio:
            text += f" (at N=1000 it took {f(lg_ratio)}× centrum's server CPU)"
    return text + "."
