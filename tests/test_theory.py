"""Theory: the closed forms themselves, then the simulator against them.

* queues with closed forms (M/M/1, M/M/c by Erlang C, M/D/1 and M/G/1 by Pollaczek–Khinchine, M/M/∞),
  within tolerances derived from the run length;
* Little's law and the computing + waiting + queued identities on every run of several models and
  strategies (exact up to rounding);
* makespan lower bounds (total CPU / usable cores, longest task, held time / slots) and the cases where
  they are attained.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

import asyncsim as a
from asyncsim import theory
from asyncsim.states import state_segments
from asyncsim.trace import ResourceId

# ------------------------------------------------------------------------------------ the formulas


def _erlang_c_exact(c: int, a_num: Fraction) -> Fraction:
    """Erlang C from its textbook definition, in exact rational arithmetic."""
    terms = sum(a_num**k / math.factorial(k) for k in range(c))
    top = a_num**c / math.factorial(c) * c / (c - a_num)
    return top / (terms + top)


def _erlang_b_recursion(c: int, a_load: float) -> float:
    """The classical recursion B(k) = a·B(k−1) / (k + a·B(k−1)), B(0) = 1."""
    b = 1.0
    for k in range(1, c + 1):
        b = a_load * b / (k + a_load * b)
    return b


@pytest.mark.parametrize(("c", "a_load"), [(1, 0.5), (2, 1.0), (3, 2.4), (10, 8.0), (20, 5.5), (50, 49.0)])
def test_erlang_c_matches_its_definition(c, a_load):
    exact = _erlang_c_exact(c, Fraction(a_load).limit_denominator(1000))
    assert theory.erlang_c(c, a_load) == pytest.approx(float(exact), rel=1e-10)


@pytest.mark.parametrize(("c", "a_load"), [(1, 0.3), (5, 4.0), (100, 80.0), (5000, 4900.0), (5000, 6000.0)])
def test_erlang_b_matches_the_recursion(c, a_load):
    assert theory.erlang_b(c, a_load) == pytest.approx(_erlang_b_recursion(c, a_load), rel=1e-9)


def test_erlang_known_values():
    assert theory.erlang_b(2, 1.0) == pytest.approx(0.2)
    assert theory.erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert theory.erlang_b(3, 0.0) == 0.0
    assert theory.erlang_c(3, 0.0) == 0.0
    for rho in (0.1, 0.5, 0.99):  # one server: an arrival waits exactly when the server is busy
        assert theory.erlang_c(1, rho) == pytest.approx(rho)


def test_erlang_c_rises_with_load_towards_one():
    values = [theory.erlang_c(8, a_load) for a_load in np.linspace(0.5, 7.999, 40)]
    assert all(x < y for x, y in itertools.pairwise(values))
    assert values[-1] == pytest.approx(1.0, abs=1e-3)
    assert 0 < theory.erlang_c(2000, 1000.0) < 1e-100  # far from overload: stable, no overflow


@pytest.mark.parametrize(("lam", "mu"), [(0.5, 1.0), (9.0, 10.0), (1e-3, 2.0)])
def test_mmc_with_one_server_is_mm1(lam, mu):
    rho = lam / mu
    assert theory.mm1_mean_sojourn(lam, mu) == pytest.approx(1 / (mu - lam))
    assert theory.mmc_mean_sojourn(lam, mu, 1) == pytest.approx(1 / (mu - lam))
    assert theory.mmc_mean_wait(lam, mu, 1) == pytest.approx(rho / (mu - lam))
    assert theory.mmc_mean_queue(lam, mu, 1) == pytest.approx(rho**2 / (1 - rho))


def test_mmc_known_value():
    # M/M/2, lam = 1, mu = 1: C = 1/3, Wq = C / (2 − 1) = 1/3, W = 4/3
    assert theory.mmc_mean_wait(1.0, 1.0, 2) == pytest.approx(1 / 3)
    assert theory.mmc_mean_sojourn(1.0, 1.0, 2) == pytest.approx(4 / 3)
    # pooling: one queue with c servers beats c separate M/M/1 queues with a c-th of the load each
    assert theory.mmc_mean_sojourn(2.4, 1.0, 3) < theory.mm1_mean_sojourn(0.8, 1.0)


def test_pollaczek_khinchine():
    lam, mean_s = 0.7, 1.0
    rho = lam * mean_s
    # exponential service (var = mean²) gives M/M/1
    assert theory.mg1_mean_sojourn(lam, mean_s, mean_s**2) == pytest.approx(theory.mm1_mean_sojourn(lam, 1 / mean_s))
    # constant service waits half as long as exponential
    assert theory.mg1_mean_wait(lam, mean_s, 0.0) == pytest.approx(theory.mmc_mean_wait(lam, 1 / mean_s, 1) / 2)
    assert theory.md1_mean_sojourn(lam, mean_s) == pytest.approx(mean_s + rho * mean_s / (2 * (1 - rho)))
    # the wait grows linearly in the service variance
    w0, w1, w2 = (theory.mg1_mean_wait(lam, mean_s, v) for v in (0.0, 1.0, 2.0))
    assert w2 - w1 == pytest.approx(w1 - w0)


def test_makespan_bounds():
    assert theory.cpu_bound(10.0, 4) == 2.5
    assert theory.slot_bound(100 * 0.5, 10) == 5.0  # n·io/limit
    assert theory.longest_task_bound([0.1, 3.0, 0.2]) == 3.0
    assert theory.longest_task_bound([]) == 0.0
    assert theory.t_total_lower_bound(total_cpu_s=10.0, usable_cores=4, longest_task_s=3.0) == 3.0
    assert theory.t_total_lower_bound(total_cpu_s=10.0, usable_cores=1, longest_task_s=3.0) == 10.0
    assert theory.t_total_lower_bound(longest_task_s=1.0, total_hold_s=50.0, slots=10) == 5.0
    assert theory.t_total_lower_bound(longest_task_s=1.0, total_hold_s=50.0) == 1.0  # unbounded slots


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: theory.erlang_c(3, 3.0), "unstable queue: offered load a=3.0 must be < c=3"),
        (lambda: theory.erlang_c(0, 0.5), "c \\(servers\\) must be an integer >= 1: 0"),
        (lambda: theory.erlang_c(2.5, 0.5), "c \\(servers\\) must be an integer >= 1: 2.5"),
        (lambda: theory.erlang_b(2, -1.0), "a \\(offered load\\) must be a finite number >= 0: -1.0"),
        (lambda: theory.erlang_b(2, math.nan), "a \\(offered load\\)"),
        (lambda: theory.mmc_mean_wait(2.0, 1.0, 2), "unstable queue"),
        (lambda: theory.mmc_mean_wait(-1.0, 1.0, 2), "lam must be a finite number > 0: -1.0"),
        (lambda: theory.mm1_mean_sojourn(1.0, 0.0), "mu must be a finite number > 0: 0.0"),
        (lambda: theory.mm1_mean_sojourn(1.0, 1.0), "unstable queue"),
        (lambda: theory.mg1_mean_wait(0.5, 1.0, -1.0), "var_s must be a finite number >= 0: -1.0"),
        (lambda: theory.mg1_mean_wait(1.0, 1.0, 0.0), "unstable queue"),
        (lambda: theory.cpu_bound(-1.0, 2), "total_cpu_s must be >= 0: -1.0"),
        (lambda: theory.slot_bound(1.0, 0), "c \\(servers\\) must be an integer >= 1: 0"),
    ],
)
def test_bad_arguments_name_the_value(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ------------------------------------------------------------------------- the simulator vs queues

# Each queueing check averages R independent runs of N Poisson arrivals (seeds from `replicate`) and
# allows a relative error of Z standard errors: rtol = Z · sd1 / sqrt(R), where sd1 is the standard
# deviation of ONE run's mean relative to the theory, measured once over 200 seeds at this N (the numbers
# in QUEUES; e.g. M/M/1 W: sd1 2.3%, so rtol = 4 · 2.3% / sqrt(6) = 3.8%). The runs start empty, which
# biases the mean low; over those 200 seeds every |bias| was below 0.6% of the theory, small against
# every rtol here (>= 1.3%). Z = 4: a correct simulator fails a normal 4-sigma check with probability
# ~6e-5 (the seeds are fixed, so the test is deterministic anyway). Each check also compares the spread
# it saw with sd1, so the tolerance stays honest if a model here is changed.
N = 20_000
R = 6
Z = 4.0


def _queue(lam, steps, *, latency=None, servers=None, pools=None):
    services = {"srv": a.Service(latency=latency, concurrency=servers)} if latency is not None else {}
    return a.Workload(name="queue", arrivals=a.Poisson(rate=lam, count=N), task=steps, services=services,
                      pools=pools or {}, strategy="asyncio")


# name: (workload, strategy, resource whose mean_wait is Wq, W theory, Wq theory, sd1 of W, sd1 of Wq — or
# of the mean in flight L when there is no queue)
SRV = ResourceId("service", "srv")
QUEUES = {
    "M/M/1": (_queue(0.5, (a.call("srv"),), latency=a.Exponential(1.0), servers=1), "asyncio", SRV,
              theory.mm1_mean_sojourn(0.5, 1.0), theory.mmc_mean_wait(0.5, 1.0, 1), 0.023, 0.042),
    "M/M/3 service": (_queue(2.1, (a.call("srv"),), latency=a.Exponential(1.0), servers=3), "asyncio",
                      SRV, theory.mmc_mean_sojourn(2.1, 1.0, 3), theory.mmc_mean_wait(2.1, 1.0, 3),
                      0.031, 0.080),
    "M/D/1": (_queue(0.7, (a.call("srv"),), latency=a.Constant(1.0), servers=1), "asyncio", SRV,
              theory.md1_mean_sojourn(0.7, 1.0), theory.mg1_mean_wait(0.7, 1.0, 0.0), 0.022, 0.040),
    "M/G/1 lognormal": (_queue(0.5, (a.call("srv"),), latency=a.Lognormal(mean=1.0, cv=1.25), servers=1),
                        "asyncio", SRV, theory.mg1_mean_sojourn(0.5, 1.0, 1.25**2),
                        theory.mg1_mean_wait(0.5, 1.0, 1.25**2), 0.038, 0.063),
    "M/M/inf io": (_queue(2.1, (a.io(a.Exponential(1.0)),)), "asyncio", None, 1.0, 0.0, 0.008, 0.011),
}


@pytest.mark.parametrize("name", list(QUEUES))
def test_queue_matches_theory(name):
    workload, strategy, resource, w_theory, wq_theory, sd1_w, sd1_wq = QUEUES[name]
    runs = a.replicate(workload, replications=R, strategy=strategy, seed=2024).runs
    w = np.array([r.latency.mean for r in runs])
    _check_mean(w, w_theory, sd1_w, "mean time in system")
    if resource is not None:
        wq = np.array([r.resources[resource].mean_wait for r in runs])
        _check_mean(wq, wq_theory, sd1_wq, f"mean wait at {resource}")
        # the servers are busy a fraction rho of the time; one run's utilisation is a mean of N service
        # times over N inter-arrival gaps, sd ~ sqrt((1 + cv²)/N) <= 1.1%, below sd1 of W: W's rtol covers it
        lam = workload.arrivals.rate
        rho = lam * (w_theory - wq_theory) / runs[0].resources[resource].capacity
        util = np.array([r.resources[resource].utilization for r in runs])
        assert util.mean() == pytest.approx(rho, rel=Z * sd1_w / math.sqrt(R))
    else:  # no queue at all: every task's latency is its own draw, and L = lam/mu on average
        assert all(r.time_split.queue == 0.0 for r in runs)
        conc = np.array([r.concurrency.mean for r in runs])
        _check_mean(conc, workload.arrivals.rate * w_theory, sd1_wq, "mean in flight")


def _check_mean(values: np.ndarray, expected: float, sd1: float, what: str) -> None:
    rtol = Z * sd1 / math.sqrt(values.size)
    got = float(values.mean())
    assert got == pytest.approx(expected, rel=rtol), f"{what}: {got:.4f} vs theory {expected:.4f} (rtol {rtol:.3f})"
    # the tolerance assumed a one-run spread of sd1; runs much noisier than that would make it meaningless
    # (2.5·sd1: a normal sample sd of 4-6 runs exceeds it with probability < 1e-3)
    assert values.std(ddof=1) / expected < 2.5 * sd1, f"{what}: runs spread more than calibrated"


EXP = a.Exponential(1.0)
CALL = (a.call("srv"),)
# A queue with c FIFO servers built in different ways, against the same queue built as a service of
# concurrency c reached by a call: (c, the reference's steps, the steps, strategy, machine). A step's
# draws are keyed by its position in the task, not its kind, so the two runs are paired task for task.
PAIRED = {
    "asyncio:3 limit": (3, CALL, (a.io(EXP),), "asyncio:3", a.Machine()),
    "threads:3 io": (3, CALL, (a.io(EXP),), "threads:3", a.Machine()),
    "processes:3 io": (3, CALL, (a.io(EXP),), "processes:3", a.Machine()),
    "pool of 3": (3, (a.io(0.0), a.call("srv")), (a.use("p", [a.call("free")]),), "asyncio", a.Machine()),
    "sequential io": (1, CALL, (a.io(EXP),), "sequential", a.Machine()),
    "the loop serving cpu": (1, CALL, (a.cpu(EXP),), "asyncio", a.Machine()),
    "threads:1 cpu": (1, CALL, (a.cpu(EXP),), "threads:1", a.Machine()),
    "processes:3 cpu, 3 cores": (3, CALL, (a.cpu(EXP),), "processes:3", a.Machine(cores=3)),
    "asyncio+processes:3 cpu, 3 cores": (3, CALL, (a.cpu(EXP),), "asyncio+processes:3", a.Machine(cores=3)),
}


@pytest.mark.parametrize("name", list(PAIRED))
def test_fifo_servers_built_other_ways_are_the_same_queue(name):
    """Slots, workers, a limit, a pool, the loop, cores: with nothing else contended, each is the M/M/c queue."""
    servers, reference_steps, steps, strategy, machine = PAIRED[name]
    arrivals = a.Poisson(rate=0.7 * servers, count=3000)
    services = {"srv": a.Service(latency=EXP, concurrency=servers), "free": a.Service(latency=EXP)}
    pools = {"p": a.Pool(capacity=servers)}
    reference = a.simulate(a.Workload(arrivals=arrivals, task=reference_steps, services=services),
                           strategy="asyncio", seed=7)
    got = a.simulate(a.Workload(arrivals=arrivals, task=steps, services=services, pools=pools, machine=machine),
                     strategy=strategy, seed=7)
    assert got.latency.mean > 1.0  # tasks did queue
    np.testing.assert_allclose(got.done - got.arrival, reference.done - reference.arrival, rtol=1e-12, atol=1e-12)


def test_the_gil_shares_cpu_like_an_m_m_1_queue():
    """Many threads with exponential CPU work: the GIL is a work-conserving, size-blind server, so the
    number in system is that of M/M/1 whatever the switching (mean time 1/(mu − lam) = 0.1 s here).

    The switch interval is raised to 20 ms (0.4 mean services) to keep the run cheap; the mean does not
    depend on it. 4 runs of 5000 tasks: one run's mean has sd 4.7% of the theory (200 calibration seeds,
    bias +0.3%), so rtol = 4 · 4.7% / sqrt(4) = 9.4%; the GIL's utilisation has sd 2.0% per run, rtol 4%.
    64 threads are never all busy (the peak over the 200 seeds was 21).
    """
    workload = a.Workload(arrivals=a.Poisson(rate=10.0, count=5000), task=(a.cpu(a.Exponential(0.05)),),
                          machine=a.Machine(switch_interval_s=0.02))
    runs = a.replicate(workload, replications=4, strategy="threads:64", seed=2024).runs
    assert max(r.concurrency.peak for r in runs) < 64
    _check_mean(np.array([r.latency.mean for r in runs]), theory.mm1_mean_sojourn(10.0, 20.0), 0.047,
                "mean time in system")
    _check_mean(np.array([r.resources[ResourceId("gil")].utilization for r in runs]), 0.5, 0.020, "GIL utilisation")


# ----------------------------------------------------------------- Little's law and the identities

STRATEGIES = ("sequential", "threads:4", "processes:2", "asyncio", "asyncio:5", "asyncio:5+threads:2",
              "asyncio+processes:2")


def _models() -> dict[str, a.Workload]:
    mixed = a.Workload(
        name="mixed",
        arrivals=a.Poisson(rate=40, count=300),
        task=(
            a.cpu(a.Lognormal(mean=0.004, cv=1.0)),
            a.use("db", [a.io(a.Exponential(0.01)), a.cpu(0.001)]),
            a.parallel([a.io(0.02), a.cpu(0.002)], [a.call("api"), a.cpu(0.001)], [a.call("api")]),
            a.call("api"),
        ),
        pools={"db": a.Pool(capacity=3)},
        services={"api": a.Service(latency=a.Lognormal(mean=0.05, cv=0.5), concurrency=4)},
    )
    mix_of_types = a.Workload(
        name="types",
        arrivals=a.Batch(count=200),
        tasks=(
            a.TaskType(name="fetch", weight=3, steps=(a.io(a.Gamma(mean=0.03, cv=0.7)), a.cpu(0.001))),
            a.TaskType(name="crunch", weight=1, steps=(a.cpu(a.Uniform(low=0.005, high=0.02)),)),
            a.TaskType(name="both", weight=1, steps=(a.parallel([a.cpu(0.01)], [a.cpu(0.01), a.io(0.01)]),)),
        ),
    )
    closed = a.Workload(
        name="closed",
        arrivals=a.Closed(users=6, think=a.Exponential(0.01), count=300),
        task=(a.cpu(0.003), a.use("gpu", [a.call("infer")]), a.io(a.Exponential(0.005))),
        pools={"gpu": a.Pool(capacity=2)},
        services={"infer": a.Service(latency=a.Gamma(mean=0.02, cv=0.3))},
    )
    overheads = mixed.model_copy(update={
        "name": "overheads",
        "machine": a.Machine(cores=2, loop_step_s=5e-5, thread_switch_s=2e-5, process_dispatch_s=5e-4,
                             sleep_overshoot_s=1e-4),
    })
    return {"mixed": mixed, "types": mix_of_types, "closed": closed, "overheads": overheads}


MODELS = _models()
CASES = [(m, s) for m in MODELS for s in STRATEGIES]


@pytest.fixture(scope="module")
def results() -> dict[tuple[str, str], a.Result]:
    return {(m, s): a.simulate(MODELS[m], strategy=s, seed=11) for m, s in CASES}


# A finished run observed over [first arrival, last completion] contains every task's whole stay, so
# Little's law holds there exactly (sample-path form: the area under the in-flight curve is the sum of
# the latencies). The tolerance is floating-point rounding only.
EXACT = 1e-9


@pytest.mark.parametrize(("model", "strategy"), CASES)
def test_littles_law(results, model, strategy):
    r = results[model, strategy]
    series = r.concurrency_series()
    times = series["time"].to_numpy()
    in_flight = series["in_flight"].to_numpy()
    assert r.completed == r.tasks
    assert times[0] == pytest.approx(np.min(r.arrival))
    assert times[-1] - times[0] == pytest.approx(r.t_total, rel=EXACT)
    assert in_flight[-1] == 0
    assert np.all(in_flight >= 0)
    area = float(np.sum(in_flight[:-1] * np.diff(times)))
    big_l = area / r.t_total
    lam = r.completed / r.t_total
    assert big_l == pytest.approx(lam * r.latency.mean, rel=EXACT)
    assert big_l == pytest.approx(r.concurrency.mean, rel=EXACT)
    assert lam == pytest.approx(r.throughput, rel=EXACT)
    assert int(in_flight.max()) == r.concurrency.peak


@pytest.mark.parametrize(("model", "strategy"), CASES)
def test_state_identities(results, model, strategy):
    r = results[model, strategy]
    c, split = r.concurrency, r.time_split
    assert c.computing + c.waiting + c.queued == pytest.approx(c.mean, rel=EXACT)
    assert split.task + split.wait + split.queue == pytest.approx(r.latency.mean, rel=EXACT)
    # every moment of every task is in exactly one state: the state segments are disjoint per task and
    # cover [arrival, done] without gaps ...
    task, t0, t1, state = state_segments(r.trace)
    order = np.lexsort((t0, task))
    task, t0, t1, state = task[order], t0[order], t1[order], state[order]
    same = task[1:] == task[:-1]
    assert np.all(t0[1:][same] >= t1[:-1][same] - 1e-12), "overlapping state segments within a task"
    covered = np.bincount(task, weights=t1 - t0, minlength=r.tasks)
    np.testing.assert_allclose(covered, r.done - r.arrival, rtol=EXACT, atol=1e-12)
    # ... and their time-weighted counts are the reported *_mean (which are computed per record)
    for code, name in enumerate(("computing", "waiting", "queued")):
        mine = state == code
        mean = float(np.sum(t1[mine] - t0[mine])) / r.t_total
        assert mean == pytest.approx(getattr(c, name), rel=EXACT, abs=1e-12), name
    # in flight = computing + waiting + queued on every row of the series
    series = r.concurrency_series()
    states = series["computing"] + series["waiting"] + series["queued"]
    bad = series[states != series["in_flight"]]
    assert bad.empty, f"{len(bad)} rows where the states do not add up, first:\n{bad.head()}"
    # the per-task frame agrees with time_split, task by task with the latency
    frame = r.to_frame()
    assert frame["computing"].mean() == pytest.approx(split.task, rel=EXACT, abs=1e-12)
    assert frame["waiting"].mean() == pytest.approx(split.wait, rel=EXACT, abs=1e-12)
    assert frame["queued"].mean() == pytest.approx(split.queue, rel=EXACT, abs=1e-12)
    np.testing.assert_allclose(frame[["computing", "waiting", "queued"]].sum(axis=1), frame["latency"],
                               rtol=EXACT, atol=1e-12)


def test_series_state_columns_integrate_to_the_means(results):
    """Row k of the series holds from time[k] to time[k+1], so its columns integrate to the *_mean."""
    for (model, strategy), r in results.items():
        series = r.concurrency_series()
        dt = np.diff(series["time"].to_numpy())
        for name in ("computing", "waiting", "queued"):
            mean = float(np.sum(series[name].to_numpy()[:-1] * dt)) / r.t_total
            assert mean == pytest.approx(getattr(r.concurrency, name), rel=EXACT, abs=1e-12), (model, strategy)


# ------------------------------------------------------------------------------- makespan bounds

# (usable cores for CPU work, slots on tasks in flight) on the default machine (2 cores, a GIL)
CAPACITY = {
    "sequential": (1, 1), "threads:4": (1, 4), "processes:2": (2, 2), "asyncio": (1, None),
    "asyncio:5": (1, 5), "asyncio:5+threads:2": (1, 5), "asyncio+processes:2": (2, None),
}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_t_total_respects_the_lower_bounds(strategy):
    workload = a.Workload(
        arrivals=a.Batch(count=120),
        task=(a.cpu(a.Lognormal(mean=0.01, cv=1.0)), a.use("db", [a.io(a.Exponential(0.02))]),
              a.call("api"), a.io(a.Uniform(low=0.0, high=0.05))),
        pools={"db": a.Pool(capacity=3)},
        services={"api": a.Service(latency=a.Exponential(0.03), concurrency=2)},
    )
    scenario = a.build_scenario(workload, seed=5, strategy=strategy)
    d = scenario.durations[0]  # columns by node: 0 cpu, 1 use, 2 io in db, 3 call, 4 io
    cpu_s, db_s, api_s, io_s = d[:, 0], d[:, 2], d[:, 3], d[:, 4]
    own = cpu_s + db_s + api_s + io_s  # a task's duration with no waiting at all
    cores, slots = CAPACITY[strategy]
    r = a.simulate(scenario)
    bound = max(
        theory.t_total_lower_bound(total_cpu_s=cpu_s.sum(), usable_cores=cores,
                                   longest_task_s=theory.longest_task_bound(own),
                                   total_hold_s=own.sum(), slots=slots),
        theory.slot_bound(db_s.sum(), 3),
        theory.slot_bound(api_s.sum(), 2),
    )
    assert r.t_total >= bound * (1 - EXACT)
    assert r.latency.max >= own.max() * (1 - EXACT)
    if strategy == "sequential":  # one task at a time, nothing else to wait for: the bound is attained
        assert r.t_total == pytest.approx(own.sum(), rel=EXACT)


@pytest.mark.parametrize(("strategy", "tasks", "expected"), [
    ("asyncio:7", (a.io(0.1),), math.ceil(100 / 7) * 0.1),  # n·io/limit, rounded up to whole waves
    ("asyncio", (a.io(0.1),), 0.1),  # unbounded: the longest task
    ("asyncio", (a.cpu(0.01),), 100 * 0.01),  # one loop: all the CPU, one step after another
    ("threads:4", (a.cpu(0.01),), 100 * 0.01),  # the GIL hands over without losing time
    ("processes:2", (a.cpu(0.01),), 100 * 0.01 / 2),  # two processes on two cores
    ("asyncio+processes:4", (a.cpu(0.01),), 100 * 0.01 / 2),  # four processes, but two cores
])
def test_bounds_are_attained_where_nothing_else_interferes(strategy, tasks, expected):
    workload = a.Workload(arrivals=a.Batch(count=100), task=tasks)
    assert a.simulate(workload, strategy=strategy, seed=0).t_total == pytest.approx(expected, rel=1e-9)


def test_process_pool_is_within_grahams_list_scheduling_bound():
    """FIFO workers taking the next task when free: T ≤ total/m + (1 − 1/m)·longest (Graham 1966)."""
    workload = a.Workload(arrivals=a.Batch(count=200), task=(a.cpu(a.Lognormal(mean=0.01, cv=1.5)),))
    scenario = a.build_scenario(workload, seed=3, strategy="processes:2")
    work = scenario.durations[0][:, 0]
    r = a.simulate(scenario)
    lower = theory.t_total_lower_bound(total_cpu_s=work.sum(), usable_cores=2, longest_task_s=work.max())
    upper = work.sum() / 2 + (1 - 1 / 2) * work.max()
    assert lower * (1 - EXACT) <= r.t_total <= upper * (1 + EXACT)
