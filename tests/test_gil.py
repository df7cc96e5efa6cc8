"""The GIL model against measurements of real CPython 3.11 threads (../shared/research/asyncio-and-gil.md).

K threads each run n × (CPU burst c, then sleep s). The research measured real T_total and also simulated
CPython's GIL rule (FIFO waiters; a waiter that sees no switch for 5 ms forces a drop) in a separate DES.
Our engine implements the same rule, so it must reproduce that DES, and it inherits its distance from the
real runs (0.3–7%, always a little fast: sleep overshoot and thread start costs are not in the ideal model).
"""

from __future__ import annotations

import pytest

import asyncsim as a

# K, n, c_eff (s), s (s), measured T_total (s), reference-DES error (measured/predicted - 1, %)
ROWS = [
    (4, 50, 1.99e-3, 10e-3, 0.617, 1.9),
    (4, 50, 5.16e-3, 5e-3, 1.045, 0.3),
    (8, 40, 2.00e-3, 10e-3, 0.665, 2.3),
    (8, 40, 4.07e-3, 4e-3, 1.347, 3.1),
    (16, 20, 0.94e-3, 20e-3, 0.463, 7.0),
    (2, 50, 9.52e-3, 10e-3, 0.995, 0.5),
    (4, 20, 17.8e-3, 20e-3, 1.515, 1.2),
]


def _cpu_sleep_threads(k: int, n: int, c: float, s: float) -> a.Workload:
    steps = []
    for _ in range(n):
        steps += [a.cpu(c), a.io(s)]
    return a.Workload(name="gil", arrivals=a.Batch(count=k), task=tuple(steps), strategy=f"threads:{k}")


@pytest.mark.parametrize(("k", "n", "c", "s", "measured", "des_error_pct"), ROWS)
def test_gil_rule_reproduces_reference_des_and_stays_near_real_runs(k, n, c, s, measured, des_error_pct):
    predicted = a.simulate(_cpu_sleep_threads(k, n, c, s)).t_total
    reference_des = measured / (1 + des_error_pct / 100)
    # the published figures are rounded to 0.1% and 1 ms: agree with the reference DES to 0.3%
    assert predicted == pytest.approx(reference_des, rel=3e-3)
    # and the ideal model is never slower than reality, and at most 8% faster
    assert 0 <= measured / predicted - 1 <= 0.08


def test_pure_cpu_threads_serialise_on_the_gil():
    # K × 0.25 s of CPU took 0.242 / 0.517 / 1.061 s for K = 1 / 2 / 4 in the real measurement
    for k in (1, 2, 4):
        w = a.Workload(arrivals=a.Batch(count=k), task=(a.cpu(0.25),))
        assert a.simulate(w, strategy=f"threads:{k}").t_total == pytest.approx(0.25 * k)


def test_without_a_gil_threads_use_all_cores():
    w = a.Workload(arrivals=a.Batch(count=4), task=(a.cpu(0.25),), machine=a.Machine(cores=2, gil=False))
    assert a.simulate(w, strategy="threads:4").t_total == pytest.approx(0.5)


def test_switch_interval_slices_competing_cpu_bursts():
    w = a.Workload(arrivals=a.Batch(count=2), task=(a.cpu(0.05),))
    trace = a.simulate(w, strategy="threads:2").trace.to_frame()
    first = trace[(trace.kind == "cpu") & (trace.task == 0)].iloc[0]
    # thread 0 started at 0 and was forced to hand over every 5 ms, so it finishes just before thread 1
    assert first.start == 0
    assert first.end == pytest.approx(0.095)
    assert first.cpu_s == pytest.approx(0.05)


def test_an_executor_thread_keeps_the_gil_for_its_next_job():
    """Two 20 ms CPU steps offloaded to one worker thread sharing the loop's GIL. The worker takes the second job
    as soon as the first ends, still holding the GIL (ThreadPoolExecutor's work_queue.get() does not block), so the
    loop thread resuming the first task waits for a forced switch: one switch interval (5 ms)."""
    w = a.Workload(arrivals=a.Batch(count=2), task=(a.cpu(0.020),), strategy="asyncio+threads:1")
    r = a.simulate(w, seed=0)
    assert sorted(r.done) == pytest.approx([0.025, 0.040])
    # without a job waiting, the worker drops the GIL at once and the loop resumes the task on time
    alone = a.simulate(w.evolve(arrivals=a.Batch(count=1)), seed=0)
    assert alone.done[0] == pytest.approx(0.020)
