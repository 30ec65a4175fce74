#!/usr/bin/env python3
"""One profiled system (bench/profile.sh) -> one JSON line per process.

Buckets `perf script -F pid,ip,sym` samples by what the CPU was doing: kernel samples
by the syscall (or interrupt) on their call chain, user samples by their own function's
crate, since release builds keep no frame pointers for user-space chains. Adds the
process's `perf stat -x,` counters: CPU time, context switches, syscalls by kind.

    profile.py --system centrum --n 1000 --hz 499 --seconds 6 --stat-seconds 4 \
        --workload "bench arena 1000" --script S NAME:PID:STATFILE...
"""
import argparse
import json
import re
from collections import Counter

# Kernel samples: the first rule with any of its functions on the chain wins; the rest
# (interrupts, softirq and the scheduler outside any syscall) is "interrupts and scheduling".
KERNEL = [
    ("socket writes", ("tcp_sendmsg", "__sys_sendto", "do_writev")),
    ("socket reads", ("tcp_recvmsg", "__sys_recvfrom", "sock_read_iter")),
    ("epoll_wait", ("do_epoll_wait",)),
    ("futex", ("do_futex",)),
    ("journal sync", ("vfs_fsync_range", "do_fsync", "__x64_sys_fdatasync", "sync_filesystem",
                      "__x64_sys_sync_file_range")),
    ("other syscalls", ("do_syscall_64",)),
]
# User samples: by the function the sample hit.
USER = [
    ("allocator", re.compile(r"^(_int_|__libc_|tcache|malloc|free|cfree|realloc|calloc|unlink_chunk)")),
    ("tokio", re.compile(r"^(<)?tokio::|^tokio_")),
    ("WebSocket", re.compile(r"tungstenite")),
    ("MessagePack", re.compile(r"^(<)?(rmp|rmp_serde|serde)::")),
    ("own code", re.compile(r"centrum|^(<)?limit")),
]


def kernel_category(chain):
    for name, functions in KERNEL:
        if any(f in frame for frame in chain for f in functions):
            return name
    return "interrupts and scheduling"


def user_category(sym):
    for name, pattern in USER:
        if pattern.search(sym):
            return name
    return "libc and other"


def samples_by_pid(path):
    """{pid: Counter(category)} from perf script output (a header line, then frames)."""
    by_pid = {}
    pid, chain = None, []

    def flush():
        if pid is None or not chain:
            return
        if chain[0][0]:  # the sample hit the kernel
            cat = "kernel: " + kernel_category([sym for kernel, sym in chain if kernel])
        else:
            cat = "user: " + user_category(chain[0][1])
        by_pid.setdefault(pid, Counter())[cat] += 1

    with open(path, errors="replace") as script:
        for line in script:
            if not line.strip():
                flush()
                pid, chain = None, []
            elif not line.startswith("\t"):  # a sample's header: its pid, right-aligned
                flush()
                pid, chain = int(line.split()[0]), []
            else:  # one frame of its call chain, innermost first
                parts = line.split(None, 1)
                sym = parts[1].strip() if len(parts) > 1 else "?"
                chain.append((parts[0].startswith("ffff"), sym))
    flush()
    return by_pid


def counters(path):
    """perf stat -x, output: value,unit,event,... -> {event: value}."""
    out = {}
    with open(path, errors="replace") as stat:
        for line in stat:
            fields = line.strip().split(",")
            if len(fields) < 3 or line.startswith("#"):
                continue
            try:
                value = float(fields[0])
            except ValueError:
                continue  # "<not counted>" and the like
            event = fields[2].split(":")[-1].removeprefix("sys_enter_")
            out["syscalls" if event == "sys_enter" else event] = value
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--system", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--hz", type=float, required=True)
    ap.add_argument("--seconds", type=float, required=True, help="of samples")
    ap.add_argument("--stat-seconds", type=float, required=True, help="of perf stat")
    ap.add_argument("--workload", required=True, help="what ran, for the record")
    ap.add_argument("--script", required=True)
    ap.add_argument("procs", nargs="+", help="NAME:PID:STATFILE")
    args = ap.parse_args()
    by_pid = samples_by_pid(args.script)
    for item in args.procs:
        name, pid, stat = item.split(":", 2)
        samples = by_pid.get(int(pid), Counter())
        print(json.dumps({
            "system": args.system, "process": name, "n": args.n, "workload": args.workload,
            "hz": args.hz,
            "seconds": args.seconds, "stat_seconds": args.stat_seconds,
            "client_writes_per_s": args.n * 20,
            "samples": dict(samples), "counters": counters(stat),
        }))


main()
