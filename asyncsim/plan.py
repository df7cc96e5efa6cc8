"""Capacity planning: the best setting among those that meet service-level objectives, with stated confidence.

    >>> raw, base = load_raw("models/llm_batch.yaml")
    >>> result = plan(raw, vary=parse_vary("strategy=asyncio:1..64"), slos=[parse_slo("t_total < 30m")],
    ...               replications=5, base_dir=base)
    >>> result.answer, result.value, result.binding

**Feasible.** A setting meets an SLO when the one-sided confidence bound of its metric's mean over the
replications meets the bound: the upper bound for `<`/`<=`, the lower one for `>`/`>=` (Student t; with zero
variance, or a single replication, the bound is the mean itself). Unless the caller allows failures (or states
an SLO on `failed`, `failed_fraction` or `completed` itself), every plan also requires `failed <= 0`: no
setting that loses work is an answer. Every candidate runs the same replication seeds (paired).

**Best.** Among feasible settings the `objective` decides: `t_total` (default) or `cost` is minimised,
`goodput` maximised, `smallest` takes the smallest setting. Settings whose objective is within `tolerance`
(relative, default 1%) of the best count as equally good, and the smallest of them is the answer: more
concurrency that buys less than 1% is not worth having.

**Adaptive replications** (as JMT stops a simulation at a stated precision): with `precision` or
`max_replications`, a setting runs `replications` seeds first and then twice as many each round while an SLO's
decision is open — its one-sided bound misses but the opposite bound would meet it — or, with a `precision`,
while the objective's 95% half-width exceeds that share of its mean; it stops when both are settled or at
`max_replications` (64 by default), and the curve says how many runs each setting took and why it stopped.
The seeds are a prefix of one sequence derived from `seed`: the same seed gives the same plan.

**Search.** Nothing is assumed monotone: lost work grows with concurrency under rate limits, so the first
setting that meets a deadline is not the best one and more capacity can break an SLO. The search evaluates a
geometric grid over the whole range (ratio √2, ends included), then bisects every grid interval where any
SLO changes between met and missed down to neighbouring integers, and walks in on the best feasible setting
the same way (and on the smallest one within the tolerance of it), until every such interval is closed. It
finds the true optimum whenever each SLO changes at most once between neighbouring grid points and the
objective has one minimum there; a range of n settings costs about 2·log_√2(n) grid points plus a few
bisections per transition (`PlanResult.evaluations` says how many). `find_max_rate` bisects the highest
Poisson arrival rate instead (load only ever makes an open system worse).
"""

from __future__ import annotations

import itertools
import math
import operator
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import yaml

from .api import more_replications, pricing, relative_half_width, replication_seeds, simulate
from .errors import ModelError
from .results import Result
from .sweep import build

__all__ = ["OBJECTIVES", "CurvePoint", "PlanResult", "Slo", "find_max_rate", "parse_slo", "parse_vary", "plan",
           "setting"]

_LATENCY = ("mean", "p50", "p95", "p99", "max")
_TIMES = ("t_total", *_LATENCY)  # take a unit (s, ms, m, h)
_COUNTS = ("throughput", "goodput", "completed", "failed", "failed_fraction", "rate_limited", "retries", "tokens",
           "tokens_wasted", "cost", "cost_wasted", "concurrency_mean")
_CLASS_COUNTS = ("tasks", "completed", "failed", "throughput", "goodput", "deadline_missed", "cost")
_LOSS_METRICS = ("failed", "failed_fraction", "completed")  # an SLO on one of them replaces the default
_UNITS = {"": 1.0, "s": 1.0, "ms": 1e-3, "m": 60.0, "h": 3600.0}
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_SLO = re.compile(r"\s*([A-Za-z_][\w.:-]*)\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S*)\s*")
_SLO_FORMS = ("METRIC OP NUMBER[UNIT]: METRIC one of t_total, mean, p50, p95, p99, max (times: UNIT s, ms, m or h, "
              "none = seconds), goodput, throughput (per second), completed, failed, failed_fraction (a fraction "
              "or %), rate_limited, retries, tokens, tokens_wasted, cost, cost_wasted, or CLASS.METRIC for one task "
              "class (CLASS.p99, CLASS.failed, CLASS.deadline_missed, ...); OP one of <, <=, >, >=; "
              "e.g. 'p99 < 20s', 't_total <= 30m', 'failed_fraction <= 0.1%', 'interactive.p99 < 2s'")
_RANGE = re.compile(r"\{(-?\d+)\.\.(-?\d+)\}|(-?\d+)\.\.(-?\d+)")
_MAX_RATE_STEPS = 20
_GRID_RATIO = math.sqrt(2)

# objective -> (the metric it reads, True when larger is better); "smallest" reads the setting itself
OBJECTIVES: dict[str, tuple[str, bool]] = {"t_total": ("t_total", False), "cost": ("cost", False),
                                           "goodput": ("goodput", True), "smallest": ("", False)}


# ------------------------------------------------------------------------------------------- SLOs


@dataclass(frozen=True)
class Slo:
    """One objective `metric op bound`: `bound` in seconds for times, a count, a fraction or a rate otherwise.

    `metric` is a flat metric name (`Result.metrics()`), with the latency figures written bare (`p99`) and a
    class's as `CLASS.p99`; `implicit` marks the `failed <= 0` that a plan adds by default.
    """

    metric: str
    op: str
    bound: float
    implicit: bool = False

    @property
    def upper(self) -> bool:
        """Is this a ceiling (`<`, `<=`), checked against the upper confidence bound?"""
        return self.op in ("<", "<=")

    @property
    def key(self) -> str:
        """The name of this SLO's metric in `Result.metrics()`."""
        return f"latency_{self.metric}" if self.metric in _LATENCY else self.metric

    @property
    def is_time(self) -> bool:
        """Whether the metric is a duration (printed and parsed with a unit)."""
        return self.metric.rpartition(".")[2] in _TIMES

    def value(self, result: Result | Mapping[str, float]) -> float:
        """This SLO's metric in one run (a Result, or its `metrics()`)."""
        metrics = result.metrics() if isinstance(result, Result) else result
        return float(metrics[self.key])

    def met(self, value: float) -> bool:
        """Does `value` satisfy the objective? NaN (e.g. nothing completed) never does."""
        return not math.isnan(value) and _OPS[self.op](value, self.bound)

    def slack(self, value: float) -> float:
        """Relative slack of `value` against the bound: > 0 met with room, < 0 missed (absolute if bound is 0)."""
        gap = self.bound - value if self.upper else value - self.bound
        return gap / abs(self.bound) if self.bound else gap

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}{'s' if self.is_time else ''}"


NO_LOST_WORK = Slo("failed", "<=", 0.0, implicit=True)


def parse_slo(text: str) -> Slo:
    """Parse an objective such as `p99 < 20s`, `t_total < 30m`, `failed_fraction <= 0.1%`, `interactive.p99 < 2s`.

    `latency.p99` and `latency_p99` are accepted for `p99` (and so on). Class names are checked against the
    model when a plan starts.

    Raises:
        ModelError: `--slo ...` naming the text and the allowed forms.
    """
    match = _SLO.fullmatch(text)
    if not match:
        raise ModelError(f"--slo: cannot read {text!r}; expected {_SLO_FORMS}")
    name, op, number, unit = match.groups()
    metric = re.sub(r"^latency[._]", "", name)
    cls, dot, base = metric.rpartition(".")
    base = base.lower()
    allowed = (*_TIMES, *_CLASS_COUNTS) if dot else (*_TIMES, *_COUNTS)
    if base not in allowed or (dot and not cls):
        raise ModelError(f"--slo {text!r}: unknown metric {name!r}; expected {_SLO_FORMS}")
    metric = f"{cls}.{base}" if dot else base
    unit = unit.lower()
    if base in _TIMES:
        if unit not in _UNITS:
            raise ModelError(f"--slo {text!r}: unknown unit {unit!r} (allowed: s, ms, m, h; none = seconds)")
        scale = _UNITS[unit]
    elif base == "failed_fraction" and unit in ("", "%"):
        scale = 0.01 if unit == "%" else 1.0
    elif base in ("throughput", "goodput") and unit in ("", "/s"):
        scale = 1.0
    elif unit:
        what = "tasks per second" if base in ("throughput", "goodput") else "a plain number"
        raise ModelError(f"--slo {text!r}: {base} is {what} and takes no unit, got {unit!r}")
    else:
        scale = 1.0
    bound = float(number) * scale
    if not math.isfinite(bound) or bound < 0:
        raise ModelError(f"--slo {text!r}: the bound must be a finite number >= 0, got {number}")
    return Slo(metric, op, bound)


def constraints(slos: Sequence[Slo], *, allow_failures: bool = False) -> tuple[Slo, ...]:
    """The SLOs a plan checks: the user's, plus `failed <= 0` unless failures are allowed or an SLO already
    states how much loss is acceptable."""
    if allow_failures or any(s.metric in _LOSS_METRICS for s in slos):
        return tuple(slos)
    return (*slos, NO_LOST_WORK)


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


# ------------------------------------------------------------------------------------------- evaluation


_TRACKED = ("t_total", "goodput", "completed", "failed", "cost", "overloaded")  # on every point of the curve


@dataclass(frozen=True)
class CurvePoint:
    """One evaluated setting: per metric the mean over replications and its one-sided confidence bounds,
    whether each SLO (by its text) is met, and whether all are."""

    param: int | float
    value: Any
    mean: dict[str, float]
    low: dict[str, float]
    high: dict[str, float]
    met: bool
    passed: dict[str, bool] = field(default_factory=dict)
    replications: int = 0
    stopped: str = ""  # why adaptive replication stopped here ("" with a fixed number)

    def to_dict(self) -> dict[str, Any]:
        return {"param": self.param, "value": self.value, "mean": dict(self.mean), "low": dict(self.low),
                "high": dict(self.high), "met": self.met, "passed": dict(self.passed),
                "replications": self.replications, "stopped": self.stopped}


@dataclass(frozen=True)
class PlanResult:
    """The best setting (or, from `find_max_rate`, the highest rate) meeting every SLO.

    `answer` is None when no setting in the range meets them all; `margin` (relative slack per SLO, by its
    text) and `binding` (the SLO with least slack) then describe the setting that came closest. `slos`
    include the implicit `failed <= 0`; `method` says how the range was searched.
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
    objective: str = "t_total"
    tolerance: float = 0.0
    method: str = ""
    at: int | float | None = None  # the setting `margin` and `binding` describe (the answer, or the closest)
    runs: int = 0  # simulations in all (with adaptive replication, each point's own count is on the curve)
    adaptive: bool = False

    @property
    def point(self) -> CurvePoint | None:
        """The answer's point on the curve."""
        return next((p for p in self.curve if p.param == self.answer), None)

    def to_dict(self) -> dict[str, Any]:
        """The `plan --json` object."""
        return {
            "path": self.path, "answer": self.answer, "value": self.value,
            "slos": [str(s) for s in self.slos], "margin": dict(self.margin),
            "binding": None if self.binding is None else str(self.binding),
            "objective": self.objective, "tolerance": self.tolerance, "method": self.method, "at": self.at,
            "cost": self.cost, "evaluations": self.evaluations, "replications": self.replications,
            "runs": self.runs, "adaptive": self.adaptive,
            "confidence": self.confidence, "curve": [p.to_dict() for p in self.curve],
        }


class _Evaluator:
    """Runs and caches candidate settings; every candidate uses the same replication seeds."""

    def __init__(self, raw: dict[str, Any], path: str, make_value: Callable[[Any], Any], slos: Sequence[Slo],
                 replications: int, seed: int, confidence: float, base_dir: str | None,
                 objective: str = "t_total", unit_cost: float | None = None,
                 warmup: float | str | None = None, precision: float | None = None,
                 max_replications: int | None = None, engine: str = "auto") -> None:
        if not slos:
            raise ModelError("--slo: give at least one objective (with --allow-failures nothing else is required)")
        if replications < 1:
            raise ModelError(f"--replications must be >= 1, got {replications}")
        if not 0.5 <= confidence < 1:
            raise ModelError(f"--confidence must be in [0.5, 1), got {confidence}")
        if objective not in OBJECTIVES:
            raise ModelError(f"--objective: must be one of {', '.join(OBJECTIVES)} (got {objective!r})")
        if precision is not None and not 0 < precision < 1:
            raise ModelError(f"--precision: must be between 0 and 100% (got {precision:g})")
        if max_replications is not None and max_replications < replications:
            raise ModelError(f"--max-replications: must be >= --replications ({replications}), got {max_replications}")
        self.adaptive = precision is not None or max_replications is not None
        self.precision = precision
        self.raw, self.path, self.make_value, self.slos = raw, path, make_value, tuple(slos)
        self.first = replications
        self.seeds = replication_seeds(seed, max_replications or (64 if self.adaptive else replications))
        self.confidence, self.base_dir, self.warmup, self.engine = confidence, base_dir, warmup, engine
        self.objective, self.unit_cost = objective, unit_cost
        self.cache: dict[Any, CurvePoint] = {}
        self.metrics = tuple(dict.fromkeys([*(s.key for s in self.slos), *_TRACKED]))

    def check(self, *params: Any) -> None:
        """Validate the model at these settings, and the SLOs' and objective's metrics, before any run."""
        for p in params:
            try:
                workload = build(self.raw, {self.path: self.make_value(p)}, base_dir=self.base_dir)
            except ModelError as exc:  # the sweep layer speaks of --set; here the user wrote --vary
                lines = str(exc).splitlines()
                raise ModelError([re.sub(r"^--set\b", "--vary", line) for line in lines]) from None
        classes = [t.name for t in workload.task_types if t.name]
        for slo in self.slos:
            cls, dot, _ = slo.metric.rpartition(".")
            if dot and cls not in classes:
                known = ", ".join(classes) if classes else "the model has no named classes (tasks: [{name: ...}])"
                raise ModelError(f"--slo {slo}: unknown class {cls!r} ({known})")
        if self.objective == "cost" and self.unit_cost is None and not _priced(workload):
            raise ModelError("--objective cost: the model has no prices (give services.NAME.price, pools.NAME.price"
                             " or stages.NAME.price, or --cost PER_UNIT of the setting)")

    def __call__(self, param: Any) -> CurvePoint:
        if param in self.cache:
            return self.cache[param]
        value = self.make_value(param)
        workload = build(self.raw, {self.path: value}, base_dir=self.base_dir)
        runs: list[dict[str, float]] = []
        n = self.first
        while True:
            runs += [simulate(workload, seed=s, warmup=self.warmup, engine=self.engine).metrics()
                     for s in self.seeds[len(runs):n]]
            mean, low, high, spread = {}, {}, {}, {}
            for key in self.metrics:
                # an overloaded run's queue grows without bound: its finite latency figures are not an answer
                values = np.array([math.inf if m["overloaded"] and _is_latency(key) else m[key] for m in runs],
                                  dtype=float)
                if key == "cost" and self.unit_cost is not None:
                    values = values + self.unit_cost * param
                mean[key], low[key], high[key] = _bounds(values, self.confidence)
                spread[key] = relative_half_width(values)
            passed = {str(s): s.met(high[s.key] if s.upper else low[s.key]) for s in self.slos}
            stopped = self._stop(passed, low, high, spread, len(runs)) if self.adaptive else ""
            if stopped is not None:
                break
            n = more_replications(len(runs), len(self.seeds))
        point = CurvePoint(param, value, mean, low, high, all(passed.values()), passed, len(runs), stopped)
        self.cache[param] = point
        return point

    def _stop(self, passed: dict[str, bool], low: dict[str, float], high: dict[str, float],
              spread: dict[str, float], runs: int) -> str | None:
        """Why adaptive replication stops at a point, or None to go on: every SLO's decision settled (met at
        its confidence bound, or missed even at the opposite bound) and, with a precision, the objective's
        half-width within it; or the maximum of runs reached."""
        open_slos = [str(s) for s in self.slos
                     if not passed[str(s)] and s.met(low[s.key] if s.upper else high[s.key])]
        key = OBJECTIVES[self.objective][0]
        loose = self.precision is not None and key and spread.get(key, 0.0) > self.precision
        if not open_slos and not loose:
            return f"settled after {runs}" + (f" ({key} within ±{self.precision:.1%})" if self.precision else "")
        if runs >= len(self.seeds):
            why = [f"{', '.join(open_slos)} undecided"] if open_slos else []
            why += [f"{key} ±{spread[key]:.1%}"] if loose else []
            return f"the maximum of {runs} ({'; '.join(why)})"
        return None

    def score(self, point: CurvePoint) -> float:
        """The objective at a point, as a number to minimise."""
        key, larger_is_better = OBJECTIVES[self.objective]
        if not key:
            return float(point.param)
        return -point.mean[key] if larger_is_better else point.mean[key]

    def result(self, answer: Any, at: Any, *, tolerance: float = 0.0, method: str = "") -> PlanResult:
        point = self.cache[at]
        margin = {str(s): s.slack(point.high[s.key] if s.upper else point.low[s.key]) for s in self.slos}
        binding = min(self.slos, key=lambda s: margin[str(s)])
        curve = tuple(sorted(self.cache.values(), key=lambda p: p.param))
        cost = None if answer is None or self.unit_cost is None else self.unit_cost * answer
        return PlanResult(
            path=self.path, answer=answer, value=None if answer is None else point.value, slos=self.slos,
            margin=margin, binding=binding, curve=curve, evaluations=len(self.cache),
            replications=self.first, confidence=self.confidence, cost=cost, objective=self.objective,
            tolerance=tolerance, method=method, at=at, runs=sum(p.replications for p in curve),
            adaptive=self.adaptive)


def _is_latency(key: str) -> bool:
    """Whether a flat metric is a task latency figure (its own or a class's)."""
    return key.startswith("latency_") or key.rpartition(".")[2] in _LATENCY


def _priced(workload: Any) -> bool:
    return pricing(workload) is not None


def _bounds(values: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """Mean and one-sided lower and upper confidence bounds of the mean (Student t)."""
    mean = float(values.mean())
    if values.size < 2 or not np.isfinite(values).all():
        return mean, mean, mean
    sd = float(values.std(ddof=1))
    if sd == 0 or not math.isfinite(sd) or np.ptp(values) <= 1e-12 * float(np.abs(values).max()):
        return mean, mean, mean
    from scipy import stats  # imported when needed: scipy.stats alone costs ~75 MB

    half = float(stats.t.ppf(confidence, values.size - 1)) * sd / math.sqrt(values.size)
    return mean, mean - half, mean + half


# ------------------------------------------------------------------------------------------- plan


def grid_points(lo: int, hi: int, ratio: float = _GRID_RATIO) -> list[int]:
    """The search's first points: `lo`, `hi` and a geometric grid between them (1 stands in for a `lo` of 0)."""
    points = {lo, hi}
    x = float(max(lo, 1))
    while x < hi:
        points.add(round(x))
        x *= ratio
    return sorted(p for p in points if lo <= p <= hi)


def _best(evaluate: _Evaluator, tolerance: float) -> tuple[CurvePoint | None, CurvePoint | None]:
    """(the best feasible point, the smallest feasible point within `tolerance` of it) among those evaluated."""
    feasible = [p for p in evaluate.cache.values() if p.met]
    if not feasible:
        return None, None
    best = min(feasible, key=lambda p: (evaluate.score(p), p.param))
    limit = evaluate.score(best) + tolerance * abs(evaluate.score(best))
    chosen = min((p for p in feasible if evaluate.score(p) <= limit), key=lambda p: p.param)
    return best, chosen


def _to_refine(evaluate: _Evaluator, tolerance: float) -> set[int]:
    """Midpoints of the open intervals the search must still close (see the module docstring)."""
    points = sorted(evaluate.cache)
    todo: set[int] = set()
    for a, b in itertools.pairwise(points):
        if b - a > 1 and evaluate.cache[a].passed != evaluate.cache[b].passed:
            todo.add((a + b) // 2)  # an SLO changes between a and b: find where
    best, chosen = _best(evaluate, tolerance)
    for anchor in {p.param for p in (best, chosen) if p is not None}:
        k = points.index(anchor)
        for neighbour in points[max(k - 1, 0):k] + points[k + 1:k + 2]:
            if abs(neighbour - anchor) > 1:
                todo.add((neighbour + anchor) // 2)  # walk in on the best, and on the smallest as good
    return todo


def plan(raw: dict[str, Any], *, vary: tuple[str, str, int, int], slos: list[Slo], replications: int = 5,
         seed: int = 0, confidence: float = 0.95, base_dir: str | os.PathLike[str] | None = None,
         cost: float | None = None, objective: str = "t_total", tolerance: float = 0.01,
         allow_failures: bool = False, warmup: float | str | None = None, precision: float | None = None,
         max_replications: int | None = None, engine: str = "auto") -> PlanResult:
    """The best integer in the `vary` range among the settings that meet every SLO (see the module docstring).

    `vary` is `parse_vary`'s tuple; `cost` is a price per unit of the parameter: it gives `PlanResult.cost`
    and adds to the `cost` objective. `allow_failures` drops the default `failed <= 0`. `warmup` and `engine` are
    passed to every `simulate`. With `precision` or `max_replications`, each setting replicates adaptively (module
    docstring): `replications` runs first, more while a decision is open.

    Raises:
        ModelError: when the model is invalid at either end of the range, or an argument is out of range.
    """
    path, template, lo, hi = vary
    if lo > hi:
        raise ModelError(f"--vary {path}: the range must go up, got {lo}..{hi}")
    if not 0 <= tolerance < 1:
        raise ModelError(f"--tolerance: must be in [0, 1), got {tolerance}")
    checked = constraints(slos, allow_failures=allow_failures)
    evaluate = _Evaluator(raw, path, lambda n: setting(template, n), checked, replications, seed, confidence,
                          None if base_dir is None else str(base_dir), objective, cost, warmup, precision,
                          max_replications, engine)
    evaluate.check(lo, hi)
    for p in grid_points(lo, hi):
        evaluate(p)
    while todo := _to_refine(evaluate, tolerance) - set(evaluate.cache):
        for p in sorted(todo):
            evaluate(p)
    grid = len(grid_points(lo, hi))
    method = (f"a √2 grid of {grid} settings over {lo}..{hi}, then {len(evaluate.cache) - grid} more bisecting "
              "where an SLO changes and around the best")
    _, chosen = _best(evaluate, tolerance)
    if chosen is None:
        closest = max(evaluate.cache.values(), key=lambda p: (sum(p.passed.values()), _least_slack(evaluate, p)))
        return evaluate.result(None, closest.param, tolerance=tolerance, method=method)
    return evaluate.result(chosen.param, chosen.param, tolerance=tolerance, method=method)


def _least_slack(evaluate: _Evaluator, point: CurvePoint) -> float:
    return min(s.slack(point.high[s.key] if s.upper else point.low[s.key]) for s in evaluate.slos)


def find_max_rate(raw: dict[str, Any], *, slos: list[Slo], lo: float, hi: float, rel_tol: float = 0.025,
                  replications: int = 5, seed: int = 0, confidence: float = 0.95,
                  base_dir: str | os.PathLike[str] | None = None, allow_failures: bool = False,
                  warmup: float | str | None = None, precision: float | None = None,
                  max_replications: int | None = None, engine: str = "auto") -> PlanResult:
    """The highest `arrivals.poisson.rate` in [lo, hi] meeting every SLO, by bisection (as Vidur-Search);
    `warmup` and `engine` are passed to every `simulate`.

    Stops when the bracket is within `rel_tol` of the passing rate, or after 20 bisection steps; the
    answer is the highest passing rate seen (`hi` if it passes, None if even `lo` fails). As `plan`, it
    requires `failed <= 0` unless `allow_failures`.

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
    evaluate = _Evaluator(raw, path, float, constraints(slos, allow_failures=allow_failures), replications, seed,
                          confidence, None if base_dir is None else str(base_dir), warmup=warmup,
                          precision=precision, max_replications=max_replications, engine=engine)
    evaluate.check(lo, hi)
    method = f"bisection of {lo:g}..{hi:g} to {rel_tol:.1%}"
    if evaluate(hi).met:
        return evaluate.result(hi, hi, method=method)
    if not evaluate(lo).met:
        return evaluate.result(None, lo, method=method)
    passing, failing = float(lo), float(hi)
    for _ in range(_MAX_RATE_STEPS):
        if (failing - passing) / passing <= rel_tol:
            break
        mid = (passing + failing) / 2
        if evaluate(mid).met:
            passing = mid
        else:
            failing = mid
    return evaluate.result(passing, passing, method=method)
