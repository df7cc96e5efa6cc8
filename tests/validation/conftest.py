"""Real runs: shared calibration, and a retrying comparison of prediction and measurement.

A noisy 2-core machine moves a real run's T_total by several percent from one run to the next; a failed
comparison is measured again (up to ATTEMPTS times) instead of loosening the tolerance for everyone.
"""

from __future__ import annotations

import pytest

import asyncsim as a
from asyncsim.real.calibrate import calibrate
from asyncsim.validate import Validation, validate

ATTEMPTS = 5


@pytest.fixture(scope="session")
def profile():
    """This machine's overheads, measured once per test session."""
    return calibrate(repeats=3)


def validated(workload: a.Workload, strategy: str, profile, *, time_scale: float, t_total_tol: float = 0.05,
              concurrency_tol: float = 0.10, seed: int = 0, nominal_tol: float | None = None) -> Validation:
    """Validate until the replayed prediction is within tolerance — and, with `nominal_tol`, the nominal T_total
    too — or fail with every attempt's errors. A nominal miss counts only on a run whose CPU held its calibrated
    speed: if no attempt held it, the machine, not the model, moved the nominal, and a run whose replay passed is
    returned unjudged."""
    attempts = []
    unjudged = None  # a run whose replay passed, at another CPU speed
    judged = False  # a run whose replay passed at its calibrated speed, and whose nominal was off
    for _ in range(ATTEMPTS):
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
                       for t, c, n, s in attempts)
    pytest.fail(f"{workload.name} under {strategy}: prediction off in every attempt: {detail}")
