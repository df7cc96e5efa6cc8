"""The SimPy engine: the only part of asyncsim that imports simpy."""

from .engine import RunOutput, run_scenario

__all__ = ["RunOutput", "run_scenario"]
