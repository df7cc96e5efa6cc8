"""Real runs: shared calibration, and a retrying comparison of prediction and measurement.

A noisy 2-core machine moves a real run's T_total by several percent from one run to the next; a failed
comparison is measured again (up to ATTEMPTS times) instead of loosening the tolerance for everyone. The machine
itself moves too (where the kernel puts threads: the same machine's loop won most GIL races at a worker's result
write one morning and none that afternoon), so the last attempts use a profile measured again (RECALIBRATE_AFTER).
"""

from __future__ import annotations

import pytest

import asyncsim as a
from asyncsim.real.calibrate import calibrate
from asyncsim.validate import Validation, validate

ATTEMPTS = 5
RECALIBRATE_AFTER = 3  # failed attempts with the session's profile before a new calibration


@pytest.fixture(scope="session")
def profile():
    """This machine's overheads, measured once per test session."""
    return calibrate(repeats=3)


def validated(workload: a.Workload, strategy: str, profile, *, time_scale: float, t_total_tol: float = 0.05,
              concurrency_tol: float = 0.10, seed: int = 0, nominal_tol: float | None = None) -> Validation:
    """Validate until the replayed prediction is within tolerance — and, with `nominal_tol`, the nominal T_total
    too — or fail with every attempt's errors. A nominal miss counts only on a run whose CPU held its calibrated
    speed: if no attempt held it, the machine, not the model, moved the nominal, and a run whose replay passed is
    returned unjudged. The last attempts predict with the machine measured again."""
    attempts = []
    unjudged = None  # a run whose replay passed, at another CPU speed
    judged = False  # a run whose replay passed at its calibrated speed, and whose nominal was off
    for attempt in range(ATTEMPTS):
        if attempt == RECALIBRATE_AFTER:
            profile = calibrate(repeats=3)
        v = validate(workload, strategy=strategy, seed=seed, time_scale=time_scale, profile=profile)
        err, nominal = v.replay_error, v.error["t_total"]
        attempts.append((err["t_total"], err["concurrency_mean"], nominal, v.cpu_speed))
        if abs(err["t_total"]) > t_total_tol or abs(err["concurrency_mean"]) > concurrency_tol:
            continue
        if nominal_tol is None or abs(nominal) <= nominal_tol:
            return v
        if v.steady:
            judged = True
        else:
            unjudged = unjudged or v
    if unjudged is not None and not judged:
        return unjudged
    detail = ", ".join(f"T_total {t:+.1%} / concurrency {c:+.1%} (nominal {n:+.1%} at CPU speed {s or 1:.2f})"
                       + (" [profile measured again]" if k >= RECALIBRATE_AFTER else "")
                       for k, (t, c, n, s) in enumerate(attempts))
    pytest.fail(f"{workload.name} under {strategy}: prediction off in every attempt: {detail}")
