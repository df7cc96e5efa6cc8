"""Closed-form queueing results and makespan bounds, used to check the simulator against theory.

Rates are per second, times in seconds. `a = lam / mu` is the offered load in Erlangs; a queue with `c`
servers is stable when `a < c`. The formulas are for the steady state of FIFO queues with Poisson
arrivals (M/M/c, M/G/1); the makespan bounds hold for any run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from scipy import stats

__all__ = [
    "cpu_bound", "erlang_b", "erlang_c", "longest_task_bound", "md1_mean_sojourn", "mg1_mean_sojourn",
    "mg1_mean_wait", "mm1_mean_sojourn", "mmc_mean_queue", "mmc_mean_sojourn", "mmc_mean_wait",
    "priority_mean_sojourn", "priority_mean_wait", "slot_bound", "t_total_lower_bound",
]


def _check_servers(c: int) -> None:
    if isinstance(c, bool) or not isinstance(c, int) or c < 1:
        raise ValueError(f"c (servers) must be an integer >= 1: {c!r}")


def _check_positive(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0: {value!r}")


def _check_stable(c: int, a: float) -> None:
    if not a < c:
        raise ValueError(f"unstable queue: offered load a={a!r} must be < c={c!r} servers")


def erlang_b(c: int, a: float) -> float:
    """Blocking probability of M/M/c/c (Erlang B) with offered load `a` Erlangs.

    Computed as the ratio of a Poisson(a) pmf to its cdf at `c`, in log space, so it neither overflows
    (a**c, c!) nor loses precision for thousands of servers.

    Raises:
        ValueError: c is not an integer >= 1 or a is negative or not finite.
    """
    _check_servers(c)
    if not (a >= 0 and math.isfinite(a)):
        raise ValueError(f"a (offered load) must be a finite number >= 0: {a!r}")
    if a == 0:
        return 0.0
    return float(math.exp(stats.poisson.logpmf(c, a) - stats.poisson.logcdf(c, a)))


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in M/M/c (Erlang C) with offered load `a` = lam/mu Erlangs.

    Raises:
        ValueError: c is not an integer >= 1, a is negative, or a >= c (no steady state).
    """
    b = erlang_b(c, a)
    _check_stable(c, a)
    return b / (1.0 - (a / c) * (1.0 - b))


def mmc_mean_wait(lam: float, mu: float, c: int) -> float:
    """Mean time an M/M/c customer queues before service: C(c, a) / (c·mu − lam).

    Raises:
        ValueError: lam or mu not > 0, c not an integer >= 1, or lam >= c·mu.
    """
    _check_positive("lam", lam)
    _check_positive("mu", mu)
    return erlang_c(c, lam / mu) / (c * mu - lam)


def mmc_mean_sojourn(lam: float, mu: float, c: int) -> float:
    """Mean time an M/M/c customer spends in the system (queue + service).

    Raises:
        ValueError: as `mmc_mean_wait`.
    """
    return mmc_mean_wait(lam, mu, c) + 1.0 / mu


def mmc_mean_queue(lam: float, mu: float, c: int) -> float:
    """Mean number of M/M/c customers queueing (not in service): lam · Wq (Little's law).

    Raises:
        ValueError: as `mmc_mean_wait`.
    """
    return lam * mmc_mean_wait(lam, mu, c)


def mm1_mean_sojourn(lam: float, mu: float) -> float:
    """Mean time in an M/M/1 system: 1 / (mu − lam).

    Raises:
        ValueError: lam or mu not > 0, or lam >= mu.
    """
    _check_positive("lam", lam)
    _check_positive("mu", mu)
    _check_stable(1, lam / mu)
    return 1.0 / (mu - lam)


def mg1_mean_wait(lam: float, mean_s: float, var_s: float) -> float:
    """Mean M/G/1 queueing time (Pollaczek–Khinchine): lam·E[S²] / (2(1 − rho)), rho = lam·E[S].

    Raises:
        ValueError: lam or mean_s not > 0, var_s negative, or rho >= 1.
    """
    _check_positive("lam", lam)
    _check_positive("mean_s", mean_s)
    if not (var_s >= 0 and math.isfinite(var_s)):
        raise ValueError(f"var_s must be a finite number >= 0: {var_s!r}")
    rho = lam * mean_s
    _check_stable(1, rho)
    return lam * (var_s + mean_s**2) / (2.0 * (1.0 - rho))


def mg1_mean_sojourn(lam: float, mean_s: float, var_s: float) -> float:
    """Mean time in an M/G/1 system: the P–K queueing time plus the mean service time.

    Raises:
        ValueError: as `mg1_mean_wait`.
    """
    return mg1_mean_wait(lam, mean_s, var_s) + mean_s


def md1_mean_sojourn(lam: float, service_s: float) -> float:
    """Mean time in an M/D/1 system (constant service `service_s`): P–K with zero variance.

    Raises:
        ValueError: as `mg1_mean_wait`.
    """
    return mg1_mean_sojourn(lam, service_s, 0.0)


# ----------------------------------------------------------------------------------- makespan bounds


def cpu_bound(total_cpu_s: float, usable_cores: int) -> float:
    """No run finishes before its CPU work is done on the cores it can use at once.

    `usable_cores` is 1 under a GIL or a single event loop, min(processes, cores) for a process pool.

    Raises:
        ValueError: total_cpu_s negative or usable_cores < 1.
    """
    if not total_cpu_s >= 0:
        raise ValueError(f"total_cpu_s must be >= 0: {total_cpu_s!r}")
    _check_servers(usable_cores)
    return total_cpu_s / usable_cores


def slot_bound(total_hold_s: float, slots: int) -> float:
    """`slots` holders at a time, each holding for its share of `total_hold_s`: at least the total / slots.

    With a limit K on tasks in flight and tasks that each take at least `io` seconds this is n·io/K; it
    applies alike to a pool, a bounded service or a worker pool.

    Raises:
        ValueError: total_hold_s negative or slots < 1.
    """
    if not total_hold_s >= 0:
        raise ValueError(f"total_hold_s must be >= 0: {total_hold_s!r}")
    _check_servers(slots)
    return total_hold_s / slots


def longest_task_bound(task_s: Iterable[float]) -> float:
    """No run is shorter than its longest task's own minimal duration (0 for no tasks)."""
    return max(task_s, default=0.0)


def t_total_lower_bound(*, total_cpu_s: float = 0.0, usable_cores: int = 1, longest_task_s: float = 0.0,
                        total_hold_s: float = 0.0, slots: int | None = None) -> float:
    """The largest of the makespan bounds: CPU / usable cores, the longest task, held time / slots.

    `slots=None` means unbounded (that bound is 0).

    Raises:
        ValueError: as `cpu_bound` and `slot_bound`.
    """
    bounds = [cpu_bound(total_cpu_s, usable_cores), longest_task_s]
    if slots is not None:
        bounds.append(slot_bound(total_hold_s, slots))
    return max(bounds)


def _priority_loads(lams: list[float], means: list[float], second_moments: list[float]) -> tuple[list[float], float]:
    if not (len(lams) == len(means) == len(second_moments) >= 1):
        raise ValueError("give one arrival rate, mean and second moment per class")
    for name, values in (("lam", lams), ("mean_s", means), ("second_moment_s", second_moments)):
        for v in values:
            _check_positive(name, v)
    rhos = [lam * m for lam, m in zip(lams, means, strict=True)]
    _check_stable(1, sum(rhos))
    residual = sum(lam * m2 for lam, m2 in zip(lams, second_moments, strict=True)) / 2
    return rhos, residual


def priority_mean_wait(lams: list[float], means: list[float], second_moments: list[float]) -> list[float]:
    """Mean queueing wait per class of a non-preemptive priority M/G/1 queue (Cobham's formula).

    Class 0 is served first: W_k = W0 / ((1 − σ_{k−1})(1 − σ_k)) with W0 = Σ λ_i E[S_i²] / 2 and σ_k the
    load of classes 0..k. For exponential service E[S²] = 2·mean².

    Raises:
        ValueError: a non-positive rate or moment, or a total load >= 1.
    """
    rhos, w0 = _priority_loads(lams, means, second_moments)
    out, sigma = [], 0.0
    for rho in rhos:
        out.append(w0 / ((1 - sigma) * (1 - sigma - rho)))
        sigma += rho
    return out


def priority_mean_sojourn(lams: list[float], means: list[float], second_moments: list[float], *,
                          preemptive: bool) -> list[float]:
    """Mean time in system per class of a priority M/G/1 queue; `preemptive` is preemptive-resume.

    Preemptive-resume: T_k = E[S_k] / (1 − σ_{k−1}) + (Σ_{i<=k} λ_i E[S_i²] / 2) / ((1 − σ_{k−1})(1 − σ_k)).

    Raises:
        ValueError: as `priority_mean_wait`.
    """
    if not preemptive:
        return [w + m for w, m in zip(priority_mean_wait(lams, means, second_moments), means, strict=True)]
    rhos, _ = _priority_loads(lams, means, second_moments)
    out, sigma, residual = [], 0.0, 0.0
    for lam, m, m2, rho in zip(lams, means, second_moments, rhos, strict=True):
        residual += lam * m2 / 2
        out.append(m / (1 - sigma) + residual / ((1 - sigma) * (1 - sigma - rho)))
        sigma += rho
    return out
