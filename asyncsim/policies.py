"""Scheduling policies as model data: the order in which waiting work is served, wherever work waits.

A `Policy` is `fifo`, `lifo`, `priority`, `sjf`, `fair` or `edf` (`priority` optionally preemptive). Its
behaviour — tickets, wait queues, a policy-ordered server — lives in `asyncsim.rules.queues`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import model_validator

from ._model import Frozen

__all__ = ["KINDS", "Policy", "parse_policy"]

KINDS = ("fifo", "lifo", "priority", "sjf", "fair", "edf")


class Policy(Frozen):
    """A queue discipline; written `fifo` or `{priority: {preemptive: true}}` in a model file."""

    kind: Literal["fifo", "lifo", "priority", "sjf", "fair", "edf"] = "fifo"
    preemptive: bool = False

    @model_validator(mode="before")
    @classmethod
    def _short(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"kind": data.strip().lower()}
        if isinstance(data, dict) and len(data) == 1 and next(iter(data)) in KINDS:
            kind, opts = next(iter(data.items()))
            return {"kind": kind, **(opts or {})}
        return data

    @model_validator(mode="after")
    def _preemptive_priority(self) -> Policy:
        if self.preemptive and self.kind != "priority":
            raise ValueError(f"only priority can be preemptive (got {self.kind})")
        return self

    def __str__(self) -> str:
        return "priority (preemptive)" if self.preemptive else self.kind


def parse_policy(value: Any) -> Policy:
    """A Policy from its model-file form."""
    return value if isinstance(value, Policy) else Policy.model_validate(value)
