"""The validation suite: every strategy on I/O-bound, CPU-bound, mixed, pool, service, parallel, limited
and offloaded workloads, predicted against real runs of the same draws.

Bar: the replayed prediction (measured CPU durations, calibrated overheads) within 5% of the measured
T_total and 10% of the measured mean concurrency; each real run ≤ 3 s. Where a strategy cannot meet it on
this machine the exception is listed in KNOWN_LIMITS with the measured error (and in the README).
"""

from __future__ import annotations

import pytest

import asyncsim as a

from .conftest import validated

pytestmark = pytest.mark.validation


def io_bound() -> a.Workload:
    return a.Workload(name="io-bound", arrivals=a.Batch(count=120), task=(a.io(a.Lognormal(mean=0.05, cv=0.3)),))


def cpu_bound() -> a.Workload:
    return a.Workload(name="cpu-bound", arrivals=a.Batch(count=40),
                      task=(a.cpu(a.Gamma(mean=0.02, cv=0.2)), a.io(0.01)))


def mixed() -> a.Workload:
    return a.Workload(name="mixed", arrivals=a.Batch(count=80), task=(a.cpu(0.004), a.io(0.04), a.cpu(0.002)))


def pooled() -> a.Workload:
    return a.Workload(name="pool", arrivals=a.Batch(count=60),
                      task=(a.cpu(0.002), a.use("db", [a.io(0.02)])), pools={"db": a.Pool(capacity=5)})


def serviced() -> a.Workload:
    return a.Workload(name="service", arrivals=a.Poisson(rate=150, count=120),
                      task=(a.cpu(0.002), a.call("api")),
                      services={"api": a.Service(latency=a.Exponential(0.02), concurrency=4)})


def fanned() -> a.Workload:
    return a.Workload(name="parallel", arrivals=a.Batch(count=50),
                      task=(a.parallel([a.io(0.03)], [a.io(0.02), a.cpu(0.002)]), a.cpu(0.002)))


def _gathering(branches: int):
    """The issue's ready-queue case: CPU right before a fan-out, so the children's waits start behind the other
    tasks' CPU (their first steps are call_soon'ed), then CPU again; waits spread over 20..60 ms."""
    def make() -> a.Workload:
        waits = [0.02 + 0.04 * k / (branches - 1) for k in range(branches)]
        return a.Workload(name=f"gather-{branches}", arrivals=a.Batch(count=20),
                          task=(a.cpu(0.005), a.parallel(*([a.io(w)] for w in waits)), a.cpu(0.005)))
    make.__name__ = f"gather{branches}"
    return make


gather2, gather3, gather8 = _gathering(2), _gathering(3), _gathering(8)


def _offloading(cpu: float):
    """CPU steps of `cpu` seconds sent to an executor around an I/O wait (thread and process pools of 1-8)."""
    def make() -> a.Workload:
        return a.Workload(name=f"offload-{cpu * 1e3:g}ms", arrivals=a.Batch(count=int(min(120, 2.4 / cpu))),
                          task=(a.cpu(cpu), a.io(0.02), a.cpu(cpu)))
    make.__name__ = f"offload{cpu * 1e3:g}ms".replace(".", "_")
    return make


offload0_5ms, offload20ms = _offloading(0.0005), _offloading(0.02)


# Measured on this machine (2 cores, CPython 3.11, idle): the replayed prediction of these cases is off by
# more than 5% because CPython's GIL is not handed over FIFO — a thread waking from I/O takes a GIL that was
# just released before the queued waiters wake up ("barging"), and executor completions cross threads.
# Each entry: the T_total error range measured over repeated runs, and the bound this test holds it to.
KNOWN_LIMITS = {
    ("parallel", "threads:8"): ("+3% to +22% (model too slow: FIFO GIL hand-off for 16 fan-out threads)", 0.35),
    # the executor thread now keeps the GIL between back-to-back jobs (sim/engine.py _offload): -15%..-29%
    # before, -14%..+2% after (paired replays of the same real runs: median -14.3% -> -9.1%)
    ("mixed", "asyncio:10+threads:4"): ("-14% to +2% (model too fast: loop thread vs executor threads)", 0.25),
    # an offload's round trip in two legs of the parent's CPU (sim/engine.py _offload): -15%..-18% before
    ("mixed", "asyncio:10+processes:2"): ("-8% to -11% (model too fast: the pool's threads under load)", 0.30),
    ("cpu-bound", "asyncio:8+processes:2"): ("-2% to -5% (model too fast: the pool's threads under load)", 0.15),
    # 0.5 ms jobs: the GIL's hand-off between the loop and executor threads dominates (rule 2 of issue 12)
    ("offload-0.5ms", "asyncio:8+threads:1"): ("+8% to +11% (model too slow: GIL hand-off per tiny job)", 0.15),
    ("offload-0.5ms", "asyncio:8+threads:8"): ("-4% to -7% (model too fast: GIL hand-off per tiny job)", 0.10),
    # the loop thread waits for the GIL behind two CPU-bound executor threads: mean 10 ms per wake-up, up to 90 ms
    # (it loses forced switches to the other worker); the model gives it the GIL after one interval (rule 2)
    ("cpu-bound", "asyncio:8+threads:2"): ("-3% to -16% (model too fast: the loop starved of the GIL)", 0.20),
    ("cpu-bound", "processes:4"): ("-5% to -10% (model too fast: 4 workers on 2 cores and the parent)", 0.15),
}

# (workload, strategy, time scale): scales keep every wait >= 2 ms and each real run under ~3 s
CASES = [
    (io_bound, "sequential", 0.25), (io_bound, "threads:16", 1.0), (io_bound, "asyncio", 1.0),
    (io_bound, "asyncio:20", 1.0), (io_bound, "processes:2", 0.25),
    (cpu_bound, "sequential", 1.0), (cpu_bound, "threads:4", 1.0), (cpu_bound, "processes:2", 1.0),
    (cpu_bound, "asyncio", 1.0), (cpu_bound, "asyncio:8+processes:2", 1.0), (cpu_bound, "asyncio:8+threads:2", 1.0),
    (mixed, "sequential", 0.5), (mixed, "threads:8", 1.0), (mixed, "processes:2", 0.5), (mixed, "asyncio", 1.0),
    (mixed, "asyncio:10", 1.0), (mixed, "asyncio:10+threads:4", 1.0), (mixed, "asyncio:10+processes:2", 1.0),
    (pooled, "threads:10", 1.0), (pooled, "asyncio", 1.0), (pooled, "asyncio:8", 1.0),
    (serviced, "threads:8", 1.0), (serviced, "asyncio", 1.0), (serviced, "asyncio:6", 1.0),
    (fanned, "sequential", 0.5), (fanned, "threads:8", 1.0), (fanned, "asyncio", 1.0), (fanned, "asyncio:10", 1.0),
    (gather2, "asyncio:20", 1.0), (gather3, "asyncio:20", 1.0), (gather8, "asyncio:20", 1.0),
    (pooled, "asyncio:20", 1.0),
    (offload0_5ms, "asyncio:8+threads:1", 1.0), (offload0_5ms, "asyncio:8+threads:8", 1.0),
    (offload20ms, "asyncio:8+threads:1", 1.0), (offload20ms, "asyncio:8+threads:8", 1.0),
    (cpu_bound, "processes:1", 1.0), (cpu_bound, "processes:4", 1.0),
    (offload20ms, "asyncio:8+processes:1", 1.0), (offload20ms, "asyncio:8+processes:4", 1.0),
]


@pytest.mark.parametrize(("make", "strategy", "time_scale"), CASES,
                         ids=[f"{m.__name__}-{s}" for m, s, _ in CASES])
def test_prediction_matches_real_run(make, strategy, time_scale, profile):
    workload = make()
    known = KNOWN_LIMITS.get((workload.name, strategy))
    tol = known[1] if known else 0.05
    v = validated(workload, strategy, profile, time_scale=time_scale, t_total_tol=tol,
                  concurrency_tol=0.20 if known else 0.10)
    assert v.measured.completed == v.measured.tasks
    # the paired runs agree on the shape of the run, not just its length
    assert v.measured.concurrency.peak <= v.measured.tasks
