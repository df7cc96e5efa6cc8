"""Counted FIFO resources (pools, service slots, executor workers, admission limits) with direct hand-off.

SimPy's `Resource` keeps waiters in a list and pops from its front (quadratic with long queues) and costs
an event per request even when a slot is free; `Slots` grants a free slot without an event and keeps
waiters in a deque, as asyncio's FIFO Semaphore does.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Generator
from typing import Any

import simpy

from ..policies import Policy, Ticket, WaitQueue
from ..services import Batching, BatchQueue, PolicyLimiter

__all__ = ["Batcher", "PreemptiveServer", "SimLimiter", "Slots"]


class Slots:
    """`capacity` slots; `request()` returns None when a slot was free, else an event fired on hand-off.

    Waiters are served FIFO (a deque: the fast path) or in the order of a `WaitQueue` policy, by the
    `Ticket` each request brings.
    """

    __slots__ = ("env", "capacity", "in_use", "waiters", "queue")

    def __init__(self, env: simpy.Environment, capacity: int, policy: Policy | None = None) -> None:
        self.env = env
        self.capacity = capacity
        self.in_use = 0
        self.waiters: deque[simpy.Event] = deque()
        self.queue = WaitQueue(policy) if policy is not None and policy.kind != "fifo" else None

    def request(self, ticket: Ticket | None = None) -> simpy.Event | None:
        """Take a slot now (None) or queue for one."""
        if self.in_use < self.capacity:
            self.in_use += 1
            return None
        event = self.env.event()
        if self.queue is None:
            self.waiters.append(event)
        else:
            self.queue.push(event, ticket or Ticket())
        return event

    def cancel(self, event: simpy.Event) -> bool:
        """Withdraw a queued request (a pool timeout); False when the slot was already handed over."""
        if self.queue is not None:
            return self.queue.remove(event)
        try:
            self.waiters.remove(event)
        except ValueError:
            return False
        return True

    def release(self) -> None:
        """Give a slot back; the next waiter (by the policy) gets it directly."""
        if self.queue is not None and len(self.queue):
            self.queue.pop().succeed()
        elif self.waiters:
            self.waiters.popleft().succeed()
        else:
            self.in_use -= 1


class PreemptiveServer:
    """`capacity` servers with preemptive-resume priority: a request of higher priority (lower number) than
    the lowest-priority one in service suspends it; the suspended request resumes later with the service
    time it had left. `serve(ticket, seconds)` is an event fired when the request is done, with its first
    start time."""

    __slots__ = ("env", "capacity", "running", "queue")

    def __init__(self, env: simpy.Environment, capacity: int) -> None:
        self.env = env
        self.capacity = capacity
        self.running: list[list[Any]] = []  # [ticket, remaining, started_at, timer generation, done event, slices]
        self.queue = WaitQueue("priority")

    def serve(self, ticket: Ticket, seconds: float) -> simpy.Event:
        """Queue (or start, or preempt for) one request of `seconds` of service."""
        job: list[Any] = [ticket, seconds, 0.0, 0, self.env.event(), []]
        if len(self.running) < self.capacity:
            self._start(job)
        else:
            victim = max(self.running, key=lambda j: (j[0].priority, j[2]))
            if ticket.priority < victim[0].priority:
                self.running.remove(victim)
                victim[1] -= self.env.now - victim[2]
                victim[5].append((victim[2], self.env.now))
                victim[3] += 1  # its timer is stale now
                self.queue.push(victim, victim[0])
                self._start(job)
            else:
                self.queue.push(job, ticket)
        return job[4]

    def _start(self, job: list[Any]) -> None:
        now = self.env.now
        job[2] = now
        self.running.append(job)
        generation = job[3]
        self.env.timeout(job[1]).callbacks.append(  # type: ignore[union-attr]
            lambda _e, job=job, generation=generation: self._finish(job, generation))

    def _finish(self, job: list[Any], generation: int) -> None:
        if job[3] != generation:
            return
        self.running.remove(job)
        slices = job[5]
        job[4].succeed([*slices, (job[2], self.env.now)] if slices else job[2])
        if len(self.queue):
            self._start(self.queue.pop())


class Batcher:
    """A dynamic batching service on the simulation clock: `submit()` returns an event fired at the end of
    the request's batch with (batch start, batch size), or None when the admission cap rejects it."""

    __slots__ = ("env", "queue", "spec", "_wake_at")

    def __init__(self, env: simpy.Environment, spec: Batching) -> None:
        self.env = env
        self.spec = spec
        self.queue = BatchQueue(spec)
        self._wake_at = math.inf

    def submit(self) -> simpy.Event | None:
        """Queue a request; None when rejected."""
        event = self.env.event()
        if not self.queue.offer(event, self.env.now):
            return None
        self._check()
        return event

    def _check(self) -> None:
        while True:
            batch = self.queue.next_batch(self.env.now)
            if batch is None:
                return
            if isinstance(batch, float):
                if batch < self._wake_at:
                    self._wake_at = batch
                    self.env.timeout(batch - self.env.now).callbacks.append(self._wake)  # type: ignore[union-attr]
                return
            self.env.process(self._serve(batch))

    def _wake(self, _event: simpy.Event) -> None:
        if self.env.now < self._wake_at:
            return  # a timer made stale by an earlier one (which has fired and rescheduled what was needed)
        self._wake_at = math.inf
        self._check()

    def _serve(self, batch: list[simpy.Event]) -> Generator[simpy.Event, None, None]:
        start = self.env.now
        yield self.env.timeout(self.spec.batch_time(len(batch)))
        self.queue.finished()
        for event in batch:
            event.succeed((start, len(batch)))
        self._check()


class SimLimiter:
    """A client-side limiter with a non-FIFO policy on the simulation clock: `acquire(charges, ticket)` is None
    when granted at once, else an event fired when the request's tokens are granted."""

    __slots__ = ("env", "limiter", "_wake_at")

    def __init__(self, env: simpy.Environment, limiter: PolicyLimiter) -> None:
        self.env = env
        self.limiter = limiter
        self._wake_at = math.inf

    def acquire(self, charges: tuple[float, float], ticket: Ticket) -> simpy.Event | None:
        """Wait (an event) or go (None)."""
        event = self.env.event()
        if self.limiter.offer(event, charges, ticket, self.env.now):
            return None
        self._check()
        return event

    def _check(self) -> None:
        granted, again = self.limiter.grant(self.env.now)
        for event in granted:
            event.succeed()
        if again is not None and again < self._wake_at:
            self._wake_at = again
            self.env.timeout(again - self.env.now).callbacks.append(self._wake)  # type: ignore[union-attr]

    def _wake(self, _event: simpy.Event) -> None:
        if self.env.now < self._wake_at:
            return  # a timer made stale by an earlier one (which has fired and rescheduled what was needed)
        self._wake_at = math.inf
        self._check()
