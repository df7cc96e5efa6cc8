"""Capacity planning: SLO and --vary parsing, the search against known answers, max rate, USL fits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from asyncsim.errors import ModelError
from asyncsim.plan import Slo, find_max_rate, fit_usl, parse_slo, parse_vary, plan, setting

BATCH = {"arrivals": {"batch": 100}, "task": [{"io": 1.0}]}  # T_total = ceil(100 / K) under asyncio:K
MM1 = {
    "arrivals": {"poisson": {"rate": 1.0, "count": 2000}},
    "task": [{"call": "server"}],
    "services": {"server": {"latency": {"exponential": {"mean": 0.1}}, "concurrency": 1}},
}


@pytest.mark.parametrize(
    ("text", "metric", "op", "bound"),
    [
        ("p99 < 20s", "p99", "<", 20.0),
        ("p95 <= 500ms", "p95", "<=", 0.5),
        ("t_total < 30m", "t_total", "<", 1800.0),
        ("t_total<2h", "t_total", "<", 7200.0),
        ("throughput >= 40", "throughput", ">=", 40.0),
        ("mean < 2s", "mean", "<", 2.0),
        ("max > 0.5", "max", ">", 0.5),
        ("latency.p50 < 1e-1", "p50", "<", 0.1),
    ],
)
def test_parse_slo(text: str, metric: str, op: str, bound: float) -> None:
    slo = parse_slo(text)
    assert (slo.metric, slo.op) == (metric, op)
    assert slo.bound == pytest.approx(bound)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p99", r"--slo: cannot read 'p99'; expected METRIC OP NUMBER"),
        ("p99 = 2s", r"--slo: cannot read"),
        ("p42 < 2s", r"--slo 'p42 < 2s': unknown metric 'p42'; expected METRIC OP"),
        ("p99 < 2days", r"unknown unit 'days' \(allowed: s, ms, m, h"),
        ("throughput > 4s", r"throughput is tasks per second and takes no unit"),
        ("mean < -1s", r"the bound must be a finite number >= 0"),
    ],
)
def test_parse_slo_errors(text: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        parse_slo(text)


def test_slo_checks_and_prints() -> None:
    slo = parse_slo("p95 <= 500ms")
    assert str(slo) == "p95 <= 0.5s"
    assert slo.met(0.5)
    assert not slo.met(0.51)
    assert not slo.met(math.nan)
    assert not Slo("throughput", ">", 40).met(40)
    assert Slo("throughput", ">=", 40).met(40)
    assert str(parse_slo("throughput >= 40")) == "throughput >= 40"


@pytest.mark.parametrize(
    ("text", "expected", "n", "value"),
    [
        ("strategy=asyncio:1..512", ("strategy", "asyncio:{}", 1, 512), 8, "asyncio:8"),
        ("pools.db=1..64", ("pools.db", "{}", 1, 64), 5, 5),
        ("services.llm.concurrency={1..100}", ("services.llm.concurrency", "{}", 1, 100), 7, 7),
    ],
)
def test_parse_vary(text: str, expected: tuple[str, str, int, int], n: int, value: object) -> None:
    assert parse_vary(text) == expected
    assert setting(expected[1], n) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("strategy", r"--vary: cannot read 'strategy'; expected PATH=VALUE"),
        ("pools.db=5", r"--vary pools.db: no ranges in '5'"),
        ("x=1..2,3..4", r"--vary x: 2 ranges"),
        ("pools.db=9..1", r"the range must go up, got 9..1"),
    ],
)
def test_parse_vary_errors(text: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        parse_vary(text)


@pytest.mark.parametrize(("limit", "answer"), [(10, 10), (7, 15)])
def test_plan_finds_smallest_concurrency(limit: int, answer: int) -> None:
    result = plan(BATCH, vary=parse_vary("strategy=asyncio:1..512"), slos=[parse_slo(f"t_total <= {limit}s")],
                  replications=2, cost=0.5)
    assert result.answer == answer
    assert result.value == f"asyncio:{answer}"
    assert result.cost == pytest.approx(0.5 * answer)
    assert result.evaluations < 20  # galloping + bisection, not 512 runs
    assert result.binding == parse_slo(f"t_total <= {limit}s")
    assert result.margin[f"t_total <= {limit}s"] == pytest.approx(1 - math.ceil(100 / answer) / limit)
    params = [p.param for p in result.curve]
    assert params == sorted(params)
    assert len(params) == result.evaluations
    for point in result.curve:  # deterministic durations: zero-width intervals, met exactly when ceil fits
        assert point.mean["t_total"] == point.low["t_total"] == point.high["t_total"] == math.ceil(100 / point.param)
        assert point.met == (math.ceil(100 / point.param) <= limit)
    assert result.to_dict()["answer"] == answer


def test_plan_unreachable() -> None:
    result = plan(BATCH, vary=parse_vary("strategy=asyncio:1..64"), slos=[parse_slo("t_total < 1s")],
                  replications=2)
    assert result.answer is None
    assert result.value is None
    assert result.cost is None
    assert result.curve[-1].param == 64
    assert not result.curve[-1].met
    assert result.margin["t_total < 1s"] < 0  # ceil(100/64) = 2 s: 100% over


def test_plan_rejects_bad_models_up_front() -> None:
    with pytest.raises(ModelError, match=r"^--vary pools\.db: pools does not exist"):
        plan(BATCH, vary=parse_vary("pools.db=1..8"), slos=[parse_slo("t_total < 5s")], replications=2)
    with pytest.raises(ModelError, match="at least one objective"):
        plan(BATCH, vary=parse_vary("strategy=asyncio:1..8"), slos=[], replications=2)


def test_find_max_rate_mm1() -> None:
    """M/M/1 with μ = 10: mean sojourn 1/(μ − λ) = 0.5 s at λ = 8."""
    result = find_max_rate(MM1, slos=[parse_slo("mean < 0.5s")], lo=1.0, hi=20.0, replications=5, seed=0)
    assert result.answer == pytest.approx(8.0, rel=0.10)
    assert result.path == "arrivals.poisson.rate"
    assert result.evaluations <= 22


def test_find_max_rate_needs_poisson() -> None:
    with pytest.raises(ModelError, match=r"needs open Poisson arrivals .* the model has batch"):
        find_max_rate(BATCH, slos=[parse_slo("mean < 1s")], lo=1.0, hi=2.0, replications=2, seed=0)


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
