"""Every ready model in models/ loads, is documented, and runs under every strategy family."""

from __future__ import annotations

import pytest

import asyncsim as a

from .conftest import MODELS

STRATEGIES = ["sequential", "threads:8", "processes:2", "asyncio", "asyncio:16", "asyncio:16+threads:2",
              "asyncio:16+processes:2"]


def test_at_least_the_three_kinds_of_model_ship():
    names = {p.stem for p in MODELS}
    assert {"web_fetch", "cpu_etl", "rag_query"} <= names


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_model_is_documented(path):
    text = path.read_text()
    assert text.startswith("#"), "a model file opens with a comment: what it stands for, where its numbers come from"
    w = a.load(path)
    assert w.description


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_model_runs(path, strategy):
    r = a.simulate(a.load(path), strategy=strategy, seed=1)
    assert r.completed == r.tasks > 0
    assert r.t_total > 0
    split = r.time_split
    assert split["task"] + split["wait"] + split["queue"] == pytest.approx(r.latency["mean"], rel=1e-9)
