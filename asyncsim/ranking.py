"""Rankings that cannot mislead: a setting that loses work never ranks above one that does not.

A run that loses tasks (failed after their retries, timed out in a pool, rejected) finishes early *because*
it did less: its T_total covers only what it finished. So every ranking here — the fastest strategy in
`compare`, the speed-up sentences, the best point of a sweep — first takes the settings that complete every
task, and compares T_total among those only; settings that lose work are listed after them, fewest lost
first, and marked. When none completes every task, the sentences say so plainly.

Entries are `Result`s, `Result.to_dict()` objects (`tasks`, `completed`, `t_total`, `strategy`) or
sweep-summary rows (`tasks_mean`, `completed_mean`, `t_total_mean`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ._format import fmt_s
from .results import Result

__all__ = ["best_point", "complete", "lost", "lost_text", "ranked", "speedups"]

E = TypeVar("E")  # an entry: a Result, a `Result.to_dict()` object or a sweep-summary row


def _get(entry: Any, key: str) -> float:
    if isinstance(entry, Result):
        return float(getattr(entry, key))
    value = entry[f"{key}_mean"] if f"{key}_mean" in entry else entry[key]
    return float(value)


def _has(entry: Any, key: str) -> bool:
    return isinstance(entry, Result) or f"{key}_mean" in entry or key in entry


def _label(entry: Any, label: str) -> str:
    return str(getattr(entry, label) if isinstance(entry, Result) else entry[label])


def lost(entry: Any) -> float:
    """Tasks an entry did not complete (failed or unfinished): the mean over replications for a summary row
    (its failed tasks, for a summary saved before task counts were kept)."""
    if _has(entry, "tasks"):
        return _get(entry, "tasks") - _get(entry, "completed")
    return _get(entry, "failed")


def complete(entry: Any) -> bool:
    """Whether an entry completed every task (in every replication, for a summary row: a mean loss of 0)."""
    return lost(entry) <= 0


def lost_text(entry: Any) -> str:
    """'loses 1,833 of 2,000 tasks' (a mean over replications is shown with one decimal when fractional)."""
    n = lost(entry)
    count = f"{n:,.0f}" if float(n).is_integer() else f"{n:,.1f}"
    return f"loses {count} of {_get(entry, 'tasks'):,.0f} tasks" if _has(entry, "tasks") else f"loses {count} tasks"


def ranked(entries: Sequence[E], *, key: Callable[[E], float] | None = None) -> list[E]:
    """The entries best first: those that complete every task by `key` (T_total by default), then those that
    lose work, fewest lost first (then by `key`)."""
    by = key or (lambda e: _get(e, "t_total"))
    return sorted(entries, key=lambda e: (not complete(e), lost(e) if not complete(e) else 0.0, by(e)))


def speedups(results: Sequence[Any], *, label: str = "strategy") -> list[str]:
    """Plain sentences comparing the fastest run that completes every task with each other run.

    "asyncio:4 is 3.1x faster than asyncio:1"; a run that loses work is never called faster: "asyncio loses
    1,833 of 2,000 tasks (not ranked: its T_total covers only what it finished)". When no run completes every
    task the first sentence says so and names the one that loses the fewest.
    """
    whole = [r for r in results if complete(r)]
    out = []
    if whole:
        best = min(whole, key=lambda r: _get(r, "t_total"))
        for r in whole:
            if r is best or _get(best, "t_total") <= 0:
                continue
            ratio = _get(r, "t_total") / _get(best, "t_total")
            a, b = _label(best, label), _label(r, label)
            out.append(f"{a} and {b} take the same time (within 1%)" if ratio < 1.01
                       else f"{a} is {ratio:.3g}x faster than {b}")
    elif results:
        fewest = ranked(results)[0]
        out.append(f"no {label} completes every task; the fewest lost: {_label(fewest, label)} ({lost_text(fewest)})")
    out += [f"{_label(r, label)} {lost_text(r)} (not ranked: its T_total covers only what it finished)"
            for r in results if not complete(r)]
    return out


def best_point(rows: Sequence[Any], params: Sequence[str]) -> str:
    """One sentence naming a sweep's fastest point that completes every task, or saying that none does (`rows`:
    its summary rows)."""
    if not rows:
        return "The sweep has no points."
    best = ranked(rows)[0]
    where = ", ".join(f"{p}={best[p]}" for p in params) or "the model"
    lossy = sum(not complete(r) for r in rows)
    if not complete(best):
        return f"No point completes every task; the fewest lost: {where} ({lost_text(best)})."
    tail = f"; {lossy} of {len(rows)} points lose work and are not ranked (⚠)" if lossy else ""
    return f"Fastest without lost work: {where}, T_total {fmt_s(float(best['t_total_mean']))}{tail}."
