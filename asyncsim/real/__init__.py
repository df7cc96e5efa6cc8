"""Real runs of a Scenario (asyncio, threads, processes) and machine calibration. Never imports simpy."""

from .cpuwork import CpuWork, burn, measure_rate
from .runner import StepHook, run_real

__all__ = ["CpuWork", "StepHook", "burn", "measure_rate", "run_real"]
