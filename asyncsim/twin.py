"""Your own asyncio code in virtual time: run an unmodified program on a clock that charges its real CPU.

`run(main)` (or `asyncsim twin PROGRAM.py -- ARGS`) runs the program on CPython's own event loop (the real
ready queue, tasks, timers, `gather`, semaphores, queues) whose clock is virtual: when nothing is ready the
clock jumps to the next timer, and each callback's measured thread CPU time (× `cpu_scale`: 0.5 is "a machine
twice as fast") advances it, so CPU work on the loop holds up every other task exactly as on a real loop, and
an hour of waiting costs nothing. A `time.sleep` on the loop blocks it for that long in virtual time (a common
mistake the twin shows, rather than hides); `time.time`, `time.monotonic` and `time.perf_counter` read the
virtual clock while the program runs, so the program's own timing figures are virtual too.

Each asyncio task the program creates is one task of the `Result` (the program's main coroutine counts only
when it creates none): its arrival is its creation, its latency its life; each of its steps on the loop is a
`cpu` record (its CPU), the wait from being scheduled to running a `resume` record (the loop's lag: the mark
of a saturated loop), and the time between its steps an `io` record (waiting for a timer, a future, another
task). `report` and the rest read the Result as any other.

Not yet (each fails at once with an error that says so, never a silently wrong result): network connections
(the simulated services answering over an in-memory transport come next), executors (`run_in_executor`,
`asyncio.to_thread`), subprocesses, raw sockets.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import heapq
import io
import itertools
import math
import os
import pickle
import random
import runpy
import ssl
import sys
import sysconfig
import threading
import time
import traceback
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from .api import pricing, replication_seeds
from .errors import AsyncSimError, ModelError
from .metrics import compute_result
from .real.vloop import VirtualClock, VirtualLoop
from .real.vloop import _Selector as _VirtualSelector
from .real.vnet import Network, PlainTls
from .results import METRICS, Result
from .rules.timers import timed_wait
from .serve import Api, Reply
from .services import OK, TIMEOUT
from .spec import Machine, Workload, read_yaml
from .sweep import apply
from .trace import K_CALL, K_CPU, K_IO, K_RESUME, CallLog, CallTable, Trace, TraceBuilder

__all__ = ["TaskTracker", "TwinError", "TwinLoop", "TwinWarning", "load_services", "program_task", "run", "run_program",
           "sweep_program"]


_LIBRARIES = tuple(sorted({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}))


def _programs(task: asyncio.Task[Any]) -> bool:
    """Whether a task is the program's (its coroutine written outside the standard library and installed
    packages), not a library's own (anyio's connection attempts, asyncio.run's clean-up)."""
    code = getattr(task.get_coro(), "cr_code", None)
    return code is None or not code.co_filename.startswith(_LIBRARIES)


class TwinError(AsyncSimError):
    """The program did something the twin cannot run in virtual time (the message says what, and what to do)."""


@dataclass
class _Task:
    """One asyncio task's life as the twin saw it."""

    index: int
    created: float
    last_end: float
    steps: int = 0
    done: float = float("nan")
    failed: bool = False
    covered: float = 0.0  # the end of its latest call record (the wait before it is a call, not io)


class _Gil:
    """Thread-pool jobs' CPU under one GIL: the jobs holding CPU work share it equally (processor sharing, as
    5 ms switch intervals average out), on the loop's clock; `done(job)` is called when a job's CPU is through."""

    def __init__(self, loop: TwinLoop) -> None:
        self.loop = loop
        self.running: dict[int, list[Any]] = {}  # job id -> [CPU left, its done callback]
        self.since = 0.0
        self.loop_held = 0.0  # GIL time the loop took since `since`
        self.timer: asyncio.TimerHandle | None = None
        self.ids = itertools.count()

    def run(self, cpu: float, done: Callable[[], None]) -> None:
        """Start a job's CPU now."""
        self._advance()
        self.running[next(self.ids)] = [cpu, done]
        self._schedule()

    def left(self) -> float:
        """The running jobs' CPU still to do (seconds of GIL)."""
        self._advance()
        return sum(max(0.0, job[0]) for job in self.running.values())

    def loop_used(self, cpu: float) -> None:
        """The loop held the GIL for `cpu` of the time since the last look: the jobs did not run then."""
        self.loop_held += cpu
        self._advance()
        self._schedule()

    def _advance(self) -> None:
        now = self.loop.time()
        if self.running:
            share = max(0.0, now - self.since - self.loop_held) / len(self.running)
            for job in self.running.values():
                job[0] -= share
        self.since, self.loop_held = now, 0.0

    def _schedule(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.running:
            first = min(job[0] for job in self.running.values())
            self.timer = self.loop._free(max(0.0, first) * len(self.running), self._tick)  # noqa: SLF001

    def _tick(self) -> None:
        self.timer = None
        self._advance()
        through = [k for k, job in self.running.items() if job[0] <= 1e-12]
        for k in through:
            self.running.pop(k)[1]()
        self._schedule()


class _ThreadPool:
    """A ThreadPoolExecutor's `workers` on the twin's clock: a job waits (FIFO) for a free worker, then its CPU
    runs under the GIL (`_Gil`) and its sleeps after, and its future is settled."""

    def __init__(self, loop: TwinLoop, workers: int, gil: _Gil) -> None:
        self.loop, self.free, self.gil = loop, workers, gil
        self.queue: deque[tuple[Any, ...]] = deque()

    def submit(self, cpu: float, blocked: float, *settle: Any) -> None:
        if self.free:
            self.free -= 1
            self._start(cpu, blocked, settle)
        else:
            self.queue.append((cpu, blocked, settle))

    def _start(self, cpu: float, blocked: float, settle: tuple[Any, ...]) -> None:
        def cpu_done() -> None:
            self.loop._free(blocked, self._finish, settle)  # noqa: SLF001 - its waits need no GIL

        self.gil.run(cpu, cpu_done)

    def _finish(self, settle: tuple[Any, ...]) -> None:
        self.loop.call_soon(_settle, *settle)
        if self.queue:
            self._start(*self.queue.popleft())
        else:
            self.free += 1


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


_PROGRAM_TASK: contextvars.ContextVar[asyncio.Task[Any] | None] = contextvars.ContextVar("asyncsim_program_task",
                                                                                       default=None)
"""The program's task whose work this is: set in each of its steps, so that a task a library starts on its
behalf (aiohttp writes a request body from a task of its own) inherits it with the context."""


def program_task() -> asyncio.Task[Any] | None:
    """The program's task on whose behalf the running code works (None outside one)."""
    return _PROGRAM_TASK.get()


class TaskTracker:
    """What the twin and a recording share: each callback the loop runs attributed to the program's task it
    steps (library tasks left out), that task's lag, CPU and waits recorded into a trace, and each HTTP
    exchange as a call of its service; `result()` turns them into a Result. A loop mixes it in, calls
    `_track()` once, `_attribute()` when a callback is scheduled and `_record()` when it has run."""

    tasks: dict[asyncio.Task[Any], _Task]

    def _track(self) -> None:
        self.calls = CallLog()
        self._last_failed: dict[tuple[int, int], int] = {}  # (task, service) -> attempts so far while failing
        self.tb = TraceBuilder()
        self.loop_res = self.tb.resource_id("loop")
        self.tasks = {}
        self._library: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()  # tasks of libraries, not counted
        self._due: float | None = None  # the deadline of the running timer callback

    time: Callable[[], float]  # the loop's clock

    def _attribute(self, callback: Callable[..., Any]) -> tuple[asyncio.Task[Any] | None, float]:
        """The program's task a callback steps (None: a library's, or no task) and when it became ready."""
        owner = getattr(callback, "__self__", None)  # a task's step or wake-up (C or Python Task)
        task = owner if isinstance(owner, asyncio.Task) else None
        # what a timer's callback makes ready was due at the timer's deadline: the lag since is the loop's
        scheduled = self.time() if self._due is None else min(self._due, self.time())
        if task is not None and task not in self.tasks:
            if self.tasks and (task in self._library or not _programs(task)):  # the first is the program's main
                self._library.add(task)  # a library's own task (anyio's connect, asyncio.run's clean-up)
                task = None
            else:
                self.tasks[task] = _Task(len(self.tasks), scheduled, scheduled)
        return task, scheduled

    def _record(self, task: asyncio.Task[Any], scheduled: float, start: float, held: float, spent: float) -> None:
        """A step of `task` became ready at `scheduled`, ran from `start` for `held` seconds (its CPU `spent`)."""
        rec = self.tasks[task]
        step = rec.steps
        since = max(rec.last_end, rec.covered)
        if scheduled > since and step:  # it waited for something outside the loop
            self.tb.add(rec.index, step, K_IO, -1, since, since, scheduled)
        if start > scheduled:
            self.tb.add(rec.index, step, K_RESUME, self.loop_res, scheduled, start, start)
        self.tb.add(rec.index, step, K_CPU, self.loop_res, start, start, start + held, spent)
        rec.steps, rec.last_end = step + 1, start + held
        if task.done():
            rec.done = rec.last_end
            rec.failed = task.cancelled() or task.exception() is not None

    def _call(self, task: Any, service: str, sent: float, end: float, outcome: int, tokens_in: float,
              tokens_out: float) -> None:
        """A request `task` sent to `service` was answered (or given up): a call record and a call-log row."""
        rec = self.tasks.get(task) if task is not None else None
        if rec is None:
            return
        res = self.tb.resource_id(f"service:{service}")
        self.tb.add(rec.index, rec.steps, K_CALL, res, sent, sent, end)
        rec.covered = max(rec.covered, end)
        key = (rec.index, res)
        attempt = self._last_failed.pop(key, 0)
        if outcome != OK:
            self._last_failed[key] = attempt + 1
        self.calls.add(rec.index, rec.steps, res, attempt, outcome, sent, end, tokens_in, tokens_out, 1)

    # every callback the loop schedules runs wrapped: `_wrap` times it (and, in the twin, charges it)
    def call_soon(self, callback: Callable[..., Any], *args: Any, context: Any = None) -> asyncio.Handle:
        return super().call_soon(self._wrap(callback), *args, context=context)  # type: ignore[misc]

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any,
                context: Any = None) -> asyncio.TimerHandle:
        return super().call_at(when, self._wrap(callback, due=when), *args, context=context)  # type: ignore[misc]

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any, context: Any = None) -> asyncio.Handle:
        return super().call_soon_threadsafe(self._wrap(callback), *args, context=context)  # type: ignore[misc]

    def _wrap(self, callback: Callable[..., Any], due: float | None = None) -> Callable[..., Any]:
        """`callback` as the loop runs it: attributed (`_attribute`), run, recorded (`_record`)."""
        return callback

    def _capacities(self) -> dict[str, int | None]:
        return {"loop": 1}

    def _strategy(self) -> str:
        return "observed"

    def _pricing(self) -> Any:
        return None

    def result(self, name: str, *, seed: int | None = None) -> Result:
        """The metrics of what ran: one task per asyncio task the program created, in order of creation (the
        first task, the program's main coroutine, only when it created no other)."""
        tasks = list(self.tasks.values())
        trace = self.tb.build()
        calls = self.calls.build()
        if len(tasks) > 1:  # leave out the main task, renumber the others from 0
            tasks = tasks[1:]
            keep = trace.task != 0
            trace = Trace(task=trace.task[keep] - 1, step=trace.step[keep], kind=trace.kind[keep],
                          resource=trace.resource[keep], enqueue=trace.enqueue[keep], start=trace.start[keep],
                          end=trace.end[keep], cpu_s=trace.cpu_s[keep], resources=trace.resources)
            mine = calls.task != 0
            calls = CallTable(**{f.name: getattr(calls, f.name)[mine] for f in fields(CallTable)})
            calls = replace(calls, task=calls.task - 1)
        n = len(tasks)
        arrival = np.array([t.created for t in tasks], dtype=float)
        done = np.array([t.done for t in tasks], dtype=float)
        failed = np.array([t.failed for t in tasks], dtype=bool)
        return compute_result(trace, arrival, done, np.zeros(n, dtype=np.int64), failed, model=name,
                              strategy=self._strategy(), seed=seed, capacities=self._capacities(),
                              parallel_types=np.array([True]), calls=calls if len(calls) else None,
                              pricing=self._pricing())


class _Selector(_VirtualSelector):
    """The virtual selector, with a deadlock named as the program's."""

    def __init__(self, clock: VirtualClock, loop: TwinLoop) -> None:
        super().__init__(clock)
        self.loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        try:
            return super().select(self.loop.select_timeout(timeout) if timeout else timeout)
        except RuntimeError:
            waiting = sum(1 for t in self.loop.tasks if not t.done())
            raise TwinError(f"twin: the program waits forever at {self.loop.time():.6g} s: {waiting} task(s) wait "
                            "and nothing is ready or due (a future nobody completes, an event nobody sets, a "
                            "lock never released)") from None


class TwinLoop(TaskTracker, VirtualLoop):  # type: ignore[misc]  # call_* typed loosely by the mixin
    """An asyncio selector loop on a virtual clock that advances by each callback's thread CPU × `cpu_scale`
    (and by `time.sleep` on the loop), recording each task's steps into a trace."""

    def __init__(self, cpu_scale: float = 1.0, clock: VirtualClock | None = None,
                 services: Workload | None = None, seed: int = 0, machine: Machine | None = None) -> None:
        if not cpu_scale >= 0:
            raise TwinError(f"--cpu-scale: must be >= 0 (got {cpu_scale}; 0: CPU costs nothing, and the same seed "
                            "gives the same run exactly)")
        clock = clock or VirtualClock()
        super().__init__(clock, _Selector(clock, self))
        self.cpu_scale = cpu_scale
        self.services = services
        self.machine = machine or Machine()
        self.executor_cpu_s = 0.0  # CPU of thread-pool jobs (they hold the GIL, as the twin assumes)
        self._track()
        self._cpu0: float | None = None  # thread CPU clock when the running callback started
        self._blocked = 0.0  # seconds the running callback has slept (time.sleep) so far
        self._job: list[float] | None = None  # while an executor job runs: [its CPU start, its blocked seconds]
        self._workers: dict[int, list[float]] = {}  # per process pool: when each of its workers is free (a heap)
        self._threads: dict[int, _ThreadPool] = {}  # per thread pool: its workers and queue
        self._gil = _Gil(self)  # the thread-pool jobs' CPU, one at a time
        self._last_end = 0.0  # when the loop's latest callback ended (later than that, it slept in select)
        self._thread = threading.get_ident()
        self._sockets: dict[Any, tuple[str, int]] = {}  # sockets "connected" to a declared host (sock_connect)
        # the twin's own timers, which stand for a socket's reply or a worker's result: they wake select() on time
        self._io_handles: weakref.WeakSet[asyncio.TimerHandle] = weakref.WeakSet()
        self.net = self._network(services, seed) if services is not None else None

    # ------------------------------------------------------------------ the clock
    def time(self) -> float:
        """Virtual seconds, including the CPU the running callback has spent so far."""
        t = self.clock.t
        if self._cpu0 is not None:
            t += (time.thread_time() - self._cpu0) * self.cpu_scale + self._blocked
        return t

    def sleep_on_loop(self, seconds: float) -> bool:
        """A `time.sleep(seconds)` made by the program: on the loop's thread it blocks the loop for that long
        in virtual time (True); elsewhere it is not ours (False)."""
        if threading.get_ident() != self._thread or self._cpu0 is None:
            return False
        if self._job is not None:  # inside an executor job: the job's time, not the loop's
            self._job[1] += max(0.0, seconds)
        else:
            self._blocked += max(0.0, seconds)
        return True

    # ------------------------------------------------------------------ every callback is charged
    def _wrap(self, callback: Callable[..., Any], due: float | None = None) -> Callable[..., Any]:
        task, scheduled = self._attribute(callback)

        def charged(*args: Any) -> Any:
            sharing = len(self._gil.running)  # thread-pool jobs holding CPU work: the loop shares the GIL
            if sharing and self.clock.t > self._last_end:
                # it slept, so it waits for the GIL: forced switches (Python/ceval_gil.c, take_gil) hand it
                # round the waiting threads, the loop's turn after the k jobs' (measured here: the loop loses
                # switches to the other workers, mean 10 ms beside two CPU-bound jobs; tests/test_gil.py), or
                # sooner if their CPU runs out first. A mean over the timer's phase against the switches: a
                # heartbeat whose period is a multiple of the interval can lock onto them and wait 2-10 ms a beat,
                # depending on the host's state, and one of 12.3 or 17.3 ms waited longer (offload.py, 2 jobs:
                # real 0.51-0.65 s at 10 ms, twin 0.58; 0.70-0.87 s at 12.3 ms, twin 0.65, 0.67 with the timer's
                # millisecond rounding; README, twin proof)
                self.clock.advance(min(self.machine.switch_interval_s * sharing, self._gil.left()))
            start = self.clock.t
            if task is not None:
                _PROGRAM_TASK.set(task)  # in the task's own context: what it starts inherits it
            self._cpu0, self._blocked, self._due = time.thread_time(), 0.0, due
            try:
                return callback(*args)
            finally:
                cpu = (time.thread_time() - self._cpu0) * self.cpu_scale
                blocked = self._blocked
                self._cpu0 = self._due = None
                # its CPU runs in turns with the jobs' (equal shares); a time.sleep releases the GIL
                self.clock.advance(cpu * (1 + sharing) + blocked)
                if sharing:
                    self._gil.loop_used(cpu)
                self._last_end = self.clock.t
                if task is not None:
                    self._record(task, scheduled, start, self.clock.t - start, cpu + blocked)

        return charged

    # ------------------------------------------------------------------ what the twin cannot run yet
    def _refuse(self, what: str) -> TwinError:
        return TwinError(f"asyncsim twin: {what} is not supported in virtual time yet; the program's network "
                         "calls will be answered by simulated services (asyncsim twin --services), executors "
                         "and subprocesses later")

    def _network(self, services: Workload, seed: int) -> Network:
        hosts: dict[str, str | None] = {}
        for name, svc in services.services.items():
            if svc.host is not None:  # a host's first service answers requests whose model names none
                hosts.setdefault(svc.host, name)
        if not hosts:
            raise TwinError("twin --services: no service declares its host (give e.g. host: api.openai.com)")
        api = Api(services, seed=seed)
        return Network(api, hosts, now=self.time, free=self._free, charged=self.call_soon,
                       current_task=program_task, answered=self._answered)

    def _free(self, delay: float, callback: Callable[..., Any], *args: Any) -> asyncio.TimerHandle:
        """Server work on the loop, not charged to the program."""
        handle = VirtualLoop.call_at(self, self.time() + delay, callback, *args)
        self._io_handles.add(handle)
        return handle

    def select_timeout(self, timeout: float) -> float:
        """How long the idle loop sleeps in select() given `timeout` to its earliest timer: for a program's timer,
        rounded up to the machine's timer granularity (epoll's millisecond grid, Lib/selectors.py) and then
        `sleep_overshoot_s` late, as the simulator's Loop._select_late; a reply or a worker's result (the twin's
        own timers: a socket, the self-pipe) wakes it on time. The ideal machine (both 0) sleeps `timeout`."""
        grid, late = self.machine.timer_granularity_s, self.machine.sleep_overshoot_s
        scheduled: list[asyncio.TimerHandle] = self._scheduled  # type: ignore[attr-defined]  # BaseEventLoop's heap
        if not (grid or late) or not scheduled or scheduled[0] in self._io_handles:
            return timeout
        wake = timed_wait(timeout, grid, late)
        now = self.clock.t
        sooner = min((h.when() - now for h in self._io_handles if not h.cancelled()), default=math.inf)
        return min(wake, max(0.0, sooner))

    def _unknown_host(self, host: Any, port: Any) -> TwinError:
        known = ", ".join(self.net.hosts) if self.net is not None else ""
        return TwinError(f"twin: the program connects to {host}:{port}, which no service declares; the twin never "
                         f"touches the real network. Declare it in the services file (services: {{NAME: {{host: "
                         f"{host}, latency: ...}}}})" + (f"; declared: {known}" if known else ""))

    async def create_connection(self, protocol_factory: Any, host: Any = None,
                                port: Any = None, **kwargs: Any) -> Any:
        sock = kwargs.get("sock")
        if sock is not None and sock in self._sockets and self.net is not None:
            ours, port = self._sockets.pop(sock)
            sock.close()  # never connected: the connection is in memory
            return self.net.connect(ours, port, protocol_factory)
        name = self.net.host_of(host) if self.net is not None else None
        if name is None or self.net is None:
            raise self._unknown_host(host, port)
        return self.net.connect(name, port, protocol_factory)

    async def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        ours = self.net.host_of(host) if self.net is not None else None
        if ours is None or self.net is None:
            raise self._unknown_host(host, port)
        return self.net.getaddrinfo(ours, port)

    def _answered(self, task: Any, sent: float, reply: Reply, abandoned: bool) -> None:
        """A request the program sent was answered (or given up): a call record and a call-log row for the
        task that sent it."""
        if reply.answer is None or reply.service is None:
            return
        self._call(task, reply.service, sent, self.time(), TIMEOUT if abandoned else reply.answer.outcome,
                   reply.answer.tokens_in, reply.answer.tokens_out)

    async def sock_connect(self, sock: Any, address: Any) -> None:
        """A socket connected to a declared host's address (aiohttp's happy eyeballs): remembered, so that
        `create_connection(sock=...)` knows where it goes; the socket itself is never used."""
        ours = self.net.host_of(address[0]) if self.net is not None and isinstance(address, tuple) else None
        if ours is None:
            raise self._refuse(f"a raw socket (connecting to {address})")
        self._sockets[sock] = (ours, address[1])

    async def create_datagram_endpoint(self, *args: Any, **kwargs: Any) -> Any:
        raise self._refuse("a datagram endpoint")

    async def create_unix_connection(self, *args: Any, **kwargs: Any) -> Any:
        raise self._refuse("a unix socket connection")

    async def subprocess_exec(self, *args: Any, **kwargs: Any) -> Any:
        raise self._refuse("a subprocess")

    async def subprocess_shell(self, *args: Any, **kwargs: Any) -> Any:
        raise self._refuse("a subprocess")

    def run_in_executor(self, executor: Any, func: Callable[..., Any],  # type: ignore[override]
                        *args: Any) -> asyncio.Future[Any]:
        """An executor job: it runs now, on this thread, its CPU (and sleeps) measured but not charged to the
        loop, and completes at the virtual time a worker of its pool (FIFO, `max_workers` of them) would end it.

        A thread pool's jobs share one GIL with the loop (`_ThreadPool`, `_Gil`): their CPU and the loop's
        callbacks' run in equal turns, a loop waking from select waits a switch interval per running job for
        the GIL (forced switches of Python/ceval_gil.c: take_gil), their sleeps (I/O) need no GIL (`executor_cpu_s`:
        their CPU). A process pool's job must pickle, as it would; the pool's start (`process_start_s` per
        worker, blocking the loop at the first submit), the dispatch and the result's trip back
        (`process_dispatch_s`, `process_return_s`) come from the machine (a calibrated profile); each worker
        has a core of its own."""
        processes = isinstance(executor, concurrent.futures.ProcessPoolExecutor)
        if processes:
            pickle.dumps((func, args))  # what cannot cross to a worker fails here as it would there
            if id(executor) not in self._workers:  # the first submit starts the pool and blocks the caller
                self._blocked += self.machine.process_start_s * executor._max_workers  # noqa: SLF001
        future = self.create_future()
        now = self.time() + (self.machine.process_dispatch_s if processes else 0.0)
        outer = self._cpu0
        self._job = [time.thread_time(), 0.0]
        try:
            value, error = func(*args), None
        except BaseException as exc:  # the job's error is its future's, as in a real pool
            value, error = None, exc
        finally:
            started, blocked = self._job
            spent = time.thread_time() - started
            self._job = None
        if outer is not None and self._cpu0 is not None:
            self._cpu0 += spent  # the loop's callback is not charged for the job's CPU
        workers = executor._max_workers if executor is not None else min(32, (os.cpu_count() or 1) + 4)  # noqa: SLF001
        if not processes:
            self.executor_cpu_s += spent * self.cpu_scale
            pool = self._threads.get(id(executor))
            if pool is None:
                pool = self._threads[id(executor)] = _ThreadPool(self, workers, self._gil)
            pool.submit(spent * self.cpu_scale, blocked, future, value, error)
            return future
        free = self._workers.setdefault(id(executor), [0.0] * workers)
        start = max(now, heapq.heappop(free))
        end = start + spent * self.cpu_scale + blocked
        heapq.heappush(free, end)
        self._io_handles.add(self.call_at(end + self.machine.process_return_s, _settle, future, value, error))
        return future

    # ------------------------------------------------------------------ the run as a Result
    def _capacities(self) -> dict[str, int | None]:
        caps: dict[str, int | None] = {"loop": 1}
        if self.services is not None:
            caps |= {f"service:{k}": s.concurrency for k, s in self.services.services.items()}
        return caps

    def _strategy(self) -> str:
        return f"twin (cpu × {self.cpu_scale:g})"

    def _pricing(self) -> Any:
        return pricing(self.services) if self.services is not None else None


class _Sleep:
    """`time.sleep` while a twin runs: on the loop it blocks the loop in virtual time; elsewhere it sleeps.
    It pickles as `time.sleep` (a process pool job may be `time.sleep` itself)."""

    __module__ = "time"
    __qualname__ = "sleep"

    def __init__(self, loop: Any, real: Callable[[float], None]) -> None:
        self.loop, self.real = loop, real

    def __call__(self, seconds: Any) -> None:
        if not self.loop.sleep_on_loop(float(seconds)):
            self.real(seconds)

    def __reduce__(self) -> str:
        return "sleep"


@contextlib.contextmanager
def _virtual_time(loop: TwinLoop) -> Iterator[None]:
    """While the program runs: its clocks read virtual time and its `time.sleep` on the loop blocks the loop in
    virtual time."""
    saved = {name: getattr(time, name) for name in ("time", "monotonic", "perf_counter", "sleep")}
    epoch = saved["time"]()
    sleep = _Sleep(loop, saved["sleep"])

    original_wrap_bio = ssl.SSLContext.wrap_bio

    def wrap_bio(self: ssl.SSLContext, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, server_side: bool = False,
                 server_hostname: str | None = None, session: Any = None) -> Any:
        net = loop.net
        if net is not None and not server_side and net.host_of(server_hostname) is not None:
            return PlainTls(incoming, outgoing, server_hostname, self)  # the other end is ours: no TLS
        return original_wrap_bio(self, incoming, outgoing, server_side, server_hostname, session)

    time.time = lambda: epoch + loop.time()
    time.monotonic = loop.time
    time.perf_counter = loop.time
    time.sleep = sleep
    ssl.SSLContext.wrap_bio = wrap_bio  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(time, name, fn)
        ssl.SSLContext.wrap_bio = original_wrap_bio  # type: ignore[method-assign]


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """The `random` module seeded while the program runs (client libraries draw their back-off jitter from
    it): same seed, same run; the caller's generator state is put back after."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


class _Policy(asyncio.DefaultEventLoopPolicy):
    """Gives the program's `asyncio.run` (or `new_event_loop`) a twin loop, and remembers it."""

    def __init__(self, cpu_scale: float, services: Workload | None, seed: int, machine: Machine | None) -> None:
        super().__init__()
        self.cpu_scale, self.services, self.seed, self.machine = cpu_scale, services, seed, machine
        self.loops: list[TwinLoop] = []

    def new_event_loop(self) -> TwinLoop:
        loop = TwinLoop(self.cpu_scale, services=self.services, seed=self.seed, machine=self.machine)
        self.loops.append(loop)
        return loop


def load_services(services: Workload | str | Path, sets: Mapping[str, Any] | None = None) -> Workload:
    """The services a twin answers: a Workload, or a YAML file whose `services` declare their `host` (a model
    file, or one with services alone), with each `services.…` path of `sets` set to its value.

    Raises:
        ModelError: the file cannot be read, a path of `sets` does not exist, or a service is invalid (the
            YAML path named).
    """
    sets = {k: v for k, v in (sets or {}).items() if k.split(".")[0] == "services"}
    if isinstance(services, Workload):
        if sets:
            raise TwinError("--set services...: give the services as a file (a Workload: change it itself)")
        return services
    path = Path(services)
    data = read_yaml(path, "services file")
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict) or not data["services"]:
        raise ModelError("services: give a mapping of services, each with its host (services: {llm: {host: "
                         "api.openai.com, latency: 0.5}})", source=str(path))
    if "task" not in data and "tasks" not in data and "stages" not in data:  # services alone: a placeholder task
        data = {"arrivals": {"batch": {"count": 1}}, "task": [{"io": 0.0}], **data}
    return Workload.from_dict(apply(data, sets), base_dir=path.parent, source=str(path))


def run(main: Callable[[], Coroutine[Any, Any, Any]] | Coroutine[Any, Any, Any], *, cpu_scale: float = 1.0,
        services: Workload | str | Path | None = None, seed: int = 0, name: str = "twin",
        machine: Machine | None = None) -> Result:
    """Run `main` (an async function or a coroutine) on a twin loop, its requests to the hosts of `services`
    answered by their simulated APIs (with `seed`'s draws), and return its metrics.

    Raises:
        TwinError: the program did something the twin cannot run (a network connection, an executor job...).
    """
    coro = main() if callable(main) else main
    if not asyncio.iscoroutine(coro):
        raise TwinError(f"twin.run: give an async function or a coroutine, got {type(coro).__name__}")
    loop = TwinLoop(cpu_scale, services=load_services(services) if services is not None else None, seed=seed,
                    machine=machine)
    try:
        with _virtual_time(loop), _seeded(seed):
            task = loop.create_task(coro)
            loop.run_until_complete(task)
        return _noted(loop, loop.result(name, seed=seed))
    finally:
        loop.close()


def run_program(path: str | Path, argv: Sequence[str] = (), *, cpu_scale: float = 1.0,
                services: Workload | str | Path | None = None, seed: int = 0,
                sets: Mapping[str, Any] | None = None, machine: Machine | None = None) -> Result:
    """Run the Python program at `path` as `__main__` (with `argv` as its arguments), every event loop it makes
    being a twin loop; the metrics of its last loop's run. `sets` changes the services (`services.llm.
    rate_limit.rpm`) and the program's environment (`env.CONCURRENCY`: its own knobs) for the run.

    Raises:
        TwinError: no such program, it made no event loop, or it did something the twin cannot run.
    """
    path = Path(path)
    if not path.is_file():
        raise TwinError(f"twin: no program at {path}")
    sets = dict(sets or {})
    unknown = [k for k in sets if k.split(".")[0] not in ("services", "env") or k == "env"]
    if unknown:
        raise TwinError(f"--set {unknown[0]}: a twin sets services.NAME.FIELD (the simulated APIs) or env.NAME "
                        "(the program's environment)")
    if services is None and any(k.startswith("services.") for k in sets):
        raise TwinError("--set services...: give the services file (--services)")
    policy = _Policy(cpu_scale, load_services(services, sets) if services is not None else None, seed, machine)
    environ = {k.split(".", 1)[1]: str(v) for k, v in sets.items() if k.startswith("env.")}
    saved_env = {k: os.environ.get(k) for k in environ}
    os.environ.update(environ)
    saved_policy, saved_argv = asyncio.get_event_loop_policy(), sys.argv
    sys.argv = [str(path), *argv]
    asyncio.set_event_loop_policy(policy)
    clocks = _LazyLoop(policy)
    try:
        with _virtual_time(clocks), _seeded(seed):  # type: ignore[arg-type]
            try:
                runpy.run_path(str(path), run_name="__main__")
            except SystemExit as exc:
                if exc.code not in (0, None):
                    raise TwinError(f"twin: {path.name} exited with status {exc.code}") from exc
            except (TwinError, KeyboardInterrupt):
                raise
            except Exception as exc:  # the program's own error: its traceback, then ours in one line
                traceback.print_exc()
                raise TwinError(f"twin: {path.name} raised {type(exc).__name__}: {exc} (its traceback above)") from exc
    finally:
        asyncio.set_event_loop_policy(saved_policy)
        sys.argv = saved_argv
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if not policy.loops:
        raise TwinError(f"twin: {path.name} made no asyncio event loop (run its work with asyncio.run(main()))")
    return _noted(policy.loops[-1], policy.loops[-1].result(path.stem, seed=seed))


class TwinWarning(UserWarning):
    """Something the twin ran that its figures do not fully account for (the message says what)."""


def _noted(loop: TwinLoop, result: Result) -> Result:
    """`result`, with a warning when thread-pool jobs burnt CPU (the twin assumes they hold the GIL)."""
    if result.t_total > 0 and loop.executor_cpu_s > 0.01 * result.t_total:
        warnings.warn(f"thread-pool jobs used {loop.executor_cpu_s:.3g} s of CPU, which the twin ran under one GIL "
                      "shared with the loop (pure-Python work); work that releases the GIL (numpy, hashing, "
                      "compression) in fact runs in parallel and would finish sooner", TwinWarning, stacklevel=3)
    return result


def sweep_program(path: str | Path, points: list[dict[str, Any]], *, services: str | Path | None = None,
                  argv: Sequence[str] = (), replications: int = 1, seed: int = 0, cpu_scale: float = 1.0,
                  progress: Callable[[int, int], None] | None = None, machine: Machine | None = None) -> Any:
    """Run the program in the twin at every point of a grid (`services.…` and `env.…` settings),
    `replications` times each, one after another (measured CPU is not shared with other runs); one row per
    run with the columns of `sweep.sweep` (its `summarize` reads them). The program's own prints are dropped.

    Raises:
        TwinError, ModelError: as `run_program`, for the first point that fails.
    """
    import pandas as pd

    params = list(dict.fromkeys(k for p in points for k in p))
    seeds = replication_seeds(seed, replications)
    rows = []
    total = len(points) * replications
    if progress is not None:
        progress(0, total)
    for index, point in enumerate(points):
        for replication, run_seed in enumerate(seeds):
            with contextlib.redirect_stdout(io.StringIO()):
                metrics = run_program(path, argv, cpu_scale=cpu_scale, services=services, seed=run_seed,
                                      sets=point, machine=machine).metrics()
            rows.append({"point": index, **point, "replication": replication, "seed": run_seed,
                         **{key: metrics[key] for key in METRICS}})
            if progress is not None:
                progress(len(rows), total)
    return pd.DataFrame.from_records(rows, columns=["point", *params, "replication", "seed", *METRICS])


class _LazyLoop:
    """The twin loop the program is running now (its latest), for the patched clocks."""

    def __init__(self, policy: _Policy) -> None:
        self.policy = policy

    def time(self) -> float:
        return self.policy.loops[-1].time() if self.policy.loops else 0.0

    def sleep_on_loop(self, seconds: float) -> bool:
        return self.policy.loops[-1].sleep_on_loop(seconds) if self.policy.loops else False

    @property
    def net(self) -> Network | None:
        return self.policy.loops[-1].net if self.policy.loops else None
