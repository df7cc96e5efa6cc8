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


def opened() -> a.Workload:
    """Open arrivals to a thread pool: most find a worker asleep on the pool's work queue, which their submit wakes."""
    return a.Workload(name="open", arrivals=a.Poisson(rate=150, count=200), task=(a.cpu(0.002), a.io(0.01)))


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
# more than 5% in some runs — the loop thread and executor threads, or four processes on two cores, hand work over in
# ways that change from one run to the next on this host. Each entry: the T_total error measured over repeated runs
# (replayed, with the rules and calibration of 2026-12-06), the bound this test holds it to, and where it differs
# the nominal's (which carries the CPU's speed of the moment on top).
KNOWN_LIMITS = {
    # the loop thread vs four executor threads: two regimes from run to run (T 590-850 ms), the model between them;
    # where it is off, it is the loop's waits for the GIL (benchmarks/gil_trace.py: three traced runs replayed
    # -1.2%, -0.5%, +1.0%, the loop waiting 52, 57, 46 times against 55, 63, 55 replayed); no steal time (/proc/stat)
    # in either. 43 runs of seven recorded sets, with the work queue's protocol (sim/resources.py WorkQueue):
    # -24.3%..+15.1%, median -5.3%, mean |error| 7.2%, 44% within 5% (the nominal: 7.5% mean |error| over 19 runs at
    # their calibrated speed); a set recorded after: 8 runs, -16.1%..+3.6%, mean |error| 6.6%
    ("mixed", "asyncio:10+threads:4"): ("-24% to +15%, median -5.3% (the real loop waits for the GIL longer: two "
                                        "regimes)", 0.08, 0.12),
    # eight threads, 4 ms + 2 ms of CPU around a 40 ms sleep: the replay holds 5% since the hand-off to a thread whose
    # core idled (Machine.thread_switch_idle_s: 29 runs of five sets, -8.7%..+1.4%, median -1.3%, 6 over 5%; was
    # -11%..+4%); the nominal, CPU-bound through the GIL, carries the CPU's speed on top: -7% to -11% in a minute the
    # host ran 2-7% slow (replayed -1% to -5%), so it is held to 10%
    ("mixed", "threads:8"): ("replayed -9% to +1%, median -1.3%; the nominal carries the CPU's speed", 0.05, 0.10),
    # Linux's per-core run queues (Machine.core_balance_s): -4%..-16% by processor sharing over both cores; 23 runs
    # of five recorded sets: -10.3%..+4.1%, median -3.2%, mean |error| 4.4% (a core idles while a worker waits on
    # the other's run queue, beyond the balancing ticks modelled). The nominal carries the CPU's speed on top of that
    # median: in the whole suite's run on 2026-12-06 (night), five attempts gave -8.1%, -13.4%, -8.9%, -8.7%, -12.0%
    # at CPU speed 0.98, 0.93, 0.97, 0.99, 0.94 (replayed +2.6%, -4.9%, +1.7%, -1.3%, -5.0%); on their own, nine
    # runs -1.4% to -7.9% (mean |error| 5.0%): it is held to 12%
    ("cpu-bound", "processes:4"): ("-10% to +4%, median -3.2% (4 workers on 2 cores: a core idles while one waits)",
                                   0.08, 0.12),
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
    (serviced, "threads:8", 1.0), (serviced, "asyncio", 1.0), (serviced, "asyncio:6", 1.0), (opened, "threads:4", 1.0),
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
    nominal = known[2] if known and len(known) > 2 else tol
    v = validated(workload, strategy, profile, time_scale=time_scale, t_total_tol=tol,
                  concurrency_tol=0.20 if known else 0.10, nominal_tol=max(NOMINAL, nominal))
    assert v.measured.completed == v.measured.tasks
    # the paired runs agree on the shape of the run, not just its length
    assert v.measured.concurrency.peak <= v.measured.tasks
