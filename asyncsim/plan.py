"""Capacity planning: the smallest setting that meets service-level objectives, with stated confidence.

    >>> raw, base = load_raw("models/rag_query.yaml")
    >>> result = plan(raw, vary=parse_vary("strategy=asyncio:1..512"),
    ...               slos=[parse_slo("p99 < 2s")], replications=5, base_dir=base)
    >>> result.answer, result.value, result.binding

An SLO is met at a setting when the one-sided confidence bound of its metric's mean over the
replications meets the bound: the upper bound for `<`/`<=`, the lower one for `>`/`>=` (Student t;
with zero variance, or a single replication, the bound is the mean itself). Every candidate runs the
same replication seeds, so neighbouring settings are compared paired.

The search assumes more capacity never hurts (the SLOs are monotone in the parameter): it gallops
`lo, 2·lo, 4·lo, …` (capped at `hi`) until a setting passes, then bisects between the last failure and
the first pass. `find_max_rate` bisects the highest Poisson arrival rate instead, `fit_usl` fits the
Universal Scalability Law to a throughput curve, and `crossovers` finds where one strategy's curve
crosses another's in a sweep summary.
"""

from __future__ import annotations

import itertools
import math
import operator
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import yaml

from .api import replication_seeds, simulate
from .errors import ModelError
from .metrics import Result
from .sweep import build

__all__ = ["Crossover", "CurvePoint", "PlanResult", "Slo", "crossovers", "find_max_rate", "fit_usl", "parse_slo",
           "parse_vary", "plan", "setting", "sweep_crossovers"]

_LATENCY = ("mean", "p50", "p95", "p99", "max")
_METRIC_NAMES = ("t_total", "throughput", *_LATENCY)
_UNITS = {"": 1.0, "s": 1.0, "ms": 1e-3, "m": 60.0, "h": 3600.0}
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_SLO = re.compile(r"\s*([A-Za-z_][\w.]*)\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S*)\s*")
_SLO_FORMS = ("METRIC OP NUMBER[UNIT], METRIC one of t_total, throughput, mean, p50, p95, p99, max; "
              "OP one of <, <=, >, >=; UNIT s, ms, m or h (none = seconds; throughput takes none), "
              "e.g. 'p99 < 20s', 't_total <= 30m', 'throughput >= 40'")
_RANGE = re.compile(r"\{(-?\d+)\.\.(-?\d+)\}|(-?\d+)\.\.(-?\d+)")
_MAX_RATE_STEPS = 20


# ------------------------------------------------------------------------------------------- SLOs


@dataclass(frozen=True)
class Slo:
    """One objective `metric op bound`; `bound` is in seconds for times, tasks per second for throughput."""

    metric: str
    op: str
    bound: float

    @property
    def upper(self) -> bool:
        """Is this a ceiling (`<`, `<=`), checked against the upper confidence bound?"""
        return self.op in ("<", "<=")

    def value(self, result: Result) -> float:
        """This SLO's metric in one run."""
        if self.metric in _LATENCY:
            return float(result.latency[self.metric])
        return float(getattr(result, self.metric))

    def met(self, value: float) -> bool:
        """Does `value` satisfy the objective? NaN (e.g. nothing completed) never does."""
        return not math.isnan(value) and _OPS[self.op](value, self.bound)

    def slack(self, value: float) -> float:
        """Relative slack of `value` against the bound: > 0 met with room, < 0 missed (absolute if bound is 0)."""
        gap = self.bound - value if self.upper else value - self.bound
        return gap / abs(self.bound) if self.bound else gap

    def __str__(self) -> str:
        unit = "" if self.metric == "throughput" else "s"
        return f"{self.metric} {self.op} {self.bound:g}{unit}"


def parse_slo(text: str) -> Slo:
    """Parse an objective such as `p99 < 20s`, `p95 <= 500ms`, `t_total < 30m` or `throughput >= 40`.

    `latency.p99` and `latency_p99` are accepted for `p99` (and so on).

    Raises:
        ModelError: `--slo ...` naming the text and the allowed forms.
    """
    match = _SLO.fullmatch(text)
    if not match:
        raise ModelError(f"--slo: cannot read {text!r}; expected {_SLO_FORMS}")
    name, op, number, unit = match.groups()
    metric = re.sub(r"^latency[._]", "", name.lower())
    if metric not in _METRIC_NAMES:
        raise ModelError(f"--slo {text!r}: unknown metric {name!r}; expected {_SLO_FORMS}")
    unit = unit.lower()
    if metric == "throughput":
        if unit not in ("", "/s"):
            raise ModelError(f"--slo {text!r}: throughput is tasks per second and takes no unit, got {unit!r}")
        scale = 1.0
    elif unit in _UNITS:
        scale = _UNITS[unit]
    else:
        raise ModelError(f"--slo {text!r}: unknown unit {unit!r} (allowed: s, ms, m, h; none = seconds)")
    bound = float(number) * scale
    if not math.isfinite(bound) or bound < 0:
        raise ModelError(f"--slo {text!r}: the bound must be a finite number >= 0, got {number}")
    return Slo(metric, op, bound)


# ------------------------------------------------------------------------------------------- --vary


def parse_vary(text: str) -> tuple[str, str, int, int]:
    """Parse `PATH=VALUE` with one integer range `a..b` in the value into (path, template, lo, hi).

    `strategy=asyncio:1..512`, `pools.db=1..64`, `services.llm.concurrency={1..100}`. The template is a
    `str.format` string with one `{}`; `setting(template, n)` makes the value for `n`.

    Raises:
        ModelError: `--vary: ...` naming the text and the expected form.
    """
    path, sep, value = text.partition("=")
    path = path.strip()
    form = "expected PATH=VALUE with one integer range a..b in the value, e.g. strategy=asyncio:1..512"
    if not sep or not path or any(not part for part in path.split(".")):
        raise ModelError(f"--vary: cannot read {text!r}; {form}")
    ranges = list(_RANGE.finditer(value))
    if len(ranges) != 1:
        raise ModelError(f"--vary {path}: {'no' if not ranges else len(ranges)} ranges in {value.strip()!r}; {form}")
    match = ranges[0]
    lo, hi = (int(g) for g in match.groups() if g is not None)
    if lo > hi:
        raise ModelError(f"--vary {path}: the range must go up, got {lo}..{hi}")
    start, end = match.span()

    def escape(part: str) -> str:
        return part.replace("{", "{{").replace("}", "}}")

    template = escape(value[:start].lstrip()) + "{}" + escape(value[end:].rstrip())
    return path, template, lo, hi


def setting(template: str, n: int | float) -> Any:
    """The model value for parameter `n`: the template filled in and read as YAML (`7`, `asyncio:7`)."""
    return yaml.safe_load(template.format(n))


# ------------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class CurvePoint:
    """One evaluated setting: per metric the mean over replications and its one-sided confidence bounds."""

    param: int | float
    value: Any
    mean: dict[str, float]
    low: dict[str, float]
    high: dict[str, float]
    met: bool

    def to_dict(self) -> dict[str, Any]:
        return {"param": self.param, "value": self.value, "mean": dict(self.mean), "low": dict(self.low),
                "high": dict(self.high), "met": self.met}


@dataclass(frozen=True)
class PlanResult:
    """The smallest setting (or, from `find_max_rate`, the highest rate) meeting every SLO.

    `answer` is None when even the most generous setting fails; `margin` (relative slack per SLO, by
    its text) and `binding` (the SLO with least slack) then describe that setting instead.
    """

    path: str
    answer: int | float | None
    value: Any
    slos: tuple[Slo, ...]
    margin: dict[str, float]
    binding: Slo | None
    curve: tuple[CurvePoint, ...]
    evaluations: int
    replications: int
    confidence: float
    cost: float | None = None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The `plan --json` object."""
        return {
            "path": self.path, "answer": self.answer, "value": self.value,
            "slos": [str(s) for s in self.slos], "margin": dict(self.margin),
            "binding": None if self.binding is None else str(self.binding),
            "cost": self.cost, "evaluations": self.evaluations, "replications": self.replications,
            "confidence": self.confidence, "curve": [p.to_dict() for p in self.curve],
        }


class _Evaluator:
    """Runs and caches candidate settings; every candidate uses the same replication seeds."""

    def __init__(self, raw: dict[str, Any], path: str, make_value: Callable[[Any], Any], slos: Sequence[Slo],
                 replications: int, seed: int, confidence: float, base_dir: str | None) -> None:
        if not slos:
            raise ModelError("--slo: give at least one objective")
        if replications < 1:
            raise ModelError(f"--replications must be >= 1, got {replications}")
        if not 0.5 <= confidence < 1:
            raise ModelError(f"--confidence must be in [0.5, 1), got {confidence}")
        self.raw, self.path, self.make_value, self.slos = raw, path, make_value, tuple(slos)
        self.seeds = replication_seeds(seed, replications)
        self.confidence, self.base_dir = confidence, base_dir
        self.cache: dict[Any, CurvePoint] = {}
        metrics = dict.fromkeys(s.metric for s in self.slos)
        self.metrics = tuple(metrics)

    def check(self, *params: Any) -> None:
        """Validate the model at these settings before any run."""
        for p in params:
            try:
                build(self.raw, {self.path: self.make_value(p)}, base_dir=self.base_dir)
            except ModelError as exc:  # the sweep layer speaks of --set; here the user wrote --vary
                lines = str(exc).splitlines()
                raise ModelError([re.sub(r"^--set\b", "--vary", line) for line in lines]) from None

    def __call__(self, param: Any) -> CurvePoint:
        if param in self.cache:
            return self.cache[param]
        value = self.make_value(param)
        workload = build(self.raw, {self.path: value}, base_dir=self.base_dir)
        runs = [simulate(workload, seed=s) for s in self.seeds]
        mean, low, high = {}, {}, {}
        for metric in self.metrics:
            probe = next(s for s in self.slos if s.metric == metric)
            values = np.array([probe.value(r) for r in runs], dtype=float)
            mean[metric], low[metric], high[metric] = _bounds(values, self.confidence)
        met = all(s.met(high[s.metric] if s.upper else low[s.metric]) for s in self.slos)
        point = CurvePoint(param, value, mean, low, high, met)
        self.cache[param] = point
        return point

    def result(self, answer: Any, at: Any, cost: float | None) -> PlanResult:
        point = self.cache[at]
        margin = {str(s): s.slack(point.high[s.metric] if s.upper else point.low[s.metric]) for s in self.slos}
        binding = min(self.slos, key=lambda s: margin[str(s)])
        curve = tuple(sorted(self.cache.values(), key=lambda p: p.param))
        return PlanResult(
            path=self.path, answer=answer, value=None if answer is None else point.value, slos=self.slos,
            margin=margin, binding=binding, curve=curve, evaluations=len(self.cache),
            replications=len(self.seeds), confidence=self.confidence,
            cost=None if cost is None or answer is None else cost * answer)


def _bounds(values: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """Mean and one-sided lower and upper confidence bounds of the mean (Student t)."""
    mean = float(values.mean())
    if values.size < 2 or np.isnan(values).any():
        return mean, mean, mean
    sd = float(values.std(ddof=1))
    if sd == 0 or not math.isfinite(sd):
        return mean, mean, mean
    from scipy import stats  # imported when needed: scipy.stats alone costs ~75 MB

    half = float(stats.t.ppf(confidence, values.size - 1)) * sd / math.sqrt(values.size)
    return mean, mean - half, mean + half


def plan(raw: dict[str, Any], *, vary: tuple[str, str, int, int], slos: list[Slo], replications: int = 5,
         seed: int = 0, confidence: float = 0.95, base_dir: str | os.PathLike[str] | None = None,
         cost: float | None = None) -> PlanResult:
    """The smallest integer in the `vary` range whose setting meets every SLO (see the module docstring).

    `vary` is `parse_vary`'s tuple; `cost` (per unit of the parameter) gives `PlanResult.cost`.

    Raises:
        ModelError: when the model is invalid at either end of the range, or an argument is out of range.
    """
    path, template, lo, hi = vary
    if lo > hi:
        raise ModelError(f"--vary {path}: the range must go up, got {lo}..{hi}")
    evaluate = _Evaluator(raw, path, lambda n: setting(template, n), slos, replications, seed, confidence,
                          None if base_dir is None else str(base_dir))
    evaluate.check(lo, hi)
    failing, k = None, lo
    while not evaluate(k).met:  # gallop: lo, 2·lo, 4·lo, … capped at hi
        failing = k
        if k >= hi:
            return evaluate.result(None, hi, cost)
        k = min(hi, k * 2 if k > 0 else k + 1)
    passing = k
    if failing is not None:
        while passing - failing > 1:
            mid = (failing + passing) // 2
            if evaluate(mid).met:
                passing = mid
            else:
                failing = mid
    return evaluate.result(passing, passing, cost)


def find_max_rate(raw: dict[str, Any], *, slos: list[Slo], lo: float, hi: float, rel_tol: float = 0.025,
                  replications: int = 5, seed: int = 0, confidence: float = 0.95,
                  base_dir: str | os.PathLike[str] | None = None) -> PlanResult:
    """The highest `arrivals.poisson.rate` in [lo, hi] meeting every SLO, by bisection (as Vidur-Search).

    Stops when the bracket is within `rel_tol` of the passing rate, or after 20 bisection steps; the
    answer is the highest passing rate seen (`hi` if it passes, None if even `lo` fails).

    Raises:
        ModelError: when the arrivals are not Poisson, or `lo`/`hi`/`rel_tol` are out of range.
    """
    arrivals = raw.get("arrivals") if isinstance(raw, dict) else None
    if not isinstance(arrivals, dict) or not isinstance(arrivals.get("poisson"), dict):
        kind = ", ".join(arrivals) if isinstance(arrivals, dict) else repr(arrivals)
        raise ModelError(f"--max-rate: needs open Poisson arrivals (arrivals.poisson.rate), the model has {kind}")
    if not 0 < lo < hi or not math.isfinite(hi):
        raise ModelError(f"--max-rate: need 0 < lo < hi, got lo={lo}, hi={hi}")
    if not 0 < rel_tol < 1:
        raise ModelError(f"--max-rate: rel_tol must be in (0, 1), got {rel_tol}")
    path = "arrivals.poisson.rate"
    evaluate = _Evaluator(raw, path, float, slos, replications, seed, confidence,
                          None if base_dir is None else str(base_dir))
    evaluate.check(lo, hi)
    if evaluate(hi).met:
        return evaluate.result(hi, hi, None)
    if not evaluate(lo).met:
        return evaluate.result(None, lo, None)
    passing, failing = float(lo), float(hi)
    for _ in range(_MAX_RATE_STEPS):
        if (failing - passing) / passing <= rel_tol:
            break
        mid = (passing + failing) / 2
        if evaluate(mid).met:
            passing = mid
        else:
            failing = mid
    return evaluate.result(passing, passing, None)


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
               use_ci: bool = True, higher_is_better: bool | None = None) -> list[Crossover]:
    """The points where one `by` group's `metric` curve over `x` crosses another's, ordered by x.

    `summary` is a frame with one row per (`by`, `x`) — a sweep summary (`<metric>_mean`, `<metric>_ci95`
    columns) or any frame with a `metric` column. Curves are compared on the x values they share and
    interpolated linearly between them. A difference counts only where it exceeds `rtol` of the values
    and, with `use_ci`, the combined 95% half-widths (sqrt(h_a² + h_b²)); smaller ones are ties, and a
    curve that touches or ties another without changing side does not cross it. The direction (`a`
    overtakes `b`) follows `higher_is_better`, by default inferred from the metric's name.

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
