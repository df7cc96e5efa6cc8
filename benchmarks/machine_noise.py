"""What this machine does to CPU work that a calibrated rate does not say: the facts behind `validate.cpu_speed`,
`Machine.busy_wake_s` and the README's fidelity notes, measured side by side in one run (~40 s).

    python benchmarks/machine_noise.py

1. The busy loop's speed in 100 ms windows over a few seconds: how far a rate measured once can be from the rate
   a run meets (the nominal prediction carries the difference; the replay does not).
2. Bursts of CPU after idle periods against back-to-back ones, interleaved so drift hits all alike. (Here the host
   moves between speed states lasting seconds, ~18M and ~32M iterations/s: a rate is only good for its moment.)
3. A worker process waking from `time.sleep` while k CPU-bound processes share the cores: the wait for a core.
4. The event loop's wake-up with a process pool keeping every core busy (what `calibrate` measures as
   busy_wake_s), against the loop with the pool idle.
5. k processes alternating CPU bursts and sleeps, beyond the cores and not: the real run's end against the
   simulator's cores (sim.cpu.Cores) given each burst's measured CPU seconds, by processor sharing and by Linux's
   per-core run queues (Machine.core_balance_s, as calibrate sets it), and the share of core time left idle
   (/proc/stat) against processor sharing's. Processor sharing: within 0.5% at k = cores, 5-16% early beyond
   them; Linux leaves cores idle while processes wait on another core (25% of core time at k = 4, 5 ms bursts and
   sleeps, where processor sharing idles 12%; traced in benchmarks/core_balance.py).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import statistics
import time
from typing import Any

import simpy

from asyncsim.real.calibrate import BALANCE_TICKS, _busy_wake, _scheduler_tick, _thread_sleep_overshoot
from asyncsim.real.cpuwork import burn, measure_rate
from asyncsim.sim.cpu import Cores, SimThread, compute


def windows(seconds: float, chunk: int = 100_000, window: float = 0.1) -> list[float]:
    """Busy-loop iterations per second of thread CPU, per `window` seconds of wall time."""
    out: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        w_end, done, c0 = time.perf_counter() + window, 0, time.thread_time()
        while time.perf_counter() < w_end:
            burn(chunk)
            done += chunk
        out.append(done / (time.thread_time() - c0))
    return out


def bursts(rate: float, rounds: int) -> dict[tuple[float, float], float]:
    """Speed (nominal CPU / CPU taken) of bursts of `ms` after `idle_ms` of sleep, by (ms, idle_ms): blocks of
    60 ms of nominal CPU, interleaved over `rounds` rounds; medians."""
    kinds = [(20.0, 0.0), (2.0, 0.0), (2.0, 2.0), (2.0, 10.0), (0.5, 2.0), (5.0, 10.0)]
    speeds: dict[tuple[float, float], list[float]] = {k: [] for k in kinds}
    for _ in range(rounds):
        for ms, idle in kinds:
            n, took, nominal = round(rate * ms / 1e3), 0.0, 0.0
            while nominal < 0.06:
                if idle:
                    time.sleep(idle / 1e3)
                c0 = time.thread_time()
                burn(n)
                took += time.thread_time() - c0
                nominal += ms / 1e3
            speeds[(ms, idle)].append(nominal / took)
    return {k: statistics.median(v) for k, v in speeds.items()}


def _cycle(rate: float, results: Any, cpu_ms: float, io_ms: float, n: int) -> None:
    iterations, over = round(rate * cpu_ms / 1e3), []
    for _ in range(n):
        burn(iterations)
        t = time.perf_counter()
        time.sleep(io_ms / 1e3)
        over.append(time.perf_counter() - t - io_ms / 1e3)
    results.put(over)


def woken_workers(rate: float, k: int, n: int = 15) -> list[float]:
    """Sleep overshoots of k processes each cycling 20 ms of CPU and a 10 ms sleep, n times."""
    results: Any = mp.Queue()
    procs = [mp.Process(target=_cycle, args=(rate, results, 20.0, 10.0, n)) for _ in range(k)]
    for p in procs:
        p.start()
    over = [x for _ in procs for x in results.get()]
    for p in procs:
        p.join()
    return over


def _chain(start: float, bursts: list[int], sleep_s: float, results: Any) -> None:
    while time.perf_counter() < start:  # every process starts at once
        pass
    cpu = []
    for iterations in bursts:
        c0 = time.thread_time()
        burn(iterations)
        cpu.append(time.thread_time() - c0)
        time.sleep(sleep_s)
    results.put((cpu, time.perf_counter() - start))


def _idle_ticks() -> int | None:
    """Idle + iowait clock ticks of all cores so far (Linux's /proc/stat; None elsewhere)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    return int(fields[4]) + int(fields[5])


def model_end(ran: list[list[float]], sleep_s: float, balance: float) -> float:
    """When the simulator's 2+ cores (sim.cpu.Cores; `balance` 0: processor sharing, else Linux's per-core run
    queues with that balancing tick) end chains of the given CPU bursts, each followed by a `sleep_s` sleep."""
    cores = os.cpu_count() or 1
    env = simpy.Environment()
    pool = Cores(env, cores, shared=True, balance=balance)

    def chain(bursts: list[float]) -> Any:
        thread = SimThread(None)  # one OS thread: it keeps to its core under Linux's rule
        for cpu in bursts:
            yield from compute(env, pool, thread, cpu)
            yield env.timeout(sleep_s)

    for bursts in ran:
        env.process(chain(bursts))
    env.run()
    return float(env.now)


def shared_cores(rate: float, k: int, cpu_ms: float, sleep_ms: float, rounds: int, overshoot: float,
                 balance: float) -> tuple[float, float, float, float, float | None]:
    """k processes each `rounds` x (a gamma CPU burst, cv 0.2, then a sleep): the real end, the simulator's ends
    with the measured bursts (sleeps + `overshoot`) by processor sharing and by per-core queues (`balance`), the
    processor-sharing model's idle share of core time and the real one."""
    cores = os.cpu_count() or 1
    rng = random.Random(k * 1000 + rounds)
    plans = [[round(cpu_ms / 1e3 * rng.gammavariate(25, 1 / 25) * rate) for _ in range(rounds)] for _ in range(k)]
    results: Any = mp.SimpleQueue()
    start = time.perf_counter() + 0.1
    procs = [mp.Process(target=_chain, args=(start, plan, sleep_ms / 1e3, results)) for plan in plans]
    for p in procs:
        p.start()
    while time.perf_counter() < start:
        time.sleep(0.001)
    ticks = _idle_ticks()
    ran = [results.get() for _ in procs]
    took = max(end for _, end in ran)
    idle = None if ticks is None else (_idle_ticks() - ticks) / os.sysconf("SC_CLK_TCK")  # type: ignore[operator]
    for p in procs:
        p.join()
    bursts = [b for b, _ in ran]
    sharing = model_end(bursts, sleep_ms / 1e3 + overshoot, 0.0)
    per_core = model_end(bursts, sleep_ms / 1e3 + overshoot, balance)
    work = sum(sum(b) for b in bursts)
    model_idle = 1 - work / (cores * sharing)
    return took, sharing, per_core, model_idle, None if idle is None else idle / (cores * took)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter measurements (~15 s)")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    rate = measure_rate()
    print(f"machine: {cores} cores; busy-loop rate measured now: {rate / 1e6:.1f}M iterations/s")

    w = windows(2.0 if args.quick else 6.0)
    lo, hi = min(w), max(w)
    print(f"\n1. speed in 100 ms windows ({len(w)}): median {statistics.median(w) / 1e6:.1f}M, min {lo / 1e6:.1f}M, "
          f"max {hi / 1e6:.1f}M (max/min {hi / lo:.2f}); the rate measured above is "
          f"{rate / statistics.median(w):.2f}x the windows' median")

    print("\n2. CPU bursts after idle periods: speed against the rate measured above, and against back-to-back 20 ms "
          "bursts (medians, interleaved):")
    speeds = bursts(rate, 4 if args.quick else 12)
    back_to_back = speeds[(20.0, 0.0)]
    for (ms, idle), speed in speeds.items():
        print(f"   {ms:4g} ms bursts after {idle:3g} ms idle: {speed:.3f} ({speed / back_to_back:.3f})")

    print(f"\n3. a worker's 10 ms sleep, k processes of 20 ms CPU + 10 ms sleep on {cores} cores:")
    for k in (cores, cores + 1, 2 * cores, 3 * cores):
        over = sorted(woken_workers(rate, k, 8 if args.quick else 15))
        print(f"   k={k}: overshoot mean {statistics.fmean(over) * 1e3:.3f} ms, median "
              f"{over[len(over) // 2] * 1e3:.3f} ms, max {over[-1] * 1e3:.2f} ms")

    print("\n4. the event loop's 5 ms sleep with a process pool keeping every core busy, less with it idle "
          "(calibrate's busy_wake_s), three times:")
    print("   " + ", ".join(f"{_busy_wake(1 if args.quick else 3, rate) * 1e3:.3f} ms" for _ in range(3)))

    tick = _scheduler_tick()
    balance = BALANCE_TICKS * tick if tick is not None else 0.0
    print(f"\n5. k processes of CPU bursts and sleeps on {cores} cores: the real end against the simulator's cores "
          f"given the measured bursts, by processor sharing and by per-core queues (a balancing tick every "
          f"{balance * 1e3:g} ms, as calibrate sets it); idle share of core time, processor sharing / real:")
    overshoot = _thread_sleep_overshoot(3)
    shapes = [(cores, 15.0, 8.0), (2 * cores, 15.0, 8.0), (3 * cores, 15.0, 8.0), (2 * cores, 5.0, 5.0),
              (2 * cores, 30.0, 2.0)]
    for k, cpu_ms, sleep_ms in shapes:
        rounds = max(4, round((120 if args.quick else 400) / (cpu_ms + sleep_ms)))
        took, sharing, per_core, model_idle, idle = shared_cores(rate, k, cpu_ms, sleep_ms, rounds, overshoot,
                                                                 balance)
        real_idle = "n/a" if idle is None else f"{idle:.0%}"
        print(f"   k={k} {cpu_ms:g} ms CPU + {sleep_ms:g} ms sleep x {rounds}: real {took * 1e3:.0f} ms, processor "
              f"sharing {sharing * 1e3:.0f} ms ({sharing / took - 1:+.1%}), per core {per_core * 1e3:.0f} ms "
              f"({per_core / took - 1:+.1%}); idle {model_idle:.0%} / {real_idle}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
