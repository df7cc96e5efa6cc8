"""The error tree of asyncsim.

    AsyncSimError                   root of everything asyncsim raises on purpose
    ├── ModelError(ValueError)      a workload, strategy or machine is invalid; carries one line per problem
    └── SimulationError(RuntimeError)  a valid model could not be run to the end (e.g. it deadlocked)

`ModelError` subclasses `ValueError` so callers may catch either (as Hypothesis' `InvalidArgument` does).
"""

from __future__ import annotations


class AsyncSimError(Exception):
    """Root of every error asyncsim raises on purpose."""


class ModelError(AsyncSimError, ValueError):
    """A model is invalid; `problems` holds one 'path: what is wrong' line per problem."""

    def __init__(self, problems: list[str] | str, *, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + p for p in self.problems))


class SimulationError(AsyncSimError, RuntimeError):
    """A valid model could not be simulated to the end."""
