"""`used`: which limit a run actually pressed hardest, named as `bounds` names the limits of its draws."""

from __future__ import annotations

import pytest

import asyncsim as a
from asyncsim.bounds import bounds, used


def _llm(tpm: float, strategy: str) -> a.Workload:
    return a.Workload.from_dict({
        "name": "llm", "arrivals": {"batch": 300}, "task": [{"cpu": 0.002}, {"call": "llm"}],
        "services": {"llm": {"latency": 1.0, "tokens": {"input": 1000, "output": 100},
                             "rate_limit": {"tpm": tpm, "window": 5}, "retry": {"max_retries": 2}}},
        "strategy": strategy})


@pytest.mark.parametrize(("tpm", "binding"), [
    (1e8, "concurrency (asyncio:5)"),        # 5 calls of 1 s: 5 × 1,100 × 60 = 330k tokens a minute asked for
    (200_000, "service llm tpm (server)"),   # less than asked: 429s, and the cap is full of tasks backing off
])
def test_the_limit_a_run_presses_hardest_comes_first(tpm, binding):
    sc = a.build_scenario(_llm(tpm, "asyncio:5"))
    r = a.simulate(sc)
    limits = used(r, sc)
    assert limits[0].name == binding
    assert limits[0].seconds <= 1.05 * r.t_total
    assert {b.name for b in limits} <= {b.name for b in bounds(sc)} | {"longest task", "arrivals"}


def test_a_cpu_bound_loop_binds_and_a_run_that_lost_everything_is_still_measured():
    sc = a.build_scenario(a.Workload(name="cpu", arrivals=a.Batch(count=50), task=(a.cpu(0.01), a.io(0.001))),
                          strategy="asyncio")
    assert used(a.simulate(sc), sc)[0].name == "cpu"
    w = a.Workload.from_dict({"name": "lost", "arrivals": {"batch": 3}, "task": [{"call": "s"}],
                              "services": {"s": {"latency": 0.1, "failures": {"server_error": 1.0},
                                                 "retry": {"policy": "none"}}}})
    sc = a.build_scenario(w)
    r = a.simulate(sc)
    assert r.completed == 0
    # T_total runs to the last task that finished, failed or not: three 0.1 s calls at once
    assert used(r, sc)[0].name == "longest task"
