"""Counted FIFO resources (pools, service slots, executor workers, admission limits) with direct hand-off.

SimPy's `Resource` keeps waiters in a list and pops from its front (quadratic with long queues) and costs
an event per request even when a slot is free; `Slots` grants a free slot without an event and keeps
waiters in a deque, as asyncio's FIFO Semaphore does.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Generator
from functools import partial
from typing import Any

import simpy

from ..policies import Policy
from ..rules.calls import UNLOCKED
from ..rules.limits import CallState, PolicyLimiter, buckets
from ..rules.queues import BatchQueue, QueueSchedule, Ticket, WaitQueue, served
from ..services import Batching, Service
from ..spec import Machine, Workload
from ..trace import TraceBuilder

__all__ = ["Batcher", "PolicyServer", "SimLimiter", "SimService", "Slots", "WorkQueue", "capacities"]


class WorkQueue:
    """A ThreadPoolExecutor's work queue: `queue.SimpleQueue`, whose idle getters all sleep on one lock
    (Modules/_queuemodule.c, 3.11: simplequeue_get_impl, _queue_SimpleQueue_put_impl).

    `put` releases the lock only while `locked` is set, so it wakes one sleeping worker (FIFO, as futex waiters
    wake) and no more until that worker, holding the GIL, sets `locked` again: a burst of submits wakes one worker,
    which takes the first job and then releases the lock for the next sleeper, and so on, one at a time. A worker
    that ends a job while jobs are queued takes the first (it keeps the GIL). A woken worker that finds the queue
    emptied by the others sleeps again. Measured (eight 0.5 ms jobs submitted at once from a loop to 2 or 4 idle
    workers, 40 rounds each): one thread ran all eight, in submit order, every time.
    """

    __slots__ = ("jobs", "sleepers", "held", "locked")

    def __init__(self) -> None:
        self.jobs: deque[Any] = deque()
        self.sleepers: deque[Any] = deque()  # workers blocked on the lock, the longest first
        self.held = False
        self.locked = False  # the queue's lock is held for its sleepers: a put wakes one

    def put(self, job: Any) -> Any | None:
        """Queue `job`; returns the sleeper it wakes (which then waits for the GIL to `get`), if any."""
        self.jobs.append(job)
        if self.locked:
            self.locked = False
            return self._release()
        return None

    def get(self, worker: Any, *, woken: bool = False) -> tuple[Any | None, Any | None]:
        """`worker`, holding the GIL, gets a job (`woken`: it was handed the lock by a put or a get and has just
        taken the GIL): returns (the job, or None when it sleeps instead; the sleeper its get woke, if any)."""
        if woken:
            self.locked = True
        if not self.jobs:
            if not self.held:  # the non-blocking try takes the free lock, and the next try blocks on it
                self.held = self.locked = True
            self.sleepers.append(worker)
            return None, None
        job = self.jobs.popleft()
        if self.locked:
            self.locked = False
            return job, self._release()
        return job, None

    def _release(self) -> Any | None:
        if self.sleepers:  # a sleeper takes the lock (it stays held)
            return self.sleepers.popleft()
        self.held = False
        return None


class Slots:
    """`capacity` slots; `request()` returns None when a slot was free, else an event fired on hand-off.

    Waiters are served FIFO (a deque: the fast path) or in the order of a `WaitQueue` policy, by the
    `Ticket` each request brings.

    `on_loop` (FIFO only) is asyncio.Semaphore's rule (Lib/asyncio/locks.py, 3.11): a waiter handed a slot by
    `release()` stays in `_waiters` until its coroutine resumes, and `locked()` holds while it does, so a
    newcomer queues even when a slot is free; the waiter, resuming (`resumed()`), hands a free slot to the next.
    """

    __slots__ = ("env", "capacity", "in_use", "waiters", "queue", "woken", "handoff")

    def __init__(self, env: simpy.Environment, capacity: int, policy: Policy | None = None, *,
                 on_loop: bool = False) -> None:
        self.env = env
        self.capacity = capacity
        self.in_use = 0
        self.waiters: deque[simpy.Event] = deque()
        self.queue = WaitQueue(policy) if policy is not None and policy.kind != "fifo" else None
        self.woken: int | None = 0 if on_loop and self.queue is None else None  # handed a slot, not resumed yet
        # waiters queued by `wait(i)` as plain task numbers: called back with (i, event) when handed a slot
        self.handoff: Callable[[int, simpy.Event], None] | None = None

    def locked(self) -> bool:
        """Whether a request would queue (asyncio.Semaphore.locked, with `on_loop`)."""
        return self.in_use >= self.capacity or bool(self.woken)

    def request(self, ticket: Ticket | None = None) -> simpy.Event | None:
        """Take a slot now (None) or queue for one."""
        if self.in_use < self.capacity and not self.woken:
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

    def waiting(self) -> bool:
        """Whether a request waits for a slot."""
        return bool(self.waiters) or (self.queue is not None and len(self.queue) > 0)

    def release(self, value: Any = None) -> None:
        """Give a slot back; the next waiter (by the policy) gets it directly, with `value`."""
        if self.queue is not None and len(self.queue):
            self.queue.pop().succeed(value)
        elif self.waiters:
            self._wake(self.waiters.popleft(), value)
            if self.woken is not None:
                self.woken += 1
        else:
            self.in_use -= 1

    def wait(self, task: int) -> None:
        """Queue task `task` for a slot (FIFO): `handoff(task, event)` runs when it gets one."""
        self.waiters.append(task)  # type: ignore[arg-type]  # _wake tells ints from events

    def _wake(self, waiter: simpy.Event | int, value: Any = None) -> None:
        if type(waiter) is int:  # an event now, so the hand-off happens in the order it was caused
            assert self.handoff is not None
            event = self.env.event()
            event.callbacks.append(partial(self.handoff, waiter))
            event.succeed()
        else:
            waiter.succeed(value)  # type: ignore[union-attr]

    def resumed(self, _event: Any = None) -> None:
        """A waiter handed a slot runs again (`on_loop`): after it, a free slot goes to the next waiter."""
        if self.woken is None:
            return
        self.woken -= 1
        if self.in_use < self.capacity and self.waiters:
            self.in_use += 1
            self.woken += 1
            self._wake(self.waiters.popleft())


class Alarm:
    """One wake-up at the earliest time asked for: `set(at)` arms it (an earlier time supersedes a later one), and
    `ring` runs then. A superseded timer is void by its number, not by comparing clocks: `now + (at - now)` can
    land a hair before `at` in floating point, and read as stale it left the waiters asleep for good (a client
    limiter under threads:8 whose 5 ms turn fell 1e-18 s short: 7 of 40 tasks never finished)."""

    __slots__ = ("env", "ring", "at", "armed")

    def __init__(self, env: simpy.Environment, ring: Callable[[], None]) -> None:
        self.env = env
        self.ring = ring
        self.at = math.inf
        self.armed = 0  # numbers the timers: only the latest may ring

    def set(self, at: float) -> None:
        """Ring at `at`, unless armed for sooner already."""
        if at < self.at:
            self.at = at
            self.armed += 1
            self.env.timeout(max(0.0, at - self.env.now)).callbacks.append(partial(self._due, self.armed))

    def _due(self, number: int, _event: simpy.Event) -> None:
        if number == self.armed:
            self.at = math.inf
            self.ring()


class PolicyServer:
    """A service queue ordered by a policy (preemptive-resume priority included) on the simulation clock: the
    shared `policies.QueueSchedule` (the real runner's emulated server uses the same), advanced by a timer at
    its next completion. `serve(ticket, seconds)` is an event fired when the request is done, with its start
    time, or its (start, end) slices when it was preempted."""

    __slots__ = ("env", "schedule", "events", "alarm")

    def __init__(self, env: simpy.Environment, capacity: int, policy: Policy) -> None:
        self.env = env
        self.schedule = QueueSchedule(capacity, policy)
        self.events: dict[int, simpy.Event] = {}
        self.alarm = Alarm(env, self._wake)

    def serve(self, ticket: Ticket, seconds: float) -> simpy.Event:
        """Queue (or start, or preempt for) one request of `seconds` of service."""
        event = self.env.event()
        self.events[self.schedule.submit(self.env.now, seconds, ticket)] = event
        self._settle()
        return event

    def _settle(self) -> None:
        schedule = self.schedule
        for rid in [r for r in schedule.done if r in self.events]:
            self.events.pop(rid).succeed(served(schedule.done.pop(rid)))
        schedule.changed.clear()
        self.alarm.set(schedule.next_event())

    def _wake(self) -> None:
        self.schedule.advance(self.env.now)
        self._settle()


class Batcher:
    """A dynamic batching service on the simulation clock: `submit()` returns an event fired at the end of
    the request's batch with (batch start, batch size), or None when the admission cap rejects it."""

    __slots__ = ("env", "queue", "spec", "alarm")

    def __init__(self, env: simpy.Environment, spec: Batching) -> None:
        self.env = env
        self.spec = spec
        self.queue = BatchQueue(spec)
        self.alarm = Alarm(env, self._check)

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
                self.alarm.set(batch)
                return
            self.env.process(self._serve(batch))

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

    __slots__ = ("env", "limiter", "alarm")

    def __init__(self, env: simpy.Environment, limiter: PolicyLimiter) -> None:
        self.env = env
        self.limiter = limiter
        self.alarm = Alarm(env, self._check)

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
        if again is not None:
            self.alarm.set(again)


class SimService:
    """A service on the simulation clock: its slots or batcher, its rate-limit buckets, its trace codes."""

    def __init__(self, name: str, spec: Service, env: simpy.Environment, tb: TraceBuilder) -> None:
        self.name = name
        self.spec = spec
        self.preemptive: PolicyServer | None = None
        if spec.policy.preemptive:
            assert spec.concurrency is not None  # the spec refuses a preemptive policy without concurrency
            self.preemptive = PolicyServer(env, spec.concurrency, spec.policy)
        self.slots = Slots(env, spec.concurrency, spec.policy) if spec.concurrency and not self.preemptive else None
        self.batcher = Batcher(env, spec.batching) if spec.batching else None
        self.res = tb.resource_id(f"service:{name}")
        self.server = buckets(spec.rate_limit)
        self.client = buckets(spec.client_limit)
        client = spec.client_limit
        self.state = CallState()
        self.limiter = (SimLimiter(env, PolicyLimiter(self.client, client.policy, client.interval, self.state))
                        if self.client is not None and client is not None and client.dispatches else None)
        self.limiter_res = tb.resource_id(f"limiter:{name}") if spec.client_limit else -1
        self.backoff_res = tb.resource_id(f"backoff:{name}") if spec.waits_to_retry else -1
        self.connections = Slots(env, spec.connections) if spec.connections is not None else None
        self.lock = UNLOCKED  # one thread: the simulation


def capacities(workload: Workload, machine: Machine, limit: int | None) -> dict[str, int | None]:
    """Each resource's slots by its name (`pool:db`; None when unbounded), for a run's output."""
    caps: dict[str, int | None] = {"cores": machine.cores, "loop": 1, "gil": 1, "limit": limit, "workers": limit}
    caps.update({f"pool:{k}": p.capacity for k, p in workload.pools.items()})
    caps.update({f"service:{k}": s.concurrency or (s.batching.instances if s.batching else None)
                 for k, s in workload.services.items()})
    return caps
