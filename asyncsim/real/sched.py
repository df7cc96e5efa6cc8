"""Scheduling policies on the client side, the way a user implements them: real primitives whose waiters
are served in a `policies.WaitQueue`'s order instead of FIFO.

* `AsyncPolicySemaphore`: an asyncio semaphore; `acquire(ticket)` awaits a future queued by policy and
  `release()` hands the slot straight to the next waiter (no barging, as the simulator's slots).
* `PolicySemaphore`: the same for threads (one `threading.Event` per waiter); `acquire` takes a timeout.
* `Admission`: at most `limit` tasks run at once; the rest wait in policy order and are started as running
  ones finish (how a threads or processes runner dispatches tasks instead of a FIFO executor queue).
* `AsyncPolicyLimiter` / `ThreadPolicyLimiter`: a client-side rate limiter granting tokens in policy order,
  driving `services.PolicyLimiter` (the simulator's rule) with loop timers or a condition per waiter.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from typing import Any

from ..policies import Policy
from ..rules.limits import PolicyLimiter
from ..rules.queues import Ticket, WaitQueue

__all__ = ["Admission", "AsyncPolicyLimiter", "AsyncPolicySemaphore", "PolicySemaphore", "ThreadPolicyLimiter"]

_ANY = Ticket()


class AsyncPolicySemaphore:
    """An asyncio semaphore of `value` slots whose waiters are served in `policy` order."""

    def __init__(self, value: int, policy: Policy | str) -> None:
        self._value = value
        self._queue = WaitQueue(policy)

    def locked(self) -> bool:
        """Whether `acquire` would wait."""
        return self._value == 0 or len(self._queue) > 0

    def request(self, ticket: Ticket = _ANY) -> asyncio.Future[None] | None:
        """Take a slot now (None) or join the queue now: a future resolved when the slot is handed over.

        For a caller that must queue at a precise moment (an arrival), before its coroutine first runs."""
        if self._value > 0 and not len(self._queue):
            self._value -= 1
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.push(future, ticket)
        return future

    async def acquire(self, ticket: Ticket = _ANY) -> None:
        """Take a slot, waiting in policy order."""
        await self.wait(self.request(ticket))

    async def wait(self, future: asyncio.Future[None] | None) -> None:
        """Wait for a `request`ed slot; a cancelled waiter (a timeout) leaves the queue, and a slot handed to
        it in the meantime goes to the next waiter."""
        if future is None:
            return
        try:
            await future
        except asyncio.CancelledError:
            if not self._queue.remove(future) and future.done() and not future.cancelled():
                self.release()  # the slot was handed over as the wait was cancelled
            raise

    def release(self) -> None:
        """Give a slot back: the next waiter by policy gets it directly."""
        while len(self._queue):
            future = self._queue.pop()
            if not future.done():
                future.set_result(None)
                return
        self._value += 1


class _Waiter:
    __slots__ = ("event", "granted")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.granted = False


class PolicySemaphore:
    """A threading semaphore of `value` slots whose waiters are served in `policy` order."""

    def __init__(self, value: int, policy: Policy | str) -> None:
        self._value = value
        self._queue = WaitQueue(policy)
        self._lock = threading.Lock()

    def acquire(self, ticket: Ticket = _ANY, timeout: float | None = None) -> bool:
        """Take a slot (True), or give up after `timeout` real seconds (False)."""
        with self._lock:
            if self._value > 0 and not len(self._queue):
                self._value -= 1
                return True
            waiter = _Waiter()
            self._queue.push(waiter, ticket)
        if waiter.event.wait(timeout):
            return True
        with self._lock:
            return not self._queue.remove(waiter)  # not waiting any more: it was granted meanwhile

    def release(self) -> None:
        """Give a slot back: the next waiter by policy gets it directly."""
        with self._lock:
            if not len(self._queue):
                self._value += 1
                return
            waiter = self._queue.pop()
        waiter.granted = True
        waiter.event.set()


class Admission:
    """At most `limit` tasks run at once; others wait in `policy` order. `start(i)` launches task i (on a
    worker thread or process) and must lead to `finished()` when it ends.

    A free slot goes to an arriving task at once and a freed one to the queue's next, as the simulator's
    admission does; the decision is made when a task finishes, not when it was queued.
    """

    def __init__(self, limit: int, policy: Policy | str, start: Callable[[int], Any]) -> None:
        self.free = limit
        self.queue = WaitQueue(policy)
        self.lock = threading.Lock()
        self.start = start

    def arrive(self, i: int, ticket: Ticket) -> None:
        """Task i arrives: started now, or queued."""
        with self.lock:
            if self.free == 0:
                self.queue.push(i, ticket)
                return
            self.free -= 1
        self.start(i)

    def finished(self) -> None:
        """A task ended: its slot goes to the next waiting task."""
        with self.lock:
            if not len(self.queue):
                self.free += 1
                return
            i = self.queue.pop()
        self.start(i)


class AsyncPolicyLimiter:
    """A client-side limiter for one event loop: `services.PolicyLimiter` granting waiters their tokens in
    policy order, re-checked by a loop timer at the time the next one fits. `lock` guards the buckets."""

    def __init__(self, limiter: PolicyLimiter, lock: Any) -> None:
        self.limiter = limiter
        self.lock = lock
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf

    async def acquire(self, charges: tuple[float, float], ticket: Ticket, clock: Callable[[], float],
                      scale: float) -> None:
        """Wait for `charges` (requests, tokens); `clock` gives model seconds, `scale` real s per model s."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self.lock:
            if self.limiter.offer(future, charges, ticket, clock()):
                return
        self._check(clock, scale)
        await future

    def _check(self, clock: Callable[[], float], scale: float) -> None:
        with self.lock:
            granted, again = self.limiter.grant(clock())
        for future in granted:
            future.set_result(None)
        if again is not None and again < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer_at = again
            self.timer = asyncio.get_running_loop().call_later(max(0.0, (again - clock()) * scale), self._tick,
                                                               clock, scale)

    def _tick(self, clock: Callable[[], float], scale: float) -> None:
        self.timer, self.timer_at = None, math.inf
        self._check(clock, scale)


class ThreadPolicyLimiter:
    """A client-side limiter for threads: `services.PolicyLimiter` under the buckets' `lock`, one event per
    waiter. The waiter at the head of the queue keeps time (sleeps until its tokens fit, then grants);
    others sleep until granted or until they become the head."""

    def __init__(self, limiter: PolicyLimiter, lock: Any) -> None:
        self.limiter = limiter
        self.lock = lock

    def acquire(self, charges: tuple[float, float], ticket: Ticket, clock: Callable[[], float],
                scale: float) -> None:
        """Block until `charges` (requests, tokens) are granted; model-second clock, `scale` as above."""
        me = _Waiter()
        limiter = self.limiter
        with self.lock:
            if limiter.offer(me, charges, ticket, clock()):
                return
        while True:
            with self.lock:
                granted, again = limiter.grant(clock())
                for waiter in granted:
                    waiter.granted = True
                    waiter.event.set()
                head = limiter.queue.peek()[0][0] if len(limiter.queue) else None
                if head is not None and head is not me:
                    head.event.set()  # it may have become the head: it keeps time from now on
                if me.granted:
                    return
                me.event.clear()
                timeout = None if head is not me or again is None else max(0.0, (again - clock()) * scale)
            me.event.wait(timeout)
