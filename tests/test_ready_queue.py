"""The simulator's event loop against CPython's own, exactly (issue 12, the ready queue).

The reference is the real asyncio driver (`real.aio`) run by CPython's selector event loop on a virtual clock
(`real.vloop`): CPU work advances the clock while its callback blocks the loop, an idle loop jumps to its next
timer, so the order in which callbacks run is CPython's and the run is deterministic. Durations are continuous
draws, so no two timers share a deadline (CPython's timer heap does not order ties FIFO).
"""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
import simpy

import asyncsim as a
from asyncsim.real.runner import run_real
from asyncsim.real.vloop import VirtualClock, VirtualCpu, VirtualLoop
from asyncsim.sim.resources import Slots

EXACT = {"rtol": 0, "atol": 1e-9}


def _both(w: a.Workload, strategy: str, seed: int = 0) -> tuple[a.Result | object, object]:
    sc = a.build_scenario(w, seed=seed, strategy=strategy)
    return a.simulate(sc), run_real(sc, loop="virtual")


def _cpu_order(out: object) -> list[tuple[int, int]]:
    """(task, step) of every cpu record, in the order they ran."""
    f = out.trace.to_frame()  # type: ignore[attr-defined]
    f = f[f.kind == "cpu"].sort_values(["start", "task", "step"], kind="stable")
    return list(zip(f.task.tolist(), f.step.tolist(), strict=True))


# ------------------------------------------------------------------------------------ the virtual loop


def test_virtual_loop_charges_cpu_and_jumps_to_timers():
    clock = VirtualClock()
    loop = VirtualLoop(clock)
    cpu = VirtualCpu(clock)
    seen: list[tuple[str, float]] = []

    async def sleeper(name: str, s: float) -> None:
        await asyncio.sleep(s)
        seen.append((name, loop.time()))

    async def main() -> None:
        t = asyncio.create_task(sleeper("timer 0.5", 0.5))
        cpu.run(0.2)  # blocks the loop: the task's first step has not run yet
        seen.append(("after cpu", loop.time()))
        await asyncio.gather(t, sleeper("timer 0.1", 0.1))

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    # the 0.5 s sleep starts when its step runs (at 0.2), the 0.1 s one then too
    assert seen == [("after cpu", pytest.approx(0.2)), ("timer 0.1", pytest.approx(0.3)),
                    ("timer 0.5", pytest.approx(0.7))]


def test_virtual_loop_refuses_to_wait_forever():
    loop = VirtualLoop(VirtualClock())
    try:
        with pytest.raises(RuntimeError, match="nothing is ready and no timer is set"):
            loop.run_until_complete(loop.create_future())
    finally:
        loop.close()


# ------------------------------------------------------------------------ the rules, one at a time


@pytest.mark.parametrize("branches", [2, 3, 8])
def test_cpu_before_a_gather_starts_the_children_behind_the_other_tasks(branches):
    # the example: 20 tasks under asyncio:20, CPU, then gather of waits, then CPU. The children's
    # first steps are call_soon'ed behind the other tasks' already-ready steps, so their waits start late.
    waits = [a.io(a.Lognormal(mean=0.02 * (k + 1), cv=0.2)) for k in range(branches)]
    w = a.Workload(arrivals=a.Batch(count=20), task=(
        a.cpu(a.Lognormal(mean=0.005, cv=0.2)), a.parallel(*([x] for x in waits)),
        a.cpu(a.Lognormal(mean=0.005, cv=0.2))))
    sim, real = _both(w, "asyncio:20", seed=branches)
    np.testing.assert_allclose(sim.done, real.done, **EXACT)
    assert _cpu_order(sim) == _cpu_order(real)


def test_a_released_semaphore_stays_locked_until_its_waiter_runs():
    # asyncio.Semaphore (3.11): release() hands the slot to the first waiter, whose future stays in _waiters
    # until it resumes; meanwhile locked() is true, so a newcomer queues even though a slot is free.
    env = simpy.Environment()
    slots = Slots(env, 2, on_loop=True)
    assert slots.request() is None  # A holds
    assert slots.request() is None  # B holds
    c = slots.request()
    assert c is not None
    slots.release()  # A: the slot goes to C at once
    assert c.triggered
    assert slots.woken == 1
    slots.release()  # B: a slot is free now...
    d = slots.request()
    assert d is not None  # ...but D queues behind C's pending wake-up
    assert not d.triggered
    slots.resumed()  # C runs: it hands the free slot on
    assert d.triggered
    assert (slots.woken, slots.in_use) == (1, 2)
    # a thread pool's semaphore has no such rule
    plain = Slots(env, 1)
    assert plain.request() is None
    waiter = plain.request()
    plain.release()
    assert waiter is not None
    assert waiter.triggered
    assert plain.woken is None


def test_pool_wake_up_order_matches_cpython():
    # 12 tasks share a pool of 2 under asyncio:6: semaphore waiters, limit waiters and loop turns interleave
    w = a.Workload(arrivals=a.Batch(count=12), pools={"db": a.Pool(capacity=2)}, task=(
        a.cpu(a.Lognormal(mean=0.002, cv=0.5)),
        a.use("db", [a.io(a.Lognormal(mean=0.02, cv=0.5)), a.cpu(a.Lognormal(mean=0.003, cv=0.5))]),
        a.parallel([a.cpu(a.Lognormal(mean=0.004, cv=0.5))], [a.io(a.Lognormal(mean=0.01, cv=0.5))])))
    sim, real = _both(w, "asyncio:6", seed=3)
    np.testing.assert_allclose(sim.done, real.done, **EXACT)
    assert _cpu_order(sim) == _cpu_order(real)


@pytest.mark.parametrize("strategy", ["asyncio", "asyncio:4"])
def test_tasks_created_late_by_a_busy_main_coroutine(strategy):
    # Poisson arrivals faster than the loop: the main coroutine wakes late and creates every overdue task in
    # one step; each still arrives at its due time
    w = a.Workload(arrivals=a.Poisson(rate=300, count=60), task=(
        a.cpu(a.Lognormal(mean=0.004, cv=0.5)), a.io(a.Lognormal(mean=0.02, cv=0.5)),
        a.cpu(a.Lognormal(mean=0.002, cv=0.5))))
    sim, real = _both(w, strategy, seed=5)
    np.testing.assert_allclose(sim.done, real.done, **EXACT)
    np.testing.assert_allclose(sim.arrival, real.arrival, **EXACT)
    np.testing.assert_allclose(sim.arrival, a.build_scenario(w, seed=5, strategy=strategy).arrivals, **EXACT)


def test_closed_users_match_cpython():
    w = a.Workload(arrivals=a.Closed(users=5, think=a.Exponential(0.01), count=40), task=(
        a.cpu(a.Lognormal(mean=0.003, cv=0.5)), a.parallel([a.io(a.Lognormal(mean=0.02, cv=0.5))],
                                                           [a.cpu(a.Lognormal(mean=0.002, cv=0.5))])))
    sim, real = _both(w, "asyncio:3", seed=2)
    np.testing.assert_allclose(sim.done, real.done, **EXACT)


@pytest.mark.parametrize("arrivals", [{"batch": 30}, {"poisson": {"rate": 100, "count": 40}}])
@pytest.mark.parametrize("strategy", ["asyncio", "asyncio:3", "asyncio:8"])
def test_a_pipeline_on_the_loop_matches_cpython(strategy, arrivals):
    # stages joined by bounded asyncio.Queues; batching with max_wait (asyncio.timeout's timer, racing the
    # puts that wake the collecting worker); under asyncio:K the feeder takes each item's slot itself
    lognormal = {"lognormal": {"mean": 0.01, "cv": 0.5}}
    w = a.Workload.from_dict({"arrivals": arrivals, "pools": {"db": 2}, "stages": {
        "parse": {"steps": [{"cpu": lognormal}], "workers": 2, "queue": 4},
        "embed": {"steps": [{"io": {"lognormal": {"mean": 0.03, "cv": 0.3}}}], "workers": 2, "queue": 8,
                  "batch": 4, "max_wait": 0.005},
        "store": {"steps": [{"use": {"pool": "db", "steps": [{"io": lognormal}]}}], "workers": 3, "queue": 8},
    }})
    sim, real = _both(w, strategy, seed=4)
    np.testing.assert_allclose(sim.done, real.done, **EXACT)


# ----------------------------------------------------------------------------- random workloads


def _random_workload(seed: int) -> tuple[a.Workload, str]:
    """A random mix of cpu, io, parallel and pool steps, arrivals and limit (the fuzz these rules came from)."""
    r = random.Random(seed)

    def lognormal(mean: float) -> a.Lognormal:
        return a.Lognormal(mean=mean, cv=0.4)

    def steps(depth: int = 0) -> list[object]:
        out: list[object] = []
        for _ in range(r.randint(1, 4)):
            k = r.random()
            if k < 0.35:
                out.append(a.cpu(lognormal(r.choice([0.001, 0.003, 0.006]))))
            elif k < 0.7:
                out.append(a.io(lognormal(r.choice([0.01, 0.03, 0.06]))))
            elif k < 0.85 and depth == 0:
                out.append(a.parallel(*[steps(1) for _ in range(r.randint(2, 3))]))
            elif depth == 0:
                out.append(a.use("db", steps(1)))
            else:
                out.append(a.cpu(lognormal(0.002)))
        return out

    arrivals = r.choice([a.Batch(count=25), a.Poisson(rate=150, count=40),
                         a.Closed(users=6, think=a.Exponential(0.01), count=30)])
    w = a.Workload(task=tuple(steps()), pools={"db": a.Pool(capacity=r.randint(1, 4))}, arrivals=arrivals)
    return w, r.choice(["asyncio", "asyncio:3", "asyncio:8"])


@pytest.mark.parametrize("seed", [7, 9, 11, 36, 77, 91, 92, 120, 131, 134, 150, 187])
def test_random_workloads_match_cpython(seed):
    # seeds that once differed, each for a rule the loop now follows (admission on the loop, the main
    # coroutine's late creation, gather's call_soon order, settled hand-offs, the locked semaphore)
    w, strategy = _random_workload(seed)
    sim, real = _both(w, strategy, seed=seed)
    np.testing.assert_allclose(sim.done, real.done, **EXACT)


# ------------------------------------------------------------------ the limit's semaphore, costed

BLOCK, SCAN = 4e-4, 1e-4  # far above the real ~1.2 us and ~17 ns, so that every charge moves the done times


@pytest.fixture
def costed_semaphore(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """CPython's own asyncio.Semaphore, charging virtual CPU where the real one spends it: BLOCK for an acquire()
    that must wait (a future made and queued), SCAN per waiter `_wake_up_next` walks past (those handed a slot
    that have not resumed). Returns [walks, blocked acquires] as they happen."""
    seen = [0, 0]
    acquire = asyncio.Semaphore.acquire

    def charge(seconds: float) -> None:
        asyncio.get_running_loop().clock.advance(seconds)  # type: ignore[attr-defined]  # a VirtualLoop

    def wake_up_next(self: asyncio.Semaphore) -> None:  # Lib/asyncio/locks.py (3.11), with the walk charged
        waiters = self._waiters  # type: ignore[attr-defined]
        if not waiters:
            return
        for k, fut in enumerate(waiters):
            if not fut.done():
                seen[0] += k
                charge(k * SCAN)
                self._value -= 1  # type: ignore[attr-defined]
                fut.set_result(True)
                return
        seen[0] += len(waiters)
        charge(len(waiters) * SCAN)

    async def costed_acquire(self: asyncio.Semaphore) -> bool:
        if self.locked():
            seen[1] += 1
            charge(BLOCK)
        return await acquire(self)

    monkeypatch.setattr(asyncio.Semaphore, "_wake_up_next", wake_up_next)
    monkeypatch.setattr(asyncio.Semaphore, "acquire", costed_acquire)
    return seen


@pytest.mark.parametrize(("seed", "arrivals", "strategy"), [
    (1, a.Batch(count=40), "asyncio:8"), (2, a.Batch(count=60), "asyncio:20"),
    (3, a.Poisson(rate=400, count=50), "asyncio:6"), (4, a.Batch(count=30), "asyncio:12")])
def test_a_limits_blocked_first_steps_and_release_walks_cost_as_in_cpython(costed_semaphore, seed, arrivals,
                                                                          strategy):
    # a first step that waits at the limit costs Machine.loop_block_s (not a resumption's loop_step_s), and each
    # release walks past the waiters woken and not resumed yet, Machine.semaphore_scan_s each: done times exact
    w = a.Workload(arrivals=arrivals, task=(
        a.cpu(a.Lognormal(mean=0.003, cv=0.5)), a.io(a.Lognormal(mean=0.02, cv=0.5)),
        a.parallel([a.cpu(a.Lognormal(mean=0.002, cv=0.5))], [a.io(a.Lognormal(mean=0.01, cv=0.5))]),
        a.cpu(a.Lognormal(mean=0.001, cv=0.5))))
    sc = a.build_scenario(w, seed=seed, strategy=strategy)
    real = run_real(sc, loop="virtual")
    walks, blocked = costed_semaphore
    assert walks > 0
    assert blocked > 0  # both rules are exercised
    sim = a.simulate(sc, machine=a.Machine(loop_block_s=BLOCK, semaphore_scan_s=SCAN))
    np.testing.assert_allclose(sim.done, real.done, **EXACT)
    # without either charge the model is off: the rules are what makes it exact
    for off in ({"loop_block_s": 0.0}, {"semaphore_scan_s": 0.0}):
        other = a.simulate(sc, machine=a.Machine(loop_block_s=BLOCK, semaphore_scan_s=SCAN).evolve(**off))
        assert not np.allclose(other.done, real.done, **EXACT)
