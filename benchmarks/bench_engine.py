"""Engine benchmark: how fast asyncsim simulates a large batch, against a hand-written SimPy model.

Workload: a batch of N tasks, each `cpu: 0.001`, `io: exponential(mean 0.05)`, `cpu: 0.001`, under
`asyncio:100` on the default machine (the loop is the bottleneck: T_total ≈ N × 2 ms).

Prints, for 100k tasks (20k with --quick):
* wall time (and CPU time), tasks/s and events/s of `asyncsim.simulate` (scenario + engine + metrics) and
  of the engine alone (`run_scenario` on a prebuilt scenario); `events` is SimPy's count of scheduled events;
* the same for a minimal hand-written SimPy model of the same workload (the same draws from the same
  Scenario, a `simpy.Resource(capacity=1)` as the loop, lazy admission behind the limit, gc off during the
  run, as the engine does), run in this process alternately with asyncsim, median of --repeat runs;
* the ratios engine / hand-written and simulate / hand-written (target: ≤ 1.5x) and both T_total. They
  agree to within 0.1%, not exactly: the hand-written loop is a FIFO server of coroutines, while asyncsim
  runs CPython's loop iterations (a coroutine woken by a timer queues behind the handles already ready when
  the iteration began: `sim.cpu.Loop`), so a few coroutines run in another order;
and, in a fresh subprocess so that nothing else pollutes the figures, 1M tasks (100k with --quick): wall
time of `asyncsim.simulate` (target: ≤ 30 s) and its peak RSS (target: ≤ 500 MB), keeping the trace and
summary-only (`simulate(summary_only=True)`: the records folded as they are made; target ≤ 300 MB).

Figures only: nothing here fails on timing. CPU time is printed too because wall time on a shared machine
moves by ±20% between runs. `--json PATH` also saves the figures with the versions and the command.

    python benchmarks/bench_engine.py [--quick] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import simpy

import asyncsim
from asyncsim.scenario import Scenario, build_scenario
from asyncsim.sim import run_scenario

LIMIT = 100
RATIO_TARGET = 1.5
BIG_TIME_TARGET_S = 30.0
BIG_RSS_TARGET_MB = 500.0
SUMMARY_RSS_TARGET_MB = 300.0  # issue 16: a million tasks x 3 steps, summary-only


def workload(n_tasks: int) -> asyncsim.Workload:
    """The benchmark workload: `n_tasks` tasks of cpu 1 ms, io exp(50 ms), cpu 1 ms under asyncio:100."""
    return asyncsim.Workload.from_dict({
        "name": "bench-engine",
        "arrivals": {"batch": n_tasks},
        "task": [{"cpu": 0.001}, {"io": {"exponential": {"mean": 0.05}}}, {"cpu": 0.001}],
        "strategy": f"asyncio:{LIMIT}",
    })


# ------------------------------------------------------------------------------ the hand-written model


def hand_written(sc: Scenario) -> tuple[float, int]:
    """The same workload written directly in SimPy; returns (T_total, SimPy events).

    What someone would write by hand: the loop is a FIFO `Resource` of one, a coroutine holds it while it
    computes, and the `asyncio.Semaphore(100)` is lazy admission (a finishing task starts the next one), so
    that a million tasks never become a million live generators. Durations are the scenario's own draws.
    """
    rows = sc.durations[0].tolist()  # one row per task: [cpu, io, cpu]
    n = len(rows)
    env = simpy.Environment()
    loop = simpy.Resource(env, capacity=1)
    timeout = env.timeout
    done = [0.0] * n
    next_task = 0

    def task(i: int):
        cpu1, io, cpu2 = rows[i]
        with loop.request() as req:
            yield req
            yield timeout(cpu1)
        yield timeout(io)
        with loop.request() as req:
            yield req
            yield timeout(cpu2)
        done[i] = env.now
        admit()

    def admit() -> None:
        nonlocal next_task
        if next_task < n:
            env.process(task(next_task))
            next_task += 1

    for _ in range(min(LIMIT, n)):
        admit()
    run_without_gc(env)
    return max(done), next(env._eid)  # noqa: SLF001 - SimPy numbers every scheduled event


def run_without_gc(env: simpy.Environment) -> None:
    """Run a hand-written model to the end with the garbage collector off, as the engine runs."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        env.run()
    finally:
        if gc_was_enabled:
            gc.enable()


# ------------------------------------------------------------------------------------------- timing


def _timed(fn: Callable[[], Any], wall: list[float], cpu: list[float]) -> Any:
    """Call `fn`, appending its wall and CPU seconds (CPU time is less disturbed by other processes)."""
    gc.collect()  # start each run from the same heap
    w0, c0 = time.perf_counter(), time.process_time()
    value = fn()
    wall.append(time.perf_counter() - w0)
    cpu.append(time.process_time() - c0)
    return value


def compare_with_hand_written(n_tasks: int, repeat: int) -> dict[str, Any]:
    """Alternate asyncsim and the hand-written model `repeat` times; medians of each."""
    w = workload(n_tasks)
    parts = ("simulate", "scenario", "engine", "hand")
    wall: dict[str, list[float]] = {k: [] for k in parts}
    cpu: dict[str, list[float]] = {k: [] for k in parts}
    for r in range(repeat):
        # alternate which side goes first, so neither always runs on a warmer (or more fragmented) heap
        for side in ("asyncsim", "hand") if r % 2 == 0 else ("hand", "asyncsim"):
            if side == "asyncsim":
                result = _timed(lambda: asyncsim.simulate(w), wall["simulate"], cpu["simulate"])
                sc = _timed(lambda: build_scenario(w), wall["scenario"], cpu["scenario"])
                out = _timed(lambda sc=sc: run_scenario(sc), wall["engine"], cpu["engine"])
            else:
                sc_hand = build_scenario(w)
                t_hand, events_hand = _timed(lambda sc=sc_hand: hand_written(sc), wall["hand"], cpu["hand"])
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    return {
        "tasks": n_tasks, "steps": 3, "strategy": f"asyncio:{LIMIT}", "repeat": repeat,
        "events": result.events, "events_engine": out.events, "events_hand": events_hand,
        "t_total": result.t_total, "t_total_hand": t_hand,
        "seconds": med, "cpu_seconds": med_cpu, "runs": wall, "cpu_runs": cpu,
        "ratio_engine": med["engine"] / med["hand"], "ratio_simulate": med["simulate"] / med["hand"],
        "cpu_ratio_engine": med_cpu["engine"] / med_cpu["hand"],
        "cpu_ratio_simulate": med_cpu["simulate"] / med_cpu["hand"],
    }


def big_run(n_tasks: int, summary_only: bool = False) -> dict[str, Any]:
    """Run `asyncsim.simulate` once on `n_tasks` tasks in a fresh interpreter (keeping its trace, or summary-only):
    wall time and peak RSS."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", str(n_tasks)] + (["--summary-only"] if summary_only
                                                                                   else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the big run failed (exit {proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _child(n_tasks: int, summary_only: bool) -> None:
    """Subprocess side of `big_run`: prints one JSON line."""
    w = workload(n_tasks)
    rss_before = _peak_rss_mb()  # the interpreter with numpy, scipy, pydantic and simpy imported
    w0, c0 = time.perf_counter(), time.process_time()
    result = asyncsim.simulate(w, summary_only=summary_only)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    print(json.dumps({"tasks": n_tasks, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": _peak_rss_mb(),
                      "rss_after_imports_mb": rss_before, "events": result.events, "t_total": result.t_total}))


def _peak_rss_mb() -> float:
    """Peak resident memory of this process, in MB (2**20 bytes).

    On Linux, VmHWM: ru_maxrss would also count the parent's resident size at fork, kept across exec.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB elsewhere


# ------------------------------------------------------------------------------------------ report


def _rate_line(label: str, seconds: float, cpu_seconds: float, tasks: int, events: int) -> str:
    return (f"  {label:<31} {seconds:7.3f} s (cpu {cpu_seconds:7.3f} s) {tasks / seconds:>9,.0f} tasks/s "
            f"{events / seconds:>10,.0f} events/s ({events / tasks:.1f} events/task)")


def report(cmp: dict[str, Any], big: dict[str, Any], summary: dict[str, Any]) -> None:
    n, s, c = cmp["tasks"], cmp["seconds"], cmp["cpu_seconds"]
    print(f"engine benchmark: {n:,} tasks x 3 steps (cpu 1 ms, io exp(50 ms), cpu 1 ms), {cmp['strategy']}, "
          f"median of {cmp['repeat']} (wall; cpu = process time)")
    print(_rate_line("asyncsim.simulate (all)", s["simulate"], c["simulate"], n, cmp["events"]))
    print(f"  {'  of which build_scenario':<31} {s['scenario']:7.3f} s")
    print(_rate_line("asyncsim engine (run_scenario)", s["engine"], c["engine"], n, cmp["events_engine"]))
    print(_rate_line("hand-written SimPy model", s["hand"], c["hand"], n, cmp["events_hand"]))
    print(f"  ratio to hand-written: engine {cmp['ratio_engine']:.2f}x, simulate (all) {cmp['ratio_simulate']:.2f}x "
          f"(cpu: {cmp['cpu_ratio_engine']:.2f}x, {cmp['cpu_ratio_simulate']:.2f}x; target <= {RATIO_TARGET}x)")
    apart = abs(cmp["t_total"] - cmp["t_total_hand"]) / cmp["t_total_hand"]
    print(f"  T_total: asyncsim {cmp['t_total']:.9f} s, hand-written (a FIFO loop) {cmp['t_total_hand']:.9f} s "
          f"({apart:.4%} apart; {'within' if apart <= 1e-3 else 'NOT within'} 0.1%)")
    print(f"big run: {big['tasks']:,} tasks x 3 steps, asyncsim.simulate in a fresh subprocess")
    print(_rate_line("asyncsim.simulate (all)", big["wall_s"], big["cpu_s"], big["tasks"], big["events"]))
    print(f"  wall {big['wall_s']:.2f} s (target <= {BIG_TIME_TARGET_S:.0f} s), peak RSS {big['peak_rss_mb']:.0f} MB "
          f"(target <= {BIG_RSS_TARGET_MB:.0f} MB; {big['rss_after_imports_mb']:.0f} MB after imports), "
          f"T_total {big['t_total']:.3f} s")
    print(f"  summary-only (no trace kept): wall {summary['wall_s']:.2f} s, peak RSS {summary['peak_rss_mb']:.0f} MB "
          f"(target <= {SUMMARY_RSS_TARGET_MB:.0f} MB), T_total {summary['t_total']:.3f} s "
          f"({'the same' if summary['t_total'] == big['t_total'] else 'NOT the same'})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k tasks and a 100k big run (a smoke test)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side (median reported)")
    parser.add_argument("--tasks", type=int, help="tasks of the comparison (default 100k, 20k with --quick)")
    parser.add_argument("--big-tasks", type=int, help="tasks of the big run (default 1M, 100k with --quick)")
    parser.add_argument("--json", metavar="PATH", help="also save the figures as JSON")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--summary-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        _child(args.child, args.summary_only)
        return 0
    n_tasks = args.tasks or (20_000 if args.quick else 100_000)
    big_tasks = args.big_tasks or (100_000 if args.quick else 1_000_000)
    cmp = compare_with_hand_written(n_tasks, args.repeat)
    big = big_run(big_tasks)
    summary = big_run(big_tasks, summary_only=True)
    report(cmp, big, summary)
    if args.json:
        meta = {"asyncsim": asyncsim.__version__, "simpy": simpy.__version__, "python": platform.python_version(),
                "machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
                "command": " ".join([os.path.basename(sys.executable), *sys.argv])}
        with open(args.json, "w") as f:
            json.dump({"version": 1, "metadata": meta, "comparison": cmp, "big": big, "summary_only": summary}, f,
                      indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
