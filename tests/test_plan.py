"""Capacity planning: SLO and --vary parsing, the search against known answers and brute force, max rate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from asyncsim import replication_seeds, simulate
from asyncsim.errors import ModelError
from asyncsim.plan import Slo, find_max_rate, parse_slo, parse_vary, plan, setting
from asyncsim.sweep import build

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
                  replications=2, cost=0.5, objective="smallest")
    assert result.answer == answer
    assert result.value == f"asyncio:{answer}"
    assert result.cost == pytest.approx(0.5 * answer)
    assert result.evaluations < 25  # an 18-point grid and a few bisections, not 512 settings
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
        plan(BATCH, vary=parse_vary("strategy=asyncio:1..8"), slos=[], replications=2, allow_failures=True)


def test_find_max_rate_mm1() -> None:
    """M/M/1 with μ = 10: mean sojourn 1/(μ − λ) = 0.5 s at λ = 8."""
    result = find_max_rate(MM1, slos=[parse_slo("mean < 0.5s")], lo=1.0, hi=20.0, replications=5, seed=0)
    assert result.answer == pytest.approx(8.0, rel=0.10)
    assert result.path == "arrivals.poisson.rate"
    assert result.evaluations <= 22


def test_find_max_rate_needs_poisson() -> None:
    with pytest.raises(ModelError, match=r"needs open Poisson arrivals .* the model has batch"):
        find_max_rate(BATCH, slos=[parse_slo("mean < 1s")], lo=1.0, hi=2.0, replications=2, seed=0)


# ---------------------------------------------------------------------------- lost work and the true optimum

# 150 chat completions against 200k TPM enforced over 10 s windows (charged on max_tokens): up to 9 in flight
# every request fits; from 10 up the bucket runs dry, 429s outlast the 2 retries and tasks are lost, while
# T_total keeps falling. Neither "more is better" nor "the first that meets the deadline" finds the answer.
TPM = {"name": "tpm", "arrivals": {"batch": 150}, "task": [{"cpu": 0.002}, {"call": "llm"}],
       "services": {"llm": {"ttft": {"lognormal": {"mean": 0.4, "cv": 0.5}}, "tpot": 0.02,
                            "tokens": {"input": {"lognormal": {"mean": 800, "cv": 0.3}},
                                       "output": {"lognormal": {"mean": 150, "cv": 0.6}}, "max_tokens": 512},
                            "rate_limit": {"rpm": 500, "tpm": 200000, "window": 10, "count_max_tokens": True},
                            "retry": {"max_retries": 2}}}}


def _brute_force(raw, lo, hi, *, replications, deadline=None, tolerance=0.01):
    """Every setting evaluated: the smallest lossless one (meeting the deadline) within tolerance of the fastest."""
    seeds = replication_seeds(0, replications)
    table = {}
    for k in range(lo, hi + 1):
        workload = build(raw, {"strategy": f"asyncio:{k}"})
        runs = [simulate(workload, seed=s).metrics() for s in seeds]
        table[k] = (np.mean([m["t_total"] for m in runs]), max(m["failed"] for m in runs))
    t_total = {k: t for k, (t, failed) in table.items() if failed == 0 and (deadline is None or t <= deadline)}
    if not t_total:
        return None, table
    best = min(t_total.values())
    return min(k for k, t in t_total.items() if t <= best * (1 + tolerance)), table


def test_plan_under_a_tpm_limit_agrees_with_brute_force():
    answer, table = _brute_force(TPM, 1, 32, replications=3)
    assert answer == 9
    assert table[32][1] > 0  # the fastest setting loses work
    result = plan(TPM, vary=parse_vary("strategy=asyncio:1..32"), slos=[], replications=3)
    assert (result.answer, result.value) == (answer, "asyncio:9")
    assert [str(s) for s in result.slos] == ["failed <= 0"]
    assert result.evaluations < 20  # of 32 settings
    assert "√2 grid" in result.method
    for point in result.curve:  # the curve it walked carries the lost work of every setting
        assert point.mean["failed"] == pytest.approx(np.mean([
            simulate(build(TPM, {"strategy": point.value}), seed=s).failed for s in replication_seeds(0, 3)]))
        assert point.met == (table[point.param][1] == 0)


def test_a_deadline_met_only_by_settings_that_lose_work_has_no_answer():
    # asyncio:11 and up finish within 50 s, but every one of them loses tasks; no lossless setting is that fast
    answer, table = _brute_force(TPM, 1, 32, replications=3, deadline=50)
    assert answer is None
    assert any(t <= 50 for t, _ in table.values())
    result = plan(TPM, vary=parse_vary("strategy=asyncio:1..32"), slos=[parse_slo("t_total <= 50s")],
                  replications=3)
    assert result.answer is None
    # allowing failures, the deadline alone picks the smallest as-fast-as-the-best setting: one that loses work
    loose = plan(TPM, vary=parse_vary("strategy=asyncio:1..32"), slos=[parse_slo("t_total <= 50s")],
                 replications=3, allow_failures=True)
    assert loose.answer is not None
    assert loose.point.mean["failed"] > 0


def test_an_explicit_loss_slo_replaces_the_default():
    result = plan(TPM, vary=parse_vary("strategy=asyncio:1..32"), slos=[parse_slo("failed_fraction <= 5%")],
                  replications=3)
    assert [str(s) for s in result.slos] == ["failed_fraction <= 0.05"]
    assert result.point.high["failed_fraction"] <= 0.05
    assert result.answer > 9  # a little loss buys a faster setting


def test_objectives():
    slos = [parse_slo("t_total <= 10s")]
    vary = parse_vary("strategy=asyncio:1..128")
    fastest = plan(BATCH, vary=vary, slos=slos, replications=1)
    assert fastest.answer == 100  # T_total = ceil(100 / K) is 1 s from K = 100 on: the smallest that fast
    assert plan(BATCH, vary=vary, slos=slos, replications=1, objective="goodput").answer == 100
    assert plan(BATCH, vary=vary, slos=slos, replications=1, objective="smallest").answer == 10
    # a price per unit of the setting and nothing else to pay: the cheapest feasible is the smallest
    cheapest = plan(BATCH, vary=vary, slos=slos, replications=1, objective="cost", cost=2.0)
    assert (cheapest.answer, cheapest.cost) == (10, 20.0)
    with pytest.raises(ModelError, match="--objective cost: the model has no prices"):
        plan(BATCH, vary=vary, slos=slos, replications=1, objective="cost")
    with pytest.raises(ModelError, match="--objective: must be one of t_total, cost, goodput, smallest"):
        plan(BATCH, vary=vary, slos=slos, replications=1, objective="speed")


@pytest.mark.parametrize(
    ("text", "metric", "op", "bound"),
    [
        ("failed < 1", "failed", "<", 1.0),
        ("failed_fraction <= 0.1%", "failed_fraction", "<=", 0.001),
        ("goodput >= 2/s", "goodput", ">=", 2.0),
        ("rate_limited <= 10", "rate_limited", "<=", 10.0),
        ("cost <= 4.5", "cost", "<=", 4.5),
        ("interactive.p99 < 2s", "interactive.p99", "<", 2.0),
        ("backfill.failed <= 0", "backfill.failed", "<=", 0.0),
        ("chat.t_total < 1m", "chat.t_total", "<", 60.0),
    ],
)
def test_parse_slo_on_lost_work_cost_and_classes(text, metric, op, bound):
    slo = parse_slo(text)
    assert (slo.metric, slo.op) == (metric, op)
    assert slo.bound == pytest.approx(bound)


def test_class_slos_are_checked_against_the_model():
    raw = {"arrivals": {"batch": 20}, "tasks": [{"name": "chat", "steps": [{"io": 0.1}]},
                                               {"name": "batch", "steps": [{"io": 1.0}]}]}
    with pytest.raises(ModelError, match=r"--slo chatty.p99 < 1s: unknown class 'chatty' \(chat, batch\)"):
        plan(raw, vary=parse_vary("strategy=asyncio:1..8"), slos=[parse_slo("chatty.p99 < 1s")], replications=1)
    result = plan(raw, vary=parse_vary("strategy=asyncio:1..32"), slos=[parse_slo("chat.p99 <= 0.1s")],
                  replications=1, objective="smallest")
    assert result.answer == 20  # every chat task must start at once: all 20 tasks in flight


def test_an_overloaded_rate_never_meets_a_latency_slo():
    """A finite run at ρ ≥ 1 can end with a small p99; it is no answer: the queue grows without bound."""
    mm1 = {"arrivals": {"poisson": {"rate": 1.0, "count": 300}}, "task": [{"call": "server"}],
           "services": {"server": {"latency": {"exponential": {"mean": 0.1}}, "concurrency": 1}}}
    result = find_max_rate(mm1, slos=[parse_slo("p99 < 1000s")], lo=1.0, hi=40.0, replications=3)
    assert result.answer < 10.0  # μ = 10: every higher rate overloads the server
    for point in result.curve:
        if point.mean["overloaded"] > 0:
            assert not point.met
            assert point.mean["latency_p99"] == math.inf
        else:
            assert point.met
