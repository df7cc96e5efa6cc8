"""Crossover points: hand-made curves, ties and noise, and real sweeps whose crossing is computable by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from asyncsim.curves import Crossover, crossovers, fit_usl, sweep_crossovers
from asyncsim.errors import ModelError
from asyncsim.sweep import summarize, sweep


def _frame(curves: dict[str, list[float]], xs: list[float], ci: dict[str, list[float]] | None = None) -> pd.DataFrame:
    rows = []
    for name, ys in curves.items():
        for k, (xv, y) in enumerate(zip(xs, ys, strict=True)):
            row = {"strategy": name, "x": xv, "t_total_mean": y}
            if ci is not None:
                row["t_total_ci95"] = ci[name][k]
            rows.append(row)
    return pd.DataFrame(rows)


def test_a_linear_crossing_is_interpolated_between_grid_points():
    frame = _frame({"flat": [4.0, 4.0, 4.0], "falling": [6.0, 5.0, 1.0]}, [0.0, 1.0, 2.0])
    (c,) = crossovers(frame, x="x")
    assert c.x == pytest.approx(1.25)  # 5 -> 1 meets 4 a quarter of the way from x=1 to x=2
    assert (c.a, c.b) == ("falling", "flat")  # lower T_total is better: 'falling' overtakes 'flat'
    assert c.value == pytest.approx(4.0)
    assert str(c) == "falling overtakes flat at x=1.25 (t_total 4)"


def test_throughput_crossings_favour_the_higher_curve():
    frame = pd.DataFrame({"strategy": ["a", "a", "b", "b"], "x": [0, 1, 0, 1], "throughput_mean": [1.0, 3.0, 2.0, 2.0]})
    (c,) = crossovers(frame, x="x", metric="throughput")
    assert (c.a, c.b, c.x) == ("a", "b", pytest.approx(0.5))


def test_touching_without_changing_side_is_not_a_crossing_and_a_tie_run_crosses_at_its_start():
    xs = [0.0, 1.0, 2.0, 3.0, 4.0]
    touch = _frame({"a": [1.0, 2.0, 1.0, 2.0, 1.0], "b": [2.0, 2.0, 2.0, 2.0, 2.0]}, xs)
    assert crossovers(touch, x="x") == []
    tie = _frame({"a": [1.0, 2.0, 2.0, 3.0, 3.0], "b": [2.0, 2.0, 2.0, 2.0, 2.0]}, xs)
    (c,) = crossovers(tie, x="x")
    assert c.x == 1.0
    assert (c.a, c.b) == ("b", "a")


def test_differences_inside_the_confidence_intervals_are_ties():
    xs = [0.0, 1.0, 2.0]
    curves = {"a": [1.0, 2.1, 3.0], "b": [2.0, 2.0, 2.0]}
    assert len(crossovers(_frame(curves, xs, {"a": [0.0, 0.0, 0.0], "b": [0.0, 0.0, 0.0]}), x="x")) == 1
    # a's end points are within its CI of b's: nothing is decided, so nothing crosses
    wide = {"a": [1.5, 0.5, 1.5], "b": [0.0, 0.0, 0.0]}
    assert crossovers(_frame(curves, xs, wide), x="x") == []
    assert len(crossovers(_frame(curves, xs, wide), x="x", use_ci=False)) == 1


def test_every_pair_is_checked_and_results_are_ordered_by_x():
    frame = _frame({"a": [0.0, 3.0], "b": [1.0, 1.0], "c": [2.0, 0.0]}, [0.0, 1.0])
    found = crossovers(frame, x="x")
    # a rises 0 -> 3, b stays at 1, c falls 2 -> 0: b passes a at 1/3, c passes a at 0.4 and b at 0.5
    assert [(c.a, c.b) for c in found] == [("b", "a"), ("c", "a"), ("c", "b")]
    assert [c.x for c in found] == pytest.approx([1 / 3, 0.4, 0.5])
    assert all(isinstance(c, Crossover) for c in found)


def test_bad_frames_are_named():
    frame = _frame({"a": [1.0, 2.0]}, [0.0, 1.0])
    with pytest.raises(ModelError, match="no column 'cpu'"):
        crossovers(frame, x="cpu")
    with pytest.raises(ModelError, match=r"4 rows repeat a \(strategy, x\) pair, e.g. strategy=a"):
        crossovers(pd.concat([frame, frame]), x="x")
    with pytest.raises(ModelError, match="must be numeric"):
        crossovers(frame.assign(x=["low", "high"]), x="x")


def _share_points(strategies: list[str], io_shares: list[float], total: float = 0.02) -> list[dict]:
    return [{"strategy": s, "task.0.cpu": (1 - f) * total, "task.1.io": f * total} for s in strategies
            for f in io_shares]


def test_asyncio_overtakes_sequential_where_the_io_pays_for_two_loop_steps():
    # 200 tasks of cpu c then io d, c + d = 20 ms, loop step L = 100 µs. Sequential: 200 × 20 ms = 4 s.
    # asyncio: each task costs the loop c + 2L (a step to start it, one to resume it after its I/O) and the
    # I/O hides behind the other tasks' CPU, so T_total = 200 (c + 2L): equal to 4 s where d = 2L, a share of 1%.
    raw = {"arrivals": {"batch": 200}, "task": [{"cpu": 0.01}, {"io": 0.01}], "machine": {"loop_step_s": 1e-4}}
    points = _share_points(["sequential", "asyncio"], [0.0, 0.005, 0.02, 0.05])
    frame = sweep(raw, points, seed=1)
    frame["io_share"] = [p["task.1.io"] / 0.02 for p in points for _ in range(1)]
    (c,) = crossovers(summarize(frame, ["strategy", "io_share"]), x="io_share")
    assert (c.a, c.b) == ("asyncio", "sequential")
    assert c.x == pytest.approx(0.01, rel=1e-6)
    assert c.value == pytest.approx(4.0, rel=1e-6)


def test_processes_overtake_threads_where_the_gil_becomes_the_bottleneck():
    # 200 tasks, cpu c then io d, c + d = 20 ms, 2 cores with a GIL. processes:2 keep both cores busy:
    # T = 100 × 20 ms = 2 s at any share. threads:8 are GIL-bound once c >= d / 7: T = 200 c + d (the GIL
    # never idles; the last task's I/O comes after), = 199 c + 0.02. Equal at c / 0.02 = 99 / 199.
    raw = {"arrivals": {"batch": 200}, "task": [{"cpu": 0.01}, {"io": 0.01}]}
    cpu_shares = [0.3, 0.4, 0.6, 0.7]
    points = _share_points(["threads:8", "processes:2"], [1 - f for f in cpu_shares])
    summary = summarize(sweep(raw, points, seed=1), ["strategy", "task.0.cpu", "task.1.io"])
    x, _found = sweep_crossovers(summary, ["strategy", "task.0.cpu", "task.1.io"])
    assert x is None  # two numeric parameters vary besides the strategy: not a one-parameter comparison
    (c,) = crossovers(summary, x="task.0.cpu")
    assert (c.a, c.b) == ("processes:2", "threads:8")
    assert c.x / 0.02 == pytest.approx(99 / 199, rel=1e-6)


def test_sweep_crossovers_needs_the_strategy_and_one_numeric_parameter():
    raw = {"arrivals": {"batch": 50}, "task": [{"cpu": 0.01}, {"io": 0.05}]}
    points = [{"strategy": s, "task.1.io": d} for s in ("sequential", "threads:4") for d in (0.0, 0.05)]
    summary = summarize(sweep(raw, points, seed=0), ["strategy", "task.1.io"])
    x, found = sweep_crossovers(summary, ["strategy", "task.1.io"])
    assert x == "task.1.io"
    assert found == []  # threads:4 is never slower than sequential here (no overheads): no crossing
    assert sweep_crossovers(summary[summary["strategy"] == "sequential"], ["strategy", "task.1.io"]) == (None, [])


def test_fit_usl_recovers_parameters() -> None:
    n = np.array([1, 2, 4, 8, 16, 32, 64, 128], dtype=float)
    lambda_, sigma, kappa = 100.0, 0.05, 0.001
    x = lambda_ * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))
    fit = fit_usl(n, x)
    assert fit["lambda_"] == pytest.approx(lambda_, rel=1e-3)
    assert fit["sigma"] == pytest.approx(sigma, rel=1e-2)
    assert fit["kappa"] == pytest.approx(kappa, rel=1e-2)
    assert fit["peak_n"] == pytest.approx(math.sqrt((1 - sigma) / kappa), rel=1e-2)
    with pytest.raises(ModelError, match="at least 3 points"):
        fit_usl([1, 2], [1, 2])


def test_points_that_lose_work_do_not_cross():
    # b is "faster" than a at x = 2 and 3 only because it lost tasks there: no crossover
    frame = pd.DataFrame({"strategy": ["a"] * 3 + ["b"] * 3, "x": [1, 2, 3] * 2,
                          "t_total_mean": [10.0, 10.0, 10.0, 12.0, 4.0, 3.0],
                          "tasks_mean": [100.0] * 6, "completed_mean": [100.0, 100.0, 100.0, 100.0, 60.0, 40.0]})
    assert crossovers(frame, x="x") == []
    (c,) = crossovers(frame, x="x", lossless_only=False)
    assert (c.a, c.b) == ("b", "a")
