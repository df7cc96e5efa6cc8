"""A loop's timers as CPython runs them: a timer falls due on time, and the idle loop wakes for it from select(),
whose timeout epoll rounds up to whole milliseconds from when the loop went idle (Lib/selectors.py,
EpollSelector.select), then late by the thread's wake-up (Machine.sleep_overshoot_s); and the loop woken from
select() by a worker's result racing the worker for the GIL. Exact, hand-computed times; the validation-marked
tests hold the rules against small real programs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import simpy

import asyncsim as a
from asyncsim import twin
from asyncsim.real.calibrate import (
    RACE_IDLES_S,
    _loop_profile,
    _loop_read,
    _loop_wake,
    calibrate,
    loop_race,
    race_wins,
)
from asyncsim.real.cpuwork import burn, measure_rate
from asyncsim.sim.cpu import SOON, TIMER, Loop, SimThread, race_won
from asyncsim.strategies import parse_strategy

EXACT = {"rel": 1e-9, "abs": 1e-12}
MS = 0.001


def _two_tasks(granularity: float) -> list[float]:
    """Two tasks on asyncio, each 0.3 ms of CPU, a 20 ms wait, 0.1 ms of CPU: when each is done."""
    w = a.Workload(arrivals=a.Batch(count=2), task=(a.cpu(0.3 * MS), a.io(20 * MS), a.cpu(0.1 * MS)),
                   machine=a.Machine(cores=2, timer_granularity_s=granularity, sleep_overshoot_s=0.1 * MS))
    return a.simulate(w, strategy="asyncio").done.tolist()


@pytest.mark.parametrize(("granularity", "done"), [
    # the loop goes idle at 0.6 ms (both tasks' CPU) with timers due at 20.3 and 20.6: select(19.7 ms) rounds up
    # to 20, so it wakes at 20.6 + 0.1 and runs both, 0.1 ms each
    (MS, [20.8 * MS, 20.9 * MS]),
    # no grid: it wakes 0.1 ms after each timer (the second falls due after the first task's CPU ended)
    (0.0, [20.5 * MS, 20.8 * MS]),
])
def test_the_idle_loop_wakes_for_a_timer_on_a_millisecond_grid_from_when_it_went_idle(granularity, done):
    assert _two_tasks(granularity) == pytest.approx(done, **EXACT)


def _round(tasks: int, machine: a.Machine) -> float:
    """calibrate's measuring program, simulated: `tasks` tasks each sleeping 5 ms 40 times; seconds per round."""
    w = a.Workload(arrivals=a.Batch(count=tasks), task=tuple(a.io(0.005) for _ in range(40)), machine=machine)
    return a.simulate(w, strategy="asyncio").t_total / 40


def test_calibrates_own_program_simulated_gives_back_the_overheads_it_measured():
    """calibrate fits the per-resumption cost from 100 tasks against 1 per round of 5 ms sleeps (real.calibrate.
    _loop_profile): a round of 100 lasts 100 resumptions longer, because the loop goes idle only after resuming
    them all and select()'s timeout counts from then. The old rule (each wait rounded from when it was set) gave
    back 0.25 µs for 10."""
    m = a.Machine(cores=2, loop_step_s=1e-5, sleep_overshoot_s=1.5e-4, timer_granularity_s=MS)
    single, crowd = _round(1, m), _round(100, m)
    step = (crowd - single) / 99
    assert step == pytest.approx(1e-5, rel=0.03)
    assert single - 0.005 - step == pytest.approx(1.5e-4, rel=0.03)


def _resumes(wake_at: float | None) -> dict[str, float]:
    """Two coroutines on a Loop (1 ms grid, 0.1 ms late): A computes 0.3 ms then waits 20 ms, B 0.5 ms then
    20 ms; `wake_at`: a call_soon_threadsafe (a worker's result) wakes the loop then. When each resumed."""
    env = simpy.Environment()
    loop = Loop(env, SimThread(None))
    loop.granularity, loop.overshoot = MS, 0.1 * MS
    resumed: dict[str, float] = {}

    def task(name: str, cpu: float) -> simpy.events.ProcessGenerator:
        yield loop.acquire(SOON)
        yield env.timeout(cpu)
        loop.release()
        yield env.timeout(20 * MS)  # asyncio.sleep: its timer falls due on time
        yield loop.acquire(TIMER)
        resumed[name] = env.now
        yield env.timeout(0.1 * MS)
        loop.release()

    def result(at: float) -> simpy.events.ProcessGenerator:
        yield env.timeout(at)
        yield loop.acquire(SOON)
        loop.release()

    env.process(task("A", 0.3 * MS))
    env.process(task("B", 0.5 * MS))
    if wake_at is not None:
        env.process(result(wake_at))
    env.run()
    return resumed


def test_a_wake_up_from_another_thread_runs_a_due_timer_before_its_rounded_wake_up():
    # idle from 0.8 ms; A's timer is due at 20.3: select(19.5 ms) -> 20, so the loop wakes at 20.9; B's (20.8)
    # joins that iteration and runs after A's 0.1 ms
    assert _resumes(None) == pytest.approx({"A": 20.9 * MS, "B": 21.0 * MS}, **EXACT)
    # a result at 20.5 wakes the loop at once: A runs then (its timer is due); the loop idles again at 20.6 with
    # B's timer 0.2 ms away, which select rounds up to a whole millisecond: B wakes at 21.6 + 0.1
    assert _resumes(20.5 * MS) == pytest.approx({"A": 20.5 * MS, "B": 21.7 * MS}, **EXACT)


def test_the_idle_loop_races_a_worker_for_the_gil_at_its_self_pipe_write_and_a_loser_waits_for_the_backlog():
    """Eight tasks of 1 ms CPU, a 20 ms wait, 1 ms CPU on one worker thread. Job 0 runs while the loop waits for the
    GIL (the worker took it, starting), so the loop starts the other seven at 1 ms, when the worker lets it go.
    At 2 ms job 1's result wakes the idle loop through the self-pipe: the first race, lost (the default
    loop_race_wins, 1/2: the loop wins every second); waiting for the GIL now, the loop only restarts its interval at
    each later write, so it sees the results when the worker runs out of jobs, at 8 ms. Task 0's second job runs
    alone (21..22). At 28 ms seven waits end together: job [28, 29]'s write is the second race, won (task done at
    29); the third, at 30 ms, lost: the rest at 35 ms. A loop that wins none sees the second race's result at 35
    too; one that wins every race sees each result as it comes, so the waits start 1 ms apart."""
    def done(share: float | None) -> list[float]:
        machine = a.Machine(cores=2) if share is None else a.Machine(cores=2, loop_race_wins=share)
        w = a.Workload(arrivals=a.Batch(count=8), task=(a.cpu(0.001), a.io(0.02), a.cpu(0.001)), machine=machine)
        return a.simulate(w, strategy="asyncio+threads:1").done.tolist()

    assert done(None) == pytest.approx([22 * MS, 29 * MS] + [35 * MS] * 6, **EXACT)
    assert done(0.5) == done(None)
    assert done(0.0) == pytest.approx([22 * MS] + [35 * MS] * 7, **EXACT)
    assert done(1 / 3) == done(0.0)  # its first win would be the third race
    assert done(1.0) == pytest.approx([(22 + k) * MS for k in range(8)], **EXACT)


def test_the_races_a_loop_wins_are_spread_evenly():
    assert [n for n in range(1, 13) if race_won(n, 0.5)] == [2, 4, 6, 8, 10, 12]
    assert [n for n in range(1, 13) if race_won(n, 1 / 3)] == [3, 6, 9, 12]
    assert [n for n in range(1, 11) if race_won(n, 0.3)] == [4, 7, 10]
    assert not any(race_won(n, 0.0) for n in range(1, 100))
    assert all(race_won(n, 1.0) for n in range(1, 100))


def _results_seen_late(jobs: int = 100, workers: int = 1) -> float:
    """A real program: `workers` threads with a backlog of `jobs` 0.5 ms jobs, submitted at once; the share of
    results the loop saw more than 1 ms after their job ended (it lost the race and waited for the backlog)."""
    rate = measure_rate()
    gate, ends, seen = threading.Event(), {}, {}

    def job(k: int) -> None:
        gate.wait()
        burn(round(0.0005 * rate))
        ends[k] = time.perf_counter()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            futures = [loop.run_in_executor(pool, job, k) for k in range(jobs)]
            for k, future in enumerate(futures):
                future.add_done_callback(lambda _f, k=k: seen.__setitem__(k, time.perf_counter()))
            gate.set()
            await asyncio.gather(*futures)

    asyncio.run(main())
    return sum(seen[k] - ends[k] > 0.001 for k in ends) / jobs


@pytest.mark.validation
def test_a_loop_that_lost_the_race_waits_for_the_workers_backlog_as_in_a_real_program():
    """The real loop, woken by a backlogged worker's first result, mostly loses the GIL and then sees nothing until
    the backlog drains: most results late (29 of 30 runs here). The simulator says the same (it loses the first
    race); a rule that handed the GIL to a waiter at one write in four said 48%."""
    w = a.Workload(arrivals=a.Batch(count=100), task=(a.cpu(0.0005),), machine=a.Machine(cores=2))
    r = a.simulate(w, strategy="asyncio+threads:1")
    ends = np.sort(r.trace.to_frame().query("kind == 'cpu'").end.to_numpy())
    predicted = float(np.mean(np.sort(r.done) - ends > 0.001))
    assert predicted > 0.9
    found = [_results_seen_late() for _ in range(3)]
    assert sum(share > 0.5 for share in found) >= 2, found


def test_a_workers_result_wakes_the_idle_loop_a_thread_wake_up_later():
    """Machine.loop_wake_s: a worker's result (call_soon_threadsafe's self-pipe write) wakes the loop blocked in
    select(), which runs that much later. Two tasks: a 1 ms job, a 20 ms wait, a 1 ms job, on one worker; wake-up
    0.5 ms. Job 0 runs 0..1 while the loop waits for the GIL (not in select: no wake-up to pay), then it submits
    job 1 and starts task 0's wait. Job 1 ends at 2 with the loop idle: task 1's wait starts at 2.5. Task 0's
    second job 21..22 wakes it at 22.5 (done), when task 1's timer is due too: its job 22.5..23.5, done at 24."""
    w = a.Workload(arrivals=a.Batch(count=2), task=(a.cpu(0.001), a.io(0.02), a.cpu(0.001)),
                   machine=a.Machine(cores=2, loop_wake_s=0.0005))
    r = a.simulate(w, strategy="asyncio+threads:1")
    assert r.done.tolist() == pytest.approx([22.5 * MS, 24 * MS], **EXACT)
    waits = r.trace.to_frame().query("kind == 'io'").sort_values("task").start.tolist()
    assert waits == pytest.approx([1 * MS, 2.5 * MS], **EXACT)


def test_the_loop_reads_its_self_pipe_once_per_iteration_that_finds_results_behind_their_handles():
    """Machine.loop_read_s: an iteration whose select() finds workers' writes in the self-pipe runs its reader
    (BaseSelectorEventLoop._read_from_self) after the handles already ready, so a result's coroutine resumes one
    reader later. One 1 ms job: the loop has the GIL back at 1 ms; its next iteration runs the result's _set_state,
    then the 0.5 ms reader; the coroutine resumes in the iteration after, at 1.5 ms. Two 1 ms jobs on two workers
    without a GIL end together: one iteration finds both writes and reads them once (done at 1.5, not 2.0)."""
    def done(n: int, read: float, **machine: bool) -> list[float]:
        w = a.Workload(arrivals=a.Batch(count=n), task=(a.cpu(0.001),),
                       machine=a.Machine(cores=2, loop_read_s=read, **machine))
        return a.simulate(w, strategy=f"asyncio+threads:{n}").done.tolist()

    assert done(1, 0.0) == pytest.approx([1 * MS], **EXACT)
    assert done(1, 0.0005) == pytest.approx([1.5 * MS], **EXACT)
    assert done(2, 0.0005, gil=False) == pytest.approx([1.5 * MS, 1.5 * MS], **EXACT)


@pytest.mark.validation
def test_calibrate_measures_the_loops_self_pipe_read():
    """calibrate's self-pipe reader: two recv calls (the second raises BlockingIOError), 11-20 us here."""
    assert 1e-6 < _loop_read(1) < 5e-4


@pytest.mark.validation
def test_calibrates_task_creation_is_the_warm_processs_with_one_repeat_as_with_three():
    """A fresh process's first 2,000 tasks cost ~11 us each (fresh memory), later ones ~4 us: calibrate's
    creation cost must not be that first round's at repeats=1 (it was: 7-19 us against ~4 at repeats=3).
    Measured side by side in one fresh process, repeats=1 first."""
    code = ("from asyncsim.real.calibrate import _loop_profile\n"
            "one = _loop_profile('asyncio', 1).task_create_s\n"
            "three = _loop_profile('asyncio', 3).task_create_s\n"
            "print(one / three)")
    ratios = []
    for _ in range(3):  # a noisy host: measure again rather than loosen
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
        ratios.append(float(out.stdout.strip().splitlines()[-1]))
        if 0.6 < ratios[-1] < 1.6:
            return
    pytest.fail(f"task creation at repeats=1 against repeats=3: {ratios}")


@pytest.mark.validation
def test_calibrates_a_blocked_first_step_far_below_a_resumption_and_a_release_walk_in_nanoseconds():
    """A first step that waits at a semaphore makes and queues a future (~1.2 us here), a resumption runs a timer,
    a callback and a new sleep (5-7 us); a release's walk past a woken waiter is a `fut.done()` call (15-22 ns).
    Measured with the stdlib loop and Semaphore, side by side in one calibration."""
    ratios = []
    for _ in range(3):  # a noisy host: measure again rather than loosen
        lp = _loop_profile("asyncio", 1)
        assert lp.loop_block_s is not None
        ratios.append(lp.loop_block_s / lp.loop_step_s)
        if ratios[-1] < 0.6 and 2e-9 < lp.semaphore_scan_s < 2e-7:
            return
    pytest.fail(f"blocked first step / resumption: {ratios}, walk {lp.semaphore_scan_s * 1e9:.1f} ns")


@pytest.mark.validation
def test_calibrate_measures_the_idle_loops_wake_up_by_another_thread():
    """calibrate's wake-up of a loop idle 1 ms in select() by another thread's call_soon_threadsafe: tens of
    microseconds here (55-67 us), the same order as a sleeping thread's (`thread_sleep_overshoot_s`)."""
    wake = _loop_wake(1)
    assert 5e-6 < wake < 1e-3


def test_a_loop_idle_in_select_longer_than_the_calibrated_limit_loses_the_race():
    """Three tasks: a 4 ms job, a 20 ms wait, a 4 ms job, on one worker. Job 0 runs 0..4 while the loop waits for
    the GIL (starting the worker handed it over); at 4 the loop submits jobs 1 and 2 and starts task 0's wait; job
    1's write at 8 is the first race, lost (the loop sees results 1 and 2 at 12). Task 0's second job runs 24..28
    alone. At 32 tasks 1 and 2 submit; task 1's job ends at 36, the second race: won (done at 36), unless the loop
    has idled in select() since 32 for `loop_race_idle_s` (2.5 ms) or longer (benchmarks/loop_race.py: idle 4 ms,
    the loop won 5-9 races of 30): then both are done at 40."""
    def done(limit: float, wake: float = 0.0) -> list[float]:
        w = a.Workload(arrivals=a.Batch(count=3), task=(a.cpu(0.004), a.io(0.02), a.cpu(0.004)),
                       machine=a.Machine(cores=2, loop_race_idle_s=limit, loop_wake_s=wake))
        return a.simulate(w, strategy="asyncio+threads:1").done.tolist()

    assert done(0.0) == pytest.approx([28 * MS, 36 * MS, 40 * MS], **EXACT)
    assert done(0.005) == done(0.0)  # it idled 4 ms: under this limit
    assert done(0.0025) == pytest.approx([28 * MS, 40 * MS, 40 * MS], **EXACT)
    # with a 0.5 ms wake-up from select(): results that find the loop idle reach it late, but the loop that won
    # the GIL at the write at 36 is running already
    assert done(0.0, wake=0.0005) == pytest.approx([28.5 * MS, 36 * MS, 40.5 * MS], **EXACT)


@pytest.mark.validation
def test_the_races_a_loop_wins_are_as_calibrate_finds():
    """The real race (calibrate.race_wins, one warm pool) after the loop idled 0.5 ms and 5 ms in select(): the loop
    wins most of 20 when calibrate's share (measured at 0.5 ms) says it wins most and the idle is under its limit,
    else under half. Where the kernel puts the threads decides the race, and it moves: one morning here the loop won
    most up to a 2-3.5 ms limit, that afternoon none at any idle (the CI machine none of 20 after 1 ms or 5 ms), and
    one CI run's loop won at every idle; calibrate follows. Measured again, a new calibration each time, on a miss."""
    rate = measure_rate()
    found = []
    for _ in range(5):
        limit, share = loop_race(2, rate)
        wins = {idle: race_wins(idle, rate, 20) for idle in (RACE_IDLES_S[0], 0.005)}
        expected = {idle: share >= 0.5 and (limit == 0 or idle < limit) for idle in wins}
        found.append((limit, share, wins))
        if all((wins[idle] * 2 >= 20) == expected[idle] for idle in wins):
            return
    pytest.fail(f"calibrate's limit and share, and the wins of 20 after each idle: {found}")


def _simulated_share_late(workers: int) -> tuple[float, float]:
    """_results_seen_late's program, simulated: the share of results seen late, and T_total."""
    w = a.Workload(arrivals=a.Batch(count=100), task=(a.cpu(0.0005),), machine=a.Machine(cores=2))
    r = a.simulate(w, strategy=f"asyncio+threads:{workers}")
    ends = np.sort(r.trace.to_frame().query("kind == 'cpu'").end.to_numpy())
    return float(np.mean(np.sort(r.done) - ends > 0.001)), r.t_total


def test_two_waiters_take_turns_at_the_self_pipe_writes_so_neither_asks_for_the_gil():
    """A backlog on two workers: the worker that holds the GIL takes job after job, and each result's self-pipe
    write wakes one waiter, the longest, which sleeps a fresh interval at the back of the queue. With the other
    worker and the loop waiting, writes every 0.5 ms wake each of them every 1 ms, well inside the 5 ms switch
    interval: neither asks for the GIL, the jobs run one after another and the loop sees nearly every result
    after the backlog (95%, as with one worker: 97%). Waking the same waiter every time let the other's
    interval run out: the loop saw a quarter of the results on time."""
    late, t_total = _simulated_share_late(2)
    assert late == pytest.approx(0.95)
    assert t_total == pytest.approx(_simulated_share_late(1)[1], **EXACT)  # one job at a time, as on one worker


@pytest.mark.validation
def test_a_loop_behind_two_backlogged_workers_waits_for_the_backlog_as_in_a_real_program():
    """The same real program on two worker threads: the loop sees most results only after the backlog (the
    recorded 200-job runs: 197-199 of 200)."""
    assert _simulated_share_late(2)[0] > 0.9
    found = [_results_seen_late(workers=2) for _ in range(3)]
    assert sum(share > 0.5 for share in found) >= 2, found


def _real_lateness(busy: float, samples: int = 40) -> float:
    """Median lateness of a 20 ms asyncio.sleep whose loop stays busy `busy` seconds after setting it (real)."""
    async def main() -> float:
        lates = []
        for _ in range(samples):
            async def sleeper() -> float:
                t0 = time.perf_counter()
                await asyncio.sleep(0.02)
                return time.perf_counter() - t0 - 0.02

            async def spinner() -> None:
                end = time.perf_counter() + busy
                while time.perf_counter() < end:
                    pass

            late, _ = await asyncio.gather(sleeper(), spinner())
            lates.append(late)
        return statistics.median(lates)

    return asyncio.run(main())


def _simulated_lateness(busy: float) -> float:
    w = a.Workload(arrivals=a.Batch(count=2), tasks=(
        a.TaskType(name="sleeper", steps=(a.io(0.02),)), a.TaskType(name="spinner", steps=(a.cpu(busy),))),
        machine=a.Machine(cores=2, timer_granularity_s=MS, sleep_overshoot_s=0.1 * MS))
    runs = (a.simulate(w, strategy="asyncio", seed=seed) for seed in range(50))
    r = next(r for r in runs if [r.type_names[k] for k in r.task_type] == ["sleeper", "spinner"])
    return r.done[0] - 0.02


@pytest.mark.validation
def test_a_busy_loop_delays_its_timers_by_as_long_as_it_stayed_busy_as_in_a_real_program():
    """A real program: a 20 ms sleep beside 0.6 ms of CPU on the loop fires about 0.6 ms later than beside
    none (the old rule, rounding each wait from when it was set, said no later). Measured again on a miss."""
    busy = 0.0006
    predicted = _simulated_lateness(busy) - _simulated_lateness(0.0)
    assert predicted == pytest.approx(busy, abs=1e-9)
    seen = []
    for _ in range(3):
        real = _real_lateness(busy) - _real_lateness(0.0)
        seen.append(round(real * 1e3, 3))
        if abs(real - predicted) <= 0.25 * busy:
            return
    pytest.fail(f"real extra lateness (ms) {seen} against {predicted * 1e3:.3f} predicted")


# ---------------------------------------------------------------------------------------- the twin's loop

GRID = a.Machine(timer_granularity_s=MS, sleep_overshoot_s=0.1 * MS)


def test_a_programs_timers_in_the_twin_wake_on_the_millisecond_grid():
    """Fifty 1.5 ms sleeps one after another: each wakes at 2 ms + 0.1 on a machine with epoll's grid, at 1.5 ms on
    the ideal one (no profile)."""
    async def program() -> None:
        for _ in range(50):
            await asyncio.sleep(0.0015)

    assert twin.run(program, cpu_scale=0, machine=GRID).t_total == pytest.approx(50 * 2.1 * MS, **EXACT)
    assert twin.run(program, cpu_scale=0).t_total == pytest.approx(50 * 1.5 * MS, **EXACT)


@pytest.mark.parametrize(("job", "fired"), [
    # a worker's result at 10.5 ms (the self-pipe) wakes the loop on time; the tick (due 10.2) runs then, not at
    # the 11.1 ms its own rounded timeout gave
    (0.0105, 10.5 * MS),
    # the result at 10.05 ms wakes it first; idle again then, the tick's 0.15 ms left round up to 1 ms: 11.15
    (0.01005, 11.15 * MS),
])
def test_a_reply_in_the_twin_wakes_the_loop_on_time_and_a_timer_then_rounds_from_there(job, fired):
    ticks: list[float] = []

    async def tick() -> None:
        await asyncio.sleep(0.0102)
        ticks.append(time.monotonic())

    async def program() -> None:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            await asyncio.gather(asyncio.get_running_loop().run_in_executor(pool, time.sleep, job), tick())

    twin.run(program, cpu_scale=0, machine=GRID)
    assert ticks == [pytest.approx(fired, **EXACT)]


async def _sleeps(n: int = 40, wait: float = 0.0015) -> float:
    """A program: `n` sleeps of `wait` seconds one after another; how long they took by its own clock."""
    start = time.monotonic()
    for _ in range(n):
        await asyncio.sleep(wait)
    return time.monotonic() - start


@pytest.mark.validation
def test_a_program_of_short_sleeps_takes_in_the_twin_as_long_as_for_real():
    """Forty 1.5 ms sleeps take about 40 x 2.2 ms for real (the grid, then the wake-up); the twin with this machine's
    profile within 5% (with none, 40 x 1.5 ms: 30% short). Measured again on a miss, the profile too: calibrate's
    overshoot comes from 40 waits of 5 ms, and one CI run's (0.32 ms) made the twin 9% long against a real 2.125 ms
    per sleep three times over."""
    found = []
    for _ in range(3):
        machine = calibrate(repeats=1).machine_for(parse_strategy("asyncio"), a.Machine(), emulated_waits=True)
        real = asyncio.run(_sleeps())
        virtual = twin.run(_sleeps, cpu_scale=0, machine=machine).t_total
        found.append((round(real * 1e3, 2), round(virtual * 1e3, 2)))
        if abs(virtual / real - 1) <= 0.05:
            return
    pytest.fail(f"real vs twin (ms): {found}")
