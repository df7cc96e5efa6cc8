"""Big batches behind asyncio:K, as users write them, against the nominal prediction with and without the limit's
costed semaphore (Machine.loop_block_s, Machine.semaphore_scan_s).

    python benchmarks/limit_burst.py [--runs 3] [--quick]

Each case is a plain asyncio program: `gather` of N coroutines, each `async with semaphore: await sleep(d)`. It
runs for real (median of `--runs`), and one calibration (`calibrate(repeats=1)`) predicts it twice: with the
first steps that wait at the limit costing a resumption and no release walk (the rules before 2026-12-06), and
with both measured. What the two rules are (Lib/asyncio/locks.py, 3.11):

- a first step that finds the semaphore taken makes a future, queues it and waits: ~1.2 us here, where the model
  charged a resumption (5-7 us: the timer, the future's callback, the next sleep); a batch of 10,000 behind
  asyncio:100 runs 9,900 of them before its first wave can end;
- a release walks the waiters from the front for the first one not woken yet, past every one already handed a
  slot whose step has not run (it leaves the deque only when it resumes): ~17 ns each, so when hundreds of tasks
  end in one loop iteration under a large K the releases cost quadratically (2,000 in one step: 43 ms).

Measured here (2026-12-06, 2 vCPUs, CPython 3.11.7), two runs of this script, the nominal before -> now:

    case                         real (two runs)   before            now
    3,000 x 5 ms asyncio:100     190 / 211 ms      +5.7% / +4.4%     +3.2% / +1.2%
    10,000 x 5 ms asyncio:100    662 / 706 ms      +3.3% / +5.9%     -0.3% / +2.1%
    10,000 x 5 ms asyncio:1000   161 / 190 ms      +4.3% / +20.3%    +0.9% / +19.4%
    1,000 x 2 ms asyncio:50      54 / 58 ms        +9.4% / +12.6%    +6.7% / +9.2%
    3,000 x 20 ms asyncio:100    643 / 653 ms      +0.1% / +1.2%     +0.6% / +1.7%

The second run's calibration met the host in a slow phase (task creation 7.9 us against 3.7, a resumption 5.1
against 4.4): a loop-bound batch's nominal follows those figures, which swing between calibrations here, more
than either rule. The harness of `asyncsim validate` (its own Python per step: records, the rules' generator)
adds ~6 us per task to a loop-bound batch: the same 10,000 x 5 ms asyncio:1000 run by it took 228-241 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncsim as a
from asyncsim.profile import MachineProfile
from asyncsim.real.calibrate import calibrate

CASES = ((3000, 100, 0.005), (10000, 100, 0.005), (10000, 1000, 0.005), (1000, 50, 0.002), (3000, 100, 0.02))
QUICK = ((3000, 100, 0.005), (3000, 1000, 0.005))


async def _burst(n: int, k: int, wait: float) -> float:
    """The program: n coroutines gathered, each holding one of k slots for a `wait`-second sleep."""
    gate = asyncio.Semaphore(k)

    async def task() -> None:
        async with gate:
            await asyncio.sleep(wait)

    start = time.perf_counter()
    await asyncio.gather(*(task() for _ in range(n)))
    return time.perf_counter() - start


def _rules_before(profile: MachineProfile) -> MachineProfile:
    """The profile as the rules before 2026-12-06 read it: a blocked first step costs a resumption, no walk."""
    loops = {name: lp.model_copy(update={"loop_block_s": None, "semaphore_scan_s": 0.0})
             for name, lp in profile.loops.items()}
    return profile.model_copy(update={"loops": loops})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="real runs per case, the median is kept (default 3)")
    parser.add_argument("--quick", action="store_true", help="two small cases")
    args = parser.parse_args(argv)
    profile = calibrate(repeats=1)
    lp = profile.loop()
    print(f"calibrated: resumption {lp.loop_step_s * 1e6:.2f} us, task creation {lp.task_create_s * 1e6:.2f} us, "
          f"blocked first step {(lp.loop_block_s or 0) * 1e6:.2f} us, release walk {lp.semaphore_scan_s * 1e9:.1f} "
          "ns per woken waiter")
    print(f"{'case':>28}  {'real':>9}  {'before':>17}  {'now':>17}")
    for n, k, wait in QUICK if args.quick else CASES:
        reals = [asyncio.run(_burst(n, k, wait)) for _ in range(args.runs)]
        real = statistics.median(reals)
        strategy = a.parse_strategy(f"asyncio:{k}")
        scenario = a.build_scenario(a.Workload(arrivals=a.Batch(count=n), task=(a.io(wait),)), seed=0,
                                    strategy=strategy)
        line = f"{n:>6,} x {wait * 1e3:g} ms asyncio:{k:<5}  {real * 1e3:6.1f} ms"
        for p in (_rules_before(profile), profile):
            machine = p.machine_for(strategy, a.Machine(), emulated_waits=True)
            t = a.simulate(scenario, machine=machine).t_total
            line += f"  {t * 1e3:6.1f} ms {t / real - 1:+6.1%}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
