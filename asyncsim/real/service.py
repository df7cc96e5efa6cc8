"""An emulated remote service: a FIFO queue in front of `concurrency` servers, scheduled by the server side.

A real service's queue does not wait for the client's event loop or GIL: when a request arrives, the
server already knows when a slot frees. So a request sent at t is served at max(t, earliest free slot) and
answered `latency` later; the client just waits for the answer (`asyncio.sleep` / `time.sleep` until
then). Shared between threads with a lock and between processes through shared memory.
"""

from __future__ import annotations

import heapq
import threading
from typing import Any

__all__ = ["ServiceSchedule"]


class ServiceSchedule:
    """Server-free times of one service (perf_counter seconds); unbounded when `concurrency` is None."""

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
