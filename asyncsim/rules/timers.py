"""How long a timed wait really lasts on a machine's timers: rounded up to their granularity, then late.

The one rule behind three places: a thread's `time.sleep` in the simulator (sim/engine.py `_timer`), the idle event
loop's select() for its earliest timer (sim/cpu.py `Loop._select_late`: Lib/selectors.py EpollSelector.select
rounds the timeout up to whole milliseconds, counted from when the loop went idle), and the same select() in the
twin (twin.py `TwinLoop.select_timeout`).
"""

from __future__ import annotations

import math

__all__ = ["timed_wait"]


def timed_wait(wait: float, granularity: float, overshoot: float) -> float:
    """Seconds a wait of `wait` seconds lasts: a positive wait rounded up to a multiple of `granularity` (0: not
    rounded), plus `overshoot` (the thread's wake-up)."""
    if granularity and wait > 0:
        wait = math.ceil(wait / granularity - 1e-9) * granularity
    return wait + overshoot
