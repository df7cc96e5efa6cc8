"""The workload model: frozen, validated data (steps, tasks, arrivals, pools, services, machine).

`Workload.from_yaml(path)` / `asyncsim.load(path)` read a model file; problems are reported as
`ModelError` with one `yaml.path: what is wrong` line each. Behaviour lives elsewhere (scenario, sim).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import yaml
from pydantic import Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from ._model import Frozen, did_you_mean, single_key, tagged_union, unwrap, yaml_errors
from .dists import _FAMILIES, Constant, Dist, _read_numbers
from .errors import ModelError
from .policies import Policy
from .services import Batching, Failures, Price, RateLimit, Retry, Service, Tokens
from .strategies import Asyncio, StrategyField

__all__ = [
    "Batch", "Call", "Closed", "Cpu", "Feedback", "Io", "Machine", "Parallel", "Periodic", "Poisson", "Pool",
    "Service", "Stage", "Step", "TaskType", "TraceArrivals", "Use", "Workload", "call", "cpu", "io", "load",
    "parallel", "use", "walk_steps",
]


# --------------------------------------------------------------------------------------------- steps


class _Step(Frozen):
    kind: ClassVar[str]


class Cpu(_Step):
    """Python work that holds its thread (the loop, the GIL, a core) for `duration` seconds."""

    kind: ClassVar[str] = "cpu"
    duration: Dist = Field(alias="cpu")


class Io(_Step):
    """Waiting on the outside world for `duration` seconds; holds nothing."""

    kind: ClassVar[str] = "io"
    duration: Dist = Field(alias="io")


class Call(_Step):
    """A request to a shared service (its latency and concurrency live on the service).

    Written `call: NAME`, or `call: {service: NAME, tokens: {input: ..., output: ...}}` when this call's
    requests are sized differently from the service's default (max_tokens stays the service's).
    """

    kind: ClassVar[str] = "call"
    service: str = Field(min_length=1)
    tokens: Tokens | None = None

    @model_validator(mode="before")
    @classmethod
    def _short(cls, data: Any) -> Any:
        data = unwrap(data, "call")
        return {"service": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _own_sizes(self) -> Call:
        if self.tokens is not None and self.tokens.max_tokens is not None:
            raise ValueError("tokens.max_tokens belongs to the service (set it under services)")
        return self


class Use(_Step):
    """Hold one slot of `pool` around the inner `steps`."""

    kind: ClassVar[str] = "use"
    pool: str = Field(min_length=1)
    steps: tuple[Step, ...] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, data: Any) -> Any:
        return unwrap(data, "use")


class Parallel(_Step):
    """Branches run concurrently and are joined (gather); each branch is a list of steps."""

    kind: ClassVar[str] = "parallel"
    branches: tuple[tuple[Step, ...], ...] = Field(alias="parallel", min_length=1)

    @model_validator(mode="after")
    def _non_empty(self) -> Parallel:
        if any(len(b) == 0 for b in self.branches):
            raise ValueError("every branch needs at least one step")
        return self


_STEPS: dict[str, type[_Step]] = {c.kind: c for c in (Cpu, Io, Call, Use, Parallel)}


def _step_tag(value: Any) -> str | None:
    return value.kind if isinstance(value, _Step) else single_key(value)


if TYPE_CHECKING:  # what the tagged union validates into, for the type checker
    Step = Cpu | Io | Call | Use | Parallel
else:
    Step = tagged_union(_STEPS, _step_tag, "step")
Use.model_rebuild()
Parallel.model_rebuild()


def cpu(duration: Any) -> Cpu:
    """A CPU step: a number of seconds or a distribution."""
    return Cpu(duration=duration)


def io(duration: Any) -> Io:
    """An I/O wait: a number of seconds or a distribution."""
    return Io(duration=duration)


def call(service: str, *, tokens: Any = None) -> Call:
    """A call to the named service (optionally with this call's own token sizes)."""
    return Call(service=service, tokens=tokens)


def use(pool: str, steps: list[Any]) -> Use:
    """Hold a slot of `pool` around `steps`."""
    return Use(pool=pool, steps=tuple(steps))


def parallel(*branches: list[Any]) -> Parallel:
    """Run the branches concurrently and join them."""
    return Parallel(branches=tuple(tuple(b) for b in branches))


def walk_steps(steps: tuple[Any, ...], path: str) -> Iterator[tuple[str, Any]]:
    """Every step in a step tree, depth first, with its YAML path (`task[2].use.steps[0]`)."""
    for i, step in enumerate(steps):
        here = f"{path}[{i}]"
        yield here, step
        if isinstance(step, Use):
            yield from walk_steps(step.steps, f"{here}.use.steps")
        elif isinstance(step, Parallel):
            for b, branch in enumerate(step.branches):
                yield from walk_steps(branch, f"{here}.parallel[{b}]")


# ------------------------------------------------------------------------------------------ arrivals


class _Arrivals(Frozen):
    kind: ClassVar[str]

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, data: Any) -> Any:
        return unwrap(data, cls.kind)


class Batch(_Arrivals):
    """`count` tasks, all arriving at t = 0."""

    kind: ClassVar[str] = "batch"
    count: int = Field(ge=1)

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, data: Any) -> Any:
        data = unwrap(data, "batch")
        return {"count": data} if isinstance(data, int) and not isinstance(data, bool) else data


class Poisson(_Arrivals):
    """A Poisson stream of `rate` tasks per second, for `count` tasks or `duration` seconds."""

    kind: ClassVar[str] = "poisson"
    rate: float = Field(gt=0)
    count: int | None = Field(None, ge=1)
    duration: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _bounded(self) -> Poisson:
        if (self.count is None) == (self.duration is None):
            raise ValueError("give exactly one of count or duration (an open stream must end)")
        return self


class Periodic(_Arrivals):
    """`count` tasks arriving every `interval` seconds from t = 0 (YAML key `uniform`)."""

    kind: ClassVar[str] = "uniform"
    interval: float = Field(ge=0)
    count: int = Field(ge=1)


class TraceArrivals(_Arrivals):
    """Arrival times given as a list or read from a file (one time per line, or CSV's first column)."""

    kind: ClassVar[str] = "trace"
    times: tuple[float, ...] | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _load(self, info: Any) -> TraceArrivals:
        if (self.times is None) == (self.file is None):
            raise ValueError("give exactly one of times or file")
        if self.file is not None:
            base = (info.context or {}).get("base_dir")
            path = self.file if self.file.is_absolute() or base is None else Path(base) / self.file
            object.__setattr__(self, "times", tuple(_read_numbers(path).tolist()))
            object.__setattr__(self, "file", None)
        assert self.times is not None
        if not self.times:
            raise ValueError("needs at least one arrival time")
        if any(t < 0 for t in self.times) or list(self.times) != sorted(self.times):
            raise ValueError("arrival times must be >= 0 and in increasing order")
        return self


class Closed(_Arrivals):
    """`users` clients, each thinking then submitting a task and waiting for it, `count` tasks in all."""

    kind: ClassVar[str] = "closed"
    users: int = Field(ge=1)
    think: Dist = Field(default_factory=lambda: Constant(0.0))
    count: int = Field(ge=1)


_ARRIVALS: dict[str, type[_Arrivals]] = {c.kind: c for c in (Batch, Poisson, Periodic, TraceArrivals, Closed)}
if TYPE_CHECKING:
    Arrivals = Batch | Poisson | Periodic | TraceArrivals | Closed
else:
    Arrivals = tagged_union(
        _ARRIVALS, lambda v: v.kind if isinstance(v, _Arrivals) else single_key(v), "arrival process"
    )


class TaskType(Frozen):
    """One class of task: its steps, its weight, and what schedulers know of it.

    With the workload's `arrivals`, `weight` is the class's share of the arrivals; a class may instead have
    its own `arrivals` (then every class must). `weight` is also its share under the `fair` policy,
    `priority` its rank under `priority` (lower is served first), `deadline` the seconds after arrival it
    should finish by (`edf` orders by it; missed deadlines are counted per class).
    """

    name: str | None = None
    weight: float = Field(1.0, gt=0)
    steps: tuple[Step, ...] = Field(min_length=1)
    arrivals: Arrivals | None = None
    priority: int = 0
    deadline: float | None = Field(None, gt=0)


# ------------------------------------------------------------------------ pools, services, machine


class Pool(Frozen):
    """A counted resource held by `use`: a connection pool, a semaphore, GPU slots.

    With `timeout`, a task that waits longer than that for a slot fails (httpx's PoolTimeout); `policy`
    orders the waiters (fifo by default); `price.per_second` bills each slot for the run's T_total.
    """

    capacity: int = Field(ge=1)
    timeout: float | None = Field(None, gt=0)
    policy: Policy = Field(default_factory=Policy)
    price: Price | None = None

    @model_validator(mode="after")
    def _capacity_price(self) -> Pool:
        _capacity_only(self.price)
        return self

    @model_validator(mode="before")
    @classmethod
    def _number(cls, data: Any) -> Any:
        return {"capacity": data} if isinstance(data, int) and not isinstance(data, bool) else data


class Feedback(Frozen):
    """After its stage, an item goes back to stage `to` (this one or an earlier one) with `probability`, at
    most `max_passes` times; each pass's draw is made up front, so real runs replay them."""

    to: str = Field(min_length=1)
    probability: float = Field(ge=0, le=1)
    max_passes: int = Field(1, ge=1)


class Stage(Frozen):
    """One stage of a pipeline: its steps, `workers` running them at once, a bounded input queue, batching.

    A full queue blocks the stage feeding it. With `batch` > 1 a worker collects up to `batch` items (waiting
    at most `max_wait` s after the first, or until the batch is full when unset) and runs the steps once for
    the batch: cpu steps take the sum of the items' draws, io steps the first item's, and a call carries the
    batch (its tokens add up, and the service's `per_item` latency applies per item). `policy` orders the
    queue (one item class: `lifo` takes the newest, `edf` the oldest arrival; priority, sjf and fair tie and
    serve in queue order). `hold: POOL` keeps a slot of POOL from taking the items until they are put into the
    next queue; `feedback` sends items back to an earlier stage; `price.per_second` bills each worker for the
    run's T_total.
    """

    steps: tuple[Step, ...] = Field(min_length=1)
    workers: int = Field(1, ge=1)
    queue: int | None = Field(None, ge=1)
    batch: int = Field(1, ge=1)
    max_wait: float | None = Field(None, ge=0)
    policy: Policy = Field(default_factory=Policy)
    hold: str | None = Field(None, min_length=1)
    feedback: Feedback | None = None
    price: Price | None = None

    @model_validator(mode="after")
    def _capacity_price(self) -> Stage:
        _capacity_only(self.price)
        return self


def _capacity_only(price: Price | None) -> None:
    if price is not None and price.usage:
        raise ValueError("price: a pool or a stage bills its capacity (per_second); requests and tokens are "
                         "billed on the service they reach")


Stage.model_rebuild()


class Machine(Frozen):
    """The machine the client runs on: cores, the GIL, and per-operation overheads (seconds).

    Overheads default to 0 (the ideal model); `asyncsim calibrate` measures them.
    """

    cores: int = Field(2, ge=1)
    gil: bool = True
    switch_interval_s: float = Field(0.005, gt=0)
    loop_step_s: float = Field(0.0, ge=0)
    task_create_s: float = Field(0.0, ge=0)
    # asyncio:K: a task's first step that finds its limit taken (`await semaphore.acquire()` makes a future and
    # waits) costs the loop this much, far less than a resumption; None: `loop_step_s`, as before it was measured
    loop_block_s: float | None = Field(None, ge=0)
    # asyncio:K: a release walks the semaphore's waiters from the front for the first one not woken yet, past each
    # one handed a slot whose coroutine has not resumed (Lib/asyncio/locks.py Semaphore._wake_up_next): this much
    # per waiter passed, so many releases in one loop iteration cost quadratically (2,000 in one step: 43 ms here)
    semaphore_scan_s: float = Field(0.0, ge=0)
    thread_switch_s: float = Field(0.0, ge=0)
    # the same hand-off when the GIL changed hands no sooner than `thread_idle_after_s` before: the woken thread's
    # core has idled that long, and an idle virtual CPU wakes late (sim/cpu.py Gil.release); None: thread_switch_s
    thread_switch_idle_s: float | None = Field(None, ge=0)
    thread_idle_after_s: float = Field(1e-3, gt=0)
    # starting a thread: threading.Thread.start() blocks its caller (holding the GIL, then waiting for the
    # child to run) this long; a parallel step's branch threads and a thread pool's workers pay it
    thread_start_s: float = Field(0.0, ge=0)
    # a thread pool's worker's own time between jobs, holding the GIL: under asyncio + threads the result's
    # set_result and call_soon_threadsafe and the next job taken from the queue, before the result's self-pipe
    # write; under threads:N (with a GIL) after each task, its future set, the idle semaphore released, the next
    # task taken (concurrent/futures/thread.py _worker) — `calibrate` measures the two apart
    thread_turnaround_s: float = Field(0.0, ge=0)
    # asyncio + threads, the loop's own CPU per job: run_in_executor (executor.submit, wrap_future) in the submitting
    # step, and the result's _set_state handle (futures._chain_future) before the awaiting coroutine's wake-up
    thread_submit_s: float = Field(0.0, ge=0)
    thread_return_s: float = Field(0.0, ge=0)
    # asyncio + threads: a loop idle in select() this long or longer, woken by a worker's result, always loses the
    # race for the GIL to the worker (its core has gone into a deeper sleep); 0: no limit (sim/cpu.py race_won)
    loop_race_idle_s: float = Field(0.0, ge=0)
    # asyncio + threads: the share of those races a loop idle less long wins (every second by default; where the
    # kernel puts the worker decides it: calibrate measures it, benchmarks/loop_race.py, and a model may set it)
    loop_race_wins: float = Field(0.5, ge=0, le=1)
    # asyncio + threads: how late the loop, idle in select(), runs after a worker's result (call_soon_threadsafe's
    # self-pipe write) wakes it: its thread's wake-up, unless it won the GIL at that write
    loop_wake_s: float = Field(0.0, ge=0)
    # asyncio + threads: the self-pipe's reader (BaseSelectorEventLoop._read_from_self: recv until empty), a handle the
    # loop runs once per iteration whose select() finds workers' results written since it last read, after the
    # handles already ready (those results' among them)
    loop_read_s: float = Field(0.0, ge=0)
    process_dispatch_s: float = Field(0.0, ge=0)
    # from a process finishing an offloaded CPU step to the awaiting coroutine running (the result's trip back
    # through the pool's management thread and the loop's wake-up); the worker is free meanwhile
    process_return_s: float = Field(0.0, ge=0)
    # processes:N: a worker's time from the end of one task to the start of the next one queued for it (its
    # result sent back, the next call item read from the pipe the pool's management thread keeps filled)
    process_turnaround_s: float = Field(0.0, ge=0)
    # per worker, to start a process pool: at its first submit the caller forks the workers one after another
    # (ProcessPoolExecutor._launch_processes) and blocks meanwhile; a user's T_total includes it
    process_start_s: float = Field(0.0, ge=0)
    # processes:N, asyncio+processes:N: how much later an idle pool worker, woken for a job while another of the
    # pool's workers computes, starts it: it waits on that worker's core for a scheduler tick (mean)
    process_wake_busy_s: float = Field(0.0, ge=0)
    # how much later a thread of the parent wakes (the event loop from select(), the pool's management thread
    # for a result) while every core runs a pool worker's job: it waits for a core, and for the GIL its other
    # threads hold (mean; most wake-ups are on time, some a time slice late)
    busy_wake_s: float = Field(0.0, ge=0)
    # beyond the cores, Linux's rule instead of processor sharing over all of them (see sim.cpu.Cores): each
    # thread keeps to the core it last ran on, and an idle core takes a waiting thread from a busy one only at a
    # load-balancing tick, every this many seconds (0: processor sharing, the ideal model)
    core_balance_s: float = Field(0.0, ge=0)
    sleep_overshoot_s: float = Field(0.0, ge=0)
    timer_granularity_s: float = Field(0.0, ge=0)
    # how much the time of the same CPU work varies from one step to the next (coefficient of variation): each CPU
    # step takes its drawn time times a mean-1 lognormal factor, drawn from the seed; 0: exactly its drawn time.
    # It breaks the lock-step a GIL's fixed switch interval otherwise holds exact constant steps in (calibrated)
    cpu_jitter_cv: float = Field(0.0, ge=0, le=1)


# ---------------------------------------------------------------------------------------- workload


class Workload(Frozen):
    """Arrivals + task mix + pools + services (+ the default strategy and the machine)."""

    name: str = "workload"
    description: str = ""
    arrivals: Arrivals | None = None
    task: tuple[Step, ...] | None = Field(None, min_length=1)
    tasks: tuple[TaskType, ...] | None = Field(None, min_length=1)
    stages: dict[str, Stage] | None = Field(None, min_length=1)
    pools: dict[str, Pool] = Field(default_factory=dict)
    services: dict[str, Service] = Field(default_factory=dict)
    strategy: StrategyField = Field(default_factory=Asyncio)
    policy: Policy = Field(default_factory=Policy)
    machine: Machine = Field(default_factory=Machine)

    @model_validator(mode="after")
    def _references(self) -> Workload:
        problems: list[str] = _arrival_problems(self) + _policy_problems(self)
        if [self.task, self.tasks, self.stages].count(None) != 2:
            problems.append("task: give exactly one of task (a list of steps), tasks (a weighted mix) "
                            "or stages (a pipeline)")
        if self.stages is not None:
            problems += _stage_problems(self) + pipeline_strategy_problems(self.strategy, self.stages)
            if self.policy.kind != "fifo":
                problems.append("policy: a pipeline admits its items in arrival order (they are all one class); "
                                "order a stage's queue instead (stages.NAME.policy)")
        for path, step in self.walk():
            if isinstance(step, Call) and step.service not in self.services:
                problems.append(f"{path}.call: unknown service {step.service!r} {_known(self.services, step.service)}")
            elif isinstance(step, Call) and step.tokens is not None and self.services[step.service].tokens is None:
                problems.append(f"{path}.call.tokens: service {step.service!r} counts no tokens; give the service "
                                "tokens (its default sizes) too")
            if isinstance(step, Use) and step.pool not in self.pools:
                problems.append(f"{path}.use.pool: unknown pool {step.pool!r} {_known(self.pools, step.pool)}")
        if problems:
            raise PydanticCustomError("references", "{problems}", {"problems": problems})
        return self

    @property
    def task_types(self) -> tuple[TaskType, ...]:
        """The task mix; a single `task` is one type of weight 1 (a pipeline has none: see `stages`)."""
        if self.tasks is not None:
            return self.tasks
        if self.task is None:
            return ()
        return (TaskType(steps=self.task),)

    def walk(self) -> Iterator[tuple[str, Any]]:
        """Every step of every task type, with its YAML path."""
        if self.task is not None:
            yield from walk_steps(self.task, "task")
        for i, tt in enumerate(self.tasks or ()):
            yield from walk_steps(tt.steps, f"tasks[{i}].steps")
        for name, stage in (self.stages or {}).items():
            yield from walk_steps(stage.steps, f"stages.{name}.steps")

    def evolve(self, **changes: Any) -> Workload:
        """A validated copy with `changes` (field names to values); the original is unchanged.

        Raises:
            ModelError: when the changed model is invalid.
        """
        try:
            return super().evolve(**changes)
        except ValidationError as exc:
            raise ModelError(format_errors(exc)) from None

    @classmethod
    def from_dict(cls, data: Any, *, base_dir: str | os.PathLike[str] | None = None,
                  source: str | None = None) -> Workload:
        """Validate a parsed model; files named inside it are read relative to `base_dir`.

        Raises:
            ModelError: one line per problem, each naming its YAML path.
        """
        if not isinstance(data, dict):
            raise ModelError("the model must be a mapping of keys (name, arrivals, task, ...)", source=source)
        try:
            return cls.model_validate(data, context={"base_dir": base_dir})
        except ValidationError as exc:
            raise ModelError(format_errors(exc), source=source) from None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Workload:
        """Read and validate a model file."""
        path = Path(path)
        return cls.from_dict(read_yaml(path, "model file"), base_dir=path.parent, source=str(path))


def _arrival_problems(w: Workload) -> list[str]:
    own = [t.arrivals is not None for t in (w.tasks or ())]
    if w.arrivals is None and not (own and all(own)):
        return ["arrivals: is required (or give every class in tasks its own arrivals)"]
    if w.arrivals is not None and any(own):
        return ["arrivals: give either the workload's arrivals or one per class in tasks, not both"]
    if any(isinstance(t.arrivals, Closed) for t in (w.tasks or ())):
        return ["tasks: a class's own arrivals must be open (batch, poisson, uniform, trace), not closed"]
    return []


def _policy_problems(w: Workload) -> list[str]:
    problems = []
    places = [("policy", w.policy)] + [(f"pools.{k}.policy", p.policy) for k, p in w.pools.items()]
    places += [(f"stages.{k}.policy", s.policy) for k, s in (w.stages or {}).items()]
    for where, policy in places:
        if policy.preemptive:
            problems.append(f"{where}: only a service's queue can be preemptive (a running task or a held "
                            "slot cannot be taken back)")
    for name, svc in w.services.items():
        if svc.policy.preemptive and (svc.concurrency is None or svc.batching is not None):
            problems.append(f"services.{name}.policy: preemptive priority needs a service with concurrency "
                            "(and no batching)")
    return problems


def _stage_problems(w: Workload) -> list[str]:
    """Stage references: the pool a stage holds, and where its feedback goes (this stage or an earlier one)."""
    assert w.stages is not None
    problems, names = [], list(w.stages)
    for k, (name, stage) in enumerate(w.stages.items()):
        if stage.hold is not None and stage.hold not in w.pools:
            problems.append(f"stages.{name}.hold: unknown pool {stage.hold!r} {_known(w.pools, stage.hold)}")
        fb = stage.feedback
        if fb is not None and fb.to not in w.stages:
            problems.append(f"stages.{name}.feedback.to: unknown stage {fb.to!r} {_known(w.stages, fb.to)}")
        elif fb is not None and names.index(fb.to) > k:
            problems.append(f"stages.{name}.feedback.to: {fb.to!r} comes after {name!r}; feedback goes back to "
                            "this stage or an earlier one")
    return problems


def pipeline_strategy_problems(strategy: Any, stages: dict[str, Stage] | None = None) -> list[str]:
    """Why `strategy` cannot run a pipeline (of `stages`, when given), if it cannot.

    Stage workers are coroutines on one event loop, so the strategy must be asyncio. Under asyncio:K the
    workers of batched stages without `max_wait` can hold K items waiting to fill their batches while no
    more are admitted: a deadlock whenever K <= sum of workers x (batch - 1) over those stages.
    """
    if not strategy.on_loop:
        return [f"strategy: a pipeline runs its stage workers as asyncio coroutines; use asyncio, asyncio:K (at "
                f"most K items in the pipeline), asyncio+threads:N or asyncio+processes:N (got {strategy})"]
    waiting = {k: s.workers * (s.batch - 1) for k, s in (stages or {}).items() if s.batch > 1 and s.max_wait is None}
    held = sum(waiting.values())
    if strategy.limit is None or not waiting or strategy.limit > held:
        return []
    where = ", ".join(f"stages.{k}.max_wait" for k in waiting)
    return [f"{where}: under {strategy} at most {strategy.limit} items are in the pipeline, and workers waiting "
            f"to fill their batches (workers x (batch - 1)) can hold {held} of them with none left to admit: a "
            f"deadlock; give a max_wait or a limit above {held}"]


def read_yaml(path: Path, what: str) -> Any:
    """The YAML document at `path` (a `what`: "model file").

    Raises:
        ModelError: the file cannot be read, or is not YAML (its line named).
    """
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ModelError(f"cannot read the {what}: {exc.strerror}", source=str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ModelError(f"{where}not valid YAML: {problem}", source=str(path)) from None


def load(path: str | os.PathLike[str]) -> Workload:
    """Read and validate a model file (`models/web_fetch.yaml`)."""
    return Workload.from_yaml(path)


def _known(names: dict[str, Any], name: str) -> str:
    """`(known: a, b)`, then `; did you mean a?` when `name` looks like a misspelling of one."""
    return f"(known: {', '.join(sorted(names))}){did_you_mean(name, names)}" if names else "(none are defined)"


def format_errors(exc: ValidationError) -> list[str]:
    """One `yaml.path: problem` line per pydantic error in a model file."""
    return yaml_errors(exc, _owner)


def _owner(loc: tuple[Any, ...]) -> type[Frozen]:
    """The model class that a YAML location (ending at a mapping) stands for."""
    owners: dict[Any, type[Frozen]] = {
        **_FAMILIES, **_STEPS, **_ARRIVALS,
        "machine": Machine, "services": Service, "pools": Pool, "tasks": TaskType, "stages": Stage,
        "feedback": Feedback,
        "rate_limit": RateLimit, "client_limit": RateLimit, "tokens": Tokens, "failures": Failures,
        "retry": Retry, "batching": Batching, "policy": Policy, "price": Price,
    }
    for item in reversed(loc):
        if item in owners:
            return owners[item]
    return Workload


__all__ += ["Arrivals", "format_errors"]
