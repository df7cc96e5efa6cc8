"""The SimPy engine: the only part of asyncsim that imports simpy."""

from ..trace import RunOutput
from .run import run_scenario

__all__ = ["RunOutput", "run_scenario"]
