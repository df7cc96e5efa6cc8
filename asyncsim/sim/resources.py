"""Counted FIFO resources (pools, service slots, executor workers, admission limits) with direct hand-off.

SimPy's `Resource` keeps waiters in a list and pops from its front (quadratic with long queues) and costs
an event per request even when a slot is free; `Slots` grants a free slot without an event and keeps
waiters in a deque, as asyncio's FIFO Semaphore does.
"""

from __future__ import annotations

from collections import deque

import simpy

__all__ = ["Slots"]


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

    def release(self) -> None:
        """Give a slot back; the longest waiter gets it directly."""
        if self.waiters:
            self.waiters.popleft().succeed()
        else:
            self.in_use -= 1
