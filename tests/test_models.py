"""Every ready model in models/ loads, is documented, and runs under every strategy family."""

from __future__ import annotations

import json

import pytest

import asyncsim as a
from asyncsim.bounds import bounds
from asyncsim.scenario import build_scenario

from .conftest import MODELS, ROOT

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


AI_MODELS = {"llm_batch", "embed_backfill", "rag_ingest", "llm_extract", "rag_online", "gpu_server", "pool_fanout",
             "tokenize_offload"}


def test_the_ai_pipeline_models_ship():
    assert {p.stem for p in MODELS} >= AI_MODELS


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_model_runs(path, strategy):
    w = a.load(path)
    if w.stages is not None and not strategy.startswith("asyncio"):
        with pytest.raises(a.ModelError, match="a pipeline runs its stage workers as asyncio coroutines"):
            a.simulate(w, strategy=strategy, seed=1)
        return
    r = a.simulate(w, strategy=strategy, seed=1)
    assert r.completed + r.failed == r.tasks > 0
    assert r.completed > 0
    assert r.t_total > 0
    assert r.time_split.total == pytest.approx(r.latency.mean, rel=1e-9)


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_model_under_its_own_strategy_loses_no_task_and_names_its_binding_limit(path):
    w = a.load(path)
    r = a.simulate(w, seed=0)
    assert r.failed == 0, "a shipped model's default strategy is a sound configuration"
    limits = bounds(build_scenario(w, seed=0))
    assert limits[0].seconds <= r.t_total * (1 + 1e-9), f"{limits[0]} exceeds the prediction {r.t_total}"
    assert limits[0].seconds >= 0.5 * r.t_total, "the binding limit explains at least half of T_total"


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_bounds_hold_for_the_work_done(path, strategy):
    """Every bound is at most T_total when every task completes; when work is lost, the bounds of the work that
    was done still hold (those of all the work need not)."""
    w = a.load(path)
    if w.stages is not None and not strategy.startswith("asyncio"):
        return
    scenario = build_scenario(w, seed=1, strategy=strategy)
    r = a.simulate(scenario)
    done = bounds(scenario) if not r.lost else bounds(scenario, completed=r.completed_tasks)
    exact = [b for b in done if "≈" not in b.detail]  # batched stages' bounds are estimates
    assert all(b.seconds <= r.t_total * (1 + 1e-9) for b in exact), [b for b in exact if b.seconds > r.t_total]


def test_a_run_that_loses_work_says_its_bounds_are_for_the_work_done(capsys):
    from asyncsim.cli import main

    assert main(["run", str(ROOT / "models" / "llm_batch.yaml"), "--strategy", "asyncio", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["failed"] > 0
    assert d["t_total"] < d["bounds"][d["binding"]]  # below the bound of all the work ...
    assert max(d["bounds_completed"].values()) <= d["t_total"]  # ... not below that of the work done
    assert main(["run", str(ROOT / "models" / "llm_batch.yaml"), "--strategy", "asyncio"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"because {d['failed']:,} of 2,000 tasks did not complete" in text
    assert "bounds of the work of the" in text
