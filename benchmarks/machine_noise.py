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
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
from typing import Any

from asyncsim.real.calibrate import _busy_wake
from asyncsim.real.cpuwork import burn, measure_rate


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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
