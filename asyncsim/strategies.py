"""Execution strategies: how the client program runs its tasks.

Written as one string in a model file and on the command line:
`sequential`, `threads:N`, `processes:N`, `asyncio`, `asyncio:K` (a semaphore on tasks in flight),
`asyncio:K+threads:N` / `asyncio:K+processes:N` (CPU steps offloaded to an executor), `asyncio+threads:N`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Union

from pydantic import BeforeValidator, PlainSerializer

from ._model import closest
from .errors import ModelError

__all__ = ["Asyncio", "Processes", "Sequential", "Strategy", "StrategyField", "Threads", "parse_strategy"]

ALLOWED = "sequential, threads:N, processes:N, asyncio, asyncio:K, asyncio:K+threads:N, asyncio:K+processes:N"


class _Questions:
    """What an executor asks a strategy, answered the same way for every kind (one place per answer)."""

    __slots__ = ()
    on_loop = False  # tasks are coroutines on one event loop

    @property
    def admission(self) -> int | None:
        """Most tasks in flight at once (None: no cap)."""
        return None

    @property
    def executor(self) -> Threads | Processes | None:
        """The pool that CPU steps are offloaded to (None: they run where the task runs)."""
        return None

    @property
    def threaded(self) -> bool:
        """Whether Python runs on several threads of one process (worker threads, or an offload to threads)."""
        return False

    @property
    def dispatching(self) -> bool:
        """Whether tasks or CPU steps are sent to other processes (pickled, over a pipe)."""
        return False

    @property
    def forks(self) -> bool:
        """Whether a task's `parallel` branches run concurrently (on threads or coroutines of their own)."""
        return True

    def cores_used(self, machine: Any) -> int:
        """How many cores its CPU work can use at once on `machine` (the GIL serialises threads)."""
        return 1


@dataclass(frozen=True)
class Sequential(_Questions):
    """One task at a time, on one thread; `parallel` branches run one after another."""

    @property
    def admission(self) -> int | None:
        return 1

    @property
    def forks(self) -> bool:
        return False

    def __str__(self) -> str:
        return "sequential"


@dataclass(frozen=True)
class Threads(_Questions):
    """`workers` threads take tasks FIFO; CPU work shares the GIL (unless the machine has none)."""

    workers: int

    @property
    def admission(self) -> int | None:
        return self.workers

    @property
    def threaded(self) -> bool:
        return True

    def cores_used(self, machine: Any) -> int:
        return 1 if machine.gil else machine.cores

    def __str__(self) -> str:
        return f"threads:{self.workers}"


@dataclass(frozen=True)
class Processes(_Questions):
    """`workers` processes take tasks FIFO; CPU work runs in parallel up to the machine's cores."""

    workers: int

    @property
    def admission(self) -> int | None:
        return self.workers

    @property
    def dispatching(self) -> bool:
        return True

    def cores_used(self, machine: Any) -> int:
        return max(1, min(self.workers, machine.cores))

    def __str__(self) -> str:
        return f"processes:{self.workers}"


@dataclass(frozen=True)
class Asyncio(_Questions):
    """One event loop; `limit` caps tasks in flight (a FIFO semaphore); `offload` runs CPU steps elsewhere."""

    limit: int | None = None
    offload: Threads | Processes | None = None
    on_loop = True

    @property
    def admission(self) -> int | None:
        return self.limit

    @property
    def executor(self) -> Threads | Processes | None:
        return self.offload

    @property
    def threaded(self) -> bool:
        return isinstance(self.offload, Threads)

    @property
    def dispatching(self) -> bool:
        return isinstance(self.offload, Processes)

    def cores_used(self, machine: Any) -> int:
        if isinstance(self.offload, Processes):
            return self.offload.cores_used(machine)
        return 1 if machine.gil else machine.cores

    def __str__(self) -> str:
        text = "asyncio" if self.limit is None else f"asyncio:{self.limit}"
        return text if self.offload is None else f"{text}+{self.offload}"


Strategy = Union[Sequential, Threads, Processes, Asyncio]  # noqa: UP007 - used at runtime by isinstance

_KINDS = ("sequential", "threads", "processes", "asyncio")
_PART = re.compile(rf"^({'|'.join(_KINDS)})(?::(\d+))?$")


def parse_strategy(text: str | Strategy) -> Strategy:
    """Parse `asyncio:20+threads:4` and friends; a Strategy object is returned unchanged.

    Raises:
        ModelError: naming the text and the allowed forms.
    """
    if isinstance(text, (Sequential, Threads, Processes, Asyncio)):
        return text
    if not isinstance(text, str):
        raise ModelError(f"strategy: must be a string like 'asyncio:20' (allowed: {ALLOWED}), got {text!r}")
    parts = [p.strip() for p in text.strip().lower().split("+")]
    parsed = [_PART.match(p) for p in parts]
    bad = ModelError(f"strategy: not a valid strategy {text!r} (allowed: {ALLOWED}){_guess(parts)}")
    if not all(parsed) or len(parts) > 2:
        raise bad
    kinds = [(m.group(1), None if m.group(2) is None else int(m.group(2))) for m in parsed if m]
    for kind, number in kinds:
        if number is not None and number < 1:
            raise ModelError(f"strategy: {kind} needs a count >= 1, got {number} in {text!r}")
    (kind, number), rest = kinds[0], kinds[1:]
    if rest and kind != "asyncio":
        raise bad
    if kind == "sequential":
        if number is not None:
            raise bad
        return Sequential()
    if kind in ("threads", "processes"):
        if number is None:
            raise ModelError(f"strategy: {kind} needs a worker count, e.g. '{kind}:8', got {text!r}")
        return Threads(number) if kind == "threads" else Processes(number)
    offload: Threads | Processes | None = None
    if rest:
        okind, onum = rest[0]
        if okind not in ("threads", "processes") or onum is None:
            raise ModelError(f"strategy: offload must be threads:N or processes:N, got {text!r}")
        offload = Threads(onum) if okind == "threads" else Processes(onum)
    return Asyncio(limit=number, offload=offload)


def _guess(parts: list[str]) -> str:
    """`; did you mean threads:8?` for a misspelt kind (`thread:8`), when the respelt text is a strategy."""
    respelt = []
    for part in parts:
        kind, colon, count = part.partition(":")
        respelt.append((closest(kind, _KINDS) or kind) + colon + count)
    guess = "+".join(respelt)
    if guess == "+".join(parts):
        return ""
    try:
        parse_strategy(guess)
    except ModelError:
        return ""
    return f"; did you mean {guess}?"


def _validate(value: Any) -> Strategy:
    try:
        return parse_strategy(value)
    except ModelError as exc:
        raise ValueError(exc.problems[0].removeprefix("strategy: ")) from None


StrategyField = Annotated[Strategy, BeforeValidator(_validate), PlainSerializer(str, return_type=str)]
"""A pydantic field type: accepts the string form or a Strategy, serialises to the string."""
