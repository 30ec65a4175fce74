#!/usr/bin/env python3
"""Summarise a bench/compare.sh run: target/compare/results/*.jsonl -> markdown.

Prints the result, ratio and target tables to stdout and (re)writes BENCHMARKS.md
in the repository root (unless --no-write). Standard library only. Missing data
(a failed system, a null field) shows as "—"; several lines for one N give the median.

    python3 bench/compare/summarize.py [--results DIR] [--no-write]
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
from pathlib import Path

import explain
from explain import num

REPO = Path(__file__).resolve().parents[2]
DASH = "—"
# (file stem, label); the order of the rows in every table
SYSTEMS = [("centrum", "centrum"), ("centrum_memory", "centrum, store in memory"),
           ("colyseus", "Colyseus"), ("limit", "floor")]
# Systems measured at some N only (MEMORY_NS): no "no result" row at the others.
OPTIONAL = {"centrum_memory"}


# ---- reading and normalising ------------------------------------------------------

def div(a, b):
    return a / b if a is not None and b else None


def pct(a, b):
    q = div(a, b)
    return None if q is None else 100 * q


def hub_row(r):
    """centrum and Colyseus print the same keys (see shared/bench/ARENA.md)."""
    n, w = r["n"], num(r, "window_s")
    bpp = num(r, "bytes_per_player_per_patch")
    if bpp is None:  # Colyseus does not print it: payload bytes per message, per player
        bpp = div(div(num(r, "client_bytes_per_s"), num(r, "client_msgs_per_s")), n)
    row = {
        "cpu": num(r, "server_cpu_per_wall_s"),
        "user": div(num(r, "server_cpu_user_s"), w),
        "sys": div(num(r, "server_cpu_sys_s"), w),
        "rss": num(r, "server_rss_peak_mb"),
        "bpp": bpp,
        "p50": num(r, "latency_p50_ms"),
        "p99": num(r, "latency_p99_ms"),
        "max": num(r, "latency_max_ms"),
        "inputs": pct(num(r, "inputs_sent_per_s"), num(r, "inputs_expected_per_s")),
        "patches": num(r, "server_patches_sent_per_s"),
        "mismatches": num(r, "state_mismatches"),
        "front_delay": num(r, "front_patch_delay_ms"),  # centrum only
        "tick": num(r, "server_tick_ms"),  # centrum only
        "commit": num(r, "journal_commit_ms"),  # centrum with a store on disk only
        "loadgen": num(r, "loadgen_cpu_per_wall_s"),
    }
    valid = r.get("valid")
    if not isinstance(valid, bool):
        # Colyseus prints no verdict: the workload counts as delivered when inputs and
        # patches are at the N=2000 target levels and nobody failed to join or dropped.
        if row["inputs"] is None or row["patches"] is None:
            valid = None
        else:
            valid = (row["inputs"] >= 97 and row["patches"] >= 19.8
                     and not num(r, "join_failures") and not num(r, "drops"))
    row["valid"] = valid
    return row


# The floor's own validity checks (shared/bench/limit/README.md), named in its line;
# `undisturbed` is reported as a disturbance instead.
FLOOR_CHECKS = ("kept_20hz_ticks", "all_frames_delivered", "all_inputs_received")


def floor_row(r):
    """limit-loadgen's line (shared/bench/limit/README.md); its latency is delivery delay."""
    return {
        "cpu": num(r, "server_cpu_per_wall_s"),
        "user": num(r, "server_cpu_user_per_wall_s"),
        "sys": num(r, "server_cpu_sys_per_wall_s"),
        "rss": num(r, "server_rss_peak_mib"),
        "bpp": num(r, "b"),
        "p50": num(r, "delay_probe_p50_ms"),
        "p99": num(r, "delay_probe_p99_ms"),
        "max": num(r, "delay_probe_max_ms"),
        "inputs": pct(num(r, "server_inputs_per_s"), 20 * r["n"]),
        "patches": num(r, "server_ticks_per_s"),
        "mismatches": None,  # the floor has no game state to check
        "valid": r.get("valid") if isinstance(r.get("valid"), bool) else None,
        "disturbed": r.get("undisturbed") is False,
        "loadgen": num(r, "loadgen_cpu_per_wall_s"),
    }


def load(results, stem):
    """-> ({n: median row}, [(n, problem)], the first line's versions and cluster)."""
    runs, errors, extra = {}, [], {}
    path = results / f"{stem}.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if not isinstance(r, dict) or not isinstance(r.get("n"), int):
            continue
        if "error" in r:
            errors.append((r["n"], str(r["error"])))
            continue
        if r.get("valid") is False and r.get("invalid_reasons"):  # centrum says why
            errors.append((r["n"], "not valid: " + "; ".join(map(str, r["invalid_reasons"]))))
        floor = stem.startswith("limit")
        if floor and r.get("valid") is False:  # the floor's failed checks
            failed = [k for k in FLOOR_CHECKS if r.get(k) is False]
            errors.append((r["n"], "not valid: " + (", ".join(f"{k} = false" for k in failed)
                                                     or "see its JSON line")))
        runs.setdefault(r["n"], []).append(floor_row(r) if floor else hub_row(r))
        extra.setdefault("versions", r.get("versions"))
        extra.setdefault("cluster", r.get("cluster"))
    return {n: median_row(rows) for n, rows in runs.items()}, errors, extra


def load_lines(results, stem):
    """Every JSON object of results/STEM.jsonl (the idle and micro benchmark lines)."""
    path = results / f"{stem}.jsonl"
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r, dict):
            out.append(r)
    return out


def idle_result(lines):
    """The idle-connection line, or None; an "error" line (run_one's) counts as none."""
    good = [r for r in lines if "error" not in r and num(r, "kib_per_connection") is not None]
    return good[-1] if good else None


def micro_means(lines):
    """{(group, bench): mean ns} from the criterion estimates of this run."""
    return {(r.get("group"), r.get("bench")): num(r, "mean_ns") for r in lines
            if num(r, "mean_ns") is not None}


def rooms_rows(lines):
    """{(n, mode): median row} of `centrum bench rooms` lines, and [(label, problem)]."""
    runs, problems = {}, []
    for r in lines:
        if not isinstance(r.get("n"), int):
            continue
        label = f"rooms N={r['n']}" + (f" ({r['mode']})" if r.get("mode") else "")
        if "error" in r:
            problems.append((label, str(r["error"])))
            continue
        if r.get("valid") is False and r.get("invalid_reasons"):
            problems.append((label, "not valid: " + "; ".join(map(str, r["invalid_reasons"]))))
        row = hub_row(r)
        row.update({
            "rooms": num(r, "rooms"), "clients": num(r, "clients_per_room"),
            "room_patches": num(r, "room_patches_per_s_min"),
            "received": num(r, "patches_received_pct"),
            "join_s": num(r, "join_s"), "seat_p50": num(r, "seat_p50_ms"),
            "seat_p99": num(r, "seat_p99_ms"), "seat_max": num(r, "seat_max_ms"),
            "full": r.get("rooms_exactly_full") if isinstance(r.get("rooms_exactly_full"), bool)
            else None,
        })
        runs.setdefault((r["n"], r.get("mode")), []).append(row)
    return {k: median_row(v) for k, v in runs.items()}, problems


def median_row(rows):
    out = {"runs": len(rows)}
    for key in rows[0]:
        vals = [r[key] for r in rows if r[key] is not None]
        if key in ("valid", "disturbed", "full"):
            out[key] = (vals[0] if len(rows) == 1 and vals else
                        f"{sum(map(bool, vals))}/{len(rows)}" if vals else None)
        else:
            out[key] = statistics.median(vals) if vals else None
    return out


# ---- formatting -------------------------------------------------------------------

def f(v, digits=1):
    return DASH if v is None else f"{v:.{digits}f}"


def yesno(v):
    return {True: "yes", False: "**no**", None: DASH}.get(v, v)


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def results_table(data, ns):
    rows = []
    for n in ns:
        for stem, label in SYSTEMS:
            r = data[stem].get(n)
            if r is None and stem in OPTIONAL:
                continue
            if r is None:
                rows.append([n, f"{label} (no result)"] + [DASH] * 8)
                continue
            name = label + (f" (B={f(r['bpp'], 0)})" if stem == "limit" else "")
            if r["runs"] > 1:
                name += f", median of {r['runs']}"
            lat = f"{f(r['p50'])} / {f(r['p99'])} / {f(r['max'])}"
            rows.append([
                n, name, yesno(r["valid"]) + (" (disturbed)" if r.get("disturbed") else ""),
                f"{f(r['cpu'], 3)} ({f(r['user'], 3)} / {f(r['sys'], 3)})",
                f(r["rss"]), f(r["bpp"]),
                f"*delay* {lat}" if stem == "limit" else lat,
                f(r["inputs"]), f(r["patches"]), f(r["mismatches"], 0),
            ])
    return table(["N", "system", "valid", "server CPU s/s (user / sys)", "server RSS peak MiB",
                  "bytes / player / patch", "latency p50 / p99 / max ms", "inputs delivered %",
                  "patches/s", "state mismatches"], rows)


def ratio(data, n, key, other):
    """(centrum value / other system's value, both rows valid?) or (None, _)."""
    a, b = data["centrum"].get(n), data[other].get(n)
    if not a or not b:
        return None, False
    return div(a[key], b[key]), a["valid"] is True and b["valid"] is True


def fr(q):
    value, like_for_like = q
    return DASH if value is None else f"{value:.2f}×" + ("" if like_for_like else " *")


def ratio_table(data, ns):
    rows = [[n, fr(ratio(data, n, "cpu", "colyseus")), fr(ratio(data, n, "cpu", "limit")),
             fr(ratio(data, n, "rss", "colyseus")), fr(ratio(data, n, "p99", "colyseus")),
             fr(ratio(data, n, "bpp", "colyseus"))] for n in ns]
    return table(["N", "CPU centrum / Colyseus", "CPU centrum / floor", "RSS centrum / Colyseus",
                  "p99 centrum / Colyseus", "bytes per player centrum / Colyseus"], rows)


def micro_table(micro):
    rows = []
    for group in sorted({g for g, _ in micro}):
        small, large = micro.get((group, "1k_entities")), micro.get((group, "100k_entities"))
        rows.append([f"`{group}`", f(div(small, 1000), 1), f(div(large, 1000), 1),
                     DASH if div(large, small) is None else f"{div(large, small):.2f}×"])
    return table(["benchmark (1,000 changed entities)", "1k entities µs", "100k entities µs",
                  "100k / 1k"], rows)


def idle_text(idle):
    return (f"`centrum bench idle --connections {idle['connections']}` opened "
            f"{idle.get('opened')} idle WebSocket sessions (upgrade, hello, welcome) on one "
            f"front in {f(num(idle, 'open_s'))} s, with {idle.get('failures')} failures. "
            f"The front's RSS went from {f(div(num(idle, 'front_rss_before_kib'), 1024))} MiB "
            f"to {f(div(num(idle, 'front_rss_after_kib'), 1024))} MiB: "
            f"**{f(num(idle, 'kib_per_connection'))} KiB per connection**.")


def rooms_table(rooms):
    rows = []
    for (n, mode), r in sorted(rooms.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        seat = (DASH if mode != "matchmaker" else
                f"{f(r['seat_p50'])} / {f(r['seat_p99'])} / {f(r['seat_max'])}")
        rows.append([
            n, f"{f(r['rooms'], 0)} × {f(r['clients'], 0)}",
            str(mode) + (f", median of {r['runs']}" if r["runs"] > 1 else ""),
            yesno(r["valid"]), f"{f(r['cpu'], 3)} ({f(r['user'], 3)} / {f(r['sys'], 3)})",
            f(r["rss"]), f(r["bpp"]), f"{f(r['p50'])} / {f(r['p99'])} / {f(r['max'])}",
            f(r["inputs"]), f(r["room_patches"]), f(r["received"]), f(r["join_s"], 2), seat,
            yesno(r["full"]),
        ])
    return table(["N", "rooms × clients", "rooms", "valid", "server CPU s/s (user / sys)",
                  "server RSS peak MiB", "bytes / player / patch", "latency p50 / p99 / max ms",
                  "inputs delivered %", "patches/s (least room)", "patches received %",
                  "all joined in s", "join-or-create p50 / p99 / max ms",
                  "every room exactly full"], rows)


ROOMS_NOTES = """\
The same workload in rooms of a few clients each: every client plays in its own room
and receives only that room's players. "declared": the rooms are channels of the back's
config (`room-1` .. `room-R`); "matchmaker": the back offers a room type and every
client first asks the master's matchmaker for a seat (`POST /v1/rooms/arena/join-or-create`,
all at once with the load generator's join concurrency), then joins the room it names
with the seat. The back keeps nothing on disk in either mode (`bench rooms` runs with
`--store memory` unless told otherwise), so both pay the same.
Inputs and patches are counted by the clients; "patches/s (least room)" is, over rooms,
the least mean rate its clients received; "all joined in" runs from the first request
to the last client's full state; "every room exactly full" checks the clients' rooms,
their seats and the master's listing (`GET /v1/rooms`)."""


def idle_rooms_text(idle):
    return (f"`centrum bench rooms --idle {idle.get('idle_rooms')}` made {idle.get('created')} "
            f"rooms through the matchmaker in {f(num(idle, 'create_s'))} s "
            f"({idle.get('create_failures')} failures) and joined none; "
            f"{idle.get('rooms_listed_after')} were still listed after the window. The back's RSS "
            f"went from {f(num(idle, 'back_rss_before_mib'))} MiB to "
            f"{f(num(idle, 'back_rss_after_mib'))} MiB: **{f(num(idle, 'kib_per_room'))} KiB per "
            f"room**; its CPU over {f(num(idle, 'window_s'), 0)} s was "
            f"{f(num(idle, 'back_cpu_per_wall_s_no_rooms'), 4)} s/s without rooms and "
            f"{f(num(idle, 'back_cpu_per_wall_s_idle_rooms'), 4)} s/s with them "
            "(an empty room is parked until something arrives for it).")


def durability_table(data):
    """centrum durable beside centrum keeping nothing, at each N both were run."""
    rows = []
    for n in sorted(data["centrum_memory"]):
        for stem, label in (("centrum", "durable (journal synced every tick)"),
                            ("centrum_memory", "store in memory")):
            r = data[stem].get(n)
            if r is None:
                continue
            rows.append([n, label, yesno(r["valid"]), f(r["cpu"], 3), f(r["rss"]),
                         f"{f(r['p50'])} / {f(r['p99'])}", f(r["tick"], 3), f(r["commit"], 3)])
    return table(["N", "centrum", "valid", "server CPU s/s", "server RSS peak MiB",
                  "latency p50 / p99 ms", "tick ms (mean)", "journal write ms (mean)"], rows)


def durable_p99(data, n):
    """(durable p99 - in-memory p99, shown) at N, or (None, —)."""
    a, b = data["centrum"].get(n), data["centrum_memory"].get(n)
    if not a or not b or a["p99"] is None or b["p99"] is None:
        return None, DASH
    d = a["p99"] - b["p99"]
    return d, f"{d:+.1f} ms ({f(a['p99'])} vs {f(b['p99'])} ms)"


def every(v):
    """A verdict of one run (True) or of several ("3/3"): True when every run said yes."""
    if isinstance(v, str) and "/" in v:
        yes, _, runs = v.partition("/")
        return yes == runs
    return v is True


def held_check(n, target, r):
    """A rooms run that must be valid: its verdict, least room and inputs delivered."""
    return (n, target, (r["valid"], f"valid: {yesno(r['valid'])}, least room "
                                    f"{f(r['room_patches'])} patches/s, inputs {f(r['inputs'])} %"),
            every)


def rooms_checks(rooms):
    """Target rows for the rooms runs, where they were measured."""
    checks = []
    mm1000 = rooms.get((1000, "matchmaker"))
    if mm1000:
        joined, full = mm1000["join_s"], every(mm1000["full"])
        checks.append((1000, "rooms: 1,000 clients joined through the matchmaker in < 5 s, "
                             "every room exactly full",
                       (None if joined is None else (joined, full),
                        f"{f(joined, 2)} s, " + ("every room full" if full is True else
                                                  "**not every room full**")),
                       lambda v: v[0] < 5 and v[1] is True))
    mm4000 = rooms.get((4000, "matchmaker"))
    if mm4000:
        checks.append(held_check(4000, "rooms: 4,000 clients in 500 rooms held with the "
                                       "matchmaker", mm4000))
    for n in sorted({n for n, _ in rooms}):
        a, b = rooms.get((n, "matchmaker")), rooms.get((n, "declared"))
        q = div(a["cpu"], b["cpu"]) if a and b else None
        if a and b:
            checks.append((n, "rooms: server CPU made by the matchmaker ≤ 1.05× declared",
                           (q, DASH if q is None else
                            f"{q:.2f}× ({f(a['cpu'], 3)} vs {f(b['cpu'], 3)} s/s)"),
                           lambda v: v <= 1.05))
    return checks


def fanout_checks(data, c, vs, plain):
    """The fan-out's targets on arena runs: against the floor of the same run."""
    floor = data["limit"].get(1000)
    delay, floor_p50 = c(1000, "front_delay"), floor and floor["p50"]
    return [
        (1000, "fan-out: server CPU ≤ 1.0× floor", vs(1000, "cpu", "limit", 3, "s/s"),
         lambda v: v <= 1.0),
        (1000, "fan-out: server user time ≤ 2× floor", vs(1000, "user", "limit", 3, "s/s"),
         lambda v: v <= 2.0),
        (1000, "fan-out: the front's delay ≤ the floor's median delivery delay",
         (None if delay is None or floor_p50 is None else delay - floor_p50,
          DASH if delay is None or floor_p50 is None else
          f"{f(delay, 2)} ms (mean) vs {f(floor_p50, 2)} ms"),
         lambda v: v <= 0),
        (2000, "fan-out: latency p99 ≤ 150 ms", plain(2000, "p99", 1, " ms"), lambda v: v <= 150),
        (3000, "fan-out: arena N=3000 held", (c(3000, "valid"), f"valid: {yesno(c(3000, 'valid'))}"),
         lambda v: v is True),
    ]


def rooms_fanout_checks(data, rooms):
    """The fan-out's targets on rooms declared in the config (`bench rooms`)."""
    checks = []
    floor = data["limit"].get(1000)
    r = rooms.get((1000, "declared"))
    if r:
        q = div(r["cpu"], floor and floor["cpu"])
        checks += [
            (1000, "fan-out: rooms 125 × 8 server CPU ≤ 1.1× floor's arena N=1000",
             (q, DASH if q is None else f"{q:.2f}× ({f(r['cpu'], 3)} vs {f(floor['cpu'], 3)} s/s)"),
             lambda v: v <= 1.1),
            (1000, "fan-out: rooms 125 × 8 every room at 20 patches/s, ≥ 99.5 % received",
             (None if r["room_patches"] is None or r["received"] is None
              else (r["room_patches"], r["received"]),
              f"least room {f(r['room_patches'])}/s, {f(r['received'], 2)} % received"),
             lambda v: v[0] >= 19.8 and v[1] >= 99.5),
            (1000, "fan-out: rooms 125 × 8 latency p99 ≤ 75 ms",
             (r["p99"], f"{f(r['p99'])} ms"), lambda v: v <= 75),
        ]
    r = rooms.get((4000, "declared"))
    if r:
        checks.append(held_check(4000, "fan-out: rooms 500 × 8 held", r))
    return checks


def targets_table(data, idle, micro, rooms=None):
    def c(n, key):
        r = data["centrum"].get(n)
        return None if r is None else r[key]

    def vs(n, key, other, digits, unit):  # "0.52× (0.240 vs 0.459 s/s)"
        q = ratio(data, n, key, other)[0]
        o = data[other].get(n)
        if q is None:
            return None, DASH
        return q, f"{q:.2f}× ({f(c(n, key), digits)} vs {f(o[key], digits)} {unit})"

    def plain(n, key, digits, unit=""):
        v = c(n, key)
        return v, DASH if v is None else f"{f(v, digits)}{unit}"

    checks = [  # (N, target, (value, shown), ok(value))
        (1000, "server CPU ≤ 1.5× floor", vs(1000, "cpu", "limit", 3, "s/s"), lambda v: v <= 1.5),
        (1000, "server CPU ≤ 0.6× Colyseus", vs(1000, "cpu", "colyseus", 3, "s/s"), lambda v: v <= 0.6),
        (1000, "server RSS ≤ 1/4 of Colyseus", vs(1000, "rss", "colyseus", 1, "MiB"), lambda v: v <= 0.25),
        (1000, "latency p99 ≤ 60 ms", plain(1000, "p99", 1, " ms"), lambda v: v <= 60),
        (1000, "state mismatches = 0", plain(1000, "mismatches", 0), lambda v: v == 0),
        (1000, "bytes per player per patch ≤ 12", plain(1000, "bpp", 1), lambda v: v <= 12),
        (2000, "inputs delivered ≥ 97 %", plain(2000, "inputs", 1, " %"), lambda v: v >= 97),
        (2000, "patches 20/s (≥ 19.8)", plain(2000, "patches", 1, "/s"), lambda v: v >= 19.8),
        (2000, "latency p99 ≤ 100 ms", plain(2000, "p99", 1, " ms"), lambda v: v <= 100),
        (1000, "durable CPU ≤ 1.10× store in memory", vs(1000, "cpu", "centrum_memory", 3, "s/s"),
         lambda v: v <= 1.10),
        (1000, "durable p99 ≤ store in memory + 5 ms", durable_p99(data, 1000), lambda v: v <= 5),
    ]
    checks += fanout_checks(data, c, vs, plain)
    kib = num(idle, "kib_per_connection") if idle else None
    checks.append((DASH, "10,000 idle connections on one front: ≤ 4 KiB each",
                   (kib, DASH if kib is None else f"{f(kib)} KiB"), lambda v: v <= 4))
    small = micro.get(("patch/1000_changes", "1k_entities"))
    large = micro.get(("patch/1000_changes", "100k_entities"))
    q = div(large, small)
    checks.append((DASH, "patch time, 100k entities ≤ 2× 1k (same 1,000 changes)",
                   (q, DASH if q is None else
                    f"{q:.2f}× ({f(div(large, 1000))} vs {f(div(small, 1000))} µs)"),
                   lambda v: v <= 2))
    rows = []
    for n, target, (value, shown), ok in checks:
        if value is None:
            verdict = "not measured"
        else:
            verdict = "met" if ok(value) else "**missed**"
            if n != DASH and c(n, "valid") is not True:
                verdict += " (centrum row not valid)"
        rows.append([n, target, shown, verdict])
    for n, target, (value, shown), ok in (rooms_checks(rooms or {})
                                          + rooms_fanout_checks(data, rooms or {})):
        if value is None:
            verdict = "not measured"
        else:
            verdict = "met" if ok(value) else "**missed**"
        rows.append([n, target, shown, verdict])
    return table(["N", "target", "measured", "result"], rows)


def latency_floor_text(data):
    """What the floor's delivery delay leaves of the p99 targets (an estimate, see text)."""
    parts = []
    for n, target in ((1000, 60), (2000, 100)):
        r = data["limit"].get(n)
        if r and r["p50"] is not None:
            parts.append(f"N={n}: 47.5 + {f(r['p50'])} ≈ {f(47.5 + r['p50'])} ms "
                         f"(target {target} ms)")
    if not parts:
        return ""
    text = (
        "How far down the input-to-own-state p99 can go here: the 20 probe clients send "
        "2.5 ms apart in the 50 ms tick period, so one of them, 1/20 of the samples, always "
        "waits 47.5–50 ms for the next tick. The p99 is at least that wait plus the delivery "
        "delay of that probe's slower samples, which is about the floor's median delay or "
        "more. From this run's floor: " + "; ".join(parts) + "."
    )
    fronts = [f"N={n}: {f(r['front_delay'])} ms" for n, r in sorted(data["centrum"].items())
              if r.get("front_delay") is not None]
    if fronts:
        text += (
            " centrum's front's share of its delivery delay, from a patch's arrival from "
            "the back to its write to a client's socket (mean over the window, "
            "`front_patch_delay_ms`): " + "; ".join(fronts) + "."
        )
    return text


# ---- the run's context ------------------------------------------------------------

def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine():
    cpu = None
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        for line in (sh("lscpu") or "").splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    mem = None
    try:
        kb = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal:"))
        mem = f"{kb / 2**20:.1f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    parts = [cpu or "unknown CPU", f"{sh('nproc') or os.cpu_count()} CPUs (nproc)", mem,
             f"{platform.system()} {platform.release()}"]
    return ", ".join(p for p in parts if p)


def read_meta(results):
    meta = {}
    path = results / "meta.tsv"
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.partition("\t")
            meta[key] = value
    return meta


def utc(ts):
    return datetime.datetime.fromtimestamp(int(ts), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def context(meta, extras):
    started = meta.get("started")
    date = utc(started) if started else utc(datetime.datetime.now().timestamp()) + " (summary time)"
    if started and meta.get("finished"):
        date += f", the run took {(int(meta['finished']) - int(started)) / 60:.1f} min"
    commit = meta.get("commit") or sh("git", "-C", str(REPO), "rev-parse", "--short", "HEAD") or "unknown"
    centrum = f"centrum {commit}"
    cv = extras["centrum"].get("versions")
    if isinstance(cv, dict) and cv:
        centrum += " (" + ", ".join(f"{k} {v}" for k, v in cv.items()) + ")"
    if extras["centrum"].get("cluster"):
        centrum += f", cluster: {extras['centrum']['cluster']}"
    colyseus = extras["colyseus"].get("versions") or {}
    node = sh("node", "--version") or colyseus.get("node") or "unknown"
    packages = ", ".join(f"{k} {v}" for k, v in colyseus.items() if k != "node") or "no result"
    return "\n".join([
        f"- Command: `{meta.get('command', 'bash bench/compare.sh')}`",
        f"- Date: {date}",
        f"- Machine: {machine()}; servers and load generators share these cores, nothing pinned",
        "- Versions:",
        f"  - {sh('rustc', '--version') or 'rustc unknown'}",
        f"  - {centrum}",
        f"  - node {node}; Colyseus: {packages}",
    ])


# ---- the document -----------------------------------------------------------------

INTRO = """\
The "arena" workload (defined in `shared/bench/ARENA.md`, beside this repository): N
clients in one channel, each sends an input at 20 Hz, the server applies them at a fixed
20 Hz tick and sends every client one patch of all changed players 20 times a second, so
every client receives all N players 20 times a second. The same workload runs, in the
same run of `bench/compare.sh`, on:

- **centrum**: this repository's cluster (`centrum bench arena`), every process of it
  counted as "server", durable as every cluster is by default: each tick's inputs are
  journaled and synced to disk before they are acknowledged (`store.fsync = "tick"`);
  the "store in memory" rows are the same cluster keeping nothing (`--store memory`),
  for what durability costs;
- **Colyseus** 0.18, the reference (`shared/bench/colyseus`);
- **floor**: a bare Rust WebSocket server that only writes one pre-framed payload of
  N×B bytes to N sockets at 20 Hz and reads the inputs (`shared/bench/limit`), with B =
  centrum's measured bytes per player per patch, rounded up. Nothing can be cheaper.
"""

NOTES = """\
- Server CPU is CPU seconds per wall second (cores) over the measurement window, user /
  sys split; RSS is the peak (VmHWM, summed over processes), join phase included. Both
  ends run on loopback, so "server" sys time includes the receivers' TCP input path.
- Latency for centrum and Colyseus is input to own state: from sending an input to the
  first applied patch that shows it (including the 0–50 ms wait for the next tick), on
  the decoding probe clients. The floor's *delay* is a different measure: tick to
  frame received, with no input wait, so it is not comparable.
- Inputs delivered: inputs sent / N×20 per second (floor: inputs the server received /
  N×20). Patches/s: patches the server sent (floor: its ticks per second).
- Valid: the load generator produced the workload (inputs delivered and 20 patches a
  second). centrum and the floor print their own verdict; Colyseus's is computed here
  (inputs ≥ 97 %, patches ≥ 19.8/s, no join failure or drop). CPU and RSS of a row that
  is not valid describe less work than the workload.
- A ratio marked * involves a row that is not valid, so it is not like for like.
"""

HOW_TO_RUN = """\
## How to run

```sh
bash bench/compare.sh          # from any directory; rewrites this file
```

It builds centrum in release, then runs centrum, the floor and Colyseus one after the
other for every N (each sub-run about 30–40 s with the default phases, bounded by
`timeout`); the defaults take about 15–20 minutes, plus the first builds (centrum,
the floor's cargo workspace, Colyseus's `npm install`). It needs `../shared/bench` beside
the repository, cargo, node/npm and python3; all traffic stays on 127.0.0.1. Raw JSON
lines are kept in
`target/compare/results/{centrum,limit,colyseus,idle,micro,rooms,rooms_idle,limit_rooms,profile}.jsonl`,
and `python3 bench/compare/summarize.py` rebuilds this file from them.

Environment: `NS="100 500 1000 2000"`, `DECODE=probe:20` (`all` makes every client
decode), `WARMUP=5`, `WINDOW=20`, `TAIL=2` (seconds), `QUIET_MAX=0.15` /
`QUIET_WAIT_S=120` (each sub-run first waits, bounded, for an idle machine), `IDLE=10000`
(idle connections on one front; 0 skips), `ROOMS="125 500"` / `ROOM_CLIENTS=8` (the
workload in rooms of 8, declared and made by the matchmaker; "" skips),
`IDLE_ROOMS=5000` (rooms nobody joins; 0 skips), `MICRO=1` (the patch micro benchmarks,
shortened; 0 skips), `PROFILE_N=1000` (the profile of "Where the CPU goes", taken with
perf at this N, which needs root and the `linux-perf` package; "" skips), `NO_WRITE=1`
(print the tables, leave this file alone), `CENTRUM_BIN=path` (use that binary, no build).
The profile alone, after one compare run has built the floor: `bash bench/profile.sh 1000`
(its header lists its settings); each process's raw samples stay in `target/compare/profile/`
for `perf report -i`.
A quick check: `NS=100 WARMUP=2 WINDOW=5 MICRO=0 NO_WRITE=1 bash bench/compare.sh`.

The load generator alone: `centrum bench arena --help` (prints one JSON line per N).
Micro benchmarks: `cargo bench`, for example `cargo bench -p centrum-protocol --bench patch`
measures producing a patch, and a client mirror applying it, with 1k and 100k
entities.
"""


# Sections measured by other commands than this script (each says which), carried over
# from the BENCHMARKS.md being replaced.
KEPT_SECTIONS = ("## A flooding client",)


def kept_sections():
    path = REPO / "BENCHMARKS.md"
    old = path.read_text() if path.exists() else ""
    kept = []
    for head in KEPT_SECTIONS:
        start = old.find("\n" + head)
        if start < 0:
            continue
        end = old.find("\n## ", start + 1)
        kept.append(old[start + 1:end if end >= 0 else len(old)].rstrip())
    return "\n\n".join(kept)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=REPO / "target" / "compare" / "results")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()

    data, errors, extras = {}, {}, {}
    for stem, _ in SYSTEMS:
        data[stem], errors[stem], extras[stem] = load(args.results, stem)
    ns = sorted({n for d in data.values() for n in d} | {n for es in errors.values() for n, _ in es})
    idle = idle_result(load_lines(args.results, "idle"))
    micro = micro_means(load_lines(args.results, "micro"))
    rooms, room_problems = rooms_rows(load_lines(args.results, "rooms"))
    idle_rooms = next((r for r in reversed(load_lines(args.results, "rooms_idle"))
                       if "error" not in r and num(r, "kib_per_room") is not None), None)

    problems = [f"- {label} N={n}: {e}" for stem, label in SYSTEMS for n, e in errors[stem]]
    problems += [f"- floor N={n}: another process used the machine during the window "
                 "(`undisturbed: false`)" for n, r in data["limit"].items() if r.get("disturbed")]
    problems += [f"- centrum {label}: {e}" for label, e in room_problems]
    floor_rooms, floor_room_errors, _ = load(args.results, "limit_rooms")
    problems += [f"- floor N={n} (as many clients as the rooms): {e}" for n, e in floor_room_errors]
    profiled = explain.parts(load_lines(args.results, "profile"))
    why = explain.why_text(profiled, data, rooms, floor_rooms, os.cpu_count())
    tables = "\n\n".join(filter(None, [
        "## Results\n\n" + results_table(data, ns),
        NOTES.rstrip(),
        "### Failures and disturbances\n\n" + "\n".join(problems) if problems else "",
        "## Ratios (centrum / other, same run)\n\n" + ratio_table(data, ns),
        "## What durability costs (same run)\n\n" + durability_table(data)
        + "\n\nThe centrum rows above are durable, as every cluster is by default: each "
          "tick's record goes to the channel's journal, and is synced to disk (fdatasync), "
          "before the tick's patch and acks leave the back. \"store in memory\" is the same "
          "cluster with `store.kind = \"memory\"`. Tick time is the back's own (the game, "
          "the patch, the encoding); the journal write runs beside the tick, on a blocking "
          "thread, and only delays the tick's frames." if data["centrum_memory"] else "",
        kept_sections(),
        "## Idle connections\n\n" + idle_text(idle) if idle else "",
        "## Rooms (same run)\n\n" + rooms_table(rooms) + "\n\n" + ROOMS_NOTES if rooms else "",
        "## Idle rooms\n\n" + idle_rooms_text(idle_rooms) if idle_rooms else "",
        "## Patch production and application (criterion, same run)\n\n" + micro_table(micro)
        + "\n\nMean time per tick for 1,000 changed entities, in a state of 1k or 100k "
          "entities: `patch` is the application's changes to encoded patch bytes, "
          "`commit_patch` the commit alone, `mirror_apply` a client applying the patch. "
          "Producing a patch costs what changed, not the size of the state." if micro else "",
        "## Where the CPU goes (profiled, same run)\n\n" + explain.profile_table(profiled)
        + "\n\n" + explain.PROFILE_NOTES if profiled else "",
        "## Targets\n\n" + targets_table(data, idle, micro, rooms),
        "### Why the missed fan-out targets are missed\n\n" + why if why else "",
        latency_floor_text(data),
    ]))
    print(tables)

    if not args.no_write:
        doc = "\n\n".join([
            "<!-- generated by bench/compare.sh (bench/compare/summarize.py); do not edit by hand -->\n"
            "# Benchmarks: centrum, Colyseus and the fan-out floor",
            INTRO.rstrip(),
            context(read_meta(args.results), extras),
            tables,
            HOW_TO_RUN.rstrip(),
        ]) + "\n"
        (REPO / "BENCHMARKS.md").write_text(doc)


if __name__ == "__main__":
    main()
