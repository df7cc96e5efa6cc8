"""Which worker thread runs an executor's jobs, and how a busy event loop shares the GIL with a waiting thread.

    python benchmarks/executor_order.py [--runs 4]

Part 1, the validation suite's `offload-0.5ms` case written out by hand (120 tasks under asyncio.Semaphore(8):
0.5 ms of CPU on a ThreadPoolExecutor of two, a 20 ms sleep, 0.5 ms more): per run, T_total, the jobs each
thread ran, how many jobs ran on the thread that ran the one before, and the mean submit-to-start and
end-to-resume of a job. Part 2: the same workload on four threads with the loop's select() and every handle
timestamped: a job's end to the loop out of select(), from there to the first coroutine resumed, the loop
entering select() to a job starting, and each kind of handle's time. Part 3: a thread woken while the loop keeps
iterating (each iteration `await
asyncio.sleep(0)` after `cost` of CPU): how many iterations, and how long, until it runs. Part 4: a worker woken
by a submit and asleep 0.1-3 ms for the GIL while the loop finishes its iteration: where it takes the GIL (the
next select(0), the self-pipe reader, or later).

Measured here (2026-12-05, 2 vCPUs, CPython 3.11.7, Linux 6.18):
- 220-229 of 239 jobs ran on the thread that ran the job before: a loop's burst of submits wakes one worker
  (SimpleQueue.put releases its lock only if a getter sleeps on it, Modules/_queuemodule.c), and the worker that
  ends a job pops the next without giving up the GIL. The simulator bound each job to an idle worker at submit;
  binding at pop (CPython's rule) was tried then and not adopted (35 thread-offload runs 6.45% -> 7.39%). With the
  race at a new worker's start modelled too and the reader hand-off below dropped, it was (2026-12-06:
  sim/resources.py WorkQueue, benchmarks/work_queue.py).
- Runs fall in two regimes: T 374-387 ms (a job's submit to start 0.9-1.0 ms, end to resume 0.6-0.8 ms), or
  441-451 ms (1.8-2.0 and 1.9-2.2 ms). In the slow one the eight coroutines move in lock-step from the start:
  the loop submits eight jobs, one worker runs all eight back to back while the loop waits for the GIL, and
  the loop resumes all eight together 0.25 ms after the last ends; their sleeps end together, and so on.
  The simulator's replay splits them into cohorts early, which halves each batch: -10% to -20%.
- Part 2 (2026-12-05, night): a burst's last job's end to the loop out of select() 43-54 us (Machine.loop_wake_s),
  from there to the first coroutine resumed 128-171 us: the results' _set_state handles (8-11 us each, the first
  after a wake 16-48), then the self-pipe's reader _read_from_self (22-73 us; Machine.loop_read_s), then the next
  iteration's task wake-ups (15-22 us); the loop entering select() to a job starting 28-56 us (Machine.thread_switch_s,
  now calibrated with a thread that slept, not a ping-pong of busy ones).
- A thread woken while the loop iterates with nothing else to do runs after 8 iterations (0.1 ms, median); with
  20-300 us of CPU per iteration it waits 50 ms to 1.5 s (thousands of iterations, past many switch
  intervals): the loop's select(0) between iterations lets it in only while the iterations are tiny.
- Part 4 (2026-12-05, late night): the waiting worker took the GIL in the self-pipe reader (its recv releases it) in
  9-39% of 60-100 trials per sleep, the share moving from batch to batch, not with the sleep; at the select(0) in
  0 of 1,200; after 10 ms never there (past the switch interval a forced switch lets it in first). The simulator
  handed over at the reader until 2026-12-06 (a fitted Machine.loop_read_handoff_s); with the work queue's protocol
  it does not (sim/cpu.py, THE SELF-PIPE READER).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import selectors
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from asyncsim.real.cpuwork import burn, measure_rate

T = TypeVar("T")


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


def run_timed(main: Callable[[ThreadPoolExecutor], Awaitable[T]], workers: int,
              on_select: Callable[[float, float | None], None], on_woken: Callable[[float, int], None],
              on_handle: Callable[[float, float, str], None]) -> T:
    """Run `main(executor)` on a loop whose select() calls and handles are timed: `on_select(start, timeout)` as it
    enters select(), `on_woken(end, events)` as it returns, `on_handle(start, took, name)` after each handle
    (Handle._run is what BaseEventLoop._run_once calls for each ready handle, patched for the run only)."""
    clock = time.perf_counter

    class Selector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
        def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            on_select(clock(), timeout)
            ready = super().select(timeout)
            on_woken(clock(), len(ready))
            return ready

    plain_run = asyncio.events.Handle._run  # noqa: SLF001

    def timed_run(handle: asyncio.events.Handle) -> None:
        t = clock()
        plain_run(handle)
        name = getattr(handle._callback, "__qualname__", "?").rsplit(".", 1)[-1]  # noqa: SLF001
        on_handle(t, clock() - t, name)

    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]  # noqa: SLF001
    try:
        loop = asyncio.SelectorEventLoop(Selector())
        with ThreadPoolExecutor(workers) as ex:
            result = loop.run_until_complete(main(ex))
        loop.close()
    finally:
        asyncio.events.Handle._run = plain_run  # type: ignore[method-assign]  # noqa: SLF001
    return result


def trip_legs(iterations: int, workers: int = 4, tasks: int = 120, limit: int = 8) -> list[str]:
    """The offload workload on a loop whose select() and handles are timestamped: where a result's trip goes."""
    log: list[tuple[float, str, object]] = []
    clock = time.perf_counter

    def on_select(start: float, timeout: float | None) -> None:
        log.append((start, "select", timeout))

    def on_woken(end: float, events: int) -> None:
        log.append((end, "woken", events))

    def on_handle(start: float, took: float, name: str) -> None:
        log.append((start, "handle", (name, took)))

    def job() -> None:
        log.append((clock(), "start", None))
        burn(iterations)
        log.append((clock(), "end", None))

    async def task(sem: asyncio.Semaphore, ex: ThreadPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        async with sem:
            for k in range(2):
                await loop.run_in_executor(ex, job)
                log.append((clock(), "resume", None))
                if k == 0:
                    await asyncio.sleep(0.02)

    async def main(ex: ThreadPoolExecutor) -> None:
        sem = asyncio.Semaphore(limit)
        await asyncio.gather(*(task(sem, ex) for _ in range(tasks)))

    run_timed(main, workers, on_select, on_woken, on_handle)
    wake, until_resume, to_start = [], [], []
    handles: dict[str, list[float]] = {}
    for n, (t, kind, what) in enumerate(log):
        later = log[n + 1:n + 400]
        if kind == "end" and n and log[n - 1][1] != "handle":  # a burst's last job: the loop then wakes
            woke = next(((u, k) for u, k, _ in later if k in ("woken", "start")), None)
            if woke and woke[1] == "woken":
                wake.append(woke[0] - t)
                resumed = next((u for u, k, _ in later if k == "resume"), None)
                if resumed is not None:
                    until_resume.append(resumed - woke[0])
        elif kind == "select":
            nxt = next(((u, k) for u, k, _ in later if k in ("start", "woken")), None)
            if nxt and nxt[1] == "start":
                to_start.append(nxt[0] - t)
        elif kind == "handle":
            name, took = what  # type: ignore[misc]
            handles.setdefault(name, []).append(took)

    def us(values: list[float]) -> str:
        return f"{statistics.median(values) * 1e6:.0f} us (n={len(values)})" if values else "none"

    return [f"a job's end to the loop out of select(): {us(wake)}; from there to the first coroutine resumed: "
            f"{us(until_resume)}; the loop entering select() to a job starting: {us(to_start)}",
            "handles: " + "; ".join(f"{name} {us(v)}" for name, v in sorted(handles.items()) if len(v) > 10)]


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


def reader_handoff(rate: float, slept: float, trials: int = 60) -> dict[str, int]:
    """Where a worker waiting for the GIL gets it, when it slept `slept` seconds before the loop's next iteration:
    at that iteration's select(0), in the self-pipe's reader (whose recv calls release the GIL), or only later."""
    spans: dict[str, list[tuple[float, float]]] = {"select": [], "reader": []}
    started: list[float] = []
    clock = time.perf_counter

    entered: list[float | None] = [None]  # when the current select(0) began (None: a blocking select())

    def on_select(start: float, timeout: float | None) -> None:
        entered[0] = start if timeout == 0 else None  # handles ready: a blocking select() is the loop idle

    def on_woken(end: float, _events: int) -> None:
        if entered[0] is not None:
            spans["select"].append((entered[0], end))

    def on_handle(start: float, took: float, name: str) -> None:
        if name == "_read_from_self":
            spans["reader"].append((start, start + took))

    def job() -> None:
        started.append(clock())
        burn(round(0.0005 * rate))

    async def main(ex: ThreadPoolExecutor) -> dict[str, int]:
        loop = asyncio.get_running_loop()
        found = {"select": 0, "reader": 0, "later": 0}
        await loop.run_in_executor(ex, job)  # the worker exists and is warm
        for _ in range(trials):
            await asyncio.sleep(0.003)
            loop.call_soon_threadsafe(int)  # a write to the self-pipe: the next iteration runs its reader
            future = loop.run_in_executor(ex, job)  # wakes the worker, which then waits for the GIL
            burn(round(slept * rate))
            await future
            start = started[-1]
            where = next((k for k in ("select", "reader") if any(a <= start <= b for a, b in spans[k][-3:])), "later")
            found[where] += 1
        return found

    return run_timed(main, 1, on_select, on_woken, on_handle)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4, help="runs of the offload workload (default 4)")
    args = parser.parse_args(argv)
    rate = measure_rate()
    print("0.5 ms jobs on two worker threads, 120 tasks under asyncio.Semaphore(8):")
    for _ in range(args.runs):
        print("   " + offload_run(round(0.0005 * rate)), flush=True)
    print("the same workload on four threads, the loop's select() and handles timestamped (medians):")
    for line in trip_legs(round(0.0005 * rate)):
        print("   " + line, flush=True)
    print("a woken thread, while the loop iterates (CPU per iteration):")
    for cost in (0.0, 20e-6, 100e-6):
        count, wait = waiter_run(round(cost * rate), rounds=20 if cost else 40)
        print(f"   {cost * 1e6:5.0f} us: runs after {count:.0f} iterations, {wait * 1e3:.3f} ms (medians)", flush=True)
    print("a worker waiting for the GIL, where it takes it after sleeping (select(0); the self-pipe's reader; later):")
    for slept in (1e-4, 3e-4, 1e-3, 3e-3):
        found = reader_handoff(rate, slept)
        print(f"   {slept * 1e3:4.1f} ms: " + ", ".join(f"{k} {v}" for k, v in found.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
