"""Scheduling policies predicted against real runs of the same draws (issue 6).

Two classes with their own arrivals share a bottleneck: `interactive` (priority 0, 40 ms of work, due 0.1 s
after it arrives, one every 60 ms) and `batch` (priority 1, ~100 ms, due after 1 s, 20 at t = 0). The
bottleneck is the asyncio admission limit or a thread pool's workers, a pool, a service's queue (plain or
preemptive priority) or a client rate limiter, with lifo, priority, sjf, fair or edf. Bar, beyond the
suite's (replayed T_total within 5%, mean concurrency within 10%):

* each class's mean latency within 10% of the replayed prediction;
* deadlines missed per class within DEADLINE_TOL tasks (a latency near the deadline tips either way);
* the policy worked for real: the measured interactive latency is under half of what FIFO would give;
* where the order is deterministic (everything queued at t = 0, one slot) the completion order is the
  predicted one, and not the arrival order.

A run that misses is measured again (conftest.ATTEMPTS), with every attempt's errors in the failure.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import asyncsim as a
from asyncsim.validate import Validation, validate

from .conftest import ATTEMPTS

pytestmark = pytest.mark.validation

LATENCY_TOL = 0.10


def DEADLINE_TOL(n: int) -> int:  # noqa: N802 - a tolerance, named like the others
    """Deadlines a class of n tasks may miss more or fewer than predicted (measured: 0 to 3 of 25)."""
    return max(2, round(0.15 * n))


def _lognormal(mean: float) -> dict[str, Any]:
    return {"lognormal": {"mean": mean, "cv": 0.3}}


def shared(where: str, policy: Any) -> a.Workload:
    """Interactive requests and a batch backfill sharing one bottleneck (`where`) ordered by `policy`."""
    def steps(work: Any) -> list[dict[str, Any]]:
        if where in ("service", "limiter"):
            return [{"cpu": 0.0002}, {"call": "api"}]
        inner = [{"io": work}]
        return [{"cpu": 0.0002}, *([{"use": {"pool": "db", "steps": inner}}] if where == "pool" else inner)]

    data: dict[str, Any] = {
        "name": f"{where}-{policy if isinstance(policy, str) else 'preemptive'}",
        "tasks": [{"name": "interactive", "priority": 0, "deadline": 0.1, "steps": steps(0.04),
                   "arrivals": {"uniform": {"interval": 0.06, "count": 25}}},
                  {"name": "batch", "priority": 1, "deadline": 1.0, "steps": steps(_lognormal(0.1)),
                   "arrivals": {"batch": 20}}]}
    if where == "admission":
        data["policy"] = policy
    elif where == "pool":
        data["pools"] = {"db": {"capacity": 2, "policy": policy}}
    elif where == "service":
        data["services"] = {"api": {"latency": _lognormal(0.05), "concurrency": 2, "policy": policy}}
    else:
        data["services"] = {"api": {"latency": _lognormal(0.05),
                                    "client_limit": {"rpm": 1800, "burst_requests": 1, "policy": policy}}}
    return a.Workload.from_dict(data)


PREEMPTIVE = {"priority": {"preemptive": True}}

# (where, policy, strategy): the admission limit is asyncio:2 or two worker threads; elsewhere every task
# runs at once (asyncio, or a thread each) and waits at the pool, the service or the limiter
CASES = [
    *[("admission", p, s) for p in ("lifo", "priority", "sjf", "fair", "edf") for s in ("asyncio:2", "threads:2")],
    *[("pool", p, s) for p in ("priority", "fair", "edf") for s in ("asyncio", "threads:45")],
    *[("service", p, s) for p in ("priority", PREEMPTIVE) for s in ("asyncio", "threads:45")],
    *[("limiter", "priority", s) for s in ("asyncio", "threads:45")],
]

# Cases that cannot meet the bar on this machine: (case, strategy) -> (measured range, T_total bound,
# per-class latency bound). Measured on 2 cores, CPython 3.11, idle, over 6 runs.
KNOWN_LIMITS: dict[tuple[str, str], tuple[str, float, float]] = {
    # one task at a time through a process pool: the parent learns of a completion on the pool's result
    # thread and a feeder thread submits the next task, a round trip the model's dispatch cost leaves out
    ("order-priority", "processes:1"): ("T_total -5% to -9%, bulk latency -5% to -10% (model too fast)",
                                        0.12, 0.15),
}


def problems(v: Validation, *, latency_tol: float = LATENCY_TOL, t_total_tol: float = 0.05) -> list[str]:
    """What keeps a run from the bar (empty when it meets it)."""
    out = []
    err = v.replay_error
    if abs(err["t_total"]) > t_total_tol or abs(err["concurrency_mean"]) > 0.10:
        out.append(f"T_total {err['t_total']:+.1%} / concurrency {err['concurrency_mean']:+.1%}")
    for name, real in v.measured.classes.items():
        model = v.replayed.classes[name]
        rel = (model.latency.mean - real.latency.mean) / real.latency.mean
        if abs(rel) > latency_tol:
            out.append(f"{name} mean latency {rel:+.1%}")
        missed, predicted = real.deadline_missed or 0, model.deadline_missed or 0
        if abs(missed - predicted) > DEADLINE_TOL(real.tasks):
            out.append(f"{name} missed {missed} deadlines, predicted {predicted}")
    return out


def validated_policy(workload: a.Workload, strategy: str, profile: Any, *, latency_tol: float = LATENCY_TOL,
                     t_total_tol: float = 0.05, extra: Any = None) -> Validation:
    """Validate until the run meets the bar (plus `extra(v)`'s problems), or fail with every attempt's."""
    seen = []
    for _ in range(ATTEMPTS):
        v = validate(workload, strategy=strategy, seed=0, time_scale=1.0, profile=profile)
        found = problems(v, latency_tol=latency_tol, t_total_tol=t_total_tol) + (extra(v) if extra else [])
        if not found:
            return v
        seen.append("; ".join(found))
    pytest.fail(f"{workload.name} under {strategy}: off in every attempt: " + " | ".join(seen))


@pytest.mark.parametrize(("where", "policy", "strategy"), CASES,
                         ids=[f"{w}-{p if isinstance(p, str) else 'preemptive'}-{s}" for w, p, s in CASES])
def test_policy_prediction_matches_real_run(where, policy, strategy, profile):
    workload = shared(where, policy)
    known = KNOWN_LIMITS.get((workload.name, strategy))
    t_tol, l_tol = known[1:] if known else (0.05, LATENCY_TOL)
    v = validated_policy(workload, strategy, profile, t_total_tol=t_tol, latency_tol=l_tol)
    assert v.measured.completed == v.measured.tasks == 45
    # the policy worked for real: under FIFO the interactive requests would wait behind the batch backlog
    fifo = a.simulate(shared(where, "fifo"), strategy=strategy, seed=0)
    assert v.measured.classes["interactive"].latency.mean < 0.5 * fifo.classes["interactive"].latency.mean


def queued_at_once(policy: str) -> a.Workload:
    """Two classes queued at t = 0 for one slot; the first class is the long, less urgent, less due one, so
    every policy but fifo serves them out of arrival order (fair: alternately)."""
    return a.Workload.from_dict({
        "name": f"order-{policy}", "policy": policy,
        "tasks": [{"name": "bulk", "priority": 1, "deadline": 2.0, "arrivals": {"batch": 8},
                   "steps": [{"cpu": 0.0002}, {"io": _lognormal(0.04)}]},
                  {"name": "urgent", "priority": 0, "deadline": 0.5, "arrivals": {"batch": 8},
                   "steps": [{"cpu": 0.0002}, {"io": _lognormal(0.02)}]}]})


ORDER_CASES = [(p, s) for p in ("lifo", "priority", "sjf", "fair", "edf") for s in ("asyncio:1", "threads:1")]
ORDER_CASES += [("priority", "sequential"), ("priority", "processes:1")]


@pytest.mark.parametrize(("policy", "strategy"), ORDER_CASES, ids=[f"{p}-{s}" for p, s in ORDER_CASES])
def test_completion_order_is_the_predicted_one(policy, strategy, profile):
    def order(result: Any) -> list[int]:
        return np.argsort(result.done, kind="stable").tolist()

    def same_order(v: Validation) -> list[str]:
        real, model = order(v.measured), order(v.replayed)
        return [] if real == model else [f"completion order {real}, predicted {model}"]

    workload = queued_at_once(policy)
    known = KNOWN_LIMITS.get((workload.name, strategy))
    t_tol, l_tol = known[1:] if known else (0.05, LATENCY_TOL)
    v = validated_policy(workload, strategy, profile, t_total_tol=t_tol, latency_tol=l_tol, extra=same_order)
    assert order(v.measured) != list(range(16))  # not served in arrival order


def pool_with_timeout(policy: str) -> a.Workload:
    """12 tasks at once for 2 connections held 100 ms; a wait over 250 ms fails: 6 are served, 6 time out,
    and the policy decides which."""
    return a.Workload.from_dict({
        "name": f"pool-timeout-{policy}", "pools": {"db": {"capacity": 2, "timeout": 0.25, "policy": policy}},
        "tasks": [{"name": "bulk", "priority": 1, "arrivals": {"batch": 8},
                   "steps": [{"use": {"pool": "db", "steps": [{"io": 0.1}]}}]},
                  {"name": "urgent", "priority": 0, "arrivals": {"batch": 4},
                   "steps": [{"use": {"pool": "db", "steps": [{"io": 0.1}]}}]}]})


@pytest.mark.parametrize("strategy", ["asyncio", "threads:12"])
@pytest.mark.parametrize("policy", ["priority", "lifo"])
def test_pool_timeouts_under_a_policy_fail_the_predicted_tasks(policy, strategy, profile):
    def same_failures(v: Validation) -> list[str]:
        real = {k: c.failed for k, c in v.measured.classes.items()}
        model = {k: c.failed for k, c in v.replayed.classes.items()}
        return [] if real == model else [f"failed {real}, predicted {model}"]

    v = validated_policy(pool_with_timeout(policy), strategy, profile, extra=same_failures)
    errors = v.errors_by_task or {}
    assert all(e.startswith("PoolTimeout: no slot of pool 'db'") for e in errors.values())
    # both policies serve the 4 urgent tasks (the last to arrive) and 2 bulk ones; FIFO would fail all urgent
    assert sorted(errors) == [2, 3, 4, 5, 6, 7]
