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

from ..policies import Policy, Ticket, WaitQueue

__all__ = ["AsyncQueueServer", "QueueSchedule", "QueueServer"]


class _Job:
    __slots__ = ("id", "ticket", "remaining", "started", "first", "end")

    def __init__(self, rid: int, ticket: Ticket, seconds: float) -> None:
        self.id = rid
        self.ticket = ticket
        self.remaining = seconds
        self.started = math.nan
        self.first = math.nan
        self.end = math.inf


class QueueSchedule:
    """`concurrency` servers and a queue ordered by `policy`, in virtual time (model seconds).

    `submit(sent, seconds, ticket)` queues (or starts, or preempts for) a request; `advance(t)` makes every
    completion due by `t`; `done` holds finished requests' (first start, end); `changed` the requests whose
    state changed (started, preempted, done) since the caller last cleared it.
    """

    def __init__(self, concurrency: int, policy: Policy) -> None:
        self.capacity = concurrency
        self.preemptive = policy.preemptive
        self.queue = WaitQueue(policy)
        self.running: list[_Job] = []
        self.jobs: dict[int, _Job] = {}
        self.now = 0.0
        self.next_id = 0
        self.done: dict[int, tuple[float, float]] = {}
        self.changed: set[int] = set()

    def next_event(self) -> float:
        """When the next running request completes (inf: none runs)."""
        return min((j.end for j in self.running), default=math.inf)

    def end_of(self, rid: int) -> float | None:
        """When request `rid` completes if nothing preempts it (None: it waits in the queue)."""
        job = self.jobs.get(rid)
        return None if job is None or job.end == math.inf else job.end

    def advance(self, t: float) -> None:
        """Complete every request due by model time `t` (never beyond the present: later arrivals are unknown),
        starting queued ones in policy order as slots free."""
        while self.running:
            job = min(self.running, key=lambda j: j.end)
            if job.end > t:
                break
            self.now = max(self.now, job.end)
            self.running.remove(job)
            del self.jobs[job.id]
            self.done[job.id] = (job.first, job.end)
            self.changed.add(job.id)
            if len(self.queue):
                self._start(self.queue.pop())
        self.now = max(self.now, t)

    def submit(self, sent: float, seconds: float, ticket: Ticket) -> int:
        """Queue a request sent at `sent` needing `seconds` of service; its number."""
        self.advance(sent)
        job = _Job(self.next_id, ticket, seconds)
        self.next_id += 1
        self.jobs[job.id] = job
        if len(self.running) < self.capacity:
            self._start(job)
            return job.id
        if self.preemptive:
            victim = max(self.running, key=lambda j: (j.ticket.priority, j.started))
            if ticket.priority < victim.ticket.priority:
                self.running.remove(victim)
                victim.remaining -= self.now - victim.started
                victim.end = math.inf
                self.changed.add(victim.id)
                self.queue.push(victim, victim.ticket)
                self._start(job)
                return job.id
        self.queue.push(job, ticket)
        return job.id

    def _start(self, job: _Job) -> None:
        job.started = self.now
        if math.isnan(job.first):
            job.first = self.now
        job.end = self.now + job.remaining
        self.running.append(job)
        self.changed.add(job.id)


class AsyncQueueServer:
    """The policy-ordered server for one event loop: a `QueueSchedule` advanced by a loop timer at the next
    completion; a client's future is resolved when its request is done."""

    def __init__(self, concurrency: int, policy: Policy) -> None:
        self.schedule = QueueSchedule(concurrency, policy)
        self.waiters: dict[int, asyncio.Future[tuple[float, float]]] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf

    async def serve(self, clock: Callable[[], float], scale: float, seconds: float, ticket: Ticket) -> float:
        """Send a request of `seconds` service now and wait for its answer; the time it was first served.

        `clock` gives model seconds; `scale` real seconds per model second."""
        rid = self.schedule.submit(clock(), seconds, ticket)
        future = self.waiters[rid] = asyncio.get_running_loop().create_future()
        self._wake(clock, scale)
        first, _ = await future
        return first

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

    def serve(self, clock: Callable[[], float], scale: float, seconds: float, ticket: Ticket) -> float:
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
                    return got[0]
                end = schedule.end_of(rid)
                event.clear()
            # running: sleep until the end (or a preemption); queued: until started
            event.wait(None if end is None else max(0.0, (end - clock()) * scale))
