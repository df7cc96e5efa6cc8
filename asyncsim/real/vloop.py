"""CPython's own asyncio event loop on a virtual clock: the real ready queue, timers, tasks, `gather`,
semaphores and queues, with time that moves only when a timer is waited for or CPU work is charged.

It runs the real asyncio driver (`aio`) deterministically: `VirtualCpu.run(s)` advances the clock by `s`
while the loop is blocked in the callback, as CPU work blocks a real loop, and an idle loop jumps to its next
timer. The order in which callbacks run is therefore exactly CPython's (`BaseEventLoop._run_once`: the
handles ready at the start of an iteration run FIFO; callbacks they schedule, and timers that fall due, wait
for the next iteration), which is what the simulator's loop must reproduce (tests/test_ready_queue.py).

Limits: time is charged only where the driver says so (no loop overheads: compare with an ideal machine);
timers with equal deadlines fire in heap order, as in CPython; executors and threads are not virtual.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any

from .cpuwork import CpuWork

__all__ = ["VirtualClock", "VirtualCpu", "VirtualLoop"]


class VirtualClock:
    """Seconds of virtual time; advanced by waiting for timers and by charged CPU work."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        """Move the clock `seconds` forward."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back: advance({seconds})")
        self.t += seconds


class _Selector(selectors.DefaultSelector):
    """Polls real file descriptors without blocking; a wait for the next timer moves the clock instead."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        events = super().select(0)
        if not events and timeout:
            self.clock.advance(timeout)
        elif not events and timeout is None:
            raise RuntimeError("virtual event loop: nothing is ready and no timer is set (every task waits forever)")
        return events


class VirtualLoop(asyncio.SelectorEventLoop):
    """A stdlib selector event loop whose `time()` is a `VirtualClock`."""

    def __init__(self, clock: VirtualClock, selector: selectors.BaseSelector | None = None) -> None:
        super().__init__(selector or _Selector(clock))
        self.clock = clock
        self._clock_resolution = 1e-12

    def time(self) -> float:
        return self.clock.t


class VirtualCpu(CpuWork):
    """CPU work that costs exactly its nominal seconds of virtual time."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(1.0)
        self.clock = clock

    def iterations(self, seconds: float) -> int:
        raise TypeError("virtual CPU work cannot run in an executor: it has no iterations")

    def run(self, seconds: float) -> float:
        """Charge `seconds` of CPU: the clock moves while the caller (and so the loop) is busy."""
        self.clock.advance(seconds)
        return seconds
