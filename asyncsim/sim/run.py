"""Run a scenario on the simulation clock: the engine for tasks, or the pipeline engine for stages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from ..errors import ModelError
from ..scenario import Scenario
from ..spec import Machine
from ..trace import RunOutput, Trace
from .engine import Engine
from .fast import ENGINES, fast_plan, run_fast
from .pipeline import PipelineEngine

__all__ = ["ENGINES", "run_scenario"]


def run_scenario(scenario: Scenario, machine: Machine | None = None, *, max_sim_time: float | None = None,
                 max_events: int | None = None, engine: str = "auto",
                 fold: Callable[[Trace], None] | None = None) -> RunOutput:
    """Execute a scenario under its strategy on `machine` (the workload's machine by default).

    `engine` (`ENGINES`): `auto` takes the fast path (`sim.fast`) where it gives the engine's results exactly,
    `des` always runs the discrete-event engine, `fast` insists on the fast path (`max_events` makes `auto` the
    engine: the fast path has no events). `fold` makes it a summary-only run: each chunk of records goes to
    `fold` and none is kept (the output's trace is empty; not for pipelines).

    Raises:
        DeadlockError: tasks wait on each other for ever (the message names who waits on what).
        RunLimitError: `max_sim_time` (simulated seconds) or `max_events` stopped the run.
        ModelError: `engine` is not one of ENGINES, or `fast` for a model the fast path does not apply to.
    """
    machine = machine or scenario.workload.machine
    scenario = scenario.with_cpu_jitter(machine.cpu_jitter_cv)
    if engine == "auto" and max_events is not None:
        engine = "des"  # a limit on events is one on the engine's work: the fast path has no events to count
    if engine != "des":
        if engine not in ENGINES:
            raise ModelError(f"engine must be one of {', '.join(ENGINES)}: {engine!r}")
        plan = fast_plan(scenario, machine)  # checked once: run_fast takes the plan
        if not isinstance(plan, str):
            out = run_fast(scenario, machine, plan)
            if max_sim_time is not None and out.done.size and float(np.nanmax(out.done)) > max_sim_time:
                return Engine(scenario, machine).run(max_sim_time=max_sim_time)  # its error names the limit
            if fold is not None:
                for chunk in out.trace.chunks():
                    fold(chunk)
                out = replace(out, trace=out.trace.records(0, 0))
            return out
        if engine == "fast":
            raise ModelError(f"--engine fast: the fast path does not apply to {scenario.workload.name}: {plan}")
    if scenario.workload.stages is not None:
        if fold is not None:
            raise ModelError("a summary-only run keeps no trace, and a pipeline's stage figures come from it")
        des: Engine = PipelineEngine(scenario, machine)
    else:
        des = Engine(scenario, machine, fold)
    return des.run(max_sim_time=max_sim_time, max_events=max_events)
