"""Offload CPU work to threads while the loop keeps a heartbeat, as users write it (a fourth program for
`asyncsim twin`): the jobs and the loop share one GIL, so every heartbeat waits for it.

    python offload.py              # for real
    asyncsim twin offload.py       # in virtual time (no services: it makes no requests)

Knobs (environment): JOBS (2), WORK (6000000 iterations a job), BEATS (40 heartbeats), PERIOD (0.01 s between
beats). Prints one JSON line: elapsed seconds (the heartbeat's), and done, failed.
"""

import asyncio
import json
import os
import time


def crunch(n: int) -> int:
    """Pure-Python work (it holds the GIL)."""
    acc = 0
    for i in range(n):
        acc ^= i
    return acc


async def heartbeat(beats: int, period: float) -> float:
    start = time.monotonic()
    for _ in range(beats):
        await asyncio.sleep(period)
    return time.monotonic() - start


async def main() -> None:
    jobs = [asyncio.to_thread(crunch, int(os.environ.get("WORK", 6_000_000)))
            for _ in range(int(os.environ.get("JOBS", 2)))]
    beat = heartbeat(int(os.environ.get("BEATS", 40)), float(os.environ.get("PERIOD", 0.01)))
    elapsed, *_ = await asyncio.gather(beat, *jobs)
    print(json.dumps({"elapsed": elapsed, "done": 1 + len(jobs), "failed": 0}))


if __name__ == "__main__":
    asyncio.run(main())
