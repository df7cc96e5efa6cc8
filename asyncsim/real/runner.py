"""The real runner: executes a Scenario for real under asyncio, threads, processes or sequentially.

It runs the very draws the simulator runs (a paired comparison), and the very rules: each task's steps are
the task interpreter's commands (`rules.task.steps`, calls through `rules.calls.attempts`), carried out for
real by a driver — `aio` (coroutines on one event loop: `asyncio.sleep`, semaphores, `gather`,
`run_in_executor`) or `_workers` (threads and processes: `time.sleep`, thread fan-out); `pipeline` runs
stage workers joined by `asyncio.Queue`s. CPU work is calibrated pure Python (`cpuwork`); a service is the
emulated server of `service` (a FIFO schedule of its slots, a policy queue `server_queue`, or a dynamic
batcher); a scheduling policy other than FIFO is applied as a user would (`sched`). Rate-limit buckets run in
model seconds, so a rate means the same at any time scale. Everything records into a `run.Run`: the same
Trace and CallLog as the simulator (model seconds: real seconds / time_scale, from `time.perf_counter`), with
each CPU step's thread CPU time in `cpu_s`.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor

from ..scenario import Scenario
from ..strategies import Strategy
from ..trace import RunOutput
from . import _workers
from .aio import AsyncRun
from .cpuwork import CpuWork, measure_rate
from .pipeline import run_pipeline
from .run import Run, StepHook
from .vloop import VirtualClock, VirtualCpu, VirtualLoop

__all__ = ["StepHook", "run_real"]

def run_real(scenario: Scenario, *, time_scale: float = 1.0, cpu_rate: float | None = None,
             loop: str = "asyncio", on_step: StepHook | None = None) -> RunOutput:
    """Execute `scenario` for real under its strategy; durations are multiplied by `time_scale`.

    `cpu_rate` (iterations/s of the busy loop) is measured now when not given. `loop` is 'asyncio', 'uvloop'
    or 'virtual': CPython's loop on a virtual clock, CPU work charged at its nominal duration (`vloop`).
    An interrupted run (KeyboardInterrupt) returns what it measured, with unfinished tasks' `done` left NaN.
    """
    if time_scale <= 0:
        raise ValueError(f"time_scale must be > 0, got {time_scale}")
    strategy = scenario.strategy
    clock: VirtualClock | None = None
    if loop == "virtual":
        if not strategy.on_loop or strategy.executor is not None:
            raise ValueError(f"loop 'virtual' runs asyncio strategies without an executor, not {strategy}")
        clock = VirtualClock()
        run = Run(scenario, time_scale, VirtualCpu(clock), on_step, clock)
    else:
        run = Run(scenario, time_scale, CpuWork(cpu_rate if cpu_rate is not None else measure_rate()), on_step)
    caps: dict[str, int | None] = {"cores": scenario.workload.machine.cores, "loop": 1, "gil": 1}
    caps.update({f"pool:{k}": p.capacity for k, p in scenario.workload.pools.items()})
    caps.update({f"service:{k}": s.concurrency or (s.batching.instances if s.batching else None)
                 for k, s in scenario.workload.services.items()})
    caps.update({f"stage:{k}": s.workers for k, s in (scenario.workload.stages or {}).items()})
    interrupted = False
    try:
        if strategy.on_loop:
            caps["limit"] = strategy.admission
            if strategy.executor is not None:
                caps["executor"] = strategy.executor.workers
            _run_asyncio(run, strategy, loop, clock)
        else:
            workers = strategy.admission
            assert workers is not None  # a blocking strategy has a worker count
            caps["workers"] = workers
            if strategy.dispatching:
                _workers.run_processes(run, workers)
            else:
                _workers.run_threads(run, workers, fan_out=strategy.forks)
    except KeyboardInterrupt:
        interrupted = True
    return RunOutput(run.tb.build(), run.arrival, run.done, scenario.task_type, run.failed, 0, caps,
                     errors=dict(run.errors), interrupted=interrupted,
                     calls=run.calls.build() if run.calls is not None else None, pool_startup_s=run.pool_startup)


# ------------------------------------------------------------------------------------------- asyncio


def _loop_factory(name: str, clock: VirtualClock | None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if name == "asyncio":
        return None
    if clock is not None:
        return lambda: VirtualLoop(clock)
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise ValueError("--loop uvloop: uvloop is not installed (pip install 'asyncsim[uvloop]')") from None
        return uvloop.new_event_loop
    raise ValueError(f"loop must be 'asyncio', 'uvloop' or 'virtual', got {name!r}")


def _run_asyncio(run: Run, strategy: Strategy, loop_name: str, clock: VirtualClock | None) -> None:
    factory = _loop_factory(loop_name, clock)
    executor: Executor | None = None
    off = strategy.executor
    if off is not None:
        executor = (_workers.start_process_pool(run, off.workers) if strategy.dispatching
                    else ThreadPoolExecutor(off.workers))
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            arun = AsyncRun(run, strategy, executor)
            runner.run(arun.main() if run.sc.workload.stages is None else run_pipeline(arun))
    finally:
        if executor is not None:
            if isinstance(executor, _workers.ProcessPool):
                _workers.note_startup(run, executor)
            executor.shutdown(wait=True, cancel_futures=True)


