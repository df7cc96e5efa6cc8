"""Sweep benchmark: a 200-run sweep serially, on the local process pool and on Dask (2 workers each).

    python benchmarks/bench_sweep.py [--quick]

Prints wall times, the pool's speed-up (target >= 1.7x on 2 cores), the Dask overhead vs the pool (a
LocalCluster of 2 single-threaded worker processes; its start-up is timed separately, not in the runs)
and checks that all three give the same table. Without dask.distributed the Dask column is skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

import pandas as pd

from asyncsim.sweep import grid, load_raw, parse_set, sweep

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 runs, one repetition")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    raw, base = load_raw(ROOT / "models" / "rag_query.yaml")
    points = grid([parse_set("strategy=asyncio:{8,16,32,64}"), parse_set("pools.db=5,10,20,40,80")])
    replications = 2 if args.quick else 10  # 20 points x 10 = 200 runs
    repeat = 1 if args.quick else args.repeat
    runs = len(points) * replications
    try:
        import distributed
    except ImportError:
        distributed = None
    backends = ["serial", "pool", "dask"] if distributed else ["serial", "pool"]
    times: dict[str, list[float]] = {name: [] for name in backends}
    frames: dict[str, pd.DataFrame] = {}
    with contextlib.ExitStack() as stack:
        client = None
        if distributed:
            start = time.perf_counter()
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None))
            client = stack.enter_context(distributed.Client(cluster))
            client.wait_for_workers(2)
            startup = time.perf_counter() - start
        options = {"serial": {"workers": 1}, "pool": {"workers": 2}, "dask": {"workers": 2, "scheduler": client}}
        for _ in range(repeat):
            for name in backends:  # alternate, so drift on a shared machine hits all alike
                start = time.perf_counter()
                frames[name] = sweep(raw, points, replications=replications, seed=1, base_dir=base, **options[name])
                times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    serial, pooled = median["serial"], median["pool"]
    same = all(frames["serial"].equals(frame) for frame in frames.values())
    print(f"sweep benchmark: {runs} runs of rag_query ({len(points)} grid points x {replications} replications), "
          f"median of {repeat}")
    print(f"  serial           {serial:7.3f} s   {runs / serial:7.1f} runs/s")
    print(f"  local pool (2)   {pooled:7.3f} s   {runs / pooled:7.1f} runs/s")
    if distributed:
        dasked = median["dask"]
        print(f"  dask local (2)   {dasked:7.3f} s   {runs / dasked:7.1f} runs/s   "
              f"(cluster start-up {startup:.3f} s, not included)")
    print(f"  speed-up {serial / pooled:.2f}x (target >= 1.7x on 2 cores)")
    if distributed:
        print(f"  dask overhead vs local pool: {dasked / pooled:.2f}x the pool's time; "
              f"identical table: {frames['dask'].equals(frames['serial'])}")
    else:
        print("  dask: skipped (dask.distributed is not installed)")
    print(f"  identical tables: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
