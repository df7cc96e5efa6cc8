"""Validation suite: every ready model × strategy, predicted vs measured on this machine.

    python experiments/validation_suite.py            # writes reports/validation/report.md (+ PNG, results.json)
    python experiments/validation_suite.py --quick    # two strategies per model, small budget (used by the tests)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import asyncsim as a
from asyncsim._io import write_atomic
from asyncsim.profile import MachineProfile
from asyncsim.real.calibrate import calibrate
from asyncsim.report import metadata, validation_report
from asyncsim.validate import Validation, suggest_time_scale, validate

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = ["sequential", "threads:8", "processes:2", "asyncio", "asyncio:20", "asyncio:20+processes:2"]
QUICK = ["threads:8", "asyncio:20"]
# runs of one model x strategy at most, while its CPU does not hold the calibrated rate (validate.STEADY_SPEED)
SPEED_ATTEMPTS = 3


def steadiest(workload: a.Workload, strategy: a.Strategy, seed: int, scale: float, profile: MachineProfile
              ) -> Validation:
    """Validate once, and again (up to SPEED_ATTEMPTS runs) while the run's CPU did not hold the rate it was
    calibrated at: the run whose CPU speed was nearest it is kept (its nominal error is the model's)."""
    runs: list[Validation] = []
    while len(runs) < SPEED_ATTEMPTS and (not runs or not runs[-1].steady):
        runs.append(validate(workload, strategy=strategy, seed=seed, time_scale=scale, profile=profile))
    return min(runs, key=lambda v: abs((v.cpu_speed or 1.0) - 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast subset")
    parser.add_argument("--out", default=str(ROOT / "reports" / "validation"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=None, help="max real seconds per run")
    parser.add_argument("--target", type=float, default=None,
                        help="real seconds each run is scaled to (default 2, 0.25 with --quick): time scale = "
                             "target / predicted T_total, at most 1, at least the smallest scale this machine's "
                             "timers honour with margin 3")
    parser.add_argument("--render", action="store_true", help="only rewrite the report from the saved results.json")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.render:
        saved = json.loads((out / "results.json").read_text())
        print(f"wrote {validation_report(saved['rows'], saved['skipped'], saved['meta'], out)}")
        return 0
    budget = args.budget or (2.0 if args.quick else 20.0)
    # real seconds a run is scaled to, at most (never below the timers' floor)
    target = min(budget, args.target or (0.25 if args.quick else 2.0))
    strategies = QUICK if args.quick else STRATEGIES
    profile = calibrate(repeats=1 if args.quick else 3)
    floor = profile.timer_floor_s()
    rows, skipped = [], []
    for path in sorted((ROOT / "models").glob("*.yaml")):
        workload = a.load(path)
        smallest = suggest_time_scale(workload, floor, margin=3.0)
        for strategy in strategies:
            strat = a.parse_strategy(strategy)
            machine = profile.machine_for(strat, workload.machine, time_scale=smallest, emulated_waits=True)
            try:
                model_s = a.simulate(workload, strategy=strat, seed=args.seed, machine=machine).t_total
            except a.ModelError as exc:  # e.g. a pipeline, which runs on an event loop only
                skipped.append({"model": workload.name, "strategy": strategy, "reason": str(exc).splitlines()[0]})
                continue
            # as little compression as the target allows: a run of a few real seconds, not of a few tens of
            # milliseconds, whose start-up and timer jitter would be most of what is measured
            scale = max(smallest, min(1.0, float(f"{target / model_s:.2g}"))) if model_s > 0 else smallest
            expected = model_s * scale
            if expected > budget:
                skipped.append({"model": workload.name, "strategy": strategy,
                                "reason": f"about {expected:.0f} s of real time at time scale {scale:g}"})
                continue
            try:
                v = steadiest(workload, strat, args.seed, scale, profile)
            except a.ModelError as exc:  # e.g. a policy the real runner cannot apply between processes
                skipped.append({"model": workload.name, "strategy": strategy, "reason": str(exc).splitlines()[0]})
                continue
            rows.append({"model": workload.name, "strategy": strategy, "time_scale": scale,
                         "predicted": v.predicted.t_total, "replayed": v.replayed.t_total,
                         "measured": v.measured.t_total, "error": v.error["t_total"],
                         "replay_error": v.replay_error["t_total"],
                         "concurrency_error": v.replay_error["concurrency_mean"],
                         "cpu_speed": v.cpu_speed,
                         "tasks": v.measured.tasks, "failed_replayed": v.replayed.failed,
                         "failed_measured": v.measured.failed})
            speed = "" if v.cpu_speed is None else f"  CPU speed {v.cpu_speed:.2f}"
            print(f"{workload.name:12s} {strategy:24s} replay error {v.replay_error['t_total']:+.1%}  nominal "
                  f"{v.error['t_total']:+.1%}{speed}", flush=True)
    meta = metadata(["python", "experiments/validation_suite.py", *(argv if argv is not None else sys.argv[1:])],
                    seed=args.seed, profile=profile.model_dump())
    write_atomic(out / "results.json", json.dumps({"meta": meta, "rows": rows, "skipped": skipped}, indent=1))
    report = validation_report(rows, skipped, meta, out)
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
