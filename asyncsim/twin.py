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
import contextlib
import runpy
import sys
import threading
import time
import traceback
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import AsyncSimError
from .metrics import compute_result
from .real.vloop import VirtualClock, VirtualLoop
from .real.vloop import _Selector as _VirtualSelector
from .results import Result
from .trace import K_CPU, K_IO, K_RESUME, Trace, TraceBuilder

__all__ = ["TwinError", "TwinLoop", "run", "run_program"]


_LOOP_OWN = frozenset(("BaseEventLoop.shutdown_asyncgens", "BaseEventLoop.shutdown_default_executor"))


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


class _Selector(_VirtualSelector):
    """The virtual selector, with a deadlock named as the program's."""

    def __init__(self, clock: VirtualClock, loop: TwinLoop) -> None:
        super().__init__(clock)
        self.loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        try:
            return super().select(timeout)
        except RuntimeError:
            waiting = sum(1 for t in self.loop.tasks if not t.done())
            raise TwinError(f"twin: the program waits forever at {self.loop.time():.6g} s: {waiting} task(s) wait "
                            "and nothing is ready or due (a future nobody completes, an event nobody sets, a "
                            "lock never released)") from None


class TwinLoop(VirtualLoop):
    """An asyncio selector loop on a virtual clock that advances by each callback's thread CPU × `cpu_scale`
    (and by `time.sleep` on the loop), recording each task's steps into a trace."""

    def __init__(self, cpu_scale: float = 1.0, clock: VirtualClock | None = None) -> None:
        if not cpu_scale > 0:
            raise TwinError(f"--cpu-scale: must be > 0 (got {cpu_scale})")
        clock = clock or VirtualClock()
        super().__init__(clock, _Selector(clock, self))
        self.cpu_scale = cpu_scale
        self.tb = TraceBuilder()
        self.loop_res = self.tb.resource_id("loop")
        self.tasks: dict[asyncio.Task[Any], _Task] = {}
        self._cpu0: float | None = None  # thread CPU clock when the running callback started
        self._blocked = 0.0  # seconds the running callback has slept (time.sleep) so far
        self._due: float | None = None  # the deadline of the running timer callback
        self._thread = threading.get_ident()

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
        self._blocked += max(0.0, seconds)
        return True

    # ------------------------------------------------------------------ every callback is charged
    def call_soon(self, callback: Callable[..., Any], *args: Any,  # type: ignore[override]
                  context: Any = None) -> asyncio.Handle:
        return super().call_soon(self._charged(callback), *args, context=context)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any,  # type: ignore[override]
                context: Any = None) -> asyncio.TimerHandle:
        return super().call_at(when, self._charged(callback, due=when), *args, context=context)

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any,  # type: ignore[override]
                             context: Any = None) -> asyncio.Handle:
        return super().call_soon_threadsafe(self._charged(callback), *args, context=context)

    def _charged(self, callback: Callable[..., Any], due: float | None = None) -> Callable[..., Any]:
        owner = getattr(callback, "__self__", None)  # a task's step or wake-up (C or Python Task)
        task = owner if isinstance(owner, asyncio.Task) else None
        # what a timer's callback makes ready was due at the timer's deadline: the lag since is the loop's
        scheduled = self.time() if self._due is None else min(self._due, self.time())
        if task is not None and task not in self.tasks:
            if getattr(task.get_coro(), "__qualname__", "") in _LOOP_OWN:
                task = None  # asyncio.run's own clean-up, not the program's work
            else:
                self.tasks[task] = _Task(len(self.tasks), scheduled, scheduled)

        def charged(*args: Any) -> Any:
            start = self.clock.t
            self._cpu0, self._blocked, self._due = time.thread_time(), 0.0, due
            try:
                return callback(*args)
            finally:
                spent = (time.thread_time() - self._cpu0) * self.cpu_scale + self._blocked
                self._cpu0 = self._due = None
                self.clock.advance(spent)
                if task is not None:
                    self._record(task, scheduled, start, spent)

        return charged

    def _record(self, task: asyncio.Task[Any], scheduled: float, start: float, spent: float) -> None:
        rec = self.tasks[task]
        step = rec.steps
        if scheduled > rec.last_end and step:  # it waited for something outside the loop
            self.tb.add(rec.index, step, K_IO, -1, rec.last_end, rec.last_end, scheduled)
        if start > scheduled:
            self.tb.add(rec.index, step, K_RESUME, self.loop_res, scheduled, start, start)
        self.tb.add(rec.index, step, K_CPU, self.loop_res, start, start, start + spent, spent)
        rec.steps, rec.last_end = step + 1, start + spent
        if task.done():
            rec.done = rec.last_end
            rec.failed = task.cancelled() or task.exception() is not None

    # ------------------------------------------------------------------ what the twin cannot run yet
    def _refuse(self, what: str) -> TwinError:
        return TwinError(f"asyncsim twin: {what} is not supported in virtual time yet; the program's network "
                         "calls will be answered by simulated services (asyncsim twin --services), executors "
                         "and subprocesses later")

    async def create_connection(self, *args: Any, **kwargs: Any) -> Any:
        host = args[1] if len(args) > 1 else kwargs.get("host")
        port = args[2] if len(args) > 2 else kwargs.get("port")
        raise self._refuse(f"a network connection (to {host}:{port})")

    async def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        raise self._refuse(f"a network connection (resolving {host}:{port})")

    async def sock_connect(self, sock: Any, address: Any) -> None:
        raise self._refuse(f"a raw socket (connecting to {address})")

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
        raise self._refuse(f"an executor job ({getattr(func, '__qualname__', func)!s}: run_in_executor or "
                           "asyncio.to_thread)")

    # ------------------------------------------------------------------ the run as a Result
    def result(self, name: str, *, seed: int | None = None) -> Result:
        """The metrics of what ran: one task per asyncio task the program created, in order of creation (the
        first task, the program's main coroutine, only when it created no other)."""
        tasks = list(self.tasks.values())
        trace = self.tb.build()
        if len(tasks) > 1:  # leave out the main task, renumber the others from 0
            tasks = tasks[1:]
            keep = trace.task != 0
            trace = Trace(task=trace.task[keep] - 1, step=trace.step[keep], kind=trace.kind[keep],
                          resource=trace.resource[keep], enqueue=trace.enqueue[keep], start=trace.start[keep],
                          end=trace.end[keep], cpu_s=trace.cpu_s[keep], resources=trace.resources)
        n = len(tasks)
        arrival = np.array([t.created for t in tasks], dtype=float)
        done = np.array([t.done for t in tasks], dtype=float)
        failed = np.array([t.failed for t in tasks], dtype=bool)
        return compute_result(trace, arrival, done, np.zeros(n, dtype=np.int64), failed, model=name,
                              strategy=f"twin (cpu × {self.cpu_scale:g})", seed=seed,
                              capacities={"loop": 1}, parallel_types=np.array([False]))


@contextlib.contextmanager
def _virtual_time(loop: TwinLoop) -> Iterator[None]:
    """While the program runs: its clocks read virtual time and its `time.sleep` on the loop blocks the loop in
    virtual time."""
    saved = {name: getattr(time, name) for name in ("time", "monotonic", "perf_counter", "sleep")}
    epoch = saved["time"]()
    real_sleep = saved["sleep"]

    def sleep(seconds: Any) -> None:
        if not loop.sleep_on_loop(float(seconds)):
            real_sleep(seconds)

    time.time = lambda: epoch + loop.time()
    time.monotonic = loop.time
    time.perf_counter = loop.time
    time.sleep = sleep
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(time, name, fn)


class _Policy(asyncio.DefaultEventLoopPolicy):
    """Gives the program's `asyncio.run` (or `new_event_loop`) a twin loop, and remembers it."""

    def __init__(self, cpu_scale: float) -> None:
        super().__init__()
        self.cpu_scale = cpu_scale
        self.loops: list[TwinLoop] = []

    def new_event_loop(self) -> TwinLoop:
        loop = TwinLoop(self.cpu_scale)
        self.loops.append(loop)
        return loop


def run(main: Callable[[], Coroutine[Any, Any, Any]] | Coroutine[Any, Any, Any], *, cpu_scale: float = 1.0,
        seed: int | None = None, name: str = "twin") -> Result:
    """Run `main` (an async function or a coroutine) on a twin loop and return its metrics.

    Raises:
        TwinError: the program did something the twin cannot run (a network connection, an executor job...).
    """
    coro = main() if callable(main) else main
    if not asyncio.iscoroutine(coro):
        raise TwinError(f"twin.run: give an async function or a coroutine, got {type(coro).__name__}")
    loop = TwinLoop(cpu_scale)
    try:
        with _virtual_time(loop):
            task = loop.create_task(coro)
            loop.run_until_complete(task)
        return loop.result(name, seed=seed)
    finally:
        loop.close()


def run_program(path: str | Path, argv: Sequence[str] = (), *, cpu_scale: float = 1.0,
                seed: int | None = None) -> Result:
    """Run the Python program at `path` as `__main__` (with `argv` as its arguments), every event loop it makes
    being a twin loop; the metrics of its last loop's run.

    Raises:
        TwinError: no such program, it made no event loop, or it did something the twin cannot run.
    """
    path = Path(path)
    if not path.is_file():
        raise TwinError(f"twin: no program at {path}")
    policy = _Policy(cpu_scale)
    saved_policy, saved_argv = asyncio.get_event_loop_policy(), sys.argv
    sys.argv = [str(path), *argv]
    asyncio.set_event_loop_policy(policy)
    clocks = _LazyLoop(policy)
    try:
        with _virtual_time(clocks):  # type: ignore[arg-type]
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
    if not policy.loops:
        raise TwinError(f"twin: {path.name} made no asyncio event loop (run its work with asyncio.run(main()))")
    return policy.loops[-1].result(path.stem, seed=seed)


class _LazyLoop:
    """The twin loop the program is running now (its latest), for the patched clocks."""

    def __init__(self, policy: _Policy) -> None:
        self.policy = policy

    def time(self) -> float:
        return self.policy.loops[-1].time() if self.policy.loops else 0.0

    def sleep_on_loop(self, seconds: float) -> bool:
        return self.policy.loops[-1].sleep_on_loop(seconds) if self.policy.loops else False
