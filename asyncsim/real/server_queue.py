"""An emulated service whose queue is ordered by a scheduling policy (priority, sjf, fair, ...), optionally
with preemptive-resume priority, kept by the server side in virtual time.

FIFO can be booked when a request arrives (`service.ServiceSchedule`); any other order is decided when a
slot frees, among the requests waiting then. As with the batcher (`service.BatchSchedule`), every decision
is dated by the event that causes it — an arrival, a completion — so a client that learns of it late
delays only its own wake-up, never the server. A preempted request goes back to the queue with the service
time it had left and resumes later. The schedule is advanced by the clients themselves: under asyncio by
one loop timer at the next completion, under threads by the client whose request completes (each running
request's client sleeps until its end, so someone is awake at every completion).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable

from ..policies import Policy
from ..rules.queues import QueueSchedule, Ticket, served

__all__ = ["AsyncQueueServer", "QueueServer"]


class AsyncQueueServer:
    """The policy-ordered server for one event loop: a `QueueSchedule` advanced by a loop timer at the next
    completion; a client's future is resolved when its request is done."""

    def __init__(self, concurrency: int, policy: Policy) -> None:
        self.schedule = QueueSchedule(concurrency, policy)
        self.waiters: dict[int, asyncio.Future[list[tuple[float, float]]]] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf

    async def serve(self, clock: Callable[[], float], scale: float, seconds: float,
                    ticket: Ticket) -> float | list[tuple[float, float]]:
        """Send a request of `seconds` service now and wait for its answer: when it was served, or its slices
        [(start, end), ...] when it was preempted (as `calls.attempts` expects).

        `clock` gives model seconds; `scale` real seconds per model second."""
        rid = self.schedule.submit(clock(), seconds, ticket)
        future = self.waiters[rid] = asyncio.get_running_loop().create_future()
        self._wake(clock, scale)
        return served(await future)

    def _wake(self, clock: Callable[[], float], scale: float) -> None:
        schedule = self.schedule
        for rid in [r for r in self.waiters if r in schedule.done]:
            self.waiters.pop(rid).set_result(schedule.done.pop(rid))
        schedule.changed.clear()
        event = schedule.next_event()
        if self.waiters and event < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer_at = event
            self.timer = asyncio.get_running_loop().call_later(max(0.0, (event - clock()) * scale), self._tick,
                                                               clock, scale)

    def _tick(self, clock: Callable[[], float], scale: float) -> None:
        self.timer, self.timer_at = None, math.inf
        self.schedule.advance(clock())
        self._wake(clock, scale)


class QueueServer:
    """The policy-ordered server for blocking clients (threads of one process): a `QueueSchedule` under a
    lock, one event per request, set when its request starts, is preempted or is done."""

    def __init__(self, concurrency: int, policy: Policy) -> None:
        self.schedule = QueueSchedule(concurrency, policy)
        self.lock = threading.Lock()
        self.events: dict[int, threading.Event] = {}

    def serve(self, clock: Callable[[], float], scale: float, seconds: float,
              ticket: Ticket) -> float | list[tuple[float, float]]:
        """As `AsyncQueueServer.serve`, blocking this thread."""
        schedule = self.schedule
        event = threading.Event()
        with self.lock:
            rid = schedule.submit(clock(), seconds, ticket)
            self.events[rid] = event
        while True:
            with self.lock:
                schedule.advance(clock())
                for other in schedule.changed:
                    if other != rid and other in self.events:
                        self.events[other].set()
                schedule.changed.clear()
                got = schedule.done.pop(rid, None)
                if got is not None:
                    del self.events[rid]
                    return served(got)
                end = schedule.end_of(rid)
                event.clear()
            # running: sleep until the end (or a preemption); queued: until started
            event.wait(None if end is None else max(0.0, (end - clock()) * scale))
