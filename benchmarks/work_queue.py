"""Who runs a ThreadPoolExecutor's jobs, real against the simulator: a burst of jobs to warm workers, and the GIL
race when the loop starts a worker thread while another waits.

    python benchmarks/work_queue.py [--rounds 40]

Part 1: eight 0.5 ms CPU jobs submitted from one loop step to a warm pool of 2, 4 or 8 workers: the order the jobs
start in and how many threads ran them (real), and the simulator's order for the same burst. CPython 3.11's work
queue is a `queue.SimpleQueue`: its idle getters all sleep on one lock, which a put releases only while `locked` is
set, so a burst wakes one worker; that worker, holding the GIL, takes the first job and hands the lock to the next
sleeper, and a worker that ends a job takes the next queued one without letting the GIL go (Modules/_queuemodule.c
simplequeue_get_impl, _queue_SimpleQueue_put_impl; sim/resources.py WorkQueue).
Part 2: the loop starts a pool's second worker (`Thread.start()` blocks it until the new thread runs) while the
first waits for the GIL, either just woken from the queue's lock by a put (a), or forced off the GIL by the loop
in the middle of a 20 ms job (b): who runs first, and when the loop gets back (sim/engine.py _new_thread_runs).

Measured here (2026-12-06, 2 vCPUs, CPython 3.11.7; three runs, of 40, 20 and 20 rounds):
- Part 1: every round started the eight jobs in submit order, back to back; one thread ran all eight in 40 of 40,
  20 of 20 and 20 of 20 rounds on 2 workers, 40 of 40, 19 and 20 of 20 on 4, 19 of 20 twice on 8. The simulator
  starts them in submit order; binding each job to an idle worker at submit, as it did before 2026-12-06, started
  them 0, 2, 1, 5, 4, 3, 6, 7 (tests/test_work_queue.py).
- Part 2 (a): the new thread ran first in 35 of 40, 19 of 20 and 15 of 20 (the woken worker in the others); the
  loop got back 5.2-11.3 ms after the submits (medians 6.3, 8.4, 8.6), the simulator 5.1 ms, at the low end.
  (b): the worker forced off ran on first in 15 of 30, 9 of 20 and 11 of 20 (the new thread then started its job a
  switch interval after the submit), the new thread at once in the others; the simulator gives the worker forced
  off the GIL first: the new thread's job starts 5.07 ms after its submit (tests/test_gil.py,
  test_an_executor_starts_its_threads_on_demand_and_the_loop_waits_for_each).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import asyncsim as a
from asyncsim.real.cpuwork import burn, measure_rate

# the simulator's overheads for part 1 (about this machine's; the order does not depend on them)
MACHINE = a.Machine(cores=2, thread_switch_s=2e-5, thread_start_s=5e-5, thread_turnaround_s=9e-6, thread_submit_s=7e-6,
                    thread_return_s=5e-6, loop_wake_s=5e-5, loop_read_s=1e-5, loop_step_s=8e-6, task_create_s=7e-6)

Log = list[tuple[int, int, float, float]]  # (job, thread ident, start, end)


def _job(log: Log, k: int, iterations: int) -> None:
    t = time.perf_counter()
    burn(iterations)
    log.append((k, threading.get_ident(), t, time.perf_counter()))


def burst(rate: float, workers: int, rounds: int, jobs: int = 8, cpu: float = 0.0005) -> list[tuple[list[int], int]]:
    """Real: per round, the order `jobs` jobs of `cpu` seconds submitted in one loop step to a warm pool of `workers`
    started in, and how many threads ran them."""

    async def main() -> list[tuple[list[int], int]]:
        loop = asyncio.get_running_loop()
        out = []
        with ThreadPoolExecutor(workers) as pool:
            await asyncio.gather(*(loop.run_in_executor(pool, time.sleep, 0.01) for _ in range(workers)))  # warm
            for _ in range(rounds):
                await asyncio.sleep(0.005)
                log: Log = []
                await asyncio.gather(*(loop.run_in_executor(pool, _job, log, k, round(cpu * rate))
                                       for k in range(jobs)))
                out.append(([k for k, *_ in sorted(log, key=lambda row: row[2])], len({row[1] for row in log})))
        return out

    return asyncio.run(main())


def simulated_burst(workers: int, jobs: int = 8, cpu: float = 0.0005) -> list[int]:
    """The simulator: the order a burst of `jobs` jobs submitted together to `workers` warm workers starts in (the
    second burst of tasks of cpu, 20 ms asleep, cpu, all started at once), by submit order (0 = submitted first)."""
    w = a.Workload(arrivals=a.Batch(count=jobs), task=(a.cpu(cpu), a.io(0.02), a.cpu(cpu)), machine=MACHINE)
    f = a.simulate(w, strategy=f"asyncio:{jobs}+threads:{workers}").trace.to_frame()
    second = f[(f.kind == "cpu") & (f.step == 2)]
    rank = {task: k for k, task in enumerate(second.sort_values("enqueue").task)}
    return [rank[task] for task in second.sort_values("start").task]


def simulated_start_race(forced: bool) -> float:
    """The simulator on the same two programs (ms): (a) how long after its submits the loop is back; (b) how long after
    its submit the new thread's job starts (a switch interval when the worker forced off runs on first)."""
    if forced:  # a 20 ms job forced off the GIL by the loop, which then submits a second job (a second thread)
        w = a.Workload(arrivals=a.Batch(count=2), task=(a.cpu(0.020),), machine=MACHINE)
        jobs = a.simulate(w, strategy="asyncio:2+threads:2").trace.to_frame().query("kind == 'cpu'").sort_values("task")
        return float(jobs.start.iloc[1] - jobs.enqueue.iloc[1]) * 1e3
    # a first 4 ms job, then two submits: the first wakes its worker, the second starts a thread
    w = a.Workload(arrivals=a.Batch(count=3), task=(a.cpu(0.004),), machine=MACHINE)
    f = a.simulate(w, strategy="asyncio:3+threads:2").trace.to_frame()
    submitted = float(f[f.kind == "cpu"].enqueue.max())  # the second submit, which starts the thread
    back = float(f[(f.kind == "resume") & (f.start > submitted + 1e-9)].start.min())  # the loop's next step
    return (back - submitted) * 1e3


def start_race(rate: float, forced: bool, runs: int) -> tuple[int, list[float]]:
    """Real: the loop starts a pool's second worker while the first waits for the GIL (`forced`: forced off it in a
    20 ms job; else just woken from the queue's lock by a put). Returns in how many runs the waiting worker ran
    first, and the loop's times back from the submit (ms)."""

    async def main() -> tuple[bool, float]:
        loop = asyncio.get_running_loop()
        log: Log = []
        with ThreadPoolExecutor(2) as pool:
            if forced:
                first = loop.run_in_executor(pool, _job, log, 0, round(0.02 * rate))
                await asyncio.sleep(0.001)  # the loop takes the GIL back by a forced switch
                t0 = time.perf_counter()
                second = loop.run_in_executor(pool, _job, log, 1, round(0.001 * rate))  # starts the second thread
                back = time.perf_counter() - t0
                await asyncio.gather(first, second)
                # the new thread runs job 1; if the worker forced off ran on first, job 1 starts a switch interval on
                waiting_first = next(s for k, _, s, _ in log if k == 1) - t0 > 0.003
            else:
                await loop.run_in_executor(pool, _job, log, 0, round(0.004 * rate))  # starts the first; it sleeps
                t0 = time.perf_counter()
                one = loop.run_in_executor(pool, _job, log, 1, round(0.004 * rate))  # wakes it
                two = loop.run_in_executor(pool, _job, log, 2, round(0.004 * rate))  # starts the second thread
                back = time.perf_counter() - t0
                await asyncio.gather(one, two)
                threads = {k: tid for k, tid, *_ in log}
                waiting_first = threads[1] == threads[0]  # the woken worker took the first job
        return waiting_first, back * 1e3

    results = [asyncio.run(main()) for _ in range(runs)]
    return sum(first for first, _ in results), [back for _, back in results]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40, help="rounds of each measurement (default 40)")
    args = parser.parse_args(argv)
    rate = measure_rate()
    print("eight 0.5 ms jobs submitted together to a warm pool: the order they start in, the threads that ran them")
    for workers in (2, 4, 8):
        rounds = burst(rate, workers, args.rounds)
        orders = Counter(tuple(order) for order, _ in rounds)
        threads = Counter(n for _, n in rounds)
        print(f"   {workers} workers, real: submit order in {orders[tuple(range(8))]} of {len(rounds)} rounds; threads "
              f"{dict(sorted(threads.items()))}; simulated order {simulated_burst(workers)}", flush=True)
    for forced, what in ((False, "(a) just woken from the queue's lock"), (True, "(b) forced off the GIL")):
        first, backs = start_race(rate, forced, args.rounds)
        simulated = simulated_start_race(forced)
        print(f"the loop starts a second worker while the first waits, {what}: the waiting worker ran first in "
              f"{first} of {len(backs)}; the loop back after {statistics.median(backs):.2f} ms (median, "
              f"{min(backs):.2f}-{max(backs):.2f}); simulated: " + (
                  f"the new thread's job starts {simulated:.2f} ms after its submit" if forced
                  else f"the loop back after {simulated:.2f} ms"), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
