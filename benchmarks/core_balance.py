"""How Linux shares the cores among more processes than cores, traced with the kernel's sched tracepoints: the
facts behind `Machine.core_balance_s` and `sim.cpu.Cores` (~10 s; tracing needs root and tracefs).

    python benchmarks/core_balance.py [--runs N]

k processes alternate gamma CPU bursts and sleeps; sched_switch, sched_wakeup and sched_migrate_task give every
core's timeline. Per run it prints where wake-ups went (the core the task last ran on or the other; idle or
busy), the core time left idle while a task waited on another core's queue, and how often a busy core's tick
ended such a wait by a pull; then the real end against the simulator's cores, given the measured bursts, by
processor sharing and by per-core queues. Measured on the reference machine (2 vCPUs, HZ=250, 2026-12-04):
63% of the wake-ups whose last core was busy while the other idled stayed on it (51 of 81; 34 of 45 in five
earlier runs), a core idled while a task waited on the other for 6-13% of core time, and an idle core pulled a
waiting task at 49% of the busy core's ticks (76 of 156; 39% counting only pulls that ended a wait at a tick).
The model pulls at every third tick (calibrate's core_balance_s), which fits recorded runs best: mean |error| of
19 runs of 7 shapes 8.7% by processor sharing, 5.3% pulling every second tick, 4.6% every third.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from machine_noise import _chain, model_end

from asyncsim.real.calibrate import BALANCE_TICKS, _scheduler_tick, _thread_sleep_overshoot
from asyncsim.real.cpuwork import measure_rate

TRACING = Path("/sys/kernel/tracing")
EVENTS = ("sched_switch", "sched_wakeup", "sched_migrate_task")
_LINE = re.compile(r"\[(\d+)\].*?\s(\d+\.\d+): (\w+): (.*)")


def tracing_unavailable() -> str | None:
    """Why the sched tracepoints cannot be used here (None: they can)."""
    if not (TRACING / "events" / "sched" / "sched_switch" / "enable").exists():
        return f"no tracefs at {TRACING} (mount -t tracefs nodev {TRACING})"
    if not os.access(TRACING / "tracing_on", os.W_OK):
        return "tracefs is not writable (run as root)"
    return None


def _write(name: str, value: str) -> None:
    (TRACING / name).write_text(value)


def traced_run(rate: float, k: int, cpu_ms: float, sleep_ms: float, rounds: int,
               trace: bool) -> tuple[list[list[float]], float, dict[str, Any] | None]:
    """Run k processes of `rounds` x (a gamma CPU burst, cv 0.2, then a sleep), traced if `trace`: their bursts'
    CPU seconds, the real end, and the trace's figures (None untraced)."""
    rng = random.Random(k * 1000 + rounds)
    plans = [[round(cpu_ms / 1e3 * rng.gammavariate(25, 1 / 25) * rate) for _ in range(rounds)] for _ in range(k)]
    results: Any = mp.SimpleQueue()
    if trace:
        _write("trace_clock", "mono")
        _write("buffer_size_kb", "8192")
        _write("trace", "")
        for event in EVENTS:
            _write(f"events/sched/{event}/enable", "1")
        _write("tracing_on", "1")
    start = time.perf_counter() + 0.1
    offset = time.clock_gettime(time.CLOCK_MONOTONIC) - time.perf_counter()
    procs = [mp.Process(target=_chain, args=(start, plan, sleep_ms / 1e3, results)) for plan in plans]
    try:
        for p in procs:
            p.start()
        ran = [results.get() for _ in procs]
    finally:
        if trace:
            _write("tracing_on", "0")
            for event in EVENTS:
                _write(f"events/sched/{event}/enable", "0")
    for p in procs:
        p.join()
    took = max(end for _, end in ran)
    figures = None
    if trace:
        t0 = start + offset
        figures = analyse((TRACING / "trace").read_text(), {p.pid for p in procs if p.pid}, t0, t0 + took)
        _write("trace", "")
    return [b for b, _ in ran], took, figures


def analyse(raw: str, pids: set[int], t0: float, t1: float) -> dict[str, Any]:
    """Wake-up placement, idle core time with a task waiting elsewhere, and pulls per busy-core tick, from a raw
    trace of our `pids` between t0 and t1 (CLOCK_MONOTONIC seconds)."""
    events = []
    for line in raw.splitlines():
        if m := _LINE.search(line):
            fields = dict(re.findall(r"(\w+)=(\S+)", m.group(4)))
            events.append((float(m.group(2)), int(m.group(1)), m.group(3), fields))
    events.sort(key=lambda e: e[0])
    ncpu = os.cpu_count() or 1
    tick = _scheduler_tick() or 0.004
    running = dict.fromkeys(range(ncpu), 0)
    waiting: dict[int, int] = {}  # pid -> the core whose queue it waits in
    last_core: dict[int, int] = {}
    placement: Counter[str] = Counter()
    idle_waiting = 0.0
    ticks = pulls = 0
    last = None
    for t, cpu, kind, f in events:
        ours = [p for p in waiting if p in pids]
        idle = [c for c in running if running[c] == 0]
        if last is not None and t0 <= t <= t1 and idle and ours:
            idle_waiting += (t - max(last, t0)) * min(len(idle), len(ours))
            ticks += int(t // tick) - int(max(last, t0) // tick)
        last = t
        if kind == "sched_switch":
            prev, nxt = int(f["prev_pid"]), int(f["next_pid"])
            if prev in pids:
                last_core[prev] = cpu
            if f["prev_state"].startswith("R") and prev != 0:
                waiting[prev] = cpu
            running[cpu] = nxt
            waiting.pop(nxt, None)
        elif kind == "sched_wakeup":
            pid, target = int(f["pid"]), int(f["target_cpu"])
            if pid in pids and pid in last_core and t0 <= t <= t1:
                where = "last core" if target == last_core[pid] else "other core"
                busy = "idle" if running[target] == 0 else "busy"
                others_idle = any(running[c] == 0 for c in running if c != target)
                placement[f"{where}, {busy}" + (" (another idle)" if busy == "busy" and others_idle else "")] += 1
            waiting[pid] = target
        elif kind == "sched_migrate_task":
            pid, dest = int(f["pid"]), int(f["dest_cpu"])
            if pid in waiting:
                if pid in pids and running.get(dest) == 0 and t0 <= t <= t1:
                    pulls += 1
                waiting[pid] = dest
    return {"placement": placement, "idle_waiting": idle_waiting, "ticks": ticks, "pulls": pulls}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="runs of each shape (default 2)")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    rate = measure_rate()
    tick = _scheduler_tick()
    balance = BALANCE_TICKS * tick if tick is not None else 0.0
    why = tracing_unavailable()
    print(f"machine: {cores} cores; scheduler tick {'unknown' if tick is None else f'{tick * 1e3:g} ms'}; model's "
          f"balancing tick {balance * 1e3:g} ms; tracing: {why or 'sched tracepoints'}")
    overshoot = _thread_sleep_overshoot(3)
    shapes = [(2 * cores, 5.0, 5.0), (2 * cores, 15.0, 8.0), (4 * cores, 10.0, 10.0)]
    total: Counter[str] = Counter()
    pulls = ticks = 0
    for k, cpu_ms, sleep_ms in shapes:
        for _ in range(args.runs):
            rounds = round(300 / (cpu_ms + sleep_ms))
            bursts, took, figures = traced_run(rate, k, cpu_ms, sleep_ms, rounds, trace=why is None)
            sharing = model_end(bursts, sleep_ms / 1e3 + overshoot, 0.0)
            per_core = model_end(bursts, sleep_ms / 1e3 + overshoot, balance)
            line = (f"k={k} {cpu_ms:g} ms CPU + {sleep_ms:g} ms sleep x {rounds}: real {took * 1e3:.0f} ms, "
                    f"processor sharing {sharing / took - 1:+.1%}, per core {per_core / took - 1:+.1%}")
            if figures is not None:
                total.update(figures["placement"])
                pulls += figures["pulls"]
                ticks += figures["ticks"]
                line += (f"; idle while a task waited on another core {figures['idle_waiting'] / (cores * took):.0%}"
                         f" of core time; pulls {figures['pulls']} in {figures['ticks']} ticks")
            print("   " + line, flush=True)
    if total:
        print("wake-ups (all runs): " + ", ".join(f"{where}: {n}" for where, n in sorted(total.items())))
        print(f"an idle core pulled a waiting task at {pulls} of {ticks} busy-core ticks "
              f"({pulls / max(ticks, 1):.0%}; the model: 1 in {BALANCE_TICKS})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
