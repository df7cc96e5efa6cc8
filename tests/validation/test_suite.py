"""The validation suite: every strategy on I/O-bound, CPU-bound, mixed, pool, service, parallel, limited
and offloaded workloads, predicted against real runs of the same draws.

Bar: the replayed prediction (measured CPU durations, calibrated overheads) within 5% of the measured
T_total and 10% of the measured mean concurrency, and the nominal prediction within 8% (NOMINAL) on a run whose
CPU held its calibrated speed; each real run ≤ 3 s. Where a strategy cannot meet it on
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


offload0_5ms, offload5ms, offload20ms = _offloading(0.0005), _offloading(0.005), _offloading(0.02)


# Measured on this machine (2 cores, CPython 3.11, idle): the replayed prediction of these cases is off by
# more than 5% in some runs — the loop thread and many executor threads, or the process pool's parent threads
# on saturated cores, hand work over in ways the model does not follow to the last millisecond.
# Each entry: the T_total error range measured over repeated runs, and the bound this test holds it to.
KNOWN_LIMITS = {
    # the parent starts each branch thread (Thread.start() waits until the child runs) and pool workers keep the
    # GIL between tasks (sim/engine.py _fork_branches, _finish): +13%..+22% before, -2%..+10% after (median +0.4%)
    ("parallel", "threads:8"): ("-2% to +10% (16 fan-out threads, 2 ms CPU bursts; was +13% to +22%)", 0.15),
    # the loop thread vs four executor threads: -15%..-29% originally, -0.3%..-7% (median -3.7%) since forced
    # switches go to the requester and the executor starts its threads on demand; -9%..+8% on eight recorded runs
    # since the loop's timers wake on select()'s grid and the loop races a worker at its self-pipe write; -14%..+3%
    # on ten runs replayed with the evening's rules (the GIL's waiters woken in turn, the executor's per-job costs);
    # -22%..+6% on nine runs of 2026-12-06, four of them -10%..-22% (the loop waited longer for the GIL in those: a
    # result reached its coroutine 9.6 ms after its job against 5.8); the CI run that day passed it on its attempts
    ("mixed", "asyncio:10+threads:4"): ("-22% to +8% (loop thread vs executor threads; was -15% to -29%)", 0.15),
    # 0.5 ms jobs on 8 threads: the loop thread waits ~4 ms per completion behind the other workers' jobs;
    # -9%..+6% before the same two rules, -4%..+12% after (eight recorded runs)
    ("offload-0.5ms", "asyncio:8+threads:8"): ("-4% to +12% (the loop behind 8 workers' tiny jobs; was -6% to "
                                               "-15%)", 0.20),
    # 0.5 ms jobs on 2 threads (added 2026-12-05): -20%..+1% while the model split the coroutines into cohorts
    # where real runs keep them in lock-step; since a waiting worker takes the GIL at the loop's self-pipe read
    # (Machine.loop_read_handoff_s) -3%..+15% on ten recorded runs of three sets (+15% and +9% in two of them; on
    # 4 threads, -12%..-5% before, -4%..+1% after: within 5%)
    ("offload-0.5ms", "asyncio:8+threads:2"): ("-3% to +15% (the loop and 2 workers hand tiny jobs over; was -20% "
                                               "to +1%)", 0.16),
    # eight threads, 4 ms + 2 ms of CPU around a 40 ms sleep: a step that loses the GIL part way waits longer to get
    # it back in real runs (90th percentile 19.7 ms against 6.9 replayed; 40% of first steps interrupted against
    # 33%), so the model runs fast: -11.2% to +4.2% replayed over 23 recorded runs and validation attempts of
    # 2026-12-05, the nominal to -11% at the calibrated speed (one CI run failed its 5% and 8% bounds in all five
    # attempts). Ordering the GIL's waiters by their latest timed wait (glibc re-queues a timed-out waiter) was tried:
    # this case 5.8% -> 4.5% mean |error|, but 16 fan-out threads 3.3% -> 9.0%; not adopted
    ("mixed", "threads:8"): ("-11% to +4% (a preempted thread waits longer for the GIL among eight)", 0.12),
    # Linux's per-core run queues (Machine.core_balance_s): -4%..-16% by processor sharing over both cores
    ("cpu-bound", "processes:4"): ("-0% to -10%, median -5.6% (4 workers on 2 cores: a core idles while one waits)",
                                   0.12),
}

# the nominal T_total (what users get), judged on runs whose CPU held its calibrated speed (issue 12's target)
NOMINAL = 0.08

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
    (offload0_5ms, "asyncio:8+threads:2", 1.0), (offload0_5ms, "asyncio:8+threads:4", 1.0),
    (offload5ms, "asyncio:8+threads:1", 1.0), (offload5ms, "asyncio:8+threads:2", 1.0),
    (offload5ms, "asyncio:8+threads:4", 1.0),
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
                  concurrency_tol=0.20 if known else 0.10, nominal_tol=max(NOMINAL, tol))
    assert v.measured.completed == v.measured.tasks
    # the paired runs agree on the shape of the run, not just its length
    assert v.measured.concurrency.peak <= v.measured.tasks
