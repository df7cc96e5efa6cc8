"""Shared fixtures: paths to the ready models and a small mixed workload."""

from __future__ import annotations

from pathlib import Path

import pytest

import asyncsim as a

ROOT = Path(__file__).resolve().parent.parent
MODELS = sorted((ROOT / "models").glob("*.yaml"))


@pytest.fixture
def mixed() -> a.Workload:
    """A small workload with every step kind, a pool and a bounded service."""
    return a.Workload(
        name="mixed",
        arrivals=a.Poisson(rate=50, count=200),
        task=(
            a.cpu(0.002),
            a.use("db", [a.io(a.Exponential(0.01))]),
            a.parallel([a.io(0.02)], [a.call("api"), a.cpu(0.001)]),
            a.call("api"),
        ),
        pools={"db": a.Pool(capacity=3)},
        services={"api": a.Service(latency=a.Lognormal(mean=0.05, cv=0.5), concurrency=4)},
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Real runs first: some later tests (a Dask cluster) leave background threads in this process, and
    threads that wake up take the GIL from a real run's CPU work."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("validation") else 1)
