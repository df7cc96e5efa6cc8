"""Measure this machine's execution overheads into a MachineProfile (what `asyncsim calibrate` prints and saves).

The ideal model (no overheads) runs 5–22% fast against real asyncio; a per-wait overshoot δ and a
per-resumption cost c fitted from two runs, T ≈ W·(d + δ + L·c) for W rounds of L tasks woken together,
bring it within about 1% (../shared/research/asyncio-and-gil.md).
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import math
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from ..profile import LoopProfile, MachineProfile
from ._workers import _mp_context, timed_burn
from .cpuwork import burn, measure_rate

__all__ = ["calibrate"]


def _median(samples: list[float]) -> float:
    return float(statistics.median(samples))


def _loop_runner(name: str) -> asyncio.Runner:
    if name == "uvloop":
        import uvloop

        return asyncio.Runner(loop_factory=uvloop.new_event_loop)
    return asyncio.Runner()


def _rounds(runner: asyncio.Runner, tasks: int, rounds: int, d: float) -> float:
    async def one() -> None:
        for _ in range(rounds):
            await asyncio.sleep(d)

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(tasks)))
        return time.perf_counter() - start

    return runner.run(main())


def _loop_profile(name: str, repeats: int) -> LoopProfile:
    """Fit δ (overshoot per wait) and c (cost per resumption) from 1 task vs 100 tasks woken per round."""
    d, rounds, many = 0.005, 40, 100
    with _loop_runner(name) as runner:
        _rounds(runner, 1, 5, d)  # warm up
        single = _median([_rounds(runner, 1, rounds, d) for _ in range(repeats)]) / rounds
        crowd = _median([_rounds(runner, many, rounds, d) for _ in range(repeats)]) / rounds
        step = max(0.0, (crowd - single) / (many - 1))
        overshoot = max(0.0, single - d - step)
        # waits that are not whole milliseconds: the stdlib loop rounds its select timeout up to the next
        # millisecond, so their mean overshoot is larger by half the granularity
        fractions = [d + k * 0.0001 for k in range(1, 10)]
        ragged = _median([_rounds(runner, 1, 10, f) / 10 - f for f in fractions for _ in range(repeats)])
        excess = max(0.0, ragged - step - overshoot)
        granularity = 0.001 if excess > 0.00025 else 0.0

        async def create(n: int) -> float:
            async def nothing() -> None:
                return None

            start = time.perf_counter()
            await asyncio.gather(*(asyncio.create_task(nothing()) for _ in range(n)))
            return (time.perf_counter() - start) / n

        # the process's first 2,000 tasks cost ~11 us each here, later ones ~4 us: the first allocate fresh
        # memory (pymalloc's arenas, page faults) that later tasks reuse. One round was the whole sample at
        # repeats=1, so the figure swung 7-19 us from one calibration to the next; the loop of a warm process (a
        # validation's real runs, a service's steady state) pays the later cost
        runner.run(create(2000))  # warm up
        task_create = _median([runner.run(create(2000)) for _ in range(max(3, repeats))])

        async def semaphore(n: int) -> tuple[float, float]:
            """n tasks queue at a taken semaphore (their first steps), then one step releases them all: per task."""
            gate = asyncio.Semaphore(0)

            async def waiter() -> None:
                await gate.acquire()

            tasks = [asyncio.create_task(waiter()) for _ in range(n)]
            start = time.perf_counter()
            await asyncio.sleep(0)  # this step comes back behind every waiter's first step (call_soon, FIFO)
            queued = time.perf_counter()
            for _ in range(n):  # the k-th walks past the k - 1 woken before it (none has resumed)
                gate.release()
            released = time.perf_counter()
            await asyncio.gather(*tasks)
            return (queued - start) / n, (released - queued) / n

        # a first step that waits at its limit (Lib/asyncio/locks.py Semaphore.acquire: a future appended to the
        # semaphore's waiters, awaited): ~1.2 us here against a resumption's ~6 (the timer, the future's callback,
        # a new sleep); a batch of 10,000 behind asyncio:100 runs 9,900 of them before its first wave ends. And n
        # releases in one step: the k-th costs a + b (k - 1), a mean of a + b (n - 1) / 2; b from two n
        runner.run(semaphore(1000))  # warm up
        large = [runner.run(semaphore(2000)) for _ in range(max(3, repeats))]
        small = [runner.run(semaphore(500)) for _ in range(max(3, repeats))]
        block_step = _median([queue for queue, _ in large])
        scan = max(0.0, (_median([r for _, r in large]) - _median([r for _, r in small])) / ((1999 - 499) / 2))

        async def floor() -> float:
            samples = []
            for _ in range(20):
                t = time.perf_counter()
                await asyncio.sleep(0.0002)
                samples.append(time.perf_counter() - t)
            return _median(samples)

        timer_floor = runner.run(floor())
    return LoopProfile(loop_step_s=step, sleep_overshoot_s=overshoot, task_create_s=task_create,
                       loop_block_s=block_step, semaphore_scan_s=scan, timer_floor_s=timer_floor,
                       timer_granularity_s=granularity)


def _thread_sleep_overshoot(repeats: int) -> float:
    samples = []
    for _ in range(10 * repeats):
        t = time.perf_counter()
        time.sleep(0.005)
        samples.append(time.perf_counter() - t - 0.005)
    return max(0.0, _median(samples))


# a hand-off after this long without a switch finds the woken thread's core idle (the profile's fitted figure)
IDLE_AFTER: float = MachineProfile.model_fields["thread_idle_after_s"].default


def _thread_switch(repeats: int, rate: float, asleep: float = 0.005, hold: float = 0.0001, n: int = 40) -> float:
    """The GIL's hand-off to a thread that was asleep, as a program's threads are between their work: a thread
    blocked `asleep` seconds on a lock is woken by one that holds the GIL, computes `hold` seconds meanwhile, then
    blocks; from that block to the woken thread running (it waited on the GIL's condition variable, and its core
    idled). Median of `n` x `repeats`. A ping-pong of two threads that never idle measures a third to a half of
    it here (12-27 us against 24-47): an idle core wakes late (benchmarks/executor_order.py). With the woken
    thread's core idle 0.5 ms (`hold`) the figure flips between ~30 us and ~150 us from one second to the next
    (12 batches in a row: 29, 34, then 147-186 us); idle 0.1 ms, 18-60 us in the same minute."""
    iterations, count = max(1, int(hold * rate)), n * repeats
    samples: list[float] = []
    woken, back = threading.Lock(), threading.Lock()
    woken.acquire()
    back.acquire()
    released = [0.0]

    def sleeper() -> None:
        for _ in range(count):
            woken.acquire()  # returns once this thread has the GIL again
            samples.append(time.perf_counter() - released[0])
            back.release()

    thread = threading.Thread(target=sleeper)
    thread.start()
    for _ in range(count):
        time.sleep(asleep)
        woken.release()  # the sleeper wakes and waits for the GIL this thread holds
        burn(iterations)
        released[0] = time.perf_counter()
        back.acquire()  # blocks: the GIL goes to the sleeper
    thread.join()
    return _median(samples)


def _thread_start(repeats: int, n: int = 200) -> float:
    """How long threading.Thread.start() blocks its caller (creating the OS thread, until the child runs),
    per thread, after a warm-up; the median of `repeats` batches."""
    def nothing() -> None:
        pass

    samples = []
    for _ in range(repeats + 1):
        threads = [threading.Thread(target=nothing) for _ in range(n)]
        spent = 0.0
        for t in threads:
            t0 = time.perf_counter()
            t.start()
            spent += time.perf_counter() - t0
            t.join()
        samples.append(spent / n)
    return _median(samples[1:])


def _process_dispatch(repeats: int) -> float:
    with ProcessPoolExecutor(1, mp_context=_mp_context()) as ex:
        ex.submit(int).result()
        samples = []
        for _ in range(50 * repeats):
            t = time.perf_counter()
            ex.submit(int).result()
            samples.append(time.perf_counter() - t)
    return _median(samples)


def _thread_turnaround(repeats: int, rate: float, jobs: int = 200) -> float:
    """A ThreadPoolExecutor worker's own time between jobs an event loop awaits (concurrent/futures/thread.py
    `_worker`: the result's set_result, whose done callback is asyncio's call_soon_threadsafe and its self-pipe
    write, then the next job from the queue): `jobs` jobs of 0.2 ms submitted at once to a pool of one, the
    median gap from one job's end to the next one's start once the loop is waiting; median of `repeats` batches."""
    iterations = max(1, int(rate * 2e-4))

    async def batch() -> list[tuple[float, float, float]]:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(1) as pool:
            return await asyncio.gather(*(loop.run_in_executor(pool, timed_burn, iterations) for _ in range(jobs)))

    samples = []
    for _ in range(repeats):
        stamps = sorted(asyncio.run(batch()))[jobs // 10:]  # the first jobs run while the loop still submits
        samples.append(statistics.median(b[0] - a[1] for a, b in itertools.pairwise(stamps)))
    return _median(samples)


def _thread_task_turnaround(repeats: int, rate: float, jobs: int = 200) -> float:
    """A ThreadPoolExecutor worker's own time between tasks of a blocking pool (threads:N; concurrent/futures/
    thread.py `_worker`: `_WorkItem.run`'s set_result, `_idle_semaphore.release()`, the next item from the queue),
    nobody waiting on the futures meanwhile (the submitting thread is in `shutdown(wait=True)`): `jobs` jobs of
    0.2 ms submitted at once to a pool of one, the median gap from one job's end to the next one's start; median
    of `repeats` batches."""
    iterations = max(1, int(rate * 2e-4))
    samples = []
    for _ in range(repeats):
        pool = ThreadPoolExecutor(1)
        futures = [pool.submit(timed_burn, iterations) for _ in range(jobs)]
        pool.shutdown(wait=True)
        stamps = sorted(f.result() for f in futures)[jobs // 10:]  # the first jobs run while this thread submits
        samples.append(statistics.median(b[0] - a[1] for a, b in itertools.pairwise(stamps)))
    return _median(samples)


def _thread_offload(repeats: int, jobs: int = 100) -> tuple[float, float]:
    """The loop's own CPU per job sent to a thread pool: `jobs` run_in_executor calls in one step (executor.submit,
    wrap_future), per call; and, the jobs done while the loop slept (time.sleep lets the worker run them), the
    one iteration that runs their results' _set_state handles (futures._chain_future), per result. Medians of
    20 x `repeats` batches on a warm pool of one."""
    def _noop(_f: Any) -> None:
        pass

    async def batches() -> tuple[list[float], list[float]]:
        loop = asyncio.get_running_loop()
        submit, back = [], []
        with ThreadPoolExecutor(1) as pool:
            await loop.run_in_executor(pool, int)
            for _ in range(20 * repeats):
                t0 = time.perf_counter()
                futures = [loop.run_in_executor(pool, int) for _ in range(jobs)]
                t1 = time.perf_counter()
                for f in futures:  # an awaiting task's wake-up: set_result call_soons a done callback
                    f.add_done_callback(_noop)
                time.sleep(0.005)
                t2 = time.perf_counter()
                await asyncio.sleep(0)  # behind the results' handles
                back.append((time.perf_counter() - t2) / jobs)
                submit.append((t1 - t0) / jobs)
                await asyncio.gather(*futures)
        return submit, back

    submit, back = asyncio.run(batches())
    return _median(submit), _median(back)


def _loop_read(repeats: int, n: int = 200) -> float:
    """The loop's self-pipe reader (BaseSelectorEventLoop._read_from_self, its recv until the pipe is empty), a
    handle the iteration after another thread's call_soon_threadsafe runs: two iterations with a callback queued
    by call_soon_threadsafe, less the same with call_soon; the medians of `n` x `repeats` each."""
    def noop() -> None:
        pass

    async def run() -> tuple[list[float], list[float]]:
        loop = asyncio.get_running_loop()
        written: list[float] = []
        plain: list[float] = []
        for k in range(n * repeats):
            for call, out in ((loop.call_soon_threadsafe, written), (loop.call_soon, plain)):
                await asyncio.sleep(0.0005 if k % 2 else 0)
                call(noop)
                t = time.perf_counter()
                await asyncio.sleep(0)  # the iteration whose select() finds the pipe: its reader runs after this
                await asyncio.sleep(0)
                out.append(time.perf_counter() - t)
        return written, plain

    written, plain = asyncio.run(run())
    return max(0.0, _median(written) - _median(plain))


def _loop_wake(repeats: int, idle: float = 0.001) -> float:
    """How late the loop, idle in select() for `idle` seconds, runs a callback another thread passes it with
    call_soon_threadsafe (its self-pipe write): median of 20 x `repeats` wake-ups."""
    def other(loop: asyncio.AbstractEventLoop, woken: asyncio.Future[float]) -> None:
        time.sleep(idle)
        sent = time.perf_counter()
        loop.call_soon_threadsafe(lambda: woken.set_result(time.perf_counter() - sent))

    async def run() -> list[float]:
        loop = asyncio.get_running_loop()
        late = []
        for _ in range(20 * repeats):
            woken: asyncio.Future[float] = loop.create_future()
            thread = threading.Thread(target=other, args=(loop, woken))
            thread.start()
            late.append(await woken)
            thread.join()
        return late

    return _median(asyncio.run(run()))


RACE_IDLES_S = (0.0005, 0.001, 0.0015, 0.002, 0.0025, 0.003, 0.0035, 0.004, 0.005, 0.006)


def race_wins(idle: float, rate: float, trials: int, *, fresh: bool = False) -> int:
    """How often the loop, idle in select() for `idle` seconds, wins the GIL at a worker's result write: a job of
    `idle` seconds with a 2 ms one queued behind it; won when the first result's callback ran before the second
    job ended. One pool serves every trial, as in a program; `fresh`: a new pool (a new thread) for each."""
    def job(seconds: float) -> float:
        burn(max(1, int(seconds * rate)))
        return time.perf_counter()

    async def trial(pool: ThreadPoolExecutor) -> bool:
        loop = asyncio.get_running_loop()
        seen: list[float] = []
        first = loop.run_in_executor(pool, job, idle)
        first.add_done_callback(lambda _f: seen.append(time.perf_counter()))
        second = loop.run_in_executor(pool, job, 0.002)
        await first
        return seen[0] < await second

    async def run() -> int:
        wins = 0
        pool = ThreadPoolExecutor(1)
        await asyncio.get_running_loop().run_in_executor(pool, int)
        for _ in range(trials):
            if fresh:
                pool.shutdown()
                pool = ThreadPoolExecutor(1)
            await asyncio.sleep(0.002)
            wins += await trial(pool)
        pool.shutdown()
        return wins

    return asyncio.run(run())


def loop_race(repeats: int, rate: float) -> tuple[float, float]:
    """The loop's race for the GIL at a worker's result write, with one warm pool (`race_wins`): the shortest idle in
    select() after which it wins under half of the races (RACE_IDLES_S; 0 when it still wins most at the longest),
    and the share it wins at the shortest idle. A first sweep is a warm-up: a process's first races go mostly to the
    worker, whatever the idle."""
    trials = 10 * repeats
    race_wins(RACE_IDLES_S[0], rate, trials)
    share = race_wins(RACE_IDLES_S[0], rate, trials) / trials
    if share < 0.5:
        return RACE_IDLES_S[0], share
    for idle in RACE_IDLES_S[1:]:
        if race_wins(idle, rate, trials) * 2 < trials:
            return idle, share
    return 0.0, share


def successive_spread(times: list[float]) -> float:
    """The spread of work whose every run is timed, as a coefficient of variation, from successive runs only: the
    interquartile range of log(t[i+1] / t[i]) over 1.349, over sqrt 2. This host's CPU changes speed state for
    seconds at a time (18M <-> 32M iterations/s): a sample straddling a change is bimodal, and its overall quartiles
    measure the jump (0.35 once), where a jump moves one successive ratio only. A preemption moves two, and the
    quartiles ignore those too."""
    if len(times) < 3:
        raise ValueError(f"successive_spread: needs at least 3 timed runs, got {len(times)}")
    logs = [math.log(b / a) for a, b in itertools.pairwise(times)]
    q1, _, q3 = statistics.quantiles(logs, n=4)
    return (q3 - q1) / 1.349 / math.sqrt(2)


def _cpu_jitter(repeats: int, rate: float, step: float = 0.002) -> float:
    """How much the time of the same CPU work varies (Machine.cpu_jitter_cv): 60 x `repeats` bursts of `step`
    seconds, the spread of successive bursts' times (successive_spread: neither a preemption by another process
    nor a change of the CPU's speed state is the work's own spread)."""
    n = max(1, int(step * rate))
    for _ in range(10):
        burn(n)
    times = []
    for _ in range(60 * repeats):
        start = time.perf_counter()
        burn(n)
        times.append(time.perf_counter() - start)
    return successive_spread(times)


def _process_turnaround(repeats: int, jobs: int = 500) -> float:
    """A worker's time from one job to the next when they queue for it: `jobs` no-op jobs submitted at once to
    a pool of one, per job (median of `repeats` batches). The pool's management thread keeps the worker's pipe
    filled, so a job costs the worker its result's trip out and the next job's read, not a round trip."""
    samples = []
    with ProcessPoolExecutor(1, mp_context=_mp_context()) as ex:
        ex.submit(int).result()
        for _ in range(repeats):
            t = time.perf_counter()
            for f in [ex.submit(int) for _ in range(jobs)]:
                f.result()
            samples.append((time.perf_counter() - t) / jobs)
    return _median(samples)


def _process_start(repeats: int, dispatch: float, workers: int = 2) -> float:
    """Per worker, starting a process pool: from its creation to its first jobs answered (the first submit forks
    every worker, ProcessPoolExecutor._launch_processes), less one dispatch round trip; median of fresh pools."""
    samples = []
    for _ in range(2 * repeats + 1):
        t = time.perf_counter()
        with ProcessPoolExecutor(workers, mp_context=_mp_context()) as ex:
            for f in [ex.submit(int) for _ in range(workers)]:
                f.result()
            samples.append(max(0.0, time.perf_counter() - t - dispatch) / workers)
    return _median(samples)


def _stamp() -> tuple[float, float]:
    """A job's start and end on the shared monotonic clock (perf_counter is system-wide on Linux and macOS)."""
    return time.perf_counter(), time.perf_counter()


def _process_offload(repeats: int) -> tuple[float, float]:
    """`await loop.run_in_executor(process_pool, job)` in two legs: submit to the job starting in the worker,
    and the job ending to the coroutine running again (medians, an idle pool of one)."""
    async def legs(ex: ProcessPoolExecutor) -> tuple[list[float], list[float]]:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(ex, _stamp)
        submit, back = [], []
        for _ in range(50 * repeats):
            t0 = time.perf_counter()
            start, end = await loop.run_in_executor(ex, _stamp)
            t1 = time.perf_counter()
            submit.append(max(0.0, start - t0))
            back.append(max(0.0, t1 - end))
        return submit, back

    with ProcessPoolExecutor(1, mp_context=_mp_context()) as ex:
        submit, back = asyncio.run(legs(ex))
    return _median(submit), _median(back)


def _busy_wake(repeats: int, rate: float, job_s: float = 0.004, wait_s: float = 0.005) -> float:
    """How much later the event loop's thread wakes while a process pool keeps every core busy: the mean overshoot
    of a `wait_s` sleep with two `job_s` CPU jobs per worker in flight at all times (one pool worker per core),
    less the same with the pool idle. A mean: most wake-ups are on time, some a time slice late, when the loop's
    thread waits for a core or for the GIL the pool's management or feeder thread holds (measured here: 0.15 ms
    idle, 0.4-0.7 ms with the pool busy)."""
    workers = os.cpu_count() or 1
    iterations = round(job_s * rate)

    async def overshoots(n: int) -> list[float]:
        out = []
        for _ in range(n):
            t = time.perf_counter()
            await asyncio.sleep(wait_s)
            out.append(time.perf_counter() - t - wait_s)
        return out

    async def measure(ex: ProcessPoolExecutor) -> tuple[list[float], list[float]]:
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(ex, burn, 1) for _ in range(workers)))  # started
        idle = await overshoots(60 * repeats)
        stop = asyncio.Event()

        async def feed() -> None:
            while not stop.is_set():
                await loop.run_in_executor(ex, burn, iterations)

        feeders = [asyncio.create_task(feed()) for _ in range(2 * workers)]
        await asyncio.sleep(0.05)
        busy = await overshoots(60 * repeats)
        stop.set()
        await asyncio.gather(*feeders)
        return idle, busy

    with ProcessPoolExecutor(workers, mp_context=_mp_context()) as ex:
        idle, busy = asyncio.run(measure(ex))
    return max(0.0, statistics.fmean(busy) - statistics.fmean(idle))


POOL_BUSY = ("none", "worker", "outsider")  # what computes while pool_starts submits (see there)


def _spin_until(stop: Any) -> None:
    while not stop.value:
        pass


def pool_starts(rate: float, busy: str, rounds: int = 30, gap_s: float = 0.004,
                busy_s: float = 0.012) -> list[float]:
    """Seconds from run_in_executor to a tiny job's start on a fresh process pool of two, `rounds` times, each
    after a `gap_s` pause (as a workload's waits leave the pool), while `busy` computes: "none"; "worker", the
    pool's other worker runs a `busy_s` CPU job; "outsider", an unrelated process spins on a core."""
    iterations = round(busy_s * rate)

    async def start(ex: ProcessPoolExecutor) -> float:
        loop = asyncio.get_running_loop()
        hog = loop.run_in_executor(ex, burn, iterations) if busy == "worker" else None
        await asyncio.sleep(gap_s)
        t = time.perf_counter()
        began, _ = await loop.run_in_executor(ex, _stamp)
        if hog is not None:
            await hog
        return max(0.0, began - t)

    async def measure(ex: ProcessPoolExecutor) -> list[float]:
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(ex, burn, 1) for _ in range(2)))  # both started
        return [await start(ex) for _ in range(rounds)]

    mp = _mp_context()
    stop = mp.Value("i", 0)
    spinner = mp.Process(target=_spin_until, args=(stop,)) if busy == "outsider" else None
    if spinner is not None:
        spinner.start()
    try:
        with ProcessPoolExecutor(2, mp_context=mp) as ex:
            return asyncio.run(measure(ex))
    finally:
        if spinner is not None:
            stop.value = 1
            spinner.join()


def _process_wake_busy(repeats: int, rate: float) -> float:
    """How much later an idle pool worker starts a job while another worker of the pool computes: the mean of
    `pool_starts` with the other worker busy less with it idle, over 2 x `repeats` fresh pools each (where the
    kernel keeps a pool's two workers varies from pool to pool). Measured here: 0.3 ms idle, 1.4-2.0 ms with one
    worker busy (median 0.9-1.9 ms, the slowest tenth 4 ms: a 4 ms tick); 1.1-2.0 ms more in ten calibrations.
    An unrelated process spinning on a core delays nothing (benchmarks/pool_wake.py shows both)."""
    idle: list[float] = []
    busy: list[float] = []
    for _ in range(2 * repeats):
        idle += pool_starts(rate, "none")
        busy += pool_starts(rate, "worker")
    return max(0.0, statistics.fmean(busy) - statistics.fmean(idle))


# Linux pulls a thread waiting on a busy core to an idle one at a load-balancing tick, at 39-49% of the busy
# core's scheduler ticks when traced (benchmarks/core_balance.py): the model pulls at every third tick, which
# fits recorded runs better than every second (mean |error| 4.6% against 5.3% on 19 runs of 7 shapes).
BALANCE_TICKS = 3
_KERNEL_HZ = (100, 250, 300, 1000)  # CONFIG_HZ's choices


def _scheduler_tick(seconds: float = 0.2, repeats: int = 3) -> float | None:
    """The kernel's scheduler tick, 1/HZ (Linux: CONFIG_HZ from the kernel's config, else counted from the busy
    core's local timer interrupts while this thread spins, rounded to a CONFIG_HZ choice; None elsewhere)."""
    for path in ("/proc/config.gz", f"/boot/config-{platform.release()}"):
        try:
            with (gzip.open(path, "rt") if path.endswith(".gz") else open(path)) as f:
                for line in f:
                    if line.startswith("CONFIG_HZ="):
                        return 1.0 / int(line.split("=", 1)[1])
        except (OSError, ValueError):
            continue

    def per_cpu() -> list[int] | None:
        try:
            with open("/proc/interrupts") as f:
                for line in f:
                    if line.split(":", 1)[0].strip() == "LOC":
                        return [int(x) for x in line.split()[1:] if x.isdigit()]
        except OSError:
            return None
        return None

    rates = []
    for _ in range(repeats):
        before, t0 = per_cpu(), time.perf_counter()
        if not before:
            return None
        while time.perf_counter() - t0 < seconds:
            pass
        after = per_cpu() or before
        rates.append(max(b - a for a, b in zip(before, after, strict=False)) / (time.perf_counter() - t0))
    hz = statistics.median(rates)
    return 1.0 / min(_KERNEL_HZ, key=lambda h: abs(h - hz))


def calibrate(*, repeats: int = 3, progress: Callable[[str], Any] | None = None) -> MachineProfile:
    """Measure CPU work rate, loop, thread and process overheads, and timer limits of this machine."""
    say = progress or (lambda _msg: None)
    say("CPU work rate of the busy loop")
    rate = measure_rate()
    loops = {}
    for name in ("asyncio", "uvloop"):
        if name == "uvloop":
            try:
                import uvloop  # noqa: F401
            except ImportError:
                continue
        say(f"{name}: overshoot per wait, cost per resumption, task creation, timer floor")
        loops[name] = _loop_profile(name, repeats)
    say("threads: sleep overshoot, hand-off cost, start; an executor's turnaround, the loop's submit, result, "
        "wake-up, self-pipe read and race")
    thread_overshoot = _thread_sleep_overshoot(repeats)
    # the hand-off to a thread that slept flips between two states here, ~25 us and ~150 us, each lasting seconds
    # (a virtual CPU idle 0.5 ms is woken through the hypervisor at some moments, not at others: 25 batches in a
    # row gave 28-61 us and 139-172 us, 16 of them the slower); the suite's thread runs replay best at the faster
    # (60 runs recorded after two calibrations that met the slower, 144 and 149 us: 6.31% mean |T error| with them,
    # 4.44% with 25 us). So the woken thread's core idles 0.1 ms, not 0.5 (_thread_switch), and three batches at
    # three moments of the calibration give the fastest batch's median. A hand-off after 1 ms without a switch
    # (the woken thread's core idled that long) is timed next to each, and the slowest batch's median kept: this
    # host gives 25-45 us in a quiet minute and 150-180 us in a busy one, and 384 recorded thread runs of eight sets
    # over three days replay best with the busy figure in every set (5.10% mean |T error| with one figure for
    # all hand-offs; 4.31% with 150 us after 1 ms idle, 4.32% with 200, 4.61% with 100, 4.99% with 45).
    switches: list[float] = []
    idle_switches: list[float] = []

    def hand_offs() -> None:  # one batch of each, at this moment of the calibration
        switches.append(_thread_switch(repeats, rate, n=14))
        idle_switches.append(_thread_switch(repeats, rate, hold=IDLE_AFTER, n=14))

    hand_offs()
    thread_start = _thread_start(repeats)
    thread_turnaround = _thread_turnaround(repeats, rate)
    task_turnaround = _thread_task_turnaround(repeats, rate)
    thread_submit, thread_return = _thread_offload(repeats)
    race_idle, race_share = loop_race(repeats, rate)
    loop_wake = _loop_wake(repeats)
    loop_read = _loop_read(repeats)
    hand_offs()
    say("processes: dispatch round trip, turnaround between queued jobs, an offload's two legs from an event loop")
    dispatch = _process_dispatch(repeats)
    turnaround = _process_turnaround(repeats)
    submit, back = _process_offload(repeats)
    say("processes: starting a pool")
    start = _process_start(repeats, dispatch)
    say("processes: the loop's wake-up while a pool keeps every core busy; an idle worker's while another computes")
    busy_wake = _busy_wake(repeats, rate)
    wake_busy = _process_wake_busy(repeats, rate)
    say("the kernel's scheduler tick (how often an idle core takes a thread waiting on a busy one); the spread of "
        "the same CPU work's time")
    tick = _scheduler_tick()
    jitter = _cpu_jitter(repeats, rate)
    hand_offs()
    switch = min(switches)
    return MachineProfile(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        python=platform.python_version(), implementation=platform.python_implementation(),
        platform=platform.platform(), cpu_count=os.cpu_count() or 1,
        gil=bool(getattr(sys, "_is_gil_enabled", lambda: True)()),
        cpu_rate=rate, switch_interval_s=sys.getswitchinterval(), loops=loops,
        thread_sleep_overshoot_s=thread_overshoot, thread_switch_s=switch,
        thread_switch_idle_s=max(switch, *idle_switches), thread_start_s=thread_start,
        thread_turnaround_s=thread_turnaround, thread_task_turnaround_s=task_turnaround,
        thread_submit_s=thread_submit, thread_return_s=thread_return,
        loop_race_idle_s=race_idle, loop_race_wins=race_share, loop_wake_s=loop_wake, loop_read_s=loop_read,
        process_dispatch_s=dispatch,
        process_submit_s=submit, process_return_s=back, process_start_s=start, busy_wake_s=busy_wake,
        process_turnaround_s=turnaround, process_wake_busy_s=wake_busy,
        core_balance_s=BALANCE_TICKS * tick if tick is not None and sys.platform.startswith("linux") else 0.0,
        cpu_jitter_cv=jitter,
    )
