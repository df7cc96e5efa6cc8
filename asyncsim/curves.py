"""What sweep curves say: where one setting's curve crosses another's, and Universal Scalability Law fits.

    >>> crossovers(summary, x="task.0.cpu", metric="t_total", by="strategy")
    >>> fit_usl([1, 2, 4, 8], [10.0, 19.0, 34.0, 50.0])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ModelError

__all__ = ["Crossover", "crossovers", "fit_usl", "sweep_crossovers"]


# ------------------------------------------------------------------------------------------- USL


def _usl(n: np.ndarray, lambda_: float, sigma: float, kappa: float) -> np.ndarray:
    return lambda_ * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


def fit_usl(n: Sequence[float], throughput: Sequence[float]) -> dict[str, float]:
    """Fit the Universal Scalability Law X(N) = λN / (1 + σ(N−1) + κN(N−1)), all parameters >= 0.

    Returns `lambda_`, `sigma`, `kappa`, `peak_n` = sqrt((1−σ)/κ) and `peak_throughput` = X(peak_n);
    with κ = 0 throughput never turns down and the peak is at infinity (`peak_throughput` is then the
    limit λ/σ, or infinity when σ = 0 too); with κ > 0 and σ >= 1 the peak is at N = 1.

    Raises:
        ModelError: with fewer than 3 points, unequal lengths, or non-positive N.
    """
    from scipy.optimize import curve_fit

    x = np.asarray(n, dtype=float)
    y = np.asarray(throughput, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ModelError(f"fit_usl: n and throughput must be equal-length lists, got {x.shape} and {y.shape}")
    if x.size < 3:
        raise ModelError(f"fit_usl: needs at least 3 points, got {x.size}")
    if (x <= 0).any() or not np.isfinite(y).all():
        raise ModelError("fit_usl: n must be > 0 and throughput finite")
    lambda0 = float(np.max(y / x)) or 1.0
    params, _ = curve_fit(_usl, x, y, p0=[lambda0, 0.01, 1e-4], bounds=([0, 0, 0], [np.inf, np.inf, np.inf]),
                          maxfev=20000)
    lambda_, sigma, kappa = (float(p) for p in params)
    if kappa > 0 and sigma < 1:
        peak_n = math.sqrt((1 - sigma) / kappa)
        peak = float(_usl(np.array(peak_n), lambda_, sigma, kappa))
    elif kappa > 0:  # sigma >= 1: adding the second worker already costs more than it brings
        peak_n, peak = 1.0, lambda_
    else:
        peak_n = math.inf
        peak = lambda_ / sigma if sigma > 0 else math.inf
    return {"lambda_": lambda_, "sigma": sigma, "kappa": kappa, "peak_n": peak_n, "peak_throughput": peak}


# ------------------------------------------------------------------------------------------- crossovers


_HIGHER_IS_BETTER = ("throughput", "completed")
_LOWER_IS_BETTER = ("t_total", "latency", "time_split", "failed")


@dataclass(frozen=True)
class Crossover:
    """Where the metric curves of `a` and `b` cross as `param` grows: below `x` `b` leads, above it `a` does.

    "Leads" means better when the metric has a direction (lower times, higher throughput), otherwise higher.
    `value` is the metric at the crossing (both curves interpolated linearly between grid points).
    """

    param: str
    x: float
    a: str
    b: str
    metric: str
    value: float
    higher_is_better: bool | None = None

    def __str__(self) -> str:
        where = f"at {self.param}={self.x:.4g}"
        if self.higher_is_better is None:
            return f"{self.a} rises above {self.b} in {self.metric} {where}"
        return f"{self.a} overtakes {self.b} {where} ({self.metric} {self.value:.4g})"

    def to_dict(self) -> dict[str, Any]:
        return {"param": self.param, "x": self.x, "a": self.a, "b": self.b, "metric": self.metric,
                "value": self.value, "text": str(self)}


def _direction(metric: str) -> bool | None:
    if metric.startswith(_HIGHER_IS_BETTER):
        return True
    if metric.startswith(_LOWER_IS_BETTER):
        return False
    return None


def crossovers(summary: Any, *, x: str, metric: str = "t_total", by: str = "strategy", rtol: float = 1e-6,
               use_ci: bool = True, higher_is_better: bool | None = None,
               lossless_only: bool = True) -> list[Crossover]:
    """The points where one `by` group's `metric` curve over `x` crosses another's, ordered by x.

    `summary` is a frame with one row per (`by`, `x`) — a sweep summary (`<metric>_mean`, `<metric>_ci95`
    columns) or any frame with a `metric` column. Curves are compared on the x values they share and
    interpolated linearly between them. A difference counts only where it exceeds `rtol` of the values
    and, with `use_ci`, the combined 95% half-widths (sqrt(h_a² + h_b²)); smaller ones are ties, and a
    curve that touches or ties another without changing side does not cross it. The direction (`a`
    overtakes `b`) follows `higher_is_better`, by default inferred from the metric's name. With
    `lossless_only` (the default) points that lose work (a sweep summary's `completed_mean` below its
    `tasks_mean`) are left out: a run that did less work is not faster (see `asyncsim.ranking`).

    Raises:
        ModelError: a missing column, a non-numeric `x`, or several rows for one (`by`, `x`) (filter the
            frame to one value of every other parameter first).
    """
    column = f"{metric}_mean" if f"{metric}_mean" in summary.columns else metric
    for name in (x, by, column):
        if name not in summary.columns:
            raise ModelError(f"crossovers: no column {name!r} (columns: {', '.join(map(str, summary.columns))})")
    try:
        xs_all = summary[x].astype(float)
    except (TypeError, ValueError):
        raise ModelError(f"crossovers: {x} must be numeric, got {summary[x].tolist()[:5]}") from None
    dup = summary.assign(_x=xs_all).duplicated(subset=[by, "_x"], keep=False)
    if dup.any():
        row = summary[dup].iloc[0]
        raise ModelError(f"crossovers: {int(dup.sum())} rows repeat a ({by}, {x}) pair, e.g. {by}={row[by]}, "
                         f"{x}={row[x]}; filter the frame to one value of every other parameter")
    if lossless_only and {"tasks_mean", "completed_mean"} <= set(summary.columns):
        keep = summary["completed_mean"].astype(float) >= summary["tasks_mean"].astype(float)
        summary, xs_all = summary[keep], xs_all[keep]
    half = f"{metric}_ci95"
    direction = _direction(metric) if higher_is_better is None else higher_is_better
    curves: dict[str, dict[float, tuple[float, float]]] = {}
    for key, xv, mean, h in zip(summary[by], xs_all, summary[column].astype(float),
                                summary[half].astype(float) if use_ci and half in summary.columns
                                else [0.0] * len(summary), strict=True):
        curves.setdefault(str(key), {})[float(xv)] = (float(mean), 0.0 if math.isnan(h) else float(h))
    found: list[Crossover] = []
    names = list(curves)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            found.extend(_pair_crossings(curves[first], curves[second], first, second, x, metric, rtol, direction))
    return sorted(found, key=lambda c: (c.x, c.a, c.b))


def _pair_crossings(ca: dict[float, tuple[float, float]], cb: dict[float, tuple[float, float]], na: str, nb: str,
                    param: str, metric: str, rtol: float, direction: bool | None) -> list[Crossover]:
    xs = np.array(sorted(set(ca) & set(cb)))
    if xs.size < 2:
        return []
    ya = np.array([ca[v][0] for v in xs])
    yb = np.array([cb[v][0] for v in xs])
    tol = np.maximum(rtol * np.maximum(np.abs(ya), np.abs(yb)),
                     np.hypot([ca[v][1] for v in xs], [cb[v][1] for v in xs]))
    d = ya - yb
    sign = np.where(np.abs(d) > tol, np.sign(d), 0.0)
    out = []
    sides = np.flatnonzero(sign)
    for i, j in itertools.pairwise(sides):
        if sign[i] == sign[j]:
            continue
        # the first sign change of the raw difference between the two decided points
        k = next(k for k in range(i, j) if np.sign(d[k + 1]) != sign[i])
        t = 1.0 if d[k + 1] == 0 else d[k] / (d[k] - d[k + 1])
        cross = float(xs[k] + t * (xs[k + 1] - xs[k]))
        value = float(ya[k] + t * (ya[k + 1] - ya[k]))
        # after the crossing, a leads when d has the sign that favours it
        a_leads = (sign[j] < 0) if direction is False else (sign[j] > 0)
        lead, lag = (na, nb) if a_leads else (nb, na)
        out.append(Crossover(param, cross, lead, lag, metric, value, direction))
    return out


def sweep_crossovers(summary: Any, params: Sequence[str], *, metric: str = "t_total") -> tuple[str | None,
                                                                                                list[Crossover]]:
    """Crossovers of a sweep summary whose grid varies `strategy` and exactly one other, numeric, parameter.

    Returns (that parameter, its crossovers), or (None, []) for any other grid.
    """
    import pandas as pd

    varying = [p for p in params if summary[p].nunique(dropna=False) > 1]
    others = [p for p in varying if p != "strategy"]
    if "strategy" not in varying or len(others) != 1 or not pd.api.types.is_numeric_dtype(summary[others[0]]):
        return None, []
    return others[0], crossovers(summary, x=others[0], metric=metric, by="strategy")
