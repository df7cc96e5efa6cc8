"""Cores beyond their count: processor sharing over all of them, or Linux's per-core run queues with a
load-balancing tick (Machine.core_balance_s). Exact, hand-computed times."""

from __future__ import annotations

import pytest
import simpy

import asyncsim as a
from asyncsim.sim.cpu import Cores, SimThread, compute

EXACT = {"rel": 1e-9, "abs": 1e-12}


def _done_times(balance: float, plan: list[tuple[str, float, float, SimThread | None]]) -> dict[str, float]:
    """Run each (name, start, work, thread) on 2 shared cores; when each finished."""
    env = simpy.Environment()
    cores = Cores(env, 2, shared=True, balance=balance)
    done: dict[str, float] = {}

    def run(name: str, start: float, work: float, thread: SimThread) -> simpy.events.ProcessGenerator:
        yield env.timeout(start)
        yield from compute(env, cores, thread, work)
        done[name] = env.now

    for name, start, work, thread in plan:
        env.process(run(name, start, work, thread or SimThread(None)))
    env.run()
    return done


@pytest.mark.parametrize(("balance", "done"), [
    # processor sharing: three threads at 2/3 of a core each; B ends at 3 ms, then A and C a core each (5 ms)
    (0.0, {"A": 0.005, "B": 0.003, "C": 0.005}),
    # per core: A and C on core 0 (new threads go to the core with the fewest, the lower first), B on core 1,
    # which idles from 2 ms; the tick at 5 ms moves C (the last to come to core 0): 1.5 ms each left, at full speed
    (0.005, {"A": 0.0065, "B": 0.002, "C": 0.0065}),
    # no tick before A and C end: core 0 shares itself between them until 8 ms
    (0.010, {"A": 0.008, "B": 0.002, "C": 0.008}),
])
def test_an_idle_core_takes_a_waiting_thread_only_at_a_balancing_tick(balance, done):
    assert _done_times(balance, [("A", 0, 0.004, None), ("B", 0, 0.002, None),
                                 ("C", 0, 0.004, None)]) == pytest.approx(done, **EXACT)


@pytest.mark.parametrize(("balance", "a_done", "c_done"), [(0.0, 0.0036, 0.0035), (0.005, 0.0053, 0.0052)])
def test_a_thread_wakes_on_the_core_it_last_ran_on_even_while_another_is_idle(balance, a_done, c_done):
    # A runs 1 ms on core 0 and B 1 ms on core 1; C, new at 1.5 ms, takes core 0 (both idle: the lower); A comes
    # back at 1.6 ms with 2 ms of work: to core 0, shared with C while core 1 idles, until the tick at 5 ms
    # moves A (C has 0.2 ms left, A 0.3 ms). Processor sharing gives each a core at once.
    thread_a = SimThread(None)
    env = simpy.Environment()
    cores = Cores(env, 2, shared=True, balance=balance)
    done: dict[str, float] = {}

    def run(name: str, spans: list[tuple[float, float]], thread: SimThread) -> simpy.events.ProcessGenerator:
        for start, work in spans:
            yield env.timeout(start - env.now)
            yield from compute(env, cores, thread, work)
        done[name] = env.now

    env.process(run("A", [(0.0, 0.001), (0.0016, 0.002)], thread_a))
    env.process(run("B", [(0.0, 0.001)], SimThread(None)))
    env.process(run("C", [(0.0015, 0.002)], SimThread(None)))
    env.run()
    assert done == pytest.approx({"A": a_done, "B": 0.001, "C": c_done}, **EXACT)
    if balance:
        assert thread_a.core == 1  # moved by the tick


@pytest.mark.parametrize(("balance", "done"), [
    # processor sharing: 4 workers at half a core; the 2 ms task ends at 4 ms, the others then at 2/3 (16 ms)
    (0.0, [0.016, 0.016, 0.016, 0.004]),
    # per core: workers 0-3 on cores 0, 1, 0, 1. Core 1 ends the 2 ms task at 4 ms and task 1 at 12 ms; the tick
    # at 15 ms moves task 2 off core 0 (2.5 ms left each): 17.5 ms
    (0.005, [0.0175, 0.012, 0.0175, 0.004]),
    # without a tick in time core 0 shares itself between tasks 0 and 2 to the end
    (1.0, [0.02, 0.012, 0.02, 0.004]),
])
def test_a_process_pool_beyond_the_cores_keeps_each_worker_on_its_core(balance, done):
    w = a.Workload(arrivals=a.Batch(count=4), machine=a.Machine(cores=2, core_balance_s=balance), tasks=(
        a.TaskType(name="long", steps=(a.cpu(0.01),)), a.TaskType(name="short", steps=(a.cpu(0.002),))))
    runs = (a.simulate(w, strategy="processes:4", seed=seed) for seed in range(50))
    r = next(r for r in runs if [r.type_names[k] for k in r.task_type] == ["long", "long", "long", "short"])
    assert r.done.tolist() == pytest.approx(done, **EXACT)


def test_a_pool_within_the_cores_is_unaffected_by_the_balancing_tick():
    w = a.Workload(arrivals=a.Batch(count=6), task=(a.cpu(0.01), a.io(0.005)),
                   machine=a.Machine(cores=2, core_balance_s=0.004))
    plain = w.evolve(machine=a.Machine(cores=2))
    for strategy in ("processes:2", "asyncio", "threads:4"):
        assert a.simulate(w, strategy=strategy).done.tolist() == a.simulate(plain, strategy=strategy).done.tolist()


def test_the_same_seed_gives_the_same_run_with_per_core_queues():
    w = a.Workload(arrivals=a.Poisson(rate=300, count=200), task=(a.cpu(a.Exponential(mean=0.004)), a.io(0.01)),
                   machine=a.Machine(cores=2, core_balance_s=0.012))
    first, second = (a.simulate(w, strategy="processes:5", seed=7) for _ in range(2))
    assert first.done.tolist() == second.done.tolist()
    shared = a.simulate(w.evolve(machine=a.Machine(cores=2)), strategy="processes:5", seed=7)
    assert first.t_total > shared.t_total  # cores idle while threads wait on the other


@pytest.mark.parametrize(("balance", "done"), [(0.0, [0.011, 0.013]), (1.0, [0.012, 0.014])])
def test_the_pools_threads_in_the_parent_wake_on_their_last_core(balance, done):
    # asyncio+processes:2 on 2 cores, 1 ms submit leg. A's leg runs 0..1 ms on core 0 (a new thread: the core with
    # the fewest), then its job on worker 0, also core 0 (both idle: the lower). B waits 2 ms, then its leg runs on
    # the feeder thread's last core, 0, at half speed beside A's job while core 1 idles (no tick before the end):
    # the leg ends at 4 ms, A's job at 12 (1 ms lost), B's job on worker 1 (core 1) at 14. Processor sharing:
    # the leg has a core to itself, 2..3 ms; A ends at 11, B at 13.
    w = a.Workload(arrivals=a.Batch(count=2), tasks=(
        a.TaskType(name="now", steps=(a.cpu(0.01),)), a.TaskType(name="later", steps=(a.io(0.002), a.cpu(0.01)))),
        machine=a.Machine(cores=2, process_dispatch_s=0.001, core_balance_s=balance))
    runs = (a.simulate(w, strategy="asyncio+processes:2", seed=seed) for seed in range(50))
    r = next(r for r in runs if [r.type_names[k] for k in r.task_type] == ["now", "later"])
    assert r.done.tolist() == pytest.approx(done, **EXACT)
