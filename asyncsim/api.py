"""The Python entry points: `simulate` one run, `replicate` over independent seeds, `compare` strategies."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from .bounds import offered_load
from .errors import ModelError
from .metrics import Fold, Pricing, compute_result
from .results import Result
from .scenario import Scenario, build_scenario
from .services import Price
from .sim import run_scenario
from .sim.fast import refusal
from .spec import Machine, Workload
from .steady import Steady, Warmup, check_warmup, steady_state
from .strategies import Strategy
from .trace import RunOutput

__all__ = ["PRECISE", "Summary", "ci_half_width", "compare", "fast_refusal", "more_replications", "pricing",
           "relative_half_width", "replicate", "replicate_until", "replication_seeds", "simulate"]


def simulate(model: Workload | Scenario, *, strategy: Strategy | str | None = None, seed: int = 0,
             machine: Machine | None = None, max_sim_time: float | None = None,
             max_events: int | None = None, warmup: Warmup = None, engine: str = "auto",
             summary_only: bool = False) -> Result:
    """Simulate one run of `model` (a Workload, or a Scenario whose draws are already made).

    The strategy and the machine default to the model's own; `max_sim_time` (simulated seconds) and
    `max_events` stop a run that would not end (RunLimitError); a deadlock raises DeadlockError. `warmup`
    (seconds of the run's clock, or "auto" for MSER-5) leaves the tasks arriving before it out of the latency
    figures and throughput (`steady`); open and closed workloads get a steady-state verdict (`Result.steady`).
    `engine`: `auto` computes the run on the fast path where that is exact (`fast_refusal` says why not),
    `des` always on the discrete-event engine, `fast` on the fast path or not at all (`Result.engine` says which).
    `summary_only` keeps no per-step trace: the records are folded into the metrics as the engine makes them
    (the same figures to the last bit, a fraction of the memory of a big run); the Result then has no `trace`.

    Raises:
        ModelError: when `warmup` is not None, "auto" or seconds >= 0, or drops every task of open arrivals;
            an unknown `engine`, or `fast` where the fast path does not apply; `summary_only` for a pipeline or
            tasks with parallel branches (their figures need the whole trace).
    """
    if isinstance(model, Scenario):
        if strategy is not None:
            raise ValueError("a Scenario carries its strategy; build another with build_scenario(strategy=...)")
        scenario = model
    else:
        scenario = build_scenario(model, seed=seed, strategy=strategy)
    check_warmup(warmup, scenario.arrivals)  # before the run: a bad warm-up never waits for a simulation
    fold = None
    if summary_only:
        if any(p.has_parallel for p in scenario.programs):
            raise ModelError("--summary-only: tasks with parallel branches need all their records together (which "
                             "state wins when branches overlap); run them with the trace")
        fold = Fold(scenario.n_tasks)
    return result_of(scenario, run_scenario(scenario, machine, max_sim_time=max_sim_time, max_events=max_events,
                                            engine=engine, fold=fold), warmup=warmup, fold=fold)


def fast_refusal(model: Workload, *, strategy: Strategy | str | None = None,
                 machine: Machine | None = None) -> str | None:
    """Why `model` under `strategy` runs on the discrete-event engine (None: the fast path computes it exactly)."""
    return refusal(build_scenario(model, seed=0, strategy=strategy), machine)


def result_of(scenario: Scenario, out: RunOutput, *, warmup: Warmup = None, fold: Fold | None = None) -> Result:
    """The metrics of one execution (simulated or real) of `scenario`, after `warmup` (see `simulate`); `fold`
    holds the records of a summary-only run."""
    warmup_s, steady = steady_state(scenario, out, warmup, offered_load(scenario))
    return compute_result(
        out.trace, out.arrival, out.done, out.task_type, out.failed,
        model=scenario.workload.name, strategy=str(scenario.strategy), seed=scenario.seed,
        capacities=out.capacities, parallel_types=np.array([p.has_parallel for p in scenario.programs]),
        type_names=tuple(p.name for p in scenario.programs), events=out.events, calls=out.calls,
        deadlines=tuple(t.deadline for t in scenario.workload.task_types), pricing=pricing(scenario.workload),
        warmup_s=warmup_s, steady=steady, pool_startup_s=out.pool_startup_s, engine=out.engine, fold=fold,
    )


def pricing(workload: Workload) -> Pricing | None:
    """The prices a workload carries (None when it has none): services' usage, and priced capacity."""
    priced: list[tuple[str, int | None, Price | None]] = [
        (f"service {k}", s.instances, s.price) for k, s in workload.services.items() if s.price is not None]
    priced += [(f"pool {k}", p.capacity, p.price) for k, p in workload.pools.items()]
    priced += [(f"stage {k}", st.workers, st.price) for k, st in (workload.stages or {}).items()]
    result = Pricing(services={k: s.price for k, s in workload.services.items() if s.price is not None},
                     capacity=tuple((what, slots or 0, price.per_second) for what, slots, price in priced
                                    if price is not None and price.per_second))
    return result or None


def replication_seeds(seed: int, replications: int) -> list[int]:
    """Independent seeds for `replications` runs, derived from one root seed (each reproducible alone)."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(replications)]


@dataclass(frozen=True, eq=False)
class Summary:
    """Means over independent replications, with 95% confidence half-widths (Student t); `stopped` says why
    adaptive replication (`replicate_until`) stopped where it did."""

    runs: tuple[Result, ...]
    seed: int
    stopped: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The `run --json --replications R` object: metric means, and `ci95` with their half-widths."""
        dicts = [r.to_dict() for r in self.runs]
        mean, half = _aggregate(dicts)
        first = dicts[0]
        out = {"model": first["model"], "strategy": first["strategy"], "seed": self.seed,
               "replications": len(dicts)}
        out.update({k: v for k, v in mean.items() if k not in out})
        if "steady" in out:
            out["steady"] = _combined_steady(out["steady"], [r.steady for r in self.runs if r.steady is not None])
        out["ci95"] = half
        if self.stopped:
            out["stopped"] = self.stopped
        return out


def _combined_steady(mean: dict[str, Any], verdicts: list[Steady]) -> dict[str, Any]:
    """The verdict over replications: their mean warm-up, drops and load, stable only if every one is, and the
    words of the first unstable one (saying how many were)."""
    unstable = [v for v in verdicts if not v.stable]
    worst = unstable[0] if unstable else verdicts[0]
    rules = {v.rule for v in verdicts}
    reason = worst.reason
    if unstable and len(unstable) < len(verdicts):
        reason = f"{len(unstable)} of {len(verdicts)} replications: {reason}"
    return {**mean, "rule": next((r for r in ("MSER-5", "given") if r in rules), "none"), "binding": worst.binding,
            "stable": not unstable, "reason": reason}


def _aggregate(dicts: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Element-wise mean and 95% CI half-width of the numeric leaves of equally shaped dicts."""
    mean: dict[str, Any] = {}
    half: dict[str, Any] = {}
    keys = dict.fromkeys(k for d in dicts for k in d)
    for key in keys:
        values = [d.get(key) for d in dicts]
        if all(isinstance(v, dict) for v in values):
            mean[key], half[key] = _aggregate(cast("list[dict[str, Any]]", values))
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and key != "seed":
            arr = np.asarray(values, dtype=float)
            mean[key] = float(arr.mean())
            half[key] = ci_half_width(arr)
        elif key not in ("seed",):
            mean[key] = values[0] if all(v == values[0] for v in values) else None
    return mean, half


def ci_half_width(values: np.ndarray) -> float:
    """The 95% confidence half-width of the mean of `values` (Student t); NaN for one value, 0 when they do not
    vary."""
    values = np.asarray(values, dtype=float)
    n = values.size
    if n < 2:
        return math.nan
    if np.ptp(values) <= 1e-12 * float(np.abs(values).max()):
        return 0.0  # a quantity that did not vary (up to float noise in its sums) has no spread to report
    sd = float(values.std(ddof=1))
    from scipy import stats  # imported when needed: scipy.stats alone costs ~75 MB

    return float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n))


def replicate(model: Workload, *, replications: int, strategy: Strategy | str | None = None, seed: int = 0,
              machine: Machine | None = None, warmup: Warmup = None, **limits: Any) -> Summary:
    """Run `replications` independent simulations (seeds derived from `seed`); `warmup` and `limits` as
    `simulate`'s."""
    if replications < 1:
        raise ValueError(f"replications must be >= 1, got {replications}")
    runs = tuple(simulate(model, strategy=strategy, seed=s, machine=machine, warmup=warmup, **limits)
                 for s in replication_seeds(seed, replications))
    return Summary(runs, seed)


PRECISE = ("t_total", "latency_p99")  # the metrics whose precision `replicate_until` waits for, by default


def relative_half_width(values: Sequence[float] | np.ndarray) -> float:
    """The 95% confidence half-width of the mean of `values` relative to the mean (inf when it cannot be
    told: fewer than two values, a non-finite one, or a zero mean that varies; 0 when they do not vary)."""
    arr = np.asarray(values, dtype=float)
    if arr.size < 2 or not np.isfinite(arr).all():
        return math.inf
    half = ci_half_width(arr)
    if half == 0:
        return 0.0
    mean = abs(float(arr.mean()))
    return half / mean if mean > 0 else math.inf


def more_replications(done: int, maximum: int) -> int:
    """How many replications the next round of adaptive replication reaches: double, up to `maximum`."""
    return min(maximum, max(done + 1, 2 * done))


def replicate_until(model: Workload, *, precision: float, max_replications: int = 64, replications: int = 4,
                    metrics: Sequence[str] = PRECISE, strategy: Strategy | str | None = None, seed: int = 0,
                    machine: Machine | None = None, warmup: Warmup = None, **limits: Any) -> Summary:
    """Replicate until the 95% half-width of each of `metrics` is within `precision` of its mean (relative),
    or `max_replications` runs: `replications` first, then twice as many each round. The seeds are the first
    of `replication_seeds(seed, max_replications)`, so the result depends only on the seed; `stopped` says
    why it stopped (a metric that is NaN in every run, such as latency when no task completes, is not waited
    for)."""
    if not 0 < precision < 1:
        raise ValueError(f"precision must be in (0, 1), got {precision}")
    if not 1 <= replications <= max_replications:
        raise ValueError(f"need 1 <= replications <= max_replications, got {replications} and {max_replications}")
    seeds = replication_seeds(seed, max_replications)
    runs: list[Result] = []
    figures: list[dict[str, float]] = []
    n = replications
    while True:
        runs += [simulate(model, strategy=strategy, seed=s, machine=machine, warmup=warmup, **limits)
                 for s in seeds[len(runs):n]]
        figures += [r.metrics() for r in runs[len(figures):]]
        values = {k: [f[k] for f in figures] for k in metrics}
        widths = {k: relative_half_width(v) for k, v in values.items() if not all(math.isnan(x) for x in v)}
        loose = {k: w for k, w in widths.items() if w > precision}
        if not loose:
            stopped = (f"{' and '.join(widths) or 'nothing'} within ±{precision:.1%} (95% CI) after {len(runs)} "
                       "replications")
            return Summary(tuple(runs), seed, stopped)
        if len(runs) >= max_replications:
            worst = ", ".join(f"{k} ±{w:.1%}" for k, w in loose.items())
            return Summary(tuple(runs), seed, f"the maximum of {max_replications} replications ({worst}; asked "
                                              f"±{precision:.1%})")
        n = more_replications(len(runs), max_replications)


def compare(model: Workload, strategies: Sequence[Strategy | str], *, seed: int = 0,
            machine: Machine | None = None, warmup: Warmup = None, **limits: Any) -> list[Result]:
    """Simulate the same scenario draws under each strategy (a paired comparison); `warmup` and `limits` as
    `simulate`'s."""
    return [simulate(model, strategy=s, seed=seed, machine=machine, warmup=warmup, **limits) for s in strategies]
