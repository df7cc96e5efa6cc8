"""Pipelines predicted against real runs: parse (CPU) → embed (a batched service call) → upsert (I/O), joined
by bounded queues small enough that backpressure shapes the run, under asyncio with and without `max_wait`,
with an admission limit and with CPU offload; and a review loop with stage queue policies (edf, lifo), a
feedback loop back to parse and a stage holding a pool slot across its put (`hold`).

Bar (as the validation suite's): the replayed prediction within 5% of the measured T_total and 10% of the
measured mean concurrency; the per-stage throughput and the bottleneck stage agree; each real run ≤ ~3 s.
Cases that cannot meet it on this machine are listed in KNOWN_LIMITS with their measured error range.
"""

from __future__ import annotations

import numpy as np
import pytest

import asyncsim as a
from asyncsim.trace import K_STAGE, ResourceId

from .conftest import validated

pytestmark = pytest.mark.validation


def ingest(*, max_wait: float | None = None, count: int = 240) -> a.Workload:
    """The embed stage is the bottleneck: 2 service slots × batches of 8 in 0.062 s ≈ 258 items/s, against
    ~650/s for parse (1.5 ms of CPU on the loop) and 800/s for upsert (8 workers × 10 ms)."""
    embed: dict = {"steps": [{"call": "embedder"}], "workers": 3, "batch": 8, "queue": 8}
    if max_wait is not None:
        embed["max_wait"] = max_wait
    return a.Workload.from_dict({
        "name": "ingest" if max_wait is None else "ingest-max-wait",
        "arrivals": {"batch": count},
        "stages": {
            "parse": {"steps": [{"cpu": {"gamma": {"mean": 0.0015, "cv": 0.2}}}], "queue": 4},
            "embed": embed,
            "upsert": {"steps": [{"io": 0.01}], "workers": 8, "queue": 4},
        },
        "services": {"embedder": {"latency": 0.03, "per_item": 0.004, "concurrency": 2}},
    })


def trickle() -> a.Workload:
    """Poisson arrivals below capacity: max_wait decides the batch sizes (and so the service time)."""
    return ingest(max_wait=0.02).evolve(name="ingest-poisson", arrivals=a.Poisson(rate=150, count=150))


# Measured on this machine (2 cores, CPython 3.11, idle), replayed T_total error over 1-3 runs per case
# (`python -m pytest tests/validation/test_pipeline.py`): asyncio -0.4% to 0%, asyncio:40 -0.9% to -0.1%,
# +threads:2 -1.5% to -0.1%, +processes:2 -3.6% to -1.0%, max_wait asyncio -2.7% to +0.1%, max_wait
# +threads:2 -1.1% to -0.3%, Poisson with max_wait -0.2% to +0.4%; mean concurrency within ±2.1%. No case
# needs an exception.
KNOWN_LIMITS: dict[tuple[str, str], tuple[str, float]] = {}

CASES = [
    (ingest, "asyncio"), (ingest, "asyncio:40"), (ingest, "asyncio+threads:2"), (ingest, "asyncio+processes:2"),
    (lambda: ingest(max_wait=0.003), "asyncio"), (lambda: ingest(max_wait=0.003), "asyncio+threads:2"),
    (trickle, "asyncio"),
]
IDS = ["ingest-asyncio", "ingest-asyncio:40", "ingest-threads", "ingest-processes", "max_wait-asyncio",
       "max_wait-threads", "poisson-max_wait"]


def review(*, count: int = 200, poisson: bool = False) -> a.Workload:
    """parse (1 ms CPU) → check (10 workers × 50 ms, edf; 30% of items go back to parse, at most twice) → store
    (lifo, each worker holding one of 2 db slots until its put is done). check is the bottleneck: ~270 visits
    at 200/s against store's 500/s (2 slots × 4 ms)."""
    arrivals = {"poisson": {"rate": 150, "count": count}} if poisson else {"batch": count}
    return a.Workload.from_dict({
        "name": "review-poisson" if poisson else "review",
        "arrivals": arrivals,
        "pools": {"db": 2},
        "stages": {
            "parse": {"steps": [{"cpu": {"gamma": {"mean": 0.001, "cv": 0.2}}}]},
            "check": {"steps": [{"io": 0.05}], "workers": 10, "queue": 8, "policy": "edf",
                      "feedback": {"to": "parse", "probability": 0.3, "max_passes": 2}},
            "store": {"steps": [{"io": 0.004}], "workers": 4, "queue": 4, "policy": "lifo", "hold": "db"},
        },
    })


# Measured on this machine (2 cores, CPython 3.11), replayed T_total error over 3 runs per case: batch asyncio
# -3.7% to -1.4%, batch +threads:2 -2.0% to -1.3%, Poisson asyncio -3.0% to -1.0%, Poisson +threads:2 -1.7% to
# -1.5%; mean concurrency within ±0.6% (batch) and -5.7% to -1.6% (Poisson). The prediction is a little short
# because a loaded loop overshoots each 50 ms sleep by ~0.5-1 ms more than the calibrated (idle) overshoot; with
# 20 ms sleeps at the bottleneck that grows to -4% to -7%, so check's sleeps are kept long.
REVIEW_CASES = [(review, "asyncio"), (review, "asyncio+threads:2"),
                (lambda: review(poisson=True), "asyncio"), (lambda: review(poisson=True), "asyncio+threads:2")]
REVIEW_IDS = ["review-asyncio", "review-threads", "review-poisson-asyncio", "review-poisson-threads"]


@pytest.mark.parametrize(("make", "strategy"), REVIEW_CASES, ids=REVIEW_IDS)
def test_stage_policies_feedback_and_hold_match_real_runs(make, strategy, profile):
    workload = make()
    v = validated(workload, strategy, profile, time_scale=1.0)
    measured, replayed = v.measured, v.replayed
    assert measured.completed == measured.tasks == replayed.completed
    visits = measured.tasks + int(a.build_scenario(workload, strategy=strategy).returns.sum())
    for name in ("parse", "check"):
        assert measured.stages[name].items == replayed.stages[name].items == visits
    assert measured.bottleneck == replayed.bottleneck == "check"
    db_measured, db_replayed = (r.resources[ResourceId("pool", "db")].utilization for r in (measured, replayed))
    assert 0 < db_replayed < 1
    assert db_replayed == pytest.approx(db_measured, abs=0.1)


@pytest.mark.parametrize(("make", "strategy"), CASES, ids=IDS)
def test_pipeline_prediction_matches_real_run(make, strategy, profile):
    workload = make()
    known = KNOWN_LIMITS.get((workload.name, strategy))
    v = validated(workload, strategy, profile, time_scale=1.0, t_total_tol=known[1] if known else 0.05,
                  concurrency_tol=0.20 if known else 0.10)
    measured, replayed = v.measured, v.replayed
    assert measured.completed == measured.tasks == replayed.completed
    assert set(measured.stages) == {"parse", "embed", "upsert"}
    assert measured.bottleneck == replayed.bottleneck
    for name, stage in measured.stages.items():
        assert stage.items == replayed.stages[name].items == measured.tasks
        assert replayed.stages[name].throughput == pytest.approx(stage.throughput, rel=0.05), name


def test_a_failing_batch_fails_all_its_items_and_the_rest_flows_on():
    w = ingest(count=24)
    sc = a.build_scenario(w, strategy="asyncio")
    embed = next(n for n in sc.programs[0].steps if n.name == "embed").body[0]

    calls: list[int] = []

    def fail_the_second_batch(task, node):
        if node is embed:
            calls.append(task)
            if len(calls) == 2:
                raise RuntimeError("embedder unavailable")

    out = a.run_real(sc, time_scale=0.5, cpu_rate=1e7, on_step=fail_the_second_batch)
    failed = set(np.flatnonzero(out.failed).tolist())
    leader = calls[1]
    stage = out.trace.code(ResourceId("stage", "embed"))
    led = (out.trace.kind == K_STAGE) & (out.trace.resource == stage) & (out.trace.task == leader)
    assert out.trace.cpu_s[led].tolist() == [len(failed)]  # the whole batch failed, nothing else
    assert leader in failed
    assert len(failed) > 1
    assert set(out.errors) == failed
    assert all(e == "RuntimeError: embedder unavailable" for e in out.errors.values())
    assert not np.isnan(out.done).any()
    upsert = (out.trace.kind == K_STAGE) & (out.trace.resource == out.trace.code(ResourceId("stage", "upsert")))
    assert sorted(out.trace.task[upsert].tolist()) == sorted(set(range(24)) - failed)
