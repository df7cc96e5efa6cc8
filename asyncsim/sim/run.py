"""Run a scenario on the simulation clock: the engine for tasks, or the pipeline engine for stages."""

from __future__ import annotations

from ..scenario import Scenario
from ..spec import Machine
from ..trace import RunOutput
from .engine import Engine
from .pipeline import PipelineEngine

__all__ = ["run_scenario"]


def run_scenario(scenario: Scenario, machine: Machine | None = None, *, max_sim_time: float | None = None,
                 max_events: int | None = None) -> RunOutput:
    """Execute a scenario under its strategy on `machine` (the workload's machine by default).

    Raises:
        DeadlockError: tasks wait on each other for ever (the message names who waits on what).
        RunLimitError: `max_sim_time` (simulated seconds) or `max_events` stopped the run.
    """
    machine = machine or scenario.workload.machine
    engine = (PipelineEngine if scenario.workload.stages is not None else Engine)(scenario, machine)
    return engine.run(max_sim_time=max_sim_time, max_events=max_events)
