"""Real CPU work: a fixed number of pure-Python loop iterations, calibrated to a duration on an idle core.

Not a spin until a deadline: iterations hold the GIL and block the event loop exactly as user code does, so
two threads sharing the GIL take twice as long, as they would in reality.
"""

from __future__ import annotations

import statistics
import time

__all__ = ["CpuWork", "burn", "measure_rate"]


def burn(iterations: int) -> int:
    """Run `iterations` rounds of a small pure-Python loop (the unit of real CPU work)."""
    acc = 0
    for i in range(iterations):
        acc ^= i
    return acc


def measure_rate(*, warmup_s: float = 0.15, rounds: int = 7, chunk: int = 200_000) -> float:
    """Iterations per second of `burn` on this thread, after a warm-up (CPU speed ramps up over ~0.1 s)."""
    end = time.perf_counter() + warmup_s
    while time.perf_counter() < end:
        burn(chunk)
    samples = []
    for _ in range(rounds):
        c0 = time.thread_time()
        burn(chunk)
        samples.append(chunk / max(time.thread_time() - c0, 1e-9))
    return statistics.median(samples)


class CpuWork:
    """Turns seconds of CPU into iterations of `burn` at a measured rate (iterations per second)."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.rate = rate

    def iterations(self, seconds: float) -> int:
        """Iterations that take `seconds` on an idle core."""
        return max(0, round(seconds * self.rate))

    def run(self, seconds: float) -> float:
        """Do `seconds` of CPU work; returns the thread CPU time it actually took."""
        c0 = time.thread_time()
        burn(self.iterations(seconds))
        return time.thread_time() - c0
