"""Paired validation: simulate a scenario, run the very same draws for real, and report the errors.

Two predictions are made: from the model's nominal durations (what a user gets) and *replayed* from the
CPU time each step actually took in the real run (CPU speed drifts ±15% on shared machines; the replay
isolates the scheduling model's own error). Errors are (predicted − measured) / measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .api import result_of, simulate
from .errors import ModelError
from .metrics import Result
from .profile import MachineProfile
from .real import run_real
from .real.calibrate import calibrate
from .scenario import Scenario, build_scenario
from .services import Service
from .spec import Workload
from .strategies import Strategy, parse_strategy
from .trace import K_CPU, RunOutput

__all__ = ["ERROR_KEYS", "Validation", "check_time_scale", "suggest_time_scale", "validate"]

ERROR_KEYS = ("t_total", "throughput", "concurrency_mean", "latency_p50", "latency_p95")


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
                "interrupted": self.interrupted,
                "task_errors": {str(k): v for k, v in (self.errors_by_task or {}).items()}}


def _metric(r: Result, key: str) -> float:
    if key == "concurrency_mean":
        return r.concurrency["mean"]
    if key.startswith("latency_"):
        return r.latency[key.removeprefix("latency_")]
    return float(getattr(r, key))


def relative_errors(predicted: Result, measured: Result) -> dict[str, float]:
    """(predicted − measured) / measured for each of ERROR_KEYS (NaN where measured is 0)."""
    out = {}
    for key in ERROR_KEYS:
        m, p = _metric(measured, key), _metric(predicted, key)
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
    if not time_scale > 0:
        raise ModelError(f"--time-scale: must be > 0 (got {time_scale})")
    shortest = _shortest_wait(workload)
    if shortest is not None and shortest[0] * time_scale < timer_floor_s:
        mean, path = shortest
        raise ModelError(
            f"--time-scale: {time_scale:g} makes the shortest wait ({path}, mean {mean:.3g} s) "
            f"{mean * time_scale * 1e3:.3g} ms, below this machine's timer floor of {timer_floor_s * 1e3:.3g} ms; "
            f"use --time-scale >= {timer_floor_s / mean:.3g}"
        )


def replay_scenario(scenario: Scenario, measured: RunOutput) -> Scenario:
    """The scenario with what the real run actually had: each CPU step's measured CPU time, and (for open
    arrivals) the times tasks actually arrived."""
    durations = [d.copy() for d in scenario.durations]
    trace = measured.trace
    cpu = (trace.kind == K_CPU) & (trace.step >= 0)
    tasks, steps, cpu_s = trace.task[cpu], trace.step[cpu], trace.cpu_s[cpu]
    types, rows = scenario.task_type[tasks], scenario.task_row[tasks]
    for t, matrix in enumerate(durations):
        mine = types == t
        matrix[rows[mine], steps[mine]] = cpu_s[mine]
    replayed = scenario.with_durations(tuple(durations))
    if scenario.arrivals is not None and not np.isnan(measured.arrival).any():
        replayed = replayed.with_arrivals(np.maximum.accumulate(measured.arrival))
    return replayed


def validate(workload: Workload, *, strategy: Strategy | str | None = None, seed: int = 0,
             time_scale: float = 1.0, profile: MachineProfile | None = None, loop: str = "asyncio",
             cpu_rate: float | None = None) -> Validation:
    """Predict, run for real, replay, and compare one strategy on `workload`.

    Without a `profile` the machine is calibrated first (a few seconds).
    """
    strat = workload.strategy if strategy is None else parse_strategy(strategy)
    profile = profile or calibrate(repeats=1)
    check_time_scale(workload, time_scale, profile.timer_floor_s(loop))
    scenario = build_scenario(workload, seed=seed, strategy=strat)
    machine = profile.machine_for(strat, workload.machine, time_scale=time_scale, loop=loop, emulated_waits=True)
    predicted = simulate(scenario, machine=machine)
    out = run_real(scenario, time_scale=time_scale, cpu_rate=cpu_rate, loop=loop)
    measured = result_of(scenario, out)
    replayed = simulate(replay_scenario(scenario, out), machine=machine)
    return Validation(workload.name, str(strat), time_scale, loop, predicted, measured, replayed,
                      interrupted=out.interrupted, errors_by_task=out.errors or None)
