"""Adaptive replications (issue 16): run, sweep and plan replicate until the figures that matter are settled."""

from __future__ import annotations

import json

import pytest

import asyncsim as a
from asyncsim.api import relative_half_width, replicate, replicate_until
from asyncsim.cli import main
from asyncsim.plan import parse_slo, parse_vary, plan
from asyncsim.sweep import sweep


def _noisy() -> a.Workload:
    """40 waits of a lognormal length (cv 0.5) under a limit: T_total varies from seed to seed."""
    return a.Workload(name="noisy", arrivals=a.Batch(count=40),
                      task=(a.cpu(0.001), a.io(a.Lognormal(mean=0.1, cv=0.5))), strategy="asyncio:4")


def _raw() -> dict:
    return {"name": "noisy", "arrivals": {"batch": 40},
            "task": [{"cpu": 0.001}, {"io": {"lognormal": {"mean": 0.1, "cv": 0.5}}}], "strategy": "asyncio:4"}


def test_run_replicates_until_the_precision_and_says_why():
    found = replicate_until(_noisy(), precision=0.05, max_replications=64, replications=4)
    n = len(found.runs)
    assert n in (8, 16, 32, 64)  # 4, then doubling
    assert relative_half_width([r.t_total for r in found.runs]) <= 0.05
    assert max(relative_half_width([r.t_total for r in found.runs[: n // 2]]),
               relative_half_width([r.latency.p99 for r in found.runs[: n // 2]])) > 0.05  # the first round within
    assert found.stopped.startswith("t_total and latency_p99 within ±5.0%")
    # the same seeds as a fixed number of replications: the result depends on the seed alone
    assert [r.t_total for r in found.runs] == [r.t_total for r in replicate(_noisy(), replications=n).runs]
    capped = replicate_until(_noisy(), precision=0.001, max_replications=8, replications=4)
    assert len(capped.runs) == 8
    assert capped.stopped.startswith("the maximum of 8 replications (t_total ±")
    exact = replicate_until(a.Workload(arrivals=a.Batch(count=5), task=(a.io(0.1),)), precision=0.01)
    assert len(exact.runs) == 4  # nothing varies: settled at once
    assert json.loads(json.dumps(found.to_dict()))["stopped"] == found.stopped


def test_plan_replicates_more_only_where_a_decision_is_open():
    slo = [parse_slo("t_total < 1.4s")]
    fixed = plan(_raw(), vary=parse_vary("strategy=asyncio:1..8"), slos=slo, replications=5)
    adaptive = plan(_raw(), vary=parse_vary("strategy=asyncio:1..8"), slos=slo, replications=5, max_replications=40)
    runs = {p.param: p.replications for p in adaptive.curve}
    assert min(runs.values()) == 5  # settings far from the deadline stop at the first round
    assert max(runs.values()) > 5  # the one near it gets more
    for p in adaptive.curve:
        assert p.stopped.startswith(("settled after", "the maximum of 40"))
        bound, opposite = p.high["t_total"], p.low["t_total"]
        if p.stopped.startswith("settled"):  # met at its bound, or missed even at the opposite one
            assert bound < 1.4 or opposite >= 1.4
    assert adaptive.runs == sum(runs.values())
    assert adaptive.runs < 40 * len(runs)
    assert fixed.runs == 5 * len(fixed.curve)
    again = plan(_raw(), vary=parse_vary("strategy=asyncio:1..8"), slos=slo, replications=5, max_replications=40)
    assert again.to_dict() == adaptive.to_dict()  # same seed, same plan
    precise = plan(_raw(), vary=parse_vary("strategy=asyncio:1..8"), slos=slo, replications=5, precision=0.02)
    assert all("t_total within ±2.0%" in p.stopped or p.stopped.startswith("the maximum") for p in precise.curve)


def test_sweep_replicates_each_point_until_it_is_precise_serial_or_parallel():
    points = [{"strategy": f"asyncio:{k}"} for k in (1, 4, 16)]
    frame = sweep(_raw(), points, replications=4, precision=0.05)
    counts = frame.groupby("point").size().to_dict()
    assert set(frame.attrs["stopped"]) == {0, 1, 2}
    for index, count in counts.items():
        assert count in (4, 8, 16, 32, 64)
        values = frame[frame.point == index].t_total.to_numpy()
        stopped = frame.attrs["stopped"][index]
        assert relative_half_width(values) <= 0.05 or stopped.startswith("the maximum")
    assert len(set(counts.values())) > 1  # the points need different numbers of runs
    parallel = sweep(_raw(), points, replications=4, precision=0.05, workers=2)
    assert parallel.equals(frame)
    assert parallel.attrs["stopped"] == frame.attrs["stopped"]


def test_the_commands_take_precision(tmp_path, capsys):
    model = tmp_path / "noisy.yaml"
    model.write_text(json.dumps(_raw()))
    assert main(["run", str(model), "--precision", "5%", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["replications"] >= 8
    assert data["stopped"].startswith("t_total and latency_p99 within ±5.0%")
    assert main(["sweep", str(model), "--set", "strategy=asyncio:{1,4}", "-r", "4", "--precision", "5%"]) == 0
    assert "runs" in capsys.readouterr().out
    assert main(["plan", str(model), "--vary", "strategy=asyncio:1..8", "--slo", "t_total < 1.4s",
                 "--max-replications", "40"]) == 0
    assert "runs in all" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # argparse's own error, with the usage
        main(["run", str(model), "--precision", "150%"])
    assert "argument --precision: must be between 0 and 100% (got 150%)" in capsys.readouterr().err
    assert main(["plan", str(model), "--vary", "strategy=asyncio:1..8", "--slo", "t_total < 1.4s", "-r", "9",
                 "--max-replications", "4"]) == 2
    assert "--max-replications: must be >= --replications (9)" in capsys.readouterr().err
