"""Which worker thread runs an executor's jobs, and how a busy event loop shares the GIL with a waiting thread.

    python benchmarks/executor_order.py [--runs 4]

Part 1, the validation suite's `offload-0.5ms` case written out by hand (120 tasks under asyncio.Semaphore(8):
0.5 ms of CPU on a ThreadPoolExecutor of two, a 20 ms sleep, 0.5 ms more): per run, T_total, the jobs each
thread ran, how many jobs ran on the thread that ran the one before, and the mean submit-to-start and
end-to-resume of a job. Part 2: a thread woken while the loop keeps iterating (each iteration `await
asyncio.sleep(0)` after `cost` of CPU): how many iterations, and how long, until it runs.

Measured here (2026-12-05, 2 vCPUs, CPython 3.11.7, Linux 6.18):
- 220-229 of 239 jobs ran on the thread that ran the job before: a loop's burst of submits wakes one worker
  (SimpleQueue.put releases its lock only if a getter sleeps on it, Modules/_queuemodule.c), and the worker that
  ends a job pops the next without giving up the GIL. The simulator binds each job to an idle worker at submit;
  a model that binds at pop instead (CPython's rule) was tried and not adopted: on 135 suite runs 3.95% ->
  3.84% mean |T error|, on 35 thread-offload runs 6.45% -> 7.39% (asyncio:10+threads:4 and 0.5 ms jobs on 8
  threads got worse: the model runs faster still, where it already ran too fast).
- Runs fall in two regimes: T 374-387 ms (a job's submit to start 0.9-1.0 ms, end to resume 0.6-0.8 ms), or
  441-451 ms (1.8-2.0 and 1.9-2.2 ms). In the slow one the eight coroutines move in lock-step from the start:
  the loop submits eight jobs, one worker runs all eight back to back while the loop waits for the GIL, and
  the loop resumes all eight together 0.25 ms after the last ends; their sleeps end together, and so on.
  The simulator's replay splits them into cohorts early, which halves each batch: -10% to -20%.
- A thread woken while the loop iterates with nothing else to do runs after 8 iterations (0.1 ms, median); with
  20-300 us of CPU per iteration it waits 50 ms to 1.5 s (thousands of iterations, past many switch
  intervals): the loop's select(0) between iterations lets it in only while the iterations are tiny.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from asyncsim.real.cpuwork import burn, measure_rate


def offload_run(iterations: int, workers: int = 2, tasks: int = 120, limit: int = 8) -> str:
    """One run of the offload workload: a line of its figures."""
    jobs: list[tuple[int, float, float]] = []
    trips: list[tuple[float, float, float, float]] = []  # submitted, started, ended, resumed

    def job() -> tuple[float, float]:
        start = time.perf_counter()
        burn(iterations)
        end = time.perf_counter()
        jobs.append((threading.get_native_id(), start, end))
        return start, end

    async def task(sem: asyncio.Semaphore, ex: ThreadPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        async with sem:
            for k in range(2):
                t = time.perf_counter()
                start, end = await loop.run_in_executor(ex, job)
                trips.append((t, start, end, time.perf_counter()))
                if k == 0:
                    await asyncio.sleep(0.02)

    async def main(ex: ThreadPoolExecutor) -> float:
        sem = asyncio.Semaphore(limit)
        t = time.perf_counter()
        await asyncio.gather(*(task(sem, ex) for _ in range(tasks)))
        return time.perf_counter() - t

    with ThreadPoolExecutor(workers) as ex:
        took = asyncio.run(main(ex))
    per_thread: dict[int, int] = {}
    for tid, _, _ in jobs:
        per_thread[tid] = per_thread.get(tid, 0) + 1
    jobs.sort(key=lambda j: j[1])
    same = sum(a[0] == b[0] for a, b in itertools.pairwise(jobs))
    submit = statistics.fmean(s - t for t, s, _, _ in trips)
    back = statistics.fmean(r - e for _, _, e, r in trips)
    return (f"T {took * 1e3:5.0f} ms; jobs per thread {sorted(per_thread.values())}; on the thread that ran the "
            f"one before {same} of {len(jobs) - 1}; submit to start {submit * 1e3:.2f} ms, end to resume "
            f"{back * 1e3:.2f} ms")


def waiter_run(iterations: int, rounds: int = 40) -> tuple[float, float]:
    """Iterations and seconds (medians) until a woken thread runs while the loop iterates."""
    woken = threading.Event()
    ran: list[float] = []

    def waiter() -> None:
        for _ in range(rounds):
            woken.wait()
            ran.append(time.perf_counter())
            woken.clear()

    thread = threading.Thread(target=waiter)
    thread.start()

    async def main() -> tuple[list[int], list[float]]:
        counts, waits = [], []
        for _ in range(rounds):
            await asyncio.sleep(0.003)
            t, seen, count = time.perf_counter(), len(ran), 0
            woken.set()
            while len(ran) == seen:
                burn(iterations)
                count += 1
                await asyncio.sleep(0)
            counts.append(count)
            waits.append(ran[-1] - t)
        return counts, waits

    counts, waits = asyncio.run(main())
    thread.join()
    return statistics.median(counts), statistics.median(waits)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4, help="runs of the offload workload (default 4)")
    args = parser.parse_args(argv)
    rate = measure_rate()
    print("0.5 ms jobs on two worker threads, 120 tasks under asyncio.Semaphore(8):")
    for _ in range(args.runs):
        print("   " + offload_run(round(0.0005 * rate)), flush=True)
    print("a woken thread, while the loop iterates (CPU per iteration):")
    for cost in (0.0, 20e-6, 100e-6):
        count, wait = waiter_run(round(cost * rate), rounds=20 if cost else 40)
        print(f"   {cost * 1e6:5.0f} us: runs after {count:.0f} iterations, {wait * 1e3:.3f} ms (medians)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
