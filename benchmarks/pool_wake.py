"""How long an idle process-pool worker takes to start a job, by what else computes meanwhile.

    python benchmarks/pool_wake.py [--pools 4]

An event loop submits a tiny job to a pool of two after a 4 ms pause, 30 times per fresh pool, while nothing else
computes, while the pool's other worker runs a 12 ms CPU job, and while an unrelated process spins on a core
(`asyncsim.real.calibrate.pool_starts`). calibrate's `process_wake_busy_s` is the mean of the second less the
first (Machine.process_wake_busy_s, sim/engine.py Engine._worker_wake).

Measured here (2026-12-05, 2 vCPUs, CPython 3.11, Linux 6.18): idle 0.3 ms mean; with the other worker busy
1.4-2.0 ms mean, median 0.9-1.9 ms, the slowest tenth 4 ms (one 4 ms scheduler tick); an unrelated spinner 0.2 ms.
The worker woken for the job last ran on the core its sibling computes on now, and the kernel leaves it there
until that core's tick while the other core idles; an unrelated process keeps to its own core and never meets it.
"""

from __future__ import annotations

import argparse
import statistics

from asyncsim.real.calibrate import POOL_BUSY, pool_starts
from asyncsim.real.cpuwork import measure_rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", type=int, default=4, help="fresh pools per case (default 4)")
    args = parser.parse_args(argv)
    rate = measure_rate()
    starts: dict[str, list[float]] = {busy: [] for busy in POOL_BUSY}
    for _ in range(args.pools):  # the cases take turns, so a drift of the machine touches each alike
        for busy in POOL_BUSY:
            starts[busy] += pool_starts(rate, busy)
    print(f"{'meanwhile computing':>20}  {'mean':>8}  {'median':>8}  {'90%':>8}   submit to start, ms")
    for busy, s in starts.items():
        q = statistics.quantiles(s, n=10)
        print(f"{busy:>20}  {statistics.fmean(s) * 1e3:8.3f}  {statistics.median(s) * 1e3:8.3f}  {q[-1] * 1e3:8.3f}")
    extra = statistics.fmean(starts["worker"]) - statistics.fmean(starts["none"])
    print(f"the other worker busy, less idle (calibrate's process_wake_busy_s): {extra * 1e3:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
