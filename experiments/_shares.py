"""Shared by the share experiments: a batch of tasks, each `cpu` then `io` with a fixed total, swept over
the share of one of them, under several strategies on a machine with the reference host's overheads.
"""

from __future__ import annotations

import math
from typing import Any

import asyncsim as a
from asyncsim.sweep import summarize, sweep

# `asyncsim calibrate` on the project's reference machine (2 vCPUs, CPython 3.11.7, Linux): fixed here so
# the experiments give the same numbers on any host. MachineProfile.machine_for applies each overhead only
# to the strategies that pay it (loop steps to asyncio, GIL hand-offs to threads, dispatch to processes).
REFERENCE = a.MachineProfile.model_validate({
    "created": "2026-11-29T06:19:17+00:00", "python": "3.11.7", "implementation": "CPython",
    "platform": "Linux-6.18.44-fc-v657-x86_64-with-glibc2.36", "cpu_count": 2, "gil": True,
    "cpu_rate": 32268728.8, "switch_interval_s": 0.005,
    "loops": {"asyncio": {"loop_step_s": 9.40e-06, "sleep_overshoot_s": 1.71e-04, "task_create_s": 6.11e-06,
                          "timer_floor_s": 1.09e-03, "timer_granularity_s": 0.001}},
    "thread_sleep_overshoot_s": 1.01e-04, "thread_switch_s": 1.39e-05, "process_dispatch_s": 2.90e-04,
})
OVERHEADS = ("loop_step_s", "task_create_s", "thread_switch_s", "process_dispatch_s")


def model(tasks: int, task_s: float, io_cv: float) -> dict[str, Any]:
    """The base model: `tasks` at once, each `cpu` then `io` (lognormal, `io_cv`); shares set per point."""
    return {
        "name": "cpu-then-io",
        "description": f"{tasks} tasks at once, each {task_s * 1e3:g} ms: Python work, then an I/O wait",
        "arrivals": {"batch": tasks},
        "task": [{"cpu": task_s / 2}, {"io": {"lognormal": {"mean": task_s / 2, "cv": io_cv}}}],
        "machine": {"cores": 2, "gil": True},
    }


def point(raw: dict[str, Any], strategy: str, io_share: float) -> dict[str, Any]:
    """The sweep point for `strategy` at this I/O share: the durations and the strategy's overheads."""
    task_s = raw["task"][0]["cpu"] * 2
    io_cv = raw["task"][1]["io"]["lognormal"]["cv"]
    io_mean = io_share * task_s
    base = a.Workload.from_dict(raw).machine
    machine = REFERENCE.machine_for(a.parse_strategy(strategy), base)
    return {"strategy": strategy, "task.0.cpu": round((1 - io_share) * task_s, 12),
            "task.1.io": {"lognormal": {"mean": io_mean, "cv": io_cv}} if io_mean > 0 else 0,
            **{f"machine.{k}": getattr(machine, k) for k in OVERHEADS}}


def run(raw: dict[str, Any], strategies: list[str], io_shares: list[float], *, replications: int, seed: int,
        workers: int) -> tuple[Any, Any]:
    """Sweep every (strategy, I/O share): the per-run frame and a summary with `io_share`, `cpu_share` and
    `active` (mean tasks computing or waiting: being worked on rather than queued) with 95% CIs."""
    from scipy import stats

    points = [point(raw, s, x) for s in strategies for x in io_shares]
    frame = sweep(raw, points, replications=replications, seed=seed, workers=workers)
    shares = [x for _ in strategies for x in io_shares]
    frame["io_share"] = [shares[p] for p in frame["point"]]
    frame["active"] = frame["concurrency_computing_mean"] + frame["concurrency_waiting_mean"]
    summary = summarize(frame, ["strategy", "io_share"])
    t = float(stats.t.ppf(0.975, replications - 1)) if replications > 1 else math.nan
    active = frame.groupby("point")["active"]
    summary["active_mean"] = active.mean().to_numpy()
    summary["active_ci95"] = (t * active.std(ddof=1) / math.sqrt(replications)).to_numpy()
    summary["cpu_share"] = 1 - summary["io_share"]
    return frame, summary


def yaml_block(raw: dict[str, Any]) -> list[str]:
    """The model as a fenced YAML block."""
    import yaml

    return ["```yaml", yaml.safe_dump(raw, sort_keys=False).rstrip(), "```"]


def overheads_line() -> str:
    """The reference overheads, for the report."""
    return ("Overheads of the reference machine (`asyncsim calibrate`, 2 vCPUs, CPython 3.11.7), applied to the "
            f"strategies that pay them: loop step {REFERENCE.loops['asyncio'].loop_step_s * 1e6:.1f} µs and task "
            f"creation {REFERENCE.loops['asyncio'].task_create_s * 1e6:.1f} µs (asyncio), GIL hand-off "
            f"{REFERENCE.thread_switch_s * 1e6:.1f} µs (threads), dispatch {REFERENCE.process_dispatch_s * 1e6:.0f} µs "
            "(processes); 2 cores, GIL, 5 ms switch interval.")


def value(summary: Any, strategy: str, io_share: float, metric: str = "t_total") -> float:
    """A summary mean at one grid point."""
    row = summary[(summary["strategy"] == strategy) & (summary["io_share"].sub(io_share).abs() < 1e-9)]
    return float(row[f"{metric}_mean"].iloc[0])
