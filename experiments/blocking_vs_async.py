"""Blocking vs async: T_total and concurrency of sequential, threads and asyncio as a task's I/O share grows.

    python experiments/blocking_vs_async.py            # writes reports/blocking_vs_async/ (report.md, PNGs, CSV)
    python experiments/blocking_vs_async.py --quick    # a small grid, few replications (used by the tests)

Each of 200 tasks (all arriving at once) does `cpu` seconds of Python work and then waits `io` seconds
(lognormal, cv 0.5), with cpu + io = 20 ms; the I/O share goes from 0 to 1. Pure simulation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _shares as shares

import asyncsim as a
from asyncsim.curves import crossovers
from asyncsim.report import (
    concurrency_figure,
    fmt_s,
    header,
    metadata,
    publish,
    split_figure,
    sweep_figure,
    sweep_table,
)
from asyncsim.sweep import build

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = ["sequential", "threads:4", "threads:32", "asyncio"]
IO_SHARES = [0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0]
QUICK_SHARES = [0.0, 0.01, 0.5, 0.9, 1.0]
PICTURE_SHARE = 0.9  # the point whose concurrency over time is drawn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small grid and 3 replications")
    parser.add_argument("--out", default=str(ROOT / "reports" / "blocking_vs_async"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replications", "-r", type=int, default=None, help="runs per point (default 20, quick 3)")
    parser.add_argument("--workers", "-w", type=int, default=2)
    args = parser.parse_args(argv)
    reps = args.replications or (3 if args.quick else 20)
    tasks = 50 if args.quick else 200
    raw = shares.model(tasks, 0.020, 0.5)
    grid = QUICK_SHARES if args.quick else IO_SHARES
    _frame, summary = shares.run(raw, STRATEGIES, grid, replications=reps, seed=args.seed, workers=args.workers)
    found = crossovers(summary, x="io_share", by="strategy")

    # one point's concurrency over time: the first replication's seed, every strategy
    seed0 = a.replication_seeds(args.seed, reps)[0]
    series = {}
    for strategy in STRATEGIES:
        p = shares.point(raw, strategy, PICTURE_SHARE)
        series[strategy] = a.simulate(build(raw, p), seed=seed0).concurrency_series()

    seq_over = {c.a: c.x for c in found if c.b == "sequential"}
    top = max(x for x in grid if x < 1)
    t_seq, t_async, t_thr4 = (shares.value(summary, s, top) for s in ("sequential", "asyncio", "threads:4"))
    first = min(seq_over.values()) if seq_over else None
    answer = (
        (f"sequential code is fastest only while I/O is under {first:.2%} of a task "
         f"({first * 20e3:.0f} µs of 20 ms: the loop's and the GIL's overheads); beyond that "
         + ", ".join(f"{s} overtakes it at {x:.2%}" for s, x in sorted(seq_over.items(), key=lambda kv: kv[1]))
         if first is not None else "no strategy overtakes sequential code on this grid")
        + f"; at {top:.0%} I/O asyncio finishes the {tasks} tasks {t_seq / t_async:.3g}x faster than sequential "
        f"({fmt_s(t_async)} vs {fmt_s(t_seq)}) while threads:4 stalls at {fmt_s(t_thr4)}, held to 4 tasks at once."
    )
    command = ["python", "experiments/blocking_vs_async.py", *(argv if argv is not None else sys.argv[1:])]
    meta = metadata(command, seed=args.seed)
    lines = header("Blocking vs async: when does asyncio pay off?", meta=meta,
                   question=f"for {tasks} tasks of 20 ms each (Python work, then an I/O wait), how do T_total and "
                            "concurrency under sequential, threads:4, threads:32 and asyncio change as the I/O "
                            "share of a task grows, and where do the strategies cross?",
                   answer=answer[0].upper() + answer[1:])
    lines += [
        "## Model", "",
        f"{tasks} tasks arrive at once; each runs `cpu` seconds of Python, then waits `io` seconds "
        "(lognormal, cv 0.5); cpu + io = 20 ms (mean), and the I/O share is swept from 0 to 1. "
        f"{reps} replications per point (seeds derived from {args.seed}, the same at every point), "
        "95% confidence bands (Student t).", "",
        shares.overheads_line(), "", *shares.yaml_block(raw), "",
        "`task.0.cpu`, `task.1.io` and `strategy` (and the strategy's overheads under `machine`) are set per point "
        "(`asyncsim.sweep.sweep`).", "",
        "## T_total", "",
        "![T_total against the I/O share](t_total.png)", "",
        "Crossovers (linear interpolation between grid points; differences inside the 95% CIs count as ties):", "",
        *(f"- {c}" for c in found), *(["- none"] if not found else []), "",
        "Sequential code pays no overhead but waits for every I/O in turn: its T_total stays at the sum of the "
        "tasks' times. Threads and asyncio overlap the waits and still run the Python one task at a time (one "
        "GIL, one loop): their T_total falls with the CPU share until the threads run out (threads:4 bottoms out "
        f"at {tasks} × 20 ms / 4). Where CPU is all there is, they lose a little to their hand-offs.", "",
        "## Concurrency", "",
        "![mean tasks computing or waiting](active.png)", "",
        "Mean tasks being worked on (computing or waiting on I/O; the rest of the batch is queued). Sequential "
        "code always has one; asyncio has as many as the CPU share lets the loop start.", "",
        "![mean tasks by state](concurrency_split.png)", "",
        f"## Over time, at {PICTURE_SHARE:.0%} I/O", "",
        f"![tasks in flight over time at {PICTURE_SHARE:.0%} I/O](concurrency.png)", "",
        f"One run (seed {seed0}) per strategy: tasks computing, waiting and queued (for a worker, the GIL or the "
        "loop) at each moment.", "",
        "## Numbers", "", *sweep_table(summary, ["strategy", "io_share"]), "",
        "The per-point summary is in [`summary.csv`](summary.csv).",
    ]
    figures = {
        "t_total.png": sweep_figure(summary, x="io_share", hue="strategy", crossings=found,
                                    xlabel="I/O share of a task", ylabel="T_total (s), 95% CI band"),
        "active.png": sweep_figure(summary, x="io_share", hue="strategy", metric="active",
                                   xlabel="I/O share of a task", ylabel="mean tasks computing or waiting",
                                   logy=True),
        "concurrency_split.png": split_figure(summary, x="io_share", hue="strategy", xlabel="I/O share"),
        "concurrency.png": concurrency_figure(series, title=f"Tasks over time at {PICTURE_SHARE:.0%} I/O"),
    }
    return publish(args.out, lines, figures, {"summary.csv": summary.to_csv(index=False)})


if __name__ == "__main__":
    raise SystemExit(main())
