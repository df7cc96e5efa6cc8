"""The real runner: executes a Scenario for real under asyncio, threads, processes or sequentially.

It runs the very draws the simulator runs (a paired comparison): `io` is `asyncio.sleep` / `time.sleep`,
`cpu` is calibrated pure-Python work (`cpuwork`), pools and service concurrency are real semaphores,
`parallel` is `asyncio.gather` or a thread fan-out, the asyncio limit is a real `asyncio.Semaphore` and
offload is `loop.run_in_executor`; a service is a FIFO schedule of its server slots kept by the server side
(`service`), which the client awaits, or an emulated dynamic batcher. A scheduling policy other than FIFO
is implemented as a user would (`sched`: a policy-aware semaphore, a dispatcher handing tasks to workers
in policy order, a limiter granting tokens in policy order; `server_queue`: the server's own queue), with
the simulator's tickets (`policies.Tickets`). A call goes through the simulator's
own attempt loop (`calls.attempts`: limiter, server rate limit, failures, timeout, back-off) with real
sleeps; its rate-limit buckets run in model seconds, so a rate means the same at any time scale. It records
the same Trace and CallLog as the simulator (times in model seconds: real seconds / time_scale, from
`time.perf_counter`), and each CPU step's thread CPU time in `cpu_s`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import numpy as np

from ..rules.calls import BATCH, LIMIT, SERVE, SLEEP
from ..rules.queues import Ticket, Tickets
from ..rules.task import ACQUIRE, CPU_WORK, FORK, IO_WAIT, Context, steps
from ..scenario import Node, Scenario
from ..strategies import Strategy
from ..trace import K_ADMIT, K_CPU, CallLog, RunOutput, TraceBuilder
from . import _workers
from .cpuwork import CpuWork, measure_rate
from .pipeline import run_pipeline
from .sched import AsyncPolicySemaphore
from .service import RealService

__all__ = ["StepHook", "run_real"]

StepHook = Callable[[int, Node], None]
"""Called before each leaf step of a real run with (task, node); raising fails the task with that error.

Under processes:N it runs in the worker processes (inherited when they fork)."""


class _Run:
    """State shared by every runner: the clock, the recorder, the per-task table, resource codes."""

    def __init__(self, scenario: Scenario, scale: float, cpu: CpuWork, on_step: StepHook | None) -> None:
        self.sc = scenario
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
        self.t0 = time.perf_counter()
        self.tickets = Tickets(scenario)
        w = scenario.workload
        self.pool_res = {k: self.tb.resource_id(f"pool:{k}") for k in w.pools}
        self.service_res = {k: self.tb.resource_id(f"service:{k}") for k in w.services}
        # the simulator's codes for limiter waits and back-offs (names are what a trace compares)
        self.service_codes = {k: (self.service_res[k],
                                  self.tb.resource_id(f"limiter:{k}") if s.client_limit else -1,
                                  self.tb.resource_id(f"backoff:{k}") if s.attempts > 1 else -1)
                              for k, s in w.services.items()}
        self.calls = CallLog() if w.services else None

    def rules(self, services: dict[str, RealService], release: Callable[[int, Node], None]) -> Context:
        """The task interpreter's view of this run (`rules.task.Context`): its clock and recorders, `services`,
        the pools' trace codes and timeouts, `release`, and the step hook."""
        pools = {k: (self.pool_res[k], p.timeout) for k, p in self.sc.workload.pools.items()}
        return Context(clock=self.now, add=self.tb.add, log=self.calls.add if self.calls is not None else _no_calls,
                       services=services, pools=pools, release=release, on_step=self.on_step)

    def now(self) -> float:
        """Model seconds since the start."""
        return (time.perf_counter() - self.t0) / self.scale

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
            self.calls.add(*row)  # type: ignore[union-attr]

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
        self.errors[i] = _workers.error_text(exc)

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


def run_real(scenario: Scenario, *, time_scale: float = 1.0, cpu_rate: float | None = None,
             loop: str = "asyncio", on_step: StepHook | None = None) -> RunOutput:
    """Execute `scenario` for real under its strategy; durations are multiplied by `time_scale`.

    `cpu_rate` (iterations/s of the busy loop) is measured now when not given. An interrupted run
    (KeyboardInterrupt) returns what it measured, with unfinished tasks' `done` left NaN.
    """
    if time_scale <= 0:
        raise ValueError(f"time_scale must be > 0, got {time_scale}")
    cpu = CpuWork(cpu_rate if cpu_rate is not None else measure_rate())
    strategy = scenario.strategy
    run = _Run(scenario, time_scale, cpu, on_step)
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
            _run_asyncio(run, strategy, loop)
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
                     calls=run.calls.build() if run.calls is not None else None)


# ------------------------------------------------------------------------------------------- asyncio


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if name == "asyncio":
        return None
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise ValueError("--loop uvloop: uvloop is not installed (pip install 'asyncsim[uvloop]')") from None
        return uvloop.new_event_loop
    raise ValueError(f"loop must be 'asyncio' or 'uvloop', got {name!r}")


def _run_asyncio(run: _Run, strategy: Strategy, loop_name: str) -> None:
    factory = _loop_factory(loop_name)
    executor: Executor | None = None
    off = strategy.executor
    if off is not None:
        executor = (_workers.start_process_pool(run, off.workers) if strategy.dispatching
                    else ThreadPoolExecutor(off.workers))
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            arun = _AsyncRun(run, strategy, executor)
            runner.run(arun.main() if run.sc.workload.stages is None else run_pipeline(arun))
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


class _AsyncRun:
    def __init__(self, run: _Run, strategy: Strategy, executor: Executor | None) -> None:
        self.run = run
        w = run.sc.workload
        self.limit: Any = None
        cap = strategy.admission
        if cap:
            self.limit = (AsyncPolicySemaphore(cap, w.policy) if w.policy.kind != "fifo" and w.stages is None
                          else asyncio.Semaphore(cap))
        self.pools = {k: (AsyncPolicySemaphore(p.capacity, p.policy) if p.policy.kind != "fifo"
                          else asyncio.Semaphore(p.capacity), p.timeout) for k, p in w.pools.items()}
        self.services = run.services(asyncio=True)
        self.executor = executor
        self.rules = run.rules(self.services, self._release)
        tb = run.tb
        self.admit_res = tb.resource_id("limit")
        self.exec_res = tb.resource_id("executor") if executor is not None else tb.resource_id("loop")

    async def main(self) -> None:
        run, sc = self.run, self.run.sc
        tasks: list[asyncio.Task[None]] = []
        if sc.arrivals is not None:
            for i, t in enumerate(sc.arrivals.tolist()):
                delay = run.t0 + t * run.scale - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                    run.arrival[i] = run.now()  # timers wake late: the task arrives when it is created
                else:
                    run.arrival[i] = t
                tasks.append(asyncio.create_task(self.task(i, self._queue(i))))
        else:
            counter = [0, 0]
            users = min(sc.workload.arrivals.users, sc.n_tasks)  # type: ignore[union-attr]
            tasks = [asyncio.create_task(self.user(counter)) for _ in range(users)]
        await asyncio.gather(*tasks)

    async def user(self, counter: list[int]) -> None:
        run = self.run
        think = run.sc.think
        assert think is not None
        while counter[0] < think.size:
            k = counter[0]
            counter[0] += 1
            await asyncio.sleep(float(think[k]) * run.scale)
            i = counter[1]
            counter[1] += 1
            run.arrival[i] = run.now()
            await self.task(i, self._queue(i))

    def _queue(self, i: int) -> Any:
        """Task i arrives: under a policy it takes its place in the admission queue now, as it arrives (its
        coroutine first runs later, maybe after a slot was handed on); the slot request to wait for."""
        return self.limit.request(self.run.ticket(i)) if isinstance(self.limit, AsyncPolicySemaphore) else None

    async def task(self, i: int, request: Any = None) -> None:
        run = self.run
        if self.limit is not None:
            if isinstance(self.limit, AsyncPolicySemaphore):
                await self.limit.wait(request)
            else:
                await self.limit.acquire()
            admitted = run.now()
            if admitted > run.arrival[i]:
                run.add(i, -1, K_ADMIT, self.admit_res, run.arrival[i], admitted, admitted)
        try:
            await self.steps(i, run.durations(i), run.steps(i))
        except Exception as exc:  # a failing task is a result, not a crash
            run.fail(i, exc)
        finally:
            if self.limit is not None:
                self.limit.release()
        run.done[i] = run.now()  # not reached when interrupted: the task stays unfinished

    async def steps(self, i: int, durs: list[float], nodes: tuple[Node, ...], size: int = 1) -> None:
        """Run task i's `nodes` on the loop (`size` items ride on each call: a pipeline batch)."""
        await self.drive(i, steps(self.rules, i, durs, nodes, size))

    async def drive(self, i: int, commands: Generator[Any, Any, None]) -> None:
        """Carry out task i's commands (`rules.task.steps`) on the loop: waits are `asyncio.sleep` of the
        scaled durations, CPU work is calibrated Python run here (or in the executor).

        Raises:
            StepFailedError: a step failed (the interpreter's error, passed on); or what a step hook raised.
        """
        run = self.run
        scale = run.scale
        reply: Any = None
        while True:
            try:
                op, value, subject = commands.send(reply)
            except StopIteration:
                return
            reply = None
            if op == CPU_WORK:
                if self.executor is not None:
                    submitted = run.now()
                    loop = asyncio.get_running_loop()
                    start, end, cpu = await loop.run_in_executor(
                        self.executor, _workers.timed_burn, run.cpu.iterations(value * scale))
                    run.tb.add(i, subject.id, K_CPU, self.exec_res, submitted, run.model_time(start),
                               run.model_time(end), cpu / scale)
                    continue
                start = run.now()
                cpu = run.cpu.run(value * scale)
                run.tb.add(i, subject.id, K_CPU, self.exec_res, start, start, run.now(), cpu / scale)
            elif op == IO_WAIT:
                reply = run.now()
                await asyncio.sleep(value * scale)
            elif op == SLEEP:
                await asyncio.sleep(value * scale)
            elif op == SERVE:
                if subject.queue is not None:
                    reply = await subject.queue.serve(run.now, scale, value, run.ticket(i))
                    continue
                served, answered = subject.schedule.reserve(run.now(), value)
                await asyncio.sleep(max(0.0, answered - run.now()) * scale)
                reply = served
            elif op == ACQUIRE:
                reply = await self._acquire(i, value)
            elif op == FORK:
                # every branch finishes (gather with return_exceptions), then the interpreter raises the first
                results = await asyncio.gather(*(self.drive(i, b) for b in value), return_exceptions=True)
                reply = [r if isinstance(r, BaseException) else None for r in results]
            elif op == LIMIT:
                await subject.limiter.acquire(value, run.ticket(i), run.now, scale)
            elif op == BATCH:
                reply = await subject.batcher.serve(run.now, scale)
            # BLOCK and RESUME: this coroutine is running already

    async def _acquire(self, i: int, pool: str) -> tuple[float, bool]:
        """A slot of `pool` for task i: (when it asked, whether it got one before the pool's timeout)."""
        run = self.run
        sem, timeout = self.pools[pool]
        asked = run.now()
        try:
            async with asyncio.timeout(None if timeout is None else timeout * run.scale):
                await _acquire(sem, run, i)
        except TimeoutError:
            return asked, False
        return asked, True

    def _release(self, _i: int, node: Node) -> None:
        self.pools[node.name][0].release()  # type: ignore[index]


def _no_calls(*_row: Any) -> None:
    """The call log of a model without services (never called)."""


async def _acquire(sem: Any, run: _Run, i: int) -> None:
    """Take a slot of an asyncio semaphore, with task i's ticket when it orders its waiters by policy."""
    if isinstance(sem, AsyncPolicySemaphore):
        await sem.acquire(run.ticket(i))
    else:
        await sem.acquire()
