"""Paired validation: simulate a scenario, run the very same draws for real, and report the errors.

Two predictions are made: from the model's nominal durations (what a user gets) and *replayed* from the
CPU time each step actually took in the real run (CPU speed drifts ±15% on shared machines; the replay
isolates the scheduling model's own error). Errors are (predicted − measured) / measured. `cpu_speed` says how
fast the run's CPU steps ran against the rate they were sized with: the nominal error of a run whose speed moved
by more than STEADY_SPEED carries the machine's drift, not the model's error.

A time scale must not change what the model decides. Overheads do not scale, so at scale s each real
overhead weighs 1/s in model time, and every wait, a timer in the real runner, carries the timers' cost.
`check_scale` compares the prediction at s (what `validate` predicts) with the nominal one (scale 1, waits on
sockets: what `run --machine-profile` predicts) on the tasks lost, the 429s and retries, and the limit the
run actually pressed hardest (`bounds.used`; `bounds.bounds` reads the draws alone, the same at every scale).
`choose_time_scale` climbs from the smallest scale the timers allow until that outcome holds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .api import result_of, simulate
from .bounds import used
from .errors import ModelError
from .profile import MachineProfile, with_client_cpu
from .real import run_real
from .real.calibrate import calibrate
from .real.http import HttpRun, check_http, measure_client_cpu, run_http
from .results import Result
from .scenario import CPU, Scenario, build_scenario
from .services import Service
from .spec import Machine, Workload
from .strategies import Processes, Strategy, parse_strategy
from .trace import K_CPU, RunOutput

__all__ = ["ERROR_KEYS", "MIN_TIMED_CPU_S", "NOMINAL_TARGET", "STEADY_SPEED", "HttpValidation", "Outcome",
           "ScaleCheck", "ScaleChoice", "Validation", "check_scale", "check_time_scale", "choose_time_scale",
           "cpu_speed", "held_speed", "suggest_time_scale", "validate", "validate_http"]

ERROR_KEYS = ("t_total", "throughput", "concurrency_mean", "latency_p50", "latency_p95")
# counts of failed tasks, 429s and retries match when within max(1, COUNT_TOLERANCE × the nominal count): the
# same draws at another scale still shift a few retries across a bucket's refill
COUNT_TOLERANCE = 0.05
# limits used within this share of T_total of the most used one are tied for binding
BINDING_TIE = 0.05
# a run whose CPU steps ran within this share of the calibrated rate held the machine's speed: its nominal error
# is the model's (measured here: the busy loop's speed moves by up to ±10% between 100 ms windows on this host)
STEADY_SPEED = 0.05
# a real CPU step shorter than this is not timed for `cpu_speed`: a few microseconds of calls and clock reads
# (thread_time is a system call) would be most of it
MIN_TIMED_CPU_S = 100e-6
# the nominal prediction's target on such a run (issue 12's acceptance: 5% replayed, 8% nominal)
NOMINAL_TARGET = 0.08
# `auto` starts where the timers' cost per wait is at most 1/TIMER_MARGIN of the shortest mean wait
TIMER_MARGIN = 3.0


@dataclass(frozen=True, eq=False)
class Validation:
    """Predicted, measured and replayed results of one strategy, with their relative errors."""

    model: str
    strategy: str
    time_scale: float
    loop: str
    predicted: Result
    measured: Result
    replayed: Result
    interrupted: bool = False
    errors_by_task: dict[int, str] | None = None
    scale_check: ScaleCheck | None = None
    cpu_speed: float | None = None

    @property
    def steady(self) -> bool:
        """Whether the CPU ran at the rate it was calibrated at (`held_speed`)."""
        return held_speed(self.cpu_speed)

    @property
    def error(self) -> dict[str, float]:
        """Relative error of the nominal prediction against the measurement."""
        return relative_errors(self.predicted, self.measured)

    @property
    def replay_error(self) -> dict[str, float]:
        """Relative error of the replayed prediction (measured CPU durations) against the measurement."""
        return relative_errors(self.replayed, self.measured)

    def to_dict(self) -> dict[str, Any]:
        """The `validate --json` object for one strategy."""
        return {"model": self.model, "strategy": self.strategy, "time_scale": self.time_scale, "loop": self.loop,
                "predicted": self.predicted.to_dict(), "measured": self.measured.to_dict(),
                "replayed": self.replayed.to_dict(), "error": self.error, "replay_error": self.replay_error,
                "interrupted": self.interrupted, "cpu_speed": self.cpu_speed,
                "task_errors": {str(k): v for k, v in (self.errors_by_task or {}).items()},
                **({"scale_check": self.scale_check.to_dict()} if self.scale_check is not None else {})}


def relative_errors(predicted: Result, measured: Result) -> dict[str, float]:
    """(predicted − measured) / measured for each of ERROR_KEYS (NaN where measured is 0)."""
    out = {}
    predicted_metrics, measured_metrics = predicted.metrics(), measured.metrics()
    for key in ERROR_KEYS:
        m, p = float(measured_metrics[key]), float(predicted_metrics[key])
        out[key] = (p - m) / m if m else math.nan
    return out


def _shortest_wait(workload: Workload) -> tuple[float, str] | None:
    """The io or call step with the shortest mean wait: (mean seconds, YAML path)."""
    shortest: tuple[float, str] | None = None
    for path, step in workload.walk():
        kind = type(step).__name__.lower()
        if kind == "io":
            mean = step.duration.mean
        elif kind == "call":
            mean = _call_mean(workload.services[step.service])
        else:
            continue
        if mean > 0 and (shortest is None or mean < shortest[0]):
            shortest = (mean, f"{path}.{kind}")
    return shortest


def _call_mean(service: Service) -> float:
    """A call's mean service time: its latency, TTFT + TPOT × output tokens, or its batch's time alone."""
    if service.latency is not None:
        return service.latency.mean
    if service.ttft is not None and service.tpot is not None and service.tokens is not None:
        return service.ttft.mean + service.tpot.mean * max(service.tokens.output.mean - 1, 0.0)
    assert service.batching is not None
    return service.batching.batch_time(1)


def suggest_time_scale(workload: Workload, timer_floor_s: float, *, margin: float = 2.0) -> float:
    """The smallest time scale that keeps every mean wait `margin` × above the timer floor: below 1 shrinks a
    model of long waits, above 1 stretches one whose waits are shorter than the timers honour."""
    shortest = _shortest_wait(workload)
    if shortest is None:
        return 1.0
    return float(f"{margin * timer_floor_s / shortest[0]:.2g}")


def check_time_scale(workload: Workload, time_scale: float, timer_floor_s: float) -> None:
    """Refuse a time scale that shrinks a mean wait below what this machine's timers honour.

    Raises:
        ModelError: naming the shortest step, its scaled length, the floor and the smallest usable scale.
    """
    if not 0 < time_scale < math.inf:
        raise ModelError(f"--time-scale: must be a finite number > 0 (got {time_scale})")
    shortest = _shortest_wait(workload)
    if shortest is not None and shortest[0] * time_scale < timer_floor_s:
        mean, path = shortest
        raise ModelError(
            f"--time-scale: {time_scale:g} makes the shortest wait ({path}, mean {mean:.3g} s) "
            f"{mean * time_scale * 1e3:.3g} ms, below this machine's timer floor of {timer_floor_s * 1e3:.3g} ms; "
            f"use --time-scale >= {timer_floor_s / mean:.3g}"
        )


@dataclass(frozen=True)
class Outcome:
    """What a prediction decides besides its timings: tasks lost, the services' pushback, the binding limit.

    `rate_limited` (429s) and `retries` are summed over services (None without services); `binding` is the
    limit the run used most (`bounds.used`), `tied` every limit used within BINDING_TIE of it.
    """

    failed: int
    rate_limited: int | None
    retries: int | None
    binding: str | None
    tied: tuple[str, ...] = ()

    @classmethod
    def of(cls, result: Result, scenario: Scenario) -> Outcome:
        """The outcome of `result`, a run of `scenario`."""
        limits = used(result, scenario)
        top = limits[0].seconds if limits else 0.0
        tied = tuple(b.name for b in limits if b.seconds >= top - BINDING_TIE * result.t_total)
        flat = result.metrics() if scenario.workload.services else None
        return cls(result.failed, None if flat is None else int(flat["rate_limited"]),
                   None if flat is None else int(flat["retries"]), limits[0].name if limits else None, tied)

    def counts(self) -> dict[str, int]:
        """failed, and 429s and retries where the model has services, by their names in prose."""
        out = {"failed": self.failed}
        if self.rate_limited is not None and self.retries is not None:
            out |= {"429s": self.rate_limited, "retries": self.retries}
        return out

    def differences(self, nominal: Outcome) -> list[str]:
        """How this outcome differs from `nominal` ('failed 0 vs 98'); empty when they match.

        Counts match within max(1, COUNT_TOLERANCE × nominal); binding limits match when each run's binding
        limit is tied for binding in the other.
        """
        out = [f"{name} {mine} vs {theirs}"
               for (name, mine), theirs in zip(self.counts().items(), nominal.counts().values(), strict=True)
               if abs(mine - theirs) > max(1.0, COUNT_TOLERANCE * theirs)]
        if (self.binding != nominal.binding
                and not (nominal.binding in self.tied and self.binding in nominal.tied)):
            out.append(f"binding limit {self.binding} vs {nominal.binding}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"failed": self.failed, "rate_limited": self.rate_limited, "retries": self.retries,
                "binding": self.binding, "tied": list(self.tied)}


@dataclass(frozen=True)
class ScaleCheck:
    """One strategy's predicted outcome at `time_scale` against its nominal prediction (see `check_scale`)."""

    strategy: str
    time_scale: float
    nominal: Outcome
    scaled: Outcome

    @property
    def differences(self) -> list[str]:
        """'failed 0 vs 98' (at this scale vs nominal) for everything the scale changes."""
        return self.scaled.differences(self.nominal)

    @property
    def matches(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        """'failed 98 vs 98, 429s 310 vs 305, binding limit service llm tpm (server)' (scaled vs nominal)."""
        counts = [f"{name} {mine} vs {theirs}" for (name, mine), theirs
                  in zip(self.scaled.counts().items(), self.nominal.counts().values(), strict=True)]
        return ", ".join([*counts, f"binding limit {self.scaled.binding}"])

    def warning(self) -> str | None:
        """A line saying what this scale changes (None when it keeps the nominal outcome)."""
        if self.matches:
            return None
        return (f"time scale {self.time_scale:g} changes {self.strategy}'s outcome from the nominal prediction "
                f"(scale 1, waits on sockets): {', '.join(self.differences)} (at {self.time_scale:g} vs nominal); "
                f"--time-scale auto finds a scale that keeps it")

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "time_scale": self.time_scale, "nominal_time_scale": 1.0,
                "nominal": self.nominal.to_dict(), "scaled": self.scaled.to_dict(), "matches": self.matches,
                "differences": self.differences}


def _predict(scenario: Scenario, profile: MachineProfile, time_scale: float, loop: str, *,
             timers: bool = True) -> Result:
    machine = profile.machine_for(scenario.strategy, scenario.workload.machine, time_scale=time_scale, loop=loop,
                                  emulated_waits=timers)
    return simulate(scenario, machine=machine)


def check_scale(scenario: Scenario, profile: MachineProfile, time_scale: float, *, loop: str = "asyncio",
                scaled: Result | None = None, nominal: Result | None = None) -> ScaleCheck:
    """Whether validating `scenario` at `time_scale` keeps the outcome of its nominal prediction.

    The nominal prediction is `asyncsim run --machine-profile`'s: scale 1, this machine's overheads, waits
    on sockets. The scaled one is `validate`'s: overheads converted to model time at `time_scale`, and waits
    as timers (their overshoot and granularity too), as the real runner waits. `scaled` and `nominal` reuse
    predictions already made.
    """
    nominal = nominal or _predict(scenario, profile, 1.0, loop, timers=False)
    scaled = scaled or _predict(scenario, profile, time_scale, loop)
    return ScaleCheck(str(scenario.strategy), time_scale, Outcome.of(nominal, scenario),
                      Outcome.of(scaled, scenario))


@dataclass(frozen=True)
class ScaleChoice:
    """The time scale `choose_time_scale` picked, the checks that picked it, and why.

    `start` is the smallest scale the timers allow; `rejected` holds, for each smaller scale tried, the first
    check that found its outcome changed; `checks` the checks at `time_scale`, one per strategy.
    """

    time_scale: float
    start: float
    timer_cost_s: float
    shortest_wait: tuple[float, str] | None
    checks: tuple[ScaleCheck, ...]
    rejected: tuple[ScaleCheck, ...] = ()

    @property
    def matches(self) -> bool:
        return all(c.matches for c in self.checks)

    def reason(self) -> str:
        """One line: the scale, why it is the smallest usable, and what smaller ones changed."""
        at = f"at {self.time_scale:g} vs nominal"
        several = len(self.checks) > 1
        tried = [self.rejected[0], *self.rejected[-1:]] if len(self.rejected) > 1 else list(self.rejected)
        smaller = "; ".join(f"{c.time_scale:g}{f' ({c.strategy})' if several else ''}: {', '.join(c.differences)}"
                            for c in tried)
        if not self.matches:
            changed = "; ".join(f"{c.strategy}: {', '.join(c.differences)}" for c in self.checks if not c.matches)
            if not self.rejected:
                return (f"time scale {self.time_scale:g}: the smallest this machine's timers allow{self._timers()}, "
                        f"but it changes the nominal outcome, {at}: {changed}")
            return (f"time scale {self.time_scale:g}: no smaller scale keeps the nominal outcome ({smaller}), and "
                    f"the timers change it even here, {at}: {changed}")
        kept = "; ".join(f"{c.strategy}: {c.summary()}" if several else c.summary() for c in self.checks)
        if not self.rejected:
            return (f"time scale {self.time_scale:g}: the smallest this machine's timers allow{self._timers()}, "
                    f"and it keeps the nominal outcome, {at}: {kept}")
        return (f"time scale {self.time_scale:g}: the smallest at which the prediction keeps the nominal outcome, "
                f"{at}: {kept}; smaller scales changed it: {smaller}")

    def _timers(self) -> str:
        if self.shortest_wait is None:
            return ""
        mean, path = self.shortest_wait
        return (f" ({self.timer_cost_s * 1e3:.3g} ms per timed wait ≤ 1/{TIMER_MARGIN:g} of the shortest mean "
                f"wait, {path}: {mean:.3g} s)")

    def to_dict(self) -> dict[str, Any]:
        return {"time_scale": self.time_scale, "start": self.start, "timer_cost_s": self.timer_cost_s,
                "matches": self.matches, "reason": self.reason(),
                "rejected": [c.to_dict() for c in self.rejected]}


def _candidates(start: float) -> list[float]:
    """`start`, then doubling (2 significant digits) up to 1; `start` alone when the timers force it above 1."""
    out = [start]
    while out[-1] < 1:
        out.append(min(1.0, float(f"{out[-1] * 2:.2g}")))
    return out


def choose_time_scale(workload: Workload, strategies: list[Strategy], profile: MachineProfile, *,
                      loop: str = "asyncio", seed: int = 0) -> ScaleChoice:
    """The smallest time scale that keeps every strategy's nominal outcome, starting from what the timers allow.

    The start keeps a timed wait's cost (the timer floor, or granularity + sleep overshoot if larger) at most
    1/TIMER_MARGIN of the shortest mean wait; from there the scale doubles, up to 1, until every strategy's
    prediction keeps the failed tasks, 429s, retries and binding limit of its nominal prediction
    (`check_scale`). Where none does, the last scale tried (1, or the start when the timers force it above 1)
    is returned with `matches` False. A few simulations per strategy, each stopping at the first change.
    """
    lp = profile.loop(loop)
    cost = max(lp.timer_floor_s, lp.timer_granularity_s + lp.sleep_overshoot_s)
    start = suggest_time_scale(workload, cost, margin=TIMER_MARGIN)
    scenarios = [build_scenario(workload, seed=seed, strategy=st) for st in strategies]
    nominal = [_predict(sc, profile, 1.0, loop, timers=False) for sc in scenarios]
    rejected: list[ScaleCheck] = []
    candidates = _candidates(start)
    for scale in candidates:
        checks = []
        for sc, nom in zip(scenarios, nominal, strict=True):
            check = check_scale(sc, profile, scale, loop=loop, nominal=nom)
            checks.append(check)
            if not check.matches and scale != candidates[-1]:
                rejected.append(check)
                break
        else:
            return ScaleChoice(scale, start, cost, _shortest_wait(workload), tuple(checks), tuple(rejected))
    raise AssertionError("unreachable: the last candidate is always returned")


def _measured_cpu(scenario: Scenario, measured: RunOutput) -> Iterator[tuple[int, np.ndarray, np.ndarray,
                                                                              np.ndarray]]:
    """Per task type: the rows and steps of its CPU steps in the real run, and the CPU seconds each took (a call's
    client CPU, a cpu record of the call's step, is not one of them)."""
    trace = measured.trace
    cpu = (trace.kind == K_CPU) & (trace.step >= 0)
    tasks, steps, cpu_s = trace.task[cpu], trace.step[cpu], trace.cpu_s[cpu]
    types, rows = scenario.task_type[tasks], scenario.task_row[tasks]
    for t, program in enumerate(scenario.programs):
        cpu_steps = np.array([n.id for n in program.nodes if n.kind == CPU], dtype=np.int64)
        mine = (types == t) & np.isin(steps, cpu_steps)
        yield t, rows[mine], steps[mine], cpu_s[mine]


def replay_scenario(scenario: Scenario, measured: RunOutput) -> Scenario:
    """The scenario with what the real run actually had: each CPU step's measured CPU time, and (for open
    arrivals) the times tasks actually arrived."""
    durations = [d.copy() for d in scenario.durations]
    for t, rows, steps, cpu_s in _measured_cpu(scenario, measured):
        durations[t][rows, steps] = cpu_s
    replayed = scenario.with_durations(tuple(durations))
    if scenario.arrivals is not None and not np.isnan(measured.arrival).any():
        replayed = replayed.with_arrivals(np.maximum.accumulate(measured.arrival))
    return replayed


def replay_machine(machine: Machine, strategy: Strategy, measured: RunOutput) -> Machine:
    """The machine with what the real run's process pool actually took to start (its workers' forks and
    start-up vary with the parent's size, which calibrate's small program does not have), as the replay takes
    each CPU step's measured time (so no jitter on top: cpu_jitter_cv 0)."""
    machine = machine.evolve(cpu_jitter_cv=0.0)
    pool = strategy.executor or strategy
    if not isinstance(pool, Processes) or not measured.pool_startup_s or not machine.process_start_s:
        return machine
    return machine.evolve(process_start_s=measured.pool_startup_s / pool.workers)


def held_speed(speed: float | None) -> bool:
    """Whether a run's `cpu_speed` is within STEADY_SPEED of the calibrated rate (None, no CPU step timed: held)."""
    return speed is None or abs(speed - 1) <= STEADY_SPEED


def cpu_speed(scenario: Scenario, measured: RunOutput, time_scale: float = 1.0) -> float | None:
    """How fast the real run's CPU steps ran against the rate they were sized with: their nominal seconds over the
    CPU seconds they took (1.1: 10% faster than calibrated). Only steps of at least MIN_TIMED_CPU_S of real time
    count (a shorter one measures the cost of a call and two clock reads); None when there was no such step."""
    nominal = took = 0.0
    for t, rows, steps, cpu_s in _measured_cpu(scenario, measured):
        planned = scenario.durations[t][rows, steps]
        timed = planned * time_scale >= MIN_TIMED_CPU_S
        nominal += float(planned[timed].sum())
        took += float(cpu_s[timed].sum())
    return nominal / took if took > 0 else None


def validate(workload: Workload, *, strategy: Strategy | str | None = None, seed: int = 0,
             time_scale: float = 1.0, profile: MachineProfile | None = None, loop: str = "asyncio",
             cpu_rate: float | None = None, scale_check: ScaleCheck | None = None) -> Validation:
    """Predict, run for real, replay, and compare one strategy on `workload`.

    Without a `profile` the machine is calibrated first (a few seconds). The time scale is checked against
    the nominal prediction (`check_scale`, one more simulation) unless `scale_check` is given.
    """
    strat = workload.strategy if strategy is None else parse_strategy(strategy)
    profile = profile or calibrate(repeats=1)
    check_time_scale(workload, time_scale, profile.timer_floor_s(loop))
    scenario = build_scenario(workload, seed=seed, strategy=strat)
    machine = profile.machine_for(strat, workload.machine, time_scale=time_scale, loop=loop, emulated_waits=True)
    predicted = simulate(scenario, machine=machine)
    scale_check = scale_check or check_scale(scenario, profile, time_scale, loop=loop, scaled=predicted)
    out = run_real(scenario, time_scale=time_scale, cpu_rate=cpu_rate, loop=loop)
    measured = result_of(scenario, out)
    replayed = simulate(replay_scenario(scenario, out), machine=replay_machine(machine, strat, out))
    return Validation(workload.name, str(strat), time_scale, loop, predicted, measured, replayed,
                      interrupted=out.interrupted, errors_by_task=out.errors or None, scale_check=scale_check,
                      cpu_speed=cpu_speed(scenario, out, time_scale))


# ------------------------------------------------------------------------ a real client over HTTP


@dataclass(frozen=True)
class HttpValidation:
    """A prediction against a real client library's run: the figures of each, and the client CPU used."""

    model: str
    strategy: str
    client: str
    client_cpu_s: float
    predicted: HttpRun
    measured: HttpRun

    @property
    def error(self) -> dict[str, float]:
        """T_total's relative error, and the counts' differences (measured − predicted)."""
        p, m = self.predicted, self.measured
        return {"t_total": m.t_total / p.t_total - 1 if p.t_total > 0 else math.nan,
                "requests": m.requests - p.requests, "rate_limited": m.rate_limited - p.rate_limited,
                "failed": m.failed - p.failed}

    def to_dict(self) -> dict[str, Any]:
        """The `validate --client --json` object."""
        return {"model": self.model, "strategy": self.strategy, "client": self.client,
                "client_cpu_s": self.client_cpu_s, "predicted": self.predicted.to_dict(),
                "measured": self.measured.to_dict(), "error": self.error}


def validate_http(workload: Workload, strategy: Strategy | str, *, client: str = "openai", seed: int = 0,
                  client_cpu: float | None = None) -> HttpValidation:
    """Predict `workload` under `strategy` with the real client's measured CPU per request (`client_cpu`, or
    measured now), then run it with the real client against `serve` and compare."""
    strat = parse_strategy(strategy) if isinstance(strategy, str) else strategy
    per = measure_client_cpu(client) if client_cpu is None else client_cpu
    model = with_client_cpu(workload, lambda _svc: per)
    scenario = build_scenario(model, seed=seed, strategy=strat)
    check_http(scenario, client)
    p = simulate(scenario)
    stats = list(p.services.values())
    predicted = HttpRun(t_total=p.t_total, completed=p.completed, failed=p.failed,
                        requests=sum(s.requests for s in stats), rate_limited=sum(s.rate_limited for s in stats),
                        done=p.done)
    return HttpValidation(workload.name, str(strat), client, per, predicted, run_http(scenario, client=client,
                                                                                      seed=seed))
