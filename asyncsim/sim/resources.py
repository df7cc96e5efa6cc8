"""Counted FIFO resources (pools, service slots, executor workers, admission limits) with direct hand-off.

SimPy's `Resource` keeps waiters in a list and pops from its front (quadratic with long queues) and costs
an event per request even when a slot is free; `Slots` grants a free slot without an event and keeps
waiters in a deque, as asyncio's FIFO Semaphore does.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Generator

import simpy

from ..services import Batching, BatchQueue

__all__ = ["Batcher", "Slots"]


class Slots:
    """`capacity` slots; `request()` returns None when a slot was free, else an event fired on hand-off."""

    __slots__ = ("env", "capacity", "in_use", "waiters")

    def __init__(self, env: simpy.Environment, capacity: int) -> None:
        self.env = env
        self.capacity = capacity
        self.in_use = 0
        self.waiters: deque[simpy.Event] = deque()

    def request(self) -> simpy.Event | None:
        """Take a slot now (None) or queue for one."""
        if self.in_use < self.capacity:
            self.in_use += 1
            return None
        event = self.env.event()
        self.waiters.append(event)
        return event

    def cancel(self, event: simpy.Event) -> bool:
        """Withdraw a queued request (a pool timeout); False when the slot was already handed over."""
        try:
            self.waiters.remove(event)
        except ValueError:
            return False
        return True

    def release(self) -> None:
        """Give a slot back; the longest waiter gets it directly."""
        if self.waiters:
            self.waiters.popleft().succeed()
        else:
            self.in_use -= 1


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
        self._wake_at = math.inf
        self._check()

    def _serve(self, batch: list[simpy.Event]) -> Generator[simpy.Event, None, None]:
        start = self.env.now
        yield self.env.timeout(self.spec.batch_time(len(batch)))
        self.queue.finished()
        for event in batch:
            event.succeed((start, len(batch)))
        self._check()
