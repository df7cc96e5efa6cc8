"""The lean run loop and task driver (sim/driver.py) rely on SimPy internals: these tests fail loudly when a
SimPy release changes them, and check that the driver schedules exactly what `simpy.Process` and `env.run()`
would (pyproject pins simpy to the minor version they were written against)."""

from __future__ import annotations

import heapq

import pytest
import simpy
from simpy.events import Initialize

from asyncsim.sim.driver import TaskDriver, run_until_empty


def test_simpy_is_the_minor_version_the_driver_was_written_against():
    assert simpy.__version__.startswith("4.1."), (
        f"simpy {simpy.__version__}: sim/driver.py reads Environment._queue, _now, _eid and Event._ok/_value; "
        "check them against this release, then widen the pin in pyproject.toml")


def test_the_internals_the_driver_reads_are_there():
    env = simpy.Environment()
    timeout = env.timeout(2.0, value="v")
    assert isinstance(env._queue, list)
    when, priority, eid, event = env._queue[0]  # the heap entries run_until_empty pops
    assert (when, event) == (2.0, timeout)
    assert isinstance(priority, int)
    assert isinstance(eid, int)
    assert next(env._eid) == 1  # the event counter that Result.events reports
    assert timeout._ok is True
    assert timeout._value == "v"
    assert heapq.heappop(env._queue)[3] is timeout
    assert Initialize.__init__.__code__.co_varnames[1:3] == ("env", "process")


def _program(env: simpy.Environment, log: list[tuple[float, str]], name: str, delays: list[float]):
    for d in delays:
        value = yield env.timeout(d, value=d)
        log.append((env.now, f"{name}:{value}"))
    done = env.event()
    done.succeed()
    yield done  # an event already processed by the time it is yielded is carried on from at once
    log.append((env.now, f"{name}:end"))


@pytest.mark.parametrize("limited", [False, True])
def test_the_driver_runs_programs_as_simpy_does(limited):
    def run(use_driver: bool) -> tuple[list[tuple[float, str]], int]:
        env = simpy.Environment()
        log: list[tuple[float, str]] = []
        for name, delays in (("a", [1.0, 0.5, 2.0]), ("b", [0.5, 1.0]), ("c", [1.5, 0.0, 1.0])):
            gen = _program(env, log, name, delays)
            TaskDriver(env, gen) if use_driver else env.process(gen)
        if use_driver:
            stopped = run_until_empty(env, until=10.0 if limited else None, max_events=10_000 if limited else None)
            assert stopped is None
        else:
            env.run()
        return log, int(env.now * 1000)

    assert run(True) == run(False)


def test_run_limits_say_which_limit_stopped_the_run():
    env = simpy.Environment()
    for _ in range(3):
        env.timeout(5.0)
    assert run_until_empty(env, until=1.0) == "max_sim_time"
    assert env.now == 1.0
    assert run_until_empty(env, max_events=2) == "max_events"
