"""Who may run Python when: the GIL with CPython's switch-interval rule, cores shared by processor sharing,
and the asyncio event loop as a FIFO server of ready coroutines.

A `SimThread` is one OS thread of the client program. To run Python it must hold its process's `Gil`
(if the machine has one and the process can have more than one thread); while it computes it also
occupies a core of `Cores` (processor sharing when more threads compute than there are cores).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Generator
from functools import partial
from typing import Any

import simpy

__all__ = ["Cores", "CoroStrand", "Gil", "Loop", "SimThread", "Strand", "ThreadStrand", "compute"]

_EPS = 1e-12


class SimThread:
    """An OS thread: the GIL it needs (None when uncontended) and its state while computing."""

    __slots__ = ("gil", "wake", "remaining", "gen", "epoch", "dropped")

    def __init__(self, gil: Gil | None) -> None:
        self.gil = gil
        self.wake: simpy.Event | None = None
        self.remaining = 0.0
        self.gen = 0  # bumped whenever the core-completion timer is rescheduled
        self.epoch = 0  # bumped for every slice of computing (GIL drop timers belong to one slice)
        self.dropped = False

    def done(self, gen: int) -> None:
        """Core-completion timer fired (ignored if rescheduled since)."""
        if gen == self.gen and self.wake is not None and not self.wake.triggered:
            self.dropped = False
            self.wake.succeed()

    def drop(self, epoch: int) -> None:
        """A GIL drop request for slice `epoch` (ignored if that slice is over)."""
        if epoch == self.epoch and self.wake is not None and not self.wake.triggered:
            self.dropped = True
            self.wake.succeed()


class Gil:
    """A global interpreter lock with CPython's rule (Python/ceval_gil.c).

    Waiters queue FIFO. A waiter that sees no switch for `interval` seconds asks the holder to drop the
    GIL; a holder that is computing then hands it to the head of the queue and queues again itself.
    A holder that blocks (I/O) releases it at once.
    """

    def __init__(self, env: simpy.Environment, interval: float) -> None:
        self.env = env
        self.interval = interval
        self.holder: SimThread | None = None
        self.computing = False  # the holder is inside compute()
        self.waiters: deque[tuple[SimThread, simpy.Event, float]] = deque()
        self.last_switch = 0.0
        self.drop_at = math.inf
        self.switches = 0

    def acquire(self, thread: SimThread) -> simpy.Event | None:
        """Take the GIL now (returns None) or get an event that fires when `thread` holds it."""
        if self.holder is None:
            self.holder = thread
            return None
        event = self.env.event()
        now = self.env.now
        self.waiters.append((thread, event, now))
        self._arm(now + self.interval)
        return event

    def release(self, thread: SimThread) -> None:
        """Give the GIL up; the head waiter (if any) takes it."""
        assert self.holder is thread, "released a GIL it does not hold"
        self.computing = False
        if self.waiters:
            nxt, event, _ = self.waiters.popleft()
            self.holder = nxt
            self.last_switch = self.env.now
            self.switches += 1
            self._rearm()
            event.succeed()
        else:
            self.holder = None
            self.drop_at = math.inf

    def _expiry(self, t0: float) -> float:
        """When a waiter that started at t0 finds a full interval without a switch."""
        k = max(1, math.ceil((self.last_switch - t0) / self.interval - _EPS) + 1)
        return t0 + k * self.interval

    def _rearm(self) -> None:
        self.drop_at = min((self._expiry(t0) for _, _, t0 in self.waiters), default=math.inf)
        self.schedule_drop()

    def _arm(self, at: float) -> None:
        if at < self.drop_at:
            self.drop_at = at
            self.schedule_drop()

    def schedule_drop(self) -> None:
        """Arm a timer that asks the computing holder to drop the GIL at `drop_at`."""
        holder = self.holder
        if holder is None or not self.computing or self.drop_at == math.inf:
            return
        epoch = holder.epoch
        timer = self.env.timeout(max(0.0, self.drop_at - self.env.now))
        timer.callbacks.append(lambda _ev: holder.drop(epoch))


class Cores:
    """`count` cores shared by the threads computing on them (processor sharing beyond `count`).

    `shared` is False when no more threads than cores can ever compute at once: each computes at full speed.
    """

    def __init__(self, env: simpy.Environment, count: int, *, shared: bool) -> None:
        self.env = env
        self.count = count
        self.shared = shared
        self.running: list[SimThread] = []
        self.rate = 1.0
        self.t_mark = 0.0
        self.busy_time = 0.0

    def start(self, thread: SimThread, work: float) -> None:
        """`thread` begins computing `work` CPU seconds; its wake event fires when they are done."""
        self._advance()
        thread.remaining = work
        self.running.append(thread)
        self._rescale(new=thread)

    def stop(self, thread: SimThread) -> None:
        """`thread` leaves the cores (done, or preempted from the GIL); its remaining work is updated."""
        self._advance()
        self.running.remove(thread)
        self._rescale(new=None)

    def _advance(self) -> None:
        now = self.env.now
        elapsed = now - self.t_mark
        if elapsed > 0 and self.running:
            for t in self.running:
                t.remaining -= elapsed * self.rate
            self.busy_time += elapsed * self.rate * len(self.running)
        self.t_mark = now

    def _rescale(self, new: SimThread | None) -> None:
        k = len(self.running)
        rate = 1.0 if k <= self.count else self.count / k
        targets = self.running if rate != self.rate else ([new] if new is not None else [])
        self.rate = rate
        for t in targets:
            t.gen += 1
            gen = t.gen
            timer = self.env.timeout(max(0.0, t.remaining) / rate)
            timer.callbacks.append(partial(_done, t, gen))


def _done(thread: SimThread, gen: int, _event: simpy.Event) -> None:
    thread.done(gen)


def compute(env: simpy.Environment, cores: Cores, thread: SimThread, work: float) -> Generator[Any, Any, None]:
    """Run `work` CPU seconds on `thread`, which holds its GIL (if any) on entry and on return."""
    gil = thread.gil
    if gil is None and not cores.shared:
        yield env.timeout(work)
        return
    remaining = work
    while True:
        thread.wake = env.event()
        thread.epoch += 1
        cores.start(thread, remaining)
        if gil is not None:
            gil.computing = True
            if gil.drop_at <= env.now + _EPS and gil.waiters:
                thread.drop(thread.epoch)
            else:
                gil.schedule_drop()
        yield thread.wake
        cores.stop(thread)
        remaining = thread.remaining
        if remaining <= _EPS * max(1.0, work) or not thread.dropped:
            thread.remaining = 0.0
            if gil is not None:
                gil.computing = False
            return
        # forced to drop the GIL: queue behind the waiter that asked, then carry on
        assert gil is not None
        gil.release(thread)
        event = gil.acquire(thread)
        if event is not None:
            yield event


class Loop:
    """The asyncio event loop: ready coroutines run one at a time, FIFO, on the loop's thread.

    While any coroutine runs, the loop thread holds its GIL (relevant when executor threads share it).
    """

    def __init__(self, env: simpy.Environment, thread: SimThread) -> None:
        self.env = env
        self.thread = thread
        self.busy = False
        self.ready: deque[simpy.Event] = deque()

    def acquire(self) -> simpy.Event | None:
        """Run now (None) or an event that fires when this coroutine's turn comes."""
        if not self.busy:
            self.busy = True
            gil = self.thread.gil
            return gil.acquire(self.thread) if gil is not None else None
        event = self.env.event()
        self.ready.append(event)
        return event

    def release(self) -> None:
        """The running coroutine suspends; the next ready one runs."""
        if self.ready:
            self.ready.popleft().succeed()
            return
        self.busy = False
        gil = self.thread.gil
        if gil is not None:
            gil.release(self.thread)


class Strand:
    """Where a piece of task code runs (a coroutine or a thread); `holding` is True while it may run Python."""

    __slots__ = ("holding", "res", "overhead")
    thread: SimThread  # the OS thread its code runs on (the loop's, for a coroutine)

    def __init__(self) -> None:
        self.holding = False
        self.res = -1  # the trace resource a wait to run is recorded against
        self.overhead = 0.0  # CPU seconds each resumption costs

    def acquire(self) -> simpy.Event | None:
        """Run now (None), or an event fired when this strand may run Python."""
        raise TypeError(f"{type(self).__name__} must say how it gets to run")

    def release(self) -> None:
        """Stop running Python (block, or end); the next waiter may run."""
        raise TypeError(f"{type(self).__name__} must say how it stops running")


class CoroStrand(Strand):
    """A coroutine on the event loop."""

    __slots__ = ("loop", "thread")

    def __init__(self, loop: Loop) -> None:
        super().__init__()
        self.loop = loop
        self.thread = loop.thread

    def acquire(self) -> simpy.Event | None:
        return self.loop.acquire()

    def release(self) -> None:
        self.loop.release()


class ThreadStrand(Strand):
    """A thread (with its process's GIL, if contended)."""

    __slots__ = ("thread",)

    def __init__(self, thread: SimThread) -> None:
        super().__init__()
        self.thread = thread

    def acquire(self) -> simpy.Event | None:
        gil = self.thread.gil
        return gil.acquire(self.thread) if gil is not None else None

    def release(self) -> None:
        gil = self.thread.gil
        if gil is not None:
            gil.release(self.thread)
