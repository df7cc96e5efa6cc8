"""A machine profile: this machine's measured overheads (`asyncsim calibrate`), saved as versioned JSON.

`machine_for` turns it into the `Machine` the simulator uses for one strategy, with overheads converted
to model time when a run is scaled (overheads do not scale with the workload: at time scale s a real
overhead o is o / s model seconds).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from ._io import write_atomic
from ._json import dumps
from ._model import Frozen
from .errors import ModelError
from .services import ClientCpu, Service, client_profiles
from .spec import Machine, Workload, format_errors
from .strategies import Strategy

__all__ = ["LoopProfile", "MachineProfile"]

PROFILE_VERSION = 1
# fields that profiles saved by earlier releases may hold and this one no longer uses: read and dropped
# (loop_read_handoff_s: a fitted rule that the thread pool's work-queue protocol replaced, 2026-12-06)
RETIRED_FIELDS = frozenset({"loop_read_handoff_s"})


class LoopProfile(Frozen):
    """Overheads of one event loop implementation, in real seconds."""

    loop_step_s: float = Field(ge=0)
    sleep_overshoot_s: float = Field(ge=0)
    task_create_s: float = Field(ge=0)
    loop_block_s: float | None = Field(None, ge=0)  # a first step that waits at its limit (None in older profiles)
    semaphore_scan_s: float = Field(0.0, ge=0)  # per woken waiter a release walks past (0 in older profiles)
    timer_floor_s: float = Field(ge=0)
    timer_granularity_s: float = Field(0.0, ge=0)


class MachineProfile(Frozen):
    """What `asyncsim calibrate` measured on one machine (real seconds)."""

    version: int = PROFILE_VERSION
    created: str = ""
    python: str = ""
    implementation: str = ""
    platform: str = ""
    cpu_count: int = Field(1, ge=1)
    gil: bool = True
    cpu_rate: float = Field(gt=0)
    switch_interval_s: float = Field(0.005, gt=0)
    loops: dict[str, LoopProfile]
    thread_sleep_overshoot_s: float = Field(ge=0)
    thread_switch_s: float = Field(ge=0)
    # the same hand-off after the woken thread's core idled 1 ms (None in profiles made before: thread_switch_s)
    thread_switch_idle_s: float | None = Field(None, ge=0)
    # how long without a switch makes a hand-off the idle one: fitted on recorded runs, not measured by calibrate
    # (Machine.thread_idle_after_s)
    thread_idle_after_s: float = Field(1e-3, gt=0)
    thread_start_s: float = Field(0.0, ge=0)  # threading.Thread.start() (0 in profiles made before)
    # a ThreadPoolExecutor worker's time between jobs an event loop awaits (0 in profiles made before)
    thread_turnaround_s: float = Field(0.0, ge=0)
    # the same between tasks of a blocking pool (threads:N), nobody awaiting them (0 in profiles made before)
    thread_task_turnaround_s: float = Field(0.0, ge=0)
    # the loop's CPU per job sent to a thread pool: run_in_executor, and the result's handle (0 in profiles before)
    thread_submit_s: float = Field(0.0, ge=0)
    thread_return_s: float = Field(0.0, ge=0)
    # how long the loop may idle in select() and still win a worker's result write's race (0 in profiles before)
    loop_race_idle_s: float = Field(0.0, ge=0)
    # the share of those races a loop idle briefly wins, with one warm pool (None in profiles before: every second)
    loop_race_wins: float | None = Field(None, ge=0, le=1)
    # the idle loop's wake-up by another thread's call_soon_threadsafe (0 in profiles made before)
    loop_wake_s: float = Field(0.0, ge=0)
    # the loop's self-pipe reader handle, once per iteration that finds another thread's writes (0 in profiles before)
    loop_read_s: float = Field(0.0, ge=0)
    process_dispatch_s: float = Field(ge=0)
    # an offloaded CPU step's round trip from an event loop, in two legs (None in profiles made before them)
    process_submit_s: float | None = Field(None, ge=0)  # run_in_executor() to the worker starting the job
    process_return_s: float | None = Field(None, ge=0)  # the worker ending it to the coroutine running
    process_start_s: float = Field(0.0, ge=0)  # per worker, starting a pool (0 in profiles made before)
    # an idle worker's wake-up for a job while another worker computes (0 in profiles made before)
    process_wake_busy_s: float = Field(0.0, ge=0)
    # a worker's time between two tasks when the next one is already queued (None in profiles made before: the
    # whole dispatch round trip is taken, as those versions did)
    process_turnaround_s: float | None = Field(None, ge=0)
    # how much later the loop's thread wakes while a process pool keeps every core busy (0 in profiles made before)
    busy_wake_s: float = Field(0.0, ge=0)
    # Linux's load-balancing tick for threads beyond the cores (Machine.core_balance_s; 0 in profiles made before)
    core_balance_s: float = Field(0.0, ge=0)
    # the spread of the same CPU work's time (Machine.cpu_jitter_cv; 0 in profiles made before)
    cpu_jitter_cv: float = Field(0.0, ge=0, le=1)
    # CPU seconds per request of a client library on its calling thread (`calibrate --client NAME`), by package
    client_cpu_s: dict[str, float] = Field(default_factory=dict)

    def with_clients(self, workload: Workload) -> Workload:
        """`workload` whose services name a client profile of a measured library (and give no `client_cpu`)
        spending its measured CPU per request, half before sending and half after the answer."""
        def measured(svc: Service) -> float | None:
            libraries = [p.library for p in client_profiles(svc.client) if p.library] if svc.client else []
            return self.client_cpu_s.get(libraries[0]) if libraries else None

        return with_client_cpu(workload, measured)

    def loop(self, name: str = "asyncio") -> LoopProfile:
        """The overheads of loop `name` (asyncio or uvloop)."""
        if name not in self.loops:
            raise ModelError(f"loop: the profile has no measurements for {name!r} (has: {', '.join(self.loops)})")
        return self.loops[name]

    def timer_floor_s(self, loop: str = "asyncio") -> float:
        """The shortest wait this machine's timers honour (real seconds)."""
        return self.loop(loop).timer_floor_s

    @model_validator(mode="before")
    @classmethod
    def _drop_retired(cls, data: Any) -> Any:
        """A profile saved by an earlier release keeps loading: fields it no longer uses are dropped."""
        if isinstance(data, dict) and RETIRED_FIELDS & data.keys():
            return {k: v for k, v in data.items() if k not in RETIRED_FIELDS}
        return data

    def machine_for(self, strategy: Strategy, base: Machine, *, time_scale: float = 1.0,
                    loop: str = "asyncio", emulated_waits: bool = False) -> Machine:
        """The Machine to simulate `strategy` with: `base`'s cores and GIL, this profile's overheads / time_scale.

        `emulated_waits` (for validation): waits are timers (sleeps) as in the real runner, so they carry the
        timers' overshoot and granularity; a real program waiting on sockets does not.
        """
        lp = self.loop(loop)
        uses_loop, threaded, dispatching = strategy.on_loop, strategy.threaded, strategy.dispatching
        s = time_scale
        return base.evolve(
            switch_interval_s=self.switch_interval_s / s,
            loop_step_s=lp.loop_step_s / s if uses_loop else 0.0,
            task_create_s=lp.task_create_s / s if uses_loop else 0.0,
            loop_block_s=lp.loop_block_s / s if uses_loop and lp.loop_block_s is not None else None,
            semaphore_scan_s=lp.semaphore_scan_s / s if uses_loop else 0.0,
            sleep_overshoot_s=((lp.sleep_overshoot_s if uses_loop else self.thread_sleep_overshoot_s) / s
                               if emulated_waits else 0.0),
            timer_granularity_s=lp.timer_granularity_s / s if uses_loop and emulated_waits else 0.0,
            thread_switch_s=self.thread_switch_s / s if threaded else 0.0,
            thread_switch_idle_s=(self.thread_switch_idle_s / s if threaded and self.thread_switch_idle_s is not None
                                  else None),
            thread_idle_after_s=self.thread_idle_after_s / s,
            thread_start_s=self.thread_start_s / s if threaded or base.gil else 0.0,
            thread_turnaround_s=((self.thread_turnaround_s if uses_loop else self.thread_task_turnaround_s) / s
                                 if threaded else 0.0),
            thread_submit_s=self.thread_submit_s / s if threaded and uses_loop else 0.0,
            thread_return_s=self.thread_return_s / s if threaded and uses_loop else 0.0,
            loop_race_idle_s=self.loop_race_idle_s / s if threaded and uses_loop else 0.0,
            loop_race_wins=base.loop_race_wins if self.loop_race_wins is None else self.loop_race_wins,
            loop_wake_s=self.loop_wake_s / s if threaded and uses_loop else 0.0,
            loop_read_s=self.loop_read_s / s if threaded and uses_loop else 0.0,
            process_dispatch_s=self._dispatch(uses_loop) / s if dispatching else 0.0,
            process_return_s=(self.process_return_s or 0.0) / s if dispatching and uses_loop else 0.0,
            process_start_s=self.process_start_s / s if dispatching else 0.0,
            process_wake_busy_s=self.process_wake_busy_s / s if dispatching else 0.0,
            process_turnaround_s=(self.process_dispatch_s if self.process_turnaround_s is None
                                  else self.process_turnaround_s) / s if dispatching and not uses_loop else 0.0,
            busy_wake_s=self.busy_wake_s / s if dispatching and uses_loop else 0.0,
            core_balance_s=self.core_balance_s / s,
            cpu_jitter_cv=self.cpu_jitter_cv,
        )

    def _dispatch(self, from_loop: bool) -> float:
        """What a process round trip costs before the job runs: a blocking caller's whole round trip, or an
        event loop's submit leg (its return leg is `process_return_s`)."""
        if from_loop and self.process_submit_s is not None:
            return self.process_submit_s
        return self.process_dispatch_s

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write as JSON atomically (a temporary file renamed into place)."""
        write_atomic(path, dumps(self.model_dump(), indent=2) + "\n")

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> MachineProfile:
        """Read a saved profile.

        Raises:
            ModelError: unreadable file, not JSON, a newer version, or invalid fields.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise ModelError(f"cannot read the machine profile: {exc.strerror}", source=str(path)) from None
        except json.JSONDecodeError as exc:
            raise ModelError(f"line {exc.lineno}: not valid JSON: {exc.msg}", source=str(path)) from None
        if isinstance(data, dict) and data.get("version", PROFILE_VERSION) > PROFILE_VERSION:
            raise ModelError(f"version: {data['version']} is newer than this asyncsim reads ({PROFILE_VERSION})",
                             source=str(path))
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ModelError(format_errors(exc), source=str(path)) from None


def with_client_cpu(workload: Workload, per_request: Callable[[Service], float | None]) -> Workload:
    """`workload` with each service that gives no `client_cpu` spending `per_request(service)` CPU seconds per
    attempt (None: none), half before sending and half after the answer."""
    services = {}
    for name, svc in workload.services.items():
        per = per_request(svc) if svc.client_cpu is None else None
        if per is not None:
            svc = svc.model_copy(update={"client_cpu": ClientCpu(before=per / 2, after=per / 2)})
        services[name] = svc
    return workload.model_copy(update={"services": services})
