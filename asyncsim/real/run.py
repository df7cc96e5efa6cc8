"""One real run's shared state: its clock (model seconds), recorders, per-task table and resource codes.

Every real driver (`aio` for asyncio, `_workers` for threads and processes, `pipeline`) records into a `Run`,
so a real run yields the simulator's Trace and CallLog.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..rules.calls import StepFailedError
from ..rules.queues import Ticket, Tickets
from ..rules.task import Context, no_calls
from ..scenario import Node, Scenario
from ..trace import CallLog, TraceBuilder
from .cpuwork import CpuWork
from .service import RealService

__all__ = ["Run", "StepHook", "error_text"]

StepHook = Callable[[int, Node], None]
"""Called before each leaf step of a real run with (task, node); raising fails the task with that error.

Under processes:N it runs in the worker processes (inherited when they fork)."""


def error_text(exc: BaseException) -> str:
    """How a failed task's error is reported: a modelled failure as the simulator words it."""
    return str(exc) if isinstance(exc, StepFailedError) else f"{type(exc).__name__}: {exc}"


class Run:
    """State shared by every runner: the clock, the recorder, the per-task table, resource codes."""

    def __init__(self, scenario: Scenario, scale: float, cpu: CpuWork, on_step: StepHook | None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.sc = scenario
        self.clock = clock  # real seconds (perf_counter), or a virtual clock (`vloop`)
        self.scale = scale
        self.cpu = cpu
        self.on_step = on_step
        self.tb = TraceBuilder()
        self.lock = threading.Lock()
        n = scenario.n_tasks
        self.arrival = np.full(n, np.nan)
        self.done = np.full(n, np.nan)
        self.failed = np.zeros(n, dtype=bool)
        self.errors: dict[int, str] = {}
        self.t0 = clock()
        self.tickets = Tickets(scenario)
        w = scenario.workload
        self.pool_res = {k: self.tb.resource_id(f"pool:{k}") for k in w.pools}
        self.service_res = {k: self.tb.resource_id(f"service:{k}") for k in w.services}
        # the simulator's codes for limiter waits and back-offs (names are what a trace compares)
        self.service_codes = {k: (self.service_res[k],
                                  self.tb.resource_id(f"limiter:{k}") if s.client_limit else -1,
                                  self.tb.resource_id(f"backoff:{k}") if s.waits_to_retry else -1)
                              for k, s in w.services.items()}
        self.calls = CallLog() if w.services else None
        self.pool_startup: float | None = None  # a process pool's start-up, model seconds (None: no pool)

    def rules(self, services: dict[str, RealService], release: Callable[[int, Node], None]) -> Context:
        """The task interpreter's view of this run (`rules.task.Context`): its clock and recorders, `services`,
        the pools' trace codes and timeouts, `release`, and the step hook."""
        pools = {k: (self.pool_res[k], p.timeout) for k, p in self.sc.workload.pools.items()}
        return Context(clock=self.now, add=self.tb.add, log=self.calls.add if self.calls is not None else no_calls,
                       services=services, pools=pools, release=release, on_step=self.on_step)

    def now(self) -> float:
        """Model seconds since the start."""
        return (self.clock() - self.t0) / self.scale

    def model_time(self, perf: float) -> float:
        """A perf_counter reading (from any process on this host) in model seconds."""
        return (perf - self.t0) / self.scale

    def add(self, *record: Any) -> None:
        """Append one record; thread-safe (a record is several writes)."""
        with self.lock:
            self.tb.add(*record)

    def log_call(self, *row: Any) -> None:
        """Append one call attempt to the call log; thread-safe."""
        with self.lock:
            assert self.calls is not None  # only a model with services logs calls
            self.calls.add(*row)

    def services(self, *, mp: Any = None, asyncio: bool = False) -> dict[str, RealService]:
        """The workload's services as emulated servers (in shared memory when `mp` is given)."""
        return {k: RealService(k, s, self.service_codes[k], mp=mp, asyncio=asyncio)
                for k, s in self.sc.workload.services.items()}

    def durations(self, i: int) -> list[float]:
        """Task i's draws in model units (seconds, tokens, uniforms); waits are scaled where they are slept."""
        return self.sc.task_durations(i).tolist()

    def steps(self, i: int) -> tuple[Node, ...]:
        """Task i's compiled steps."""
        return self.sc.programs[self.sc.task_type[i]].steps

    def ticket(self, i: int) -> Ticket:
        """What a scheduling policy knows of task i (as the simulator's `ticket`), from its measured arrival."""
        return self.tickets(i, float(self.arrival[i]))

    def fail(self, i: int, exc: BaseException) -> None:
        """Record task i as failed with its error."""
        self.failed[i] = True
        self.errors[i] = error_text(exc)

    def think(self, counter: list[int]) -> float | None:
        """A closed-loop user's next think time (model seconds), or None when every task has been submitted.

        `counter` is shared by the run's users: [think times taken, tasks submitted]; callers on several threads
        hold a lock around it.
        """
        think = self.sc.think
        assert think is not None  # a closed workload
        if counter[0] >= think.size:
            return None
        counter[0] += 1
        return float(think[counter[0] - 1])

    def submitted(self, counter: list[int]) -> int:
        """The task a user submits when its think time is over; it arrives now."""
        i = counter[1]
        counter[1] += 1
        self.arrival[i] = self.now()
        return i

    def arrive_at(self, i: int, t_model: float) -> None:
        """Sleep (this thread) until task i's arrival time, and record when it actually arrived.

        A timer wakes late (by up to a millisecond under asyncio); the task arrives when it is handed over,
        so its latency is measured from then. If the time had already passed, it arrived on time and waited.
        """
        delay = self.t0 + t_model * self.scale - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
            self.arrival[i] = self.now()
        else:
            self.arrival[i] = t_model
