"""Sweep benchmark: a 200-run sweep on the local process pool with 2 workers vs serially, side by side.

    python benchmarks/bench_sweep.py [--quick]

Prints wall times, the speed-up (target >= 1.7x on 2 cores) and checks that both give the same table.
(The Dask comparison of issue 5 comes with the Dask back end.)
"""

from __future__ import annotations

import argparse
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
    times: dict[int, list[float]] = {1: [], 2: []}
    frames: dict[int, pd.DataFrame] = {}
    for _ in range(repeat):
        for workers in (1, 2):  # alternate, so drift on a shared machine hits both alike
            start = time.perf_counter()
            frames[workers] = sweep(raw, points, replications=replications, seed=1, workers=workers, base_dir=base)
            times[workers].append(time.perf_counter() - start)
    serial, pooled = statistics.median(times[1]), statistics.median(times[2])
    same = frames[1].equals(frames[2])
    print(f"sweep benchmark: {runs} runs of rag_query ({len(points)} grid points x {replications} replications), "
          f"median of {repeat}")
    print(f"  serial           {serial:7.3f} s   {runs / serial:7.1f} runs/s")
    print(f"  local pool (2)   {pooled:7.3f} s   {runs / pooled:7.1f} runs/s")
    print(f"  speed-up {serial / pooled:.2f}x (target >= 1.7x on 2 cores); identical tables: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
