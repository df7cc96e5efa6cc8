"""Who gets the GIL when a worker thread's result wakes an idle event loop: the loop, or the worker's next job?

    python benchmarks/loop_race.py [--trials 30]

A ThreadPoolExecutor worker ends a job while another waits in its queue: its result's call_soon_threadsafe writes to
the loop's self-pipe, releasing the GIL for the moment of the write. The loop, blocked in select(), wakes; if it
takes the GIL before the worker retakes it, it runs the result now, else it waits until the worker runs out of jobs
(sim/cpu.py race_won, Machine.loop_race_wins and loop_race_idle_s). This prints how often the loop won after idling
in select() for 0.5-6 ms (`asyncsim.real.calibrate.race_wins`: a job of that length, a 2 ms one queued behind it),
with one warm pool serving every trial (as in a program) and with a fresh pool for each.

Measured here (2026-12-05, 2 vCPUs, CPython 3.11): warm pool, 30 trials each, 0.5 / 1 / 1.5 / 2 / 2.5 / 3 / 4 / 5
ms: 26-30, 28-29, 27-29, 21-27, 15-22, 7-12, 5-9, 3 wins (calibrate: 2-3.5 ms in five runs, and no limit in one CI
run, whose loop won at every idle); idle 3.5 ms or more won 0 of 60 in one sweep. A fresh pool (a new thread,
started on the idlest core) let the loop win 27-30 of 30 at every idle up to 6 ms. A process's first races went
mostly to the worker (a warm-up sweep first). That afternoon the same machine's warm pool let the loop win 0 of 30
at every idle (fresh pools 21-26 up to 4 ms, 13 at 5 ms, 0 at 6 ms; calibrate: share 0, limit 0.5 ms), and the CI
machine's 0 of 20: calibrate measures the share too (a model sets it: Machine.loop_race_wins). Who wins is the
kernel's doing (which core each thread wakes on, how deep the idle core slept), not CPython's: the model keeps the
measured pattern, not the mechanism.
"""

from __future__ import annotations

import argparse

from asyncsim.real.calibrate import RACE_IDLES_S, loop_race, race_wins
from asyncsim.real.cpuwork import measure_rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30, help="races per idle time (default 30)")
    args = parser.parse_args(argv)
    rate = measure_rate()
    race_wins(RACE_IDLES_S[0], rate, args.trials)  # warm-up: a process's first races go to the worker
    print(f"{'idle in select()':>17}  {'warm pool':>10}  {'fresh pools':>11}")
    for idle in RACE_IDLES_S:
        warm = race_wins(idle, rate, args.trials)
        fresh = race_wins(idle, rate, args.trials, fresh=True)
        print(f"{idle * 1e3:14.1f} ms  {warm:4d} / {args.trials:<3d}  {fresh:5d} / {args.trials:<3d}", flush=True)
    limit, share = loop_race(3, rate)
    print(f"calibrate's loop_race_wins: {share:.2f}, loop_race_idle_s: {limit * 1e3:.1f} ms "
          "(0: the loop wins most at every idle)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
