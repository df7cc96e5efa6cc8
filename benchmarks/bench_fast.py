"""Fast-path benchmark: the discrete-event engine, the fast path (sim.fast) and hand-written SimPy, side by side.

    python benchmarks/bench_fast.py [--quick] [--repeat 3]

Prints, all measured in this one run (median of --repeat, wall time; CPU time beside it):
* a queueing workload the fast path accepts — N tasks at Poisson 250/s, each io exp(50 ms), then a pool of 20
  (io lognormal 20 ms), then a call to a service of 32 slots (exp 100 ms), under `asyncio` — simulated by
  `asyncsim.simulate` on each engine, and by a minimal hand-written SimPy model with the same draws (two
  `simpy.Resource`s, gc off as the engine runs): wall times, ratios and the three T_total (equal to 1e-9);
* every shipped model × strategy the fast path accepts (`pool_fanout` under its own asyncio:100 and under
  asyncio, `cpu_etl` under processes:2, `rag_query` under processes:2): one `simulate` on each engine;
* a sweep of pool_fanout over asyncio:10..100 with -r 20 (200 runs) on each engine;
* 1M tasks of the workload on the fast path in a fresh subprocess: wall time and peak RSS;
* bench_engine's big run (1M tasks x 3 steps on the engine) keeping its trace and summary-only: peak RSS;
* and (unless --no-plan) bench_plan's capacity plans with fixed against adaptive replications (llm_batch,
  rag_query), so that one run prints every figure of issue 16.

Figures only, nothing here fails on timing. The target of issue 16 is >= 20x the engine on eligible models.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import simpy

import asyncsim
from asyncsim.scenario import Scenario, build_scenario
from asyncsim.sweep import load_raw, sweep

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_engine  # noqa: E402 - the sibling scripts, by path
import bench_plan  # noqa: E402
from bench_engine import _peak_rss_mb, run_without_gc  # noqa: E402

SHIPPED = [("pool_fanout", None), ("pool_fanout", "asyncio"), ("cpu_etl", None), ("rag_query", "processes:2")]


def workload(n_tasks: int) -> asyncsim.Workload:
    """The benchmark's queueing workload (see the module docstring)."""
    return asyncsim.Workload.from_dict({
        "name": "bench-fast",
        "arrivals": {"poisson": {"rate": 250, "count": n_tasks}},
        "task": [{"io": {"exponential": {"mean": 0.05}}},
                 {"use": {"pool": "db", "steps": [{"io": {"lognormal": {"mean": 0.02, "cv": 0.5}}}]}},
                 {"call": "api"}],
        "pools": {"db": 20},
        "services": {"api": {"latency": {"exponential": {"mean": 0.1}}, "concurrency": 32}},
        "strategy": "asyncio",
    })


def hand_written(sc: Scenario) -> float:
    """The same workload written directly in SimPy, on the scenario's draws; returns T_total."""
    assert sc.arrivals is not None
    rows = sc.durations[0][:, [0, 2, 3]].tolist()  # io, the pool's io, the call (node 1 is the use)
    arrivals = sc.arrivals.tolist()
    env = simpy.Environment()
    db, api = simpy.Resource(env, capacity=20), simpy.Resource(env, capacity=32)
    timeout = env.timeout
    done = [0.0] * len(rows)

    def task(i: int):
        io, query, call = rows[i]
        yield timeout(io)
        with db.request() as req:
            yield req
            yield timeout(query)
        with api.request() as req:
            yield req
            yield timeout(call)
        done[i] = env.now

    def source():
        for i, t in enumerate(arrivals):
            if t > env.now:
                yield timeout(t - env.now)
            env.process(task(i))

    env.process(source())
    run_without_gc(env)
    return max(done) - arrivals[0]


def _median_time(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Median wall and CPU seconds of `repeat` calls, and the last value."""
    wall, cpu = [], []
    value = None
    for _ in range(repeat):
        gc.collect()
        w0, c0 = time.perf_counter(), time.process_time()
        value = fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu), value


def queueing(n_tasks: int, repeat: int) -> None:
    w = workload(n_tasks)
    sc = build_scenario(w, seed=1)
    des_w, des_c, des = _median_time(lambda: asyncsim.simulate(sc, engine="des"), repeat)
    fast_w, fast_c, fast = _median_time(lambda: asyncsim.simulate(sc, engine="fast"), repeat)
    hand_w, hand_c, t_hand = _median_time(lambda: hand_written(sc), repeat)
    print(f"queueing workload: {n_tasks:,} tasks (io, pool of 20, service of 32) at Poisson 250/s, asyncio; "
          f"median of {repeat}")
    for label, wall, cpu in (("asyncsim.simulate, engine des", des_w, des_c),
                             ("asyncsim.simulate, engine fast", fast_w, fast_c),
                             ("hand-written SimPy model", hand_w, hand_c)):
        print(f"  {label:<32} {wall:8.3f} s (cpu {cpu:7.3f} s) {n_tasks / wall:>12,.0f} tasks/s")
    print(f"  fast path: {des_w / fast_w:.1f}x the engine, {hand_w / fast_w:.1f}x the hand-written SimPy model "
          f"(target >= 20x the engine); T_total des {des.t_total:.9f} s, fast {fast.t_total:.9f} s, "
          f"SimPy {t_hand:.9f} s")


def shipped(repeat: int) -> None:
    print(f"shipped models the fast path accepts: one asyncsim.simulate, median of {repeat}")
    for name, strategy in SHIPPED:
        w = asyncsim.load(ROOT / "models" / f"{name}.yaml")
        des_w, _, des = _median_time(lambda w=w, s=strategy: asyncsim.simulate(w, strategy=s, engine="des"), repeat)
        fast_w, _, fast = _median_time(lambda w=w, s=strategy: asyncsim.simulate(w, strategy=s, engine="fast"),
                                       repeat)
        print(f"  {name + ' ' + (strategy or str(w.strategy)):<30} {des.tasks:>6,} tasks  des {des_w * 1e3:8.2f} ms  "
              f"fast {fast_w * 1e3:7.2f} ms  {des_w / fast_w:6.1f}x   T_total {des.t_total:.6f} = {fast.t_total:.6f}")


def swept(replications: int) -> None:
    raw, base = load_raw(ROOT / "models" / "pool_fanout.yaml")
    points = [{"strategy": f"asyncio:{k}"} for k in range(10, 101, 10)]
    times = {}
    for engine in ("des", "auto"):
        start = time.perf_counter()
        sweep(raw, points, replications=replications, base_dir=base, engine=engine)
        times[engine] = time.perf_counter() - start
    runs = len(points) * replications
    print(f"sweep pool_fanout strategy=asyncio:10..100 (10 points) x -r {replications} = {runs} runs: "
          f"des {times['des']:.2f} s, auto (fast) {times['auto']:.2f} s, {times['des'] / times['auto']:.1f}x")


def big(n_tasks: int) -> None:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", str(n_tasks)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the big run failed (exit {proc.returncode}):\n{proc.stderr}")
    fig = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"big run: {n_tasks:,} tasks of the queueing workload on the fast path, fresh subprocess: "
          f"wall {fig['wall_s']:.2f} s, peak RSS {fig['peak_rss_mb']:.0f} MB ({fig['rss_after_imports_mb']:.0f} MB "
          f"after imports), T_total {fig['t_total']:.3f} s")


def memory(n_tasks: int) -> None:
    """bench_engine's big run (cpu, io, cpu under asyncio:100, on the engine) keeping its trace and summary-only."""
    kept, summary = bench_engine.big_run(n_tasks), bench_engine.big_run(n_tasks, summary_only=True)
    print(f"memory: {n_tasks:,} tasks x 3 steps on the engine (bench_engine.py), fresh subprocesses: keeping the "
          f"trace {kept['wall_s']:.1f} s, peak RSS {kept['peak_rss_mb']:.0f} MB; summary-only "
          f"{summary['wall_s']:.1f} s, peak RSS {summary['peak_rss_mb']:.0f} MB (target <= 300 MB); T_total "
          f"{'the same' if kept['t_total'] == summary['t_total'] else 'NOT the same'}")


def _child(n_tasks: int) -> None:
    w = workload(n_tasks)
    before = _peak_rss_mb()
    start = time.perf_counter()
    result = asyncsim.simulate(w, engine="fast")
    print(json.dumps({"wall_s": time.perf_counter() - start, "peak_rss_mb": _peak_rss_mb(),
                      "rss_after_imports_mb": before, "t_total": result.t_total}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k tasks, -r 5 sweep, a 100k big run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side (median reported)")
    parser.add_argument("--no-plan", action="store_true", help="leave out bench_plan's fixed-vs-adaptive plans")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        _child(args.child)
        return 0
    queueing(20_000 if args.quick else 100_000, args.repeat)
    shipped(max(args.repeat, 5))
    swept(5 if args.quick else 20)
    big(100_000 if args.quick else 1_000_000)
    memory(100_000 if args.quick else 1_000_000)
    if not args.no_plan:
        print("capacity plans, fixed against adaptive replications (benchmarks/bench_plan.py):")
        bench_plan.main(["--quick"] if args.quick else [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
