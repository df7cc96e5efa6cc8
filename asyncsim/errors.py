"""The error tree of asyncsim.

    AsyncSimError                   root of everything asyncsim raises on purpose
    ├── ModelError(ValueError)      a workload, strategy or machine is invalid; carries one line per problem
    └── SimulationError(RuntimeError)  a valid model could not be run to the end
        ├── DeadlockError           tasks wait on each other for ever; says who waits on what, held by whom
        └── RunLimitError           --max-sim-time or --max-events stopped a run that had not finished

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


class DeadlockError(SimulationError):
    """Tasks wait for ever: `waits` maps a waiter ("task 3", "stage embed worker 0") to (resource, since),
    `holders` a resource to who holds it, `cycle` a wait-for cycle [waiter, resource, holder, ..., waiter]."""

    def __init__(self, message: str, *, time: float, waits: dict[str, tuple[str, float]],
                 holders: dict[str, list[str]], cycle: list[str]) -> None:
        super().__init__(message)
        self.time = time
        self.waits = waits
        self.holders = holders
        self.cycle = cycle


class RunLimitError(SimulationError):
    """A run limit (`limit`: 'max_sim_time' or 'max_events') stopped the run before every task finished."""

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit
