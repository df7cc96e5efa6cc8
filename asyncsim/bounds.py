"""Which limit binds: a lower bound on T_total for each limit of a scenario, from its own draws.

Every run of the scenario takes at least each bound, whatever the scheduling: its CPU work on the cores it
can use, its longest task, the work behind each concurrency cap (the strategy's limit, a pool, a service's
slots, a pipeline stage's workers) divided by the cap, and the requests and tokens beyond a rate limit's
burst divided by its rate. The largest is the binding limit; a prediction far above it says time goes to
queueing or contention that no single limit explains. Stage bounds with batching are estimates (≈): a
batch's non-CPU time is counted once per full batch.

A run that loses tasks does less work than the scenario holds, so it may end below these bounds; given the
tasks that `completed`, the bounds count only their work — bounds on the work that was done, which the run's
T_total always meets.

`bounds` reads the draws alone, so it is the same at every time scale and under any overheads; `used`
measures each limit on a run, and says which one that run actually pressed hardest.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .results import Result
from .rules.calls import accepted, charged_tokens
from .scenario import CALL, CPU, STAGE, USE, Node, Scenario, span
from .services import RateLimit, Service
from .trace import ADMISSION, CPU_RUNNERS, K_ADMIT, ResourceId

__all__ = ["Bound", "bounds", "offered_load", "used"]

# a limit that holds tasks in flight (the strategy's cap, the longest task) is full whenever anything inside it
# binds: it is named only when used this much (share of T_total) more than every other limit
_CONTAINER_HANDICAP = 0.05


@dataclass(frozen=True)
class Bound:
    """A lower bound on T_total set by one limit: `name` says which, `seconds` how long at least.

    `capacity`: the limit drains work at a rate (CPU, a cap, a pool, a service, a rate limit, a stage), so
    `seconds` over the span of the arrivals is its offered load; False for the longest task and the last
    arrival, which are not rates.
    """

    name: str
    seconds: float
    detail: str
    capacity: bool = True


def _call_time(node: Node, durs: np.ndarray, services: dict[str, Service]) -> np.ndarray:
    svc = services[node.name]
    if svc.batching is not None:
        return np.full(durs.shape[0], svc.batching.batch_time(1))
    return durs[:, node.id] + svc.per_item


def _min_time(nodes: tuple[Node, ...], durs: np.ndarray, services: dict[str, Service]) -> np.ndarray:
    """Per task (row): the least time `nodes` take when nothing waits (parallel branches overlap)."""

    def leaf(node: Node) -> np.ndarray:
        return _call_time(node, durs, services) if node.kind == CALL else durs[:, node.id]

    return span(nodes, leaf, np.zeros(durs.shape[0]), lambda branches: np.max(branches, axis=0))


def _walk(nodes: tuple[Node, ...], batches: dict[str, int] | None = None,
          batch: int = 1) -> list[tuple[Node, int]]:
    """Every node with the batch size of the pipeline stage it runs in (1 outside batched stages)."""
    out = []
    for node in nodes:
        out.append((node, batch))
        inner = (batches or {}).get(node.name, 1) if node.kind == STAGE else batch
        out += _walk(node.body, batches, inner)
        for b in node.branches:
            out += _walk(b, batches, inner)
    return out


def bounds(scenario: Scenario, *, completed: np.ndarray | None = None) -> list[Bound]:
    """Every limit's lower bound on T_total for this scenario, largest (the binding limit) first.

    `completed` (a boolean per task) restricts the work counted to those tasks: the bounds of the work a
    run that lost the others actually did.
    """
    w = scenario.workload
    services = w.services
    cpu = longest = 0.0
    per_task_sum = 0.0
    held: dict[str, float] = {}
    served: dict[str, float] = {}
    requests: dict[str, float] = {}
    tokens: dict[tuple[str, str], float] = {}
    stage_work: dict[str, float] = {}
    last_arrival = 0.0
    for t, (program, durs) in enumerate(zip(scenario.programs, scenario.durations, strict=True)):
        members = np.flatnonzero(scenario.task_type == t)
        if completed is not None:
            members = members[completed[members]]
            durs = durs[scenario.task_row[members]]
            rows = np.arange(members.size)
        else:
            rows = scenario.task_row[members]
        if durs.shape[0] == 0:
            continue
        own = _min_time(program.steps, durs, services)
        longest = max(longest, float(own.max()))
        if scenario.arrivals is not None:
            finish = scenario.arrivals[members] + own[rows]
            last_arrival = max(last_arrival, float(finish.max() - scenario.arrivals.min()))
        per_task_sum += float(own.sum())
        batches = {name: st.batch for name, st in (w.stages or {}).items()}
        for node, batch in _walk(program.steps, batches):
            if node.kind == CPU:
                cpu += float(durs[:, node.id].sum())
            elif node.kind == USE:
                held[node.name] = held.get(node.name, 0.0) + float(
                    _min_time(node.body, durs, services).sum())
            elif node.kind == CALL:
                name = node.name
                assert name is not None
                svc = services[name]
                # a call in a batched stage is one request per batch (batches counted full: a lower bound)
                served[name] = served.get(name, 0.0) + float(_call_time(node, durs, services).sum()) / batch
                requests[name] = requests.get(name, 0.0) + math.ceil(durs.shape[0] / batch)
                if node.col >= 0:
                    for side, limit in (("rate_limit", svc.rate_limit), ("client_limit", svc.client_limit)):
                        if limit is not None and limit.tpm is not None:
                            charged = charged_tokens(svc, limit, durs[:, node.col], durs[:, node.col + 1])
                            tokens[(name, side)] = tokens.get((name, side), 0.0) + float(np.sum(charged))
            elif node.kind == STAGE:
                assert w.stages is not None  # a stage node is in a pipeline
                stage = w.stages[node.name]
                items = durs.shape[0]
                body = _min_time(node.body, durs, services)
                if stage.batch > 1:
                    cpu_part = sum(float(durs[:, n.id].sum()) for n, _ in _walk(node.body) if n.kind == CPU)
                    other = float(body.sum()) - cpu_part
                    work = cpu_part + other / items * math.ceil(items / stage.batch) if items else 0.0
                else:
                    work = float(body.sum())
                stage_work[node.name] = stage_work.get(node.name, 0.0) + work
    cores = scenario.strategy.cores_used(w.machine)
    out = [Bound("cpu", cpu / cores, f"{cpu:.4g} s of CPU on {cores} usable core(s)"),
           Bound("longest task", longest, "the longest task with nothing to wait for", capacity=False)]
    if last_arrival > longest:
        out.append(Bound("arrivals", last_arrival, "the last task to arrive, then its own time", capacity=False))
    st = scenario.strategy
    cap = st.admission
    if cap is not None:
        out.append(Bound(f"concurrency ({st})", per_task_sum / cap, f"{cap} task(s) in flight at a time"))
    for name, total in held.items():
        c = w.pools[name].capacity
        out.append(Bound(f"pool {name}", total / c, f"{c} slot(s) held {total:.4g} s in all"))
    for name, total in served.items():
        svc = services[name]
        slots = svc.concurrency or (svc.batching.instances if svc.batching else None)
        if svc.batching is not None:
            b = svc.batching
            total = requests[name] * (b.fixed / b.max_batch + b.per_item)
            out.append(Bound(f"service {name} (batching)", total / b.instances,
                             f"{requests[name]:.0f} requests in full batches of {b.max_batch} "
                             f"on {b.instances} instance(s)"))
        elif slots is not None:
            out.append(Bound(f"service {name} (concurrency)", total / slots, f"{slots} request(s) served at once"))
        for side, limit in (("rate_limit", svc.rate_limit), ("client_limit", svc.client_limit)):
            if limit is not None:
                out += _rate_bounds(name, side, limit, requests[name], tokens.get((name, side)))
    for name, work in stage_work.items():
        assert w.stages is not None  # stage work comes from a pipeline's stages
        workers = w.stages[name].workers
        out.append(Bound(f"stage {name}", work / workers, f"{workers} worker(s)"
                         + (" (≈: batches counted full)" if w.stages[name].batch > 1 else "")))
    return sorted(out, key=lambda b: -b.seconds)


def _rate_bounds(name: str, side: str, limit: RateLimit, requests: float, tokens: float | None) -> list[Bound]:
    req, tok = limit.buckets()
    where = "server" if side == "rate_limit" else "client"
    out = []
    if req is not None:
        rate, burst = req
        out.append(Bound(f"service {name} rpm ({where})", max(0.0, requests - burst) / rate,
                         f"{requests:.0f} requests at {limit.rpm:g}/min after a burst of {burst:g}"))
    if tok is not None and tokens is not None:
        rate, burst = tok
        out.append(Bound(f"service {name} tpm ({where})", max(0.0, tokens - burst) / rate,
                         f"{tokens:.0f} tokens at {limit.tpm:g}/min after a burst of {burst:g}"))
    if limit.interval and requests > 1:
        out.append(Bound(f"service {name} dispatch ({where})", (requests - 1) * limit.interval,
                         f"{requests:.0f} requests sent one per {limit.interval:g} s"))
    return out



def offered_load(scenario: Scenario) -> tuple[float, str] | None:
    """The offered load ρ of open arrivals and the limit it presses: the largest capacity bound over the span of
    the arrivals (≥ 1: work arrives faster than that limit drains it). None for closed or batch arrivals."""
    if scenario.arrivals is None or not (span := float(np.ptp(scenario.arrivals))) > 0:
        return None
    top = max((b for b in bounds(scenario) if b.capacity), key=lambda b: b.seconds)
    return top.seconds / span, top.name

def used(result: Result, scenario: Scenario) -> list[Bound]:
    """Every limit measured on a run of `scenario`, the binding one (the one the run used most) first.

    A limit's `seconds` is the time the run needed from it alone: the slots' busy time per slot (the strategy's
    cap, pools, service slots, stages), the busiest CPU runner (loop, GIL, cores or executor), the requests or
    tokens a rate limit let through beyond its burst over its rate (a server counts accepted requests, a
    client limiter every attempt), the arrivals' span, the longest time a task was in flight. The names are
    those of `bounds`. Empty when no task finished (T_total 0).
    """
    t = result.t_total
    if not t > 0:
        return []
    st, services = scenario.strategy, scenario.workload.services
    out: dict[str, float] = {}
    containers = {f"concurrency ({st})", "longest task"}

    def note(name: str, seconds: float) -> None:
        out[name] = max(out.get(name, 0.0), seconds)

    for res, entry in result.resources.items():
        u = entry.utilization
        if u is None:
            continue
        if res.kind in ADMISSION:
            note(f"concurrency ({st})", u * t)
        elif res.kind in CPU_RUNNERS:
            note("cpu", u * t)
        elif res.kind == "service" and res.name is not None:
            note(f"service {res.name} ({'batching' if services[res.name].batching else 'concurrency'})", u * t)
        elif res.kind in ("pool", "stage"):
            note(f"{res.kind} {res.name}", u * t)
    if result.calls is not None and len(result.calls):
        _used_rates(result, services, note)
    if scenario.arrivals is not None and (span := float(np.nanmax(result.arrival) - np.nanmin(result.arrival))) > 0:
        note("arrivals", span)
    admitted = result.arrival.copy()
    admits = result.trace.kind == K_ADMIT
    admitted[result.trace.task[admits]] = result.trace.start[admits]
    note("longest task", float(np.nanmax(result.done - admitted)))
    ranked = sorted(out.items(), key=lambda kv: -(kv[1] - (_CONTAINER_HANDICAP * t if kv[0] in containers else 0)))
    return [Bound(name, seconds, f"{seconds / t:.0%} of T_total") for name, seconds in ranked]


def _used_rates(result: Result, services: dict[str, Service], note: Callable[[str, float], None]) -> None:
    calls = result.calls
    assert calls is not None
    taken = accepted(calls.outcome)
    for name, svc in services.items():
        mine = calls.service == result.trace.code(ResourceId("service", name))
        for side, limit in (("rate_limit", svc.rate_limit), ("client_limit", svc.client_limit)):
            if limit is None:
                continue
            # a 429 from the server costs no quota; the client's limiter charges every attempt it lets out
            sent = mine & taken if side == "rate_limit" else mine
            where = "server" if side == "rate_limit" else "client"
            req, tok = limit.buckets()
            if req is not None:
                note(f"service {name} rpm ({where})", max(0.0, float(sent.sum()) - req[1]) / req[0])
            if tok is not None:
                tokens = float(np.sum(charged_tokens(svc, limit, calls.tokens_in[sent], calls.tokens_out[sent])))
                note(f"service {name} tpm ({where})", max(0.0, tokens - tok[1]) / tok[0])
