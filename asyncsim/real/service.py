"""An emulated remote service: a FIFO queue in front of `concurrency` servers, scheduled by the server side;
an emulated dynamic batcher; and `RealService`, what the attempt loop of a real call needs (a queue with
another policy is `server_queue`'s).

A real service's queue does not wait for the client's event loop or GIL: when a request arrives, the
server already knows when a slot frees. So a request sent at t is served at max(t, earliest free slot) and
answered `latency` later; the client just waits for the answer (`asyncio.sleep` / `time.sleep` until
then). Shared between threads with a lock and between processes through shared memory.
"""

from __future__ import annotations

import asyncio
import asyncio as asyncio_mod  # `asyncio` is also RealService's flag
import heapq
import math
import pickle
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import ModelError
from ..rules.limits import Buckets, CallState, PolicyLimiter, buckets
from ..rules.queues import BatchQueue
from ..services import Batching, Service
from .sched import AsyncPolicyLimiter, ThreadPolicyLimiter
from .server_queue import AsyncQueueServer, QueueServer

__all__ = ["AsyncBatchServer", "BatchSchedule", "BatchServer", "RealService", "ServiceSchedule"]


class ServiceSchedule:
    """Server-free times of one service (in the caller's clock: the runner uses model seconds); unbounded when
    `concurrency` is None."""

    def __init__(self, concurrency: int | None, *, shared: Any = None, lock: Any = None) -> None:
        self.concurrency = concurrency
        # between processes: a multiprocessing Array of free times and its lock; else a heap and a thread lock
        self.free: Any = shared if shared is not None else [0.0] * (concurrency or 0)
        self.lock = lock if lock is not None else threading.Lock()

    @classmethod
    def for_processes(cls, concurrency: int | None, mp: Any) -> ServiceSchedule:
        """A schedule in shared memory, usable from worker processes (inherited at fork)."""
        if concurrency is None:
            return cls(None, lock=mp.Lock())
        return cls(concurrency, shared=mp.Array("d", concurrency, lock=False), lock=mp.Lock())

    def reserve(self, now: float, latency: float) -> tuple[float, float]:
        """Book a request sent at `now` lasting `latency`: (served at, answered at)."""
        if self.concurrency is None:
            return now, now + latency
        with self.lock:
            free = self.free
            if isinstance(free, list):
                start = max(now, heapq.heappop(free))
                heapq.heappush(free, start + latency)
            else:  # shared array: few slots, a linear scan is cheapest
                k = min(range(len(free)), key=free.__getitem__)
                start = max(now, free[k])
                free[k] = start + latency
        return start, start + latency


class BatchSchedule:
    """A dynamic batcher's server side in virtual time (model seconds): `services.BatchQueue`'s decisions made
    at the times they are due, whenever the caller gets round to computing them.

    A real server launches a batch the moment it is due, not when some thread wakes up; so every decision is
    dated by the event that causes it (an arrival, a batch's end, the oldest request's max_delay) and a late
    `advance` reaches the same decisions as a punctual one. Plain data: it can be pickled into shared memory.
    """

    def __init__(self, spec: Batching) -> None:
        self.queue = BatchQueue(spec)
        self.busy: list[float] = []  # end times of the running batches (a heap)
        self.now = 0.0
        self.due = math.inf  # when the oldest waiting request's max_delay runs out (an instance idle)
        self.next_id = 0
        self.launched: dict[int, tuple[float, float, int]] = {}  # request -> (batch start, end, size)

    def next_event(self) -> float:
        """The next time a decision may be due (inf: none until a request arrives)."""
        return min(self.busy[0] if self.busy else math.inf, self.due)

    def advance(self, t: float) -> None:
        """Make every decision due up to model time `t` (never beyond the present: later arrivals are unknown)."""
        queue = self.queue
        while True:
            while self.busy and self.busy[0] <= self.now:
                heapq.heappop(self.busy)
                queue.finished()
            self.due = math.inf
            while True:
                batch = queue.next_batch(self.now)
                if batch is None:
                    break
                if isinstance(batch, float):
                    self.due = batch
                    break
                end = self.now + queue.spec.batch_time(len(batch))
                heapq.heappush(self.busy, end)
                for request in batch:
                    self.launched[request] = (self.now, end, len(batch))
            event = self.next_event()
            if event > t:
                break
            self.now = event
        self.now = max(self.now, t)

    def submit(self, sent: float) -> int | None:
        """Queue a request sent at `sent`; its number, or None when the admission cap rejects it."""
        self.advance(sent)
        request = self.next_id
        self.next_id += 1
        if not self.queue.offer(request, self.now):
            return None
        self.advance(self.now)  # a full batch (or max_delay 0) launches at once
        return request


class _Local:
    """Keeps a BatchSchedule as an object (threads of one process)."""

    def __init__(self, schedule: BatchSchedule) -> None:
        self.schedule = schedule

    def load(self) -> BatchSchedule:
        return self.schedule

    def store(self, schedule: BatchSchedule) -> None:
        self.schedule = schedule


class _Shared:
    """Keeps a BatchSchedule pickled in shared memory (processes); callers hold the condition's lock."""

    def __init__(self, schedule: BatchSchedule, mp: Any, size: int = 1 << 16) -> None:
        self.buffer = mp.Array("c", size, lock=False)
        self.length = mp.Value("q", 0, lock=False)
        self.store(schedule)

    def load(self) -> BatchSchedule:
        return pickle.loads(self.buffer[: self.length.value])

    def store(self, schedule: BatchSchedule) -> None:
        data = pickle.dumps(schedule, pickle.HIGHEST_PROTOCOL)
        if len(data) > len(self.buffer):
            raise RuntimeError(f"batcher state of {len(data)} bytes outgrew its shared buffer ({len(self.buffer)})")
        self.buffer[: len(data)] = data
        self.length.value = len(data)


class BatchServer:
    """An emulated dynamic batching server: a `BatchSchedule` behind a condition variable.

    Blocking clients (threads, processes) wait on the condition until their batch is launched — by any client
    that advances the schedule at a due time — then sleep until the batch ends. Between processes the
    schedule lives in shared memory and the condition is a multiprocessing one (inherited at fork).
    """

    def __init__(self, spec: Batching, *, mp: Any = None) -> None:
        if mp is None:
            self.cond: Any = threading.Condition()
            self.store: Any = _Local(BatchSchedule(spec))
        else:
            self.cond = mp.Condition(mp.Lock())
            self.store = _Shared(BatchSchedule(spec), mp)

    def serve(self, clock: Callable[[], float], scale: float) -> tuple[float, int] | None:
        """Send a request now and wait until its batch ends: (batch start, batch size), or None when rejected.

        `clock` gives model seconds; `scale` real seconds per model second.
        """
        with self.cond:
            schedule = self.store.load()
            request = schedule.submit(clock())
            while True:
                got = schedule.launched.pop(request, None) if request is not None else None
                self.store.store(schedule)
                self.cond.notify_all()  # a launch may concern others; a new due time too
                if got is not None or request is None:
                    break
                # woken by another client's launch, or at the next due time (capped: a lost wake-up costs 50 ms)
                self.cond.wait(min(0.05, max(0.0, (schedule.next_event() - clock()) * scale)))
                schedule = self.store.load()
                schedule.advance(clock())
        if got is None:
            return None
        start, end, size = got
        time.sleep(max(0.0, (end - clock()) * scale))
        return start, size


class AsyncBatchServer:
    """The emulated batching server for one event loop: the same `BatchSchedule`, advanced by loop timers.

    Decisions are dated in virtual time (see BatchSchedule), so a timer that fires late, or a loop busy with
    CPU work, delays only when a client learns that its batch started, not the batch.
    """

    def __init__(self, spec: Batching) -> None:
        self.schedule = BatchSchedule(spec)
        self.waiters: dict[int, asyncio.Future[tuple[float, float, int]]] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf

    async def serve(self, clock: Callable[[], float], scale: float) -> tuple[float, int] | None:
        """As `BatchServer.serve`, awaiting instead of blocking."""
        request = self.schedule.submit(clock())
        if request is None:
            return None
        loop = asyncio.get_running_loop()
        future = self.waiters[request] = loop.create_future()
        self._wake(clock, scale)
        start, end, size = await future
        await asyncio.sleep(max(0.0, (end - clock()) * scale))
        return start, size

    def _wake(self, clock: Callable[[], float], scale: float) -> None:
        schedule = self.schedule
        for request in [r for r in self.waiters if r in schedule.launched]:
            self.waiters.pop(request).set_result(schedule.launched.pop(request))
        event = schedule.next_event()
        if self.waiters and event < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            loop = asyncio.get_running_loop()
            self.timer_at = event
            self.timer = loop.call_later(max(0.0, (event - clock()) * scale), self._tick, clock, scale)

    def _tick(self, clock: Callable[[], float], scale: float) -> None:
        self.timer, self.timer_at = None, math.inf
        self.schedule.advance(clock())
        self._wake(clock, scale)


class RealService:
    """A service as the real runner reaches it: what `calls.attempts` needs (spec, trace codes, rate-limit
    buckets and the lock guarding them) and the emulated server (a slot schedule, a policy-ordered queue or
    a batcher), with the client limiter that orders its waiters by policy (`limiter`, when not FIFO).

    `mp` (a multiprocessing context) puts the buckets, the schedule and the batcher in shared memory, for
    worker processes that inherit them at fork; `asyncio` gives the batcher, policy queue and limiter driven
    by the event loop.

    Raises:
        ModelError: with `mp`, a service queue or client limiter with a policy other than fifo (their
            waiters are ordered by threads of one process).
    """

    def __init__(self, name: str, spec: Service, codes: tuple[int, int, int], *, mp: Any = None,
                 asyncio: bool = False) -> None:
        self.name = name
        self.spec = spec
        self.res, self.limiter_res, self.backoff_res = codes
        self.lock: Any = threading.Lock() if mp is None else mp.Lock()

        def states() -> tuple[Any, Any]:
            return (None, None) if mp is None else (mp.Array("d", 2, lock=False), mp.Array("d", 2, lock=False))

        self.server: Buckets | None = buckets(spec.rate_limit, states())
        self.client: Buckets | None = buckets(spec.client_limit, states())
        self.state = CallState(None if mp is None else mp.Array("d", CallState.SIZE, lock=False))
        n = spec.connections
        self.connections: Any = (None if n is None else asyncio_mod.Semaphore(n) if asyncio
                                 else threading.Semaphore(n) if mp is None else mp.Semaphore(n))
        self.schedule = (ServiceSchedule(spec.concurrency) if mp is None
                         else ServiceSchedule.for_processes(spec.concurrency, mp))
        self.batcher: Any = None
        if spec.batching is not None:
            self.batcher = AsyncBatchServer(spec.batching) if asyncio else BatchServer(spec.batching, mp=mp)
        queued = spec.concurrency is not None and spec.policy.kind != "fifo"
        limited = spec.client_limit is not None and spec.client_limit.dispatches
        if mp is not None and (queued or limited):
            paced = spec.client_limit is not None and spec.client_limit.interval > 0
            where = "policy" if queued else "client_limit.interval" if paced else "client_limit.policy"
            raise ModelError(f"services.{name}.{where}: the real runner orders waiters (by policy, or through a "
                             "dispatcher) under asyncio, threads and sequential, not between processes; validate "
                             "it with threads:N")
        self.queue: Any = None
        if queued:
            assert spec.concurrency is not None  # a policy orders a server's queue only with concurrency
            self.queue = (AsyncQueueServer if asyncio else QueueServer)(spec.concurrency, spec.policy)
        self.limiter: Any = None
        if limited and self.client is not None and spec.client_limit is not None:
            rule = PolicyLimiter(self.client, spec.client_limit.policy, spec.client_limit.interval, self.state)
            self.limiter = (AsyncPolicyLimiter if asyncio else ThreadPolicyLimiter)(rule, self.lock)
