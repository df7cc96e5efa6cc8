"""What the simulator and the real runner share about a pipeline batch: the draws it runs with.

One definition for both sides (a paired comparison needs the same composed durations), free of simpy and
asyncio so either may import it.
"""

from __future__ import annotations

from collections.abc import Iterator

from .scenario import CALL, CPU, Node, Scenario

__all__ = ["batch_durations", "leaves"]


def batch_durations(scenario: Scenario, node: Node, batch: list[int]) -> list[float]:
    """The draws (model seconds, indexed like a task's row) that `batch` runs stage `node`'s steps with.

    The first item's draws, with each cpu step's time and each call's input and output tokens summed over the
    batch; io steps and call latencies stay the first item's (a call's per-item latency is added where it is
    served, from the batch size).
    """
    rows = [scenario.task_durations(i) for i in batch]
    durs = rows[0].tolist()
    if len(batch) == 1:
        return durs
    for n in leaves(node.body):
        if n.kind == CPU:
            durs[n.id] = float(sum(r[n.id] for r in rows))
        elif n.kind == CALL and n.col >= 0:
            durs[n.col] = float(sum(r[n.col] for r in rows))
            durs[n.col + 1] = float(sum(r[n.col + 1] for r in rows))
    return durs


def leaves(nodes: tuple[Node, ...]) -> Iterator[Node]:
    """Every node of a step tree, depth first (use bodies and parallel branches included)."""
    for node in nodes:
        yield node
        yield from leaves(node.body)
        for branch in node.branches:
            yield from leaves(branch)
