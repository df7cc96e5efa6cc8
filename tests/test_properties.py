"""Invariants of the simulator for any small workload under any strategy (hypothesis).

Each property is stated against DESIGN.md's execution semantics and metric definitions, not against the
engine's code: limits are never exceeded, CPU cannot go faster than the usable cores, a task cannot be
faster than its own critical path, sequential execution is exactly a FIFO single server, and the metrics
obey their identities (Little's law, the time split).
"""

from __future__ import annotations

import heapq
import json
import math
from collections import deque

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asyncsim as a
from asyncsim.real.runner import run_real
from asyncsim.scenario import CALL, CPU, IO, PAR, USE

from .strategies import linear_workloads, strategy_strings, workloads

# Deterministic in CI: a fixed derandomised search, no example database.
PROPS = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow])

REL = 1e-9
ABS = 1e-9


def _run(w: a.Workload, strategy: str, seed: int) -> tuple[a.Scenario, a.Result]:
    scenario = a.build_scenario(w, seed=seed, strategy=strategy)
    return scenario, a.simulate(scenario)


def _critical_path(nodes: tuple, durs: np.ndarray) -> float:
    """The shortest time a step list can take with no contention at all (branches overlap fully)."""
    total = 0.0
    for node in nodes:
        if node.kind in (CPU, IO, CALL):
            total += float(durs[node.id])
        elif node.kind == USE:
            total += _critical_path(node.body, durs)
        else:
            assert node.kind == PAR
            total += max(_critical_path(b, durs) for b in node.branches)
    return total


def _max_overlap(t0: np.ndarray, t1: np.ndarray, eps: float = 1e-9) -> int:
    """Most [t0, t1) intervals open at once (an interval ending at t frees its slot before one starts at t).

    Ends count `eps` early: some record starts are computed as `now - overhead` and land an ulp early.
    """
    keep = t1 > t0 + eps
    if not keep.any():
        return 0
    times = np.concatenate([t0[keep], t1[keep] - eps])
    delta = np.concatenate([np.ones(keep.sum(), int), -np.ones(keep.sum(), int)])
    order = np.lexsort((delta, times))
    return int(np.cumsum(delta[order]).max())


def _admission_limit(strategy: a.Sequential | a.Threads | a.Processes | a.Asyncio) -> int | None:
    if isinstance(strategy, a.Sequential):
        return 1
    if isinstance(strategy, a.Asyncio):
        return strategy.limit
    return strategy.workers


def _usable_cores(strategy: object, machine: a.Machine) -> int:
    """How many CPUs the client's Python can use at once under the strategy (DESIGN: execution semantics)."""
    if isinstance(strategy, a.Sequential):
        return 1
    if isinstance(strategy, a.Threads):
        return 1 if machine.gil else machine.cores
    if isinstance(strategy, a.Processes):
        # each process's own threads (parallel branches) share that process's GIL
        return min(strategy.workers, machine.cores) if machine.gil else machine.cores
    assert isinstance(strategy, a.Asyncio)
    off = strategy.offload
    if off is None or (isinstance(off, a.Threads) and machine.gil):
        return 1
    return min(off.workers + 1, machine.cores)


def _admitted(result: a.Result) -> np.ndarray:
    """When each task was admitted (to a worker / past the limit): its admit record, else its arrival."""
    admitted = result.arrival.copy()
    tr = result.trace.to_frame()
    admits = tr[tr.kind == "admit"]
    admitted[admits.task.to_numpy()] = admits.start.to_numpy()
    return admitted


seeds = st.integers(0, 2**32 - 1)


@PROPS
@given(w=workloads(overheads=True, policies=True), strategy=strategy_strings(), seed=seeds)
def test_every_task_completes_and_limits_hold(w, strategy, seed):
    scenario, r = _run(w, strategy, seed)
    assert r.completed + r.failed == r.tasks == scenario.n_tasks
    assert not np.isnan(r.done).any()
    assert (r.done >= r.arrival - ABS).all()

    limit = _admission_limit(scenario.strategy)
    admitted = _admitted(r)
    assert (admitted >= r.arrival - ABS).all()
    if limit is not None:
        assert _max_overlap(admitted, r.done) <= limit

    tr = r.trace.to_frame()
    for name, pool in w.pools.items():
        held = tr[(tr.kind == "use") & (tr.resource == f"pool:{name}")]
        assert _max_overlap(held.start.to_numpy(), held.end.to_numpy()) <= pool.capacity, name
    for name, service in w.services.items():
        served = tr[(tr.kind == "call") & (tr.resource == f"service:{name}")]
        if service.concurrency is not None:
            assert _max_overlap(served.start.to_numpy(), served.end.to_numpy()) <= service.concurrency, name
    off = getattr(scenario.strategy, "offload", None)
    if off is not None:
        ran = tr[(tr.kind == "cpu") & (tr.resource == "executor")]
        assert _max_overlap(ran.start.to_numpy(), ran.end.to_numpy()) <= off.workers
    if isinstance(scenario.strategy, a.Asyncio) and off is None:
        # one event loop: the spans in which coroutines run never overlap
        on_loop = tr[tr.kind.isin(["cpu", "resume"]) & (tr.resource == "loop")]
        assert _max_overlap(on_loop.start.to_numpy(), on_loop.end.to_numpy()) <= 1


@PROPS
@given(w=workloads(overheads=True), strategy=strategy_strings(), seed=seeds)
def test_t_total_respects_the_lower_bounds(w, strategy, seed):
    scenario, r = _run(w, strategy, seed)
    paths = np.array([_critical_path(scenario.programs[scenario.task_type[i]].steps, scenario.task_durations(i))
                      for i in range(scenario.n_tasks)])
    latency = r.done - r.arrival
    # no task is faster than its own critical path ...
    assert (latency >= paths * (1 - REL) - ABS).all()
    assert r.t_total >= paths.max() * (1 - REL) - ABS
    # ... CPU work cannot go faster than the CPUs the strategy can use ...
    total_cpu = sum(float(d[:, [n.id for n in p.nodes if n.kind == CPU]].sum())
                    for p, d in zip(scenario.programs, scenario.durations, strict=True))
    usable = _usable_cores(scenario.strategy, w.machine)
    assert r.t_total >= total_cpu / usable * (1 - REL) - ABS
    # ... and with at most L tasks admitted at once, their critical paths fill at least sum / L seconds
    limit = _admission_limit(scenario.strategy)
    if limit is not None:
        assert r.t_total >= paths.sum() / limit * (1 - REL) - ABS


@PROPS
@given(w=workloads(closed=False), seed=seeds)
def test_sequential_is_a_fifo_single_server(w, seed):
    scenario, r = _run(w, "sequential", seed)
    # every leaf step takes exactly its drawn duration, one task at a time, in arrival order;
    # use and parallel nodes hold 0 in the matrix and parallel branches run one after another
    service = np.array([scenario.task_durations(i).sum() for i in range(scenario.n_tasks)])
    expected_done = np.empty_like(service)
    free = -math.inf
    for i, (arrived, s) in enumerate(zip(scenario.arrivals, service, strict=True)):
        free = expected_done[i] = max(arrived, free) + s
    np.testing.assert_allclose(r.done, expected_done, rtol=REL, atol=ABS)
    if isinstance(w.arrivals, a.Batch):
        assert r.t_total == pytest.approx(service.sum(), rel=REL, abs=ABS)


@PROPS
@given(w=workloads(overheads=True, policies=True), strategy=strategy_strings(), seed=seeds)
def test_little_law_and_time_split_identities(w, strategy, seed):
    _, r = _run(w, strategy, seed)
    frame = r.to_frame()
    # every moment of a task is computing, waiting or queued: the split adds up to its latency
    parts = frame.computing + frame.waiting + frame.queued
    np.testing.assert_allclose(parts, frame.latency, rtol=1e-9, atol=1e-9)
    ts = r.time_split
    assert ts.task + ts.wait + ts.queue == pytest.approx(r.latency.mean, rel=1e-9, abs=1e-12)
    if r.t_total <= 0:
        return
    c = r.concurrency
    # Little's law: L = λ W, with L the time average of the in-flight step function
    assert c.mean == pytest.approx(r.throughput * r.latency.mean, rel=1e-9)
    series = r.concurrency_series()
    t = series.time.to_numpy()
    area = float((series.in_flight.to_numpy()[:-1] * np.diff(t)).sum())
    assert area / r.t_total == pytest.approx(c.mean, rel=1e-9)
    assert c.computing + c.waiting + c.queued == pytest.approx(c.mean, rel=1e-9)
    # (a task of zero latency leaves before it arrives, by the peak's tie rule)
    assert int((frame.latency > 0).any()) <= c.peak <= r.tasks
    assert c.mean <= c.peak + 1e-9


@PROPS
@given(w=workloads(), strategy=strategy_strings(), seed=seeds)
def test_time_split_is_work_plus_waits_for_tasks_without_branches(w, strategy, seed):
    # on an ideal machine a task computes exactly its CPU work and waits exactly its I/O and service times;
    # everything else of its latency is queueing
    scenario, r = _run(w, strategy, seed)
    frame = r.to_frame()
    for i in range(scenario.n_tasks):
        program = scenario.programs[scenario.task_type[i]]
        if program.has_parallel:
            continue
        durs = scenario.task_durations(i)
        cpu = sum(float(durs[n.id]) for n in program.nodes if n.kind == CPU)
        wait = sum(float(durs[n.id]) for n in program.nodes if n.kind in (IO, CALL))
        row = frame.iloc[i]
        assert row.computing == pytest.approx(cpu, rel=1e-9, abs=1e-12)
        assert row.waiting == pytest.approx(wait, rel=1e-9, abs=1e-12)
        assert row.queued >= -1e-12


@settings(max_examples=15, deadline=None, derandomize=True, database=None)
@given(w=workloads(policies=True), strategy=strategy_strings(), seed=seeds)
def test_same_seed_same_result(w, strategy, seed):
    first = json.dumps(a.simulate(w, strategy=strategy, seed=seed).to_dict())
    assert json.dumps(a.simulate(w, strategy=strategy, seed=seed).to_dict()) == first


# ------------------------------------------------------------------------------ reference models
#
# For tasks that are plain lists of cpu/io steps with continuous durations (so no two events tie), some
# strategies have a closed description that a few lines of Python replay exactly; asyncio's reference is
# CPython's own loop on a virtual clock.


def _task_steps(scenario: a.Scenario, i: int) -> list[tuple[int, float]]:
    program = scenario.programs[scenario.task_type[i]]
    durs = scenario.task_durations(i)
    return [(node.kind, float(durs[node.id])) for node in program.steps]


def _reference_workers(scenario: a.Scenario, workers: int, dispatch: float) -> np.ndarray:
    """A FIFO multi-server queue: each task runs alone on a worker for all its steps, from when the worker is free
    or its dispatch trip (begun as it arrived: the pool's call queue) ends, whichever is later."""
    free = [0.0] * workers
    done = np.empty(scenario.n_tasks)
    for i, arrived in enumerate(scenario.arrivals):
        start = max(float(arrived) + dispatch, heapq.heappop(free))
        done[i] = start + sum(d for _, d in _task_steps(scenario, i))
        heapq.heappush(free, done[i])
    return done


def _reference_sharing(scenario: a.Scenario, *, cores: int, admit: int | None, executor: int | None,
                       dispatch: float = 0.0) -> np.ndarray:
    """CPU steps share `cores` by processor sharing (rate min(1, cores / computing)); io just waits.

    `admit` caps tasks in flight (FIFO; an admitted task starts once `dispatch` after its arrival has passed):
    processes:N. `executor`
    caps CPU steps running at once (FIFO) with unlimited tasks: asyncio+processes:N with free loop steps.
    """
    n = scenario.n_tasks
    steps = [_task_steps(scenario, i) for i in range(n)]
    pos = [0] * n
    done = np.full(n, math.nan)
    arrivals = [float(t) for t in scenario.arrivals]
    next_arrival = 0
    waiting_admit: deque[int] = deque()
    waiting_cpu: deque[tuple[int, float]] = deque()
    in_flight = 0
    remaining: dict[int, float] = {}  # tasks computing -> CPU seconds left
    timers: dict[int, float] = {}  # tasks in io or dispatch -> when it ends
    now = 0.0

    def advance(i: int) -> None:  # task i goes on to its next step at `now`
        nonlocal in_flight
        if pos[i] == len(steps[i]):
            done[i] = now
            in_flight -= 1
            if waiting_admit:
                start(waiting_admit.popleft())
            return
        kind, d = steps[i][pos[i]]
        pos[i] += 1
        if kind == IO:
            timers[i] = now + d
        elif executor is not None and len(remaining) >= executor:
            waiting_cpu.append((i, d))
        else:
            remaining[i] = d

    def start(i: int) -> None:  # admitted: the rest of its dispatch trip (a timer), then its first step
        nonlocal in_flight
        in_flight += 1
        if arrivals[i] + dispatch > now:
            timers[i] = arrivals[i] + dispatch
        else:
            advance(i)

    while next_arrival < n or remaining or timers:
        rate = min(1.0, cores / len(remaining)) if remaining else 1.0
        t_cpu = min(remaining.values(), default=math.inf) / rate + now
        t_timer = min(timers.values(), default=math.inf)
        t_arr = arrivals[next_arrival] if next_arrival < n else math.inf
        t_next = min(t_cpu, t_timer, t_arr)
        for i in remaining:
            remaining[i] -= (t_next - now) * rate
        now = t_next
        if t_next == t_cpu:
            i = min(remaining, key=remaining.get)
            del remaining[i]
            if waiting_cpu:
                j, d = waiting_cpu.popleft()
                remaining[j] = d
            advance(i)
        elif t_next == t_timer:
            i = min(timers, key=timers.get)
            del timers[i]
            advance(i)
        else:
            i = next_arrival
            next_arrival += 1
            if admit is None or in_flight < admit:
                start(i)
            else:
                waiting_admit.append(i)
    return done


@PROPS
@given(w=linear_workloads(), limit=st.one_of(st.none(), st.integers(1, 4)), seed=seeds)
def test_asyncio_matches_cpython_on_a_virtual_clock(w, limit, seed):
    """The reference is CPython's own event loop, on a virtual clock that CPU work advances (`vloop`)."""
    scenario = a.build_scenario(w, seed=seed, strategy=a.Asyncio(limit=limit))
    r = a.simulate(scenario)
    np.testing.assert_allclose(r.done, run_real(scenario, loop="virtual").done, rtol=1e-9, atol=1e-12)


@PROPS
@given(w=linear_workloads(), cores=st.integers(1, 4), workers=st.integers(1, 4),
       dispatch=st.sampled_from([0.0, 0.001]), seed=seeds)
def test_processes_within_the_cores_are_a_fifo_multi_server(w, cores, workers, dispatch, seed):
    workers = min(workers, cores)  # no processor sharing: each process has a core of its own
    w = w.evolve(machine=a.Machine(cores=cores, process_dispatch_s=dispatch))
    r = a.simulate(w, strategy=f"processes:{workers}", seed=seed)
    scenario = a.build_scenario(w, seed=seed)
    np.testing.assert_allclose(r.done, _reference_workers(scenario, workers, dispatch), rtol=1e-9, atol=1e-12)


@PROPS
@given(w=linear_workloads(), cores=st.integers(1, 3), workers=st.integers(1, 5),
       dispatch=st.sampled_from([0.0, 0.001]), seed=seeds)
def test_processes_share_the_cores(w, cores, workers, dispatch, seed):
    w = w.evolve(machine=a.Machine(cores=cores, process_dispatch_s=dispatch))
    scenario = a.build_scenario(w, seed=seed, strategy=f"processes:{workers}")
    expected = _reference_sharing(scenario, cores=cores, admit=workers, executor=None, dispatch=dispatch)
    np.testing.assert_allclose(a.simulate(scenario).done, expected, rtol=1e-9, atol=1e-12)


@PROPS
@given(w=linear_workloads(), cores=st.integers(1, 3), workers=st.integers(1, 5), seed=seeds)
def test_asyncio_offload_to_processes_shares_the_cores(w, cores, workers, seed):
    w = w.evolve(machine=a.Machine(cores=cores))
    scenario = a.build_scenario(w, seed=seed, strategy=f"asyncio+processes:{workers}")
    expected = _reference_sharing(scenario, cores=cores, admit=None, executor=workers)
    np.testing.assert_allclose(a.simulate(scenario).done, expected, rtol=1e-9, atol=1e-12)


@PROPS
@given(w=linear_workloads(cpu=False), workers=st.integers(1, 4), gil=st.booleans(), seed=seeds)
def test_threads_doing_only_io_are_a_fifo_multi_server(w, workers, gil, seed):
    w = w.evolve(machine=a.Machine(gil=gil))
    r = a.simulate(w, strategy=f"threads:{workers}", seed=seed)
    np.testing.assert_allclose(r.done, _reference_workers(a.build_scenario(w, seed=seed), workers, 0.0),
                               rtol=1e-9, atol=1e-12)


@PROPS
@given(n=st.integers(1, 6), works=st.lists(st.sampled_from([0.001, 0.004, 0.005, 0.012, 0.05]), min_size=1,
                                            max_size=3),
       strategy=st.sampled_from(["threads:1", "threads:3", "threads:8", "asyncio", "asyncio:2",
                                 "asyncio+threads:2", "asyncio:3+threads:4"]))
def test_cpu_bound_batch_under_one_gil_or_loop_is_work_conserving(n, works, strategy):
    # one GIL (or one loop) serialises all CPU and never idles while work is left: T_total = total CPU
    w = a.Workload(arrivals=a.Batch(count=n), task=tuple(a.cpu(x) for x in works))
    assert a.simulate(w, strategy=strategy).t_total == pytest.approx(n * sum(works), rel=1e-9)
