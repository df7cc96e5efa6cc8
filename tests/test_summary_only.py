"""Summary-only runs: the records are folded into the figures as the engine makes them, and none is kept.

The figures are the same to the last bit as a run that keeps its trace (compute_result folds the kept trace in
the same chunks), on traces of many chunks, under every kind of executor, with services, pools and retries.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import asyncsim
from asyncsim.cli import main
from asyncsim.errors import ModelError
from asyncsim.trace import CHUNK

MODELS = Path(__file__).resolve().parent.parent / "models"


def _bench(n: int, strategy: str) -> asyncsim.Workload:
    return asyncsim.Workload.from_dict({
        "name": "big", "arrivals": {"batch": n},
        "task": [{"cpu": 0.001}, {"io": {"exponential": {"mean": 0.05}}},
                 {"use": {"pool": "db", "steps": [{"call": "api"}]}}, {"cpu": 0.001}],
        "pools": {"db": 20}, "services": {"api": {"latency": {"lognormal": {"mean": 0.02, "cv": 0.5}},
                                                  "concurrency": 8, "failures": {"server_error": 0.05},
                                                  "retry": {"policy": "none"}}},
        "strategy": strategy})


@pytest.mark.parametrize("strategy", ["asyncio:100", "threads:8", "processes:4", "asyncio:50+threads:2"])
def test_the_same_figures_to_the_last_bit_over_many_chunks(strategy: str) -> None:
    w = _bench(12000, strategy)
    full = asyncsim.simulate(w, seed=4)
    summary = asyncsim.simulate(w, seed=4, summary_only=True)
    assert len(full.trace) > 3 * CHUNK  # several chunks, cut inside tasks' records
    assert summary.to_dict() == full.to_dict()
    assert summary.failed > 0  # failed calls (no retries): failed tasks are folded too


@pytest.mark.parametrize("name", ["llm_batch", "rag_online", "shared_llm", "pool_fanout", "cpu_etl"])
def test_shipped_models_the_same(name: str) -> None:
    w = asyncsim.load(MODELS / f"{name}.yaml")
    for engine in ("des", "auto"):
        full = asyncsim.simulate(w, seed=1, engine=engine)
        summary = asyncsim.simulate(w, seed=1, engine=engine, summary_only=True)
        assert summary.to_dict() == full.to_dict()
        assert summary.engine == full.engine


def test_a_summary_only_result_keeps_no_trace_and_says_so() -> None:
    result = asyncsim.simulate(asyncsim.load(MODELS / "web_fetch.yaml"), summary_only=True)
    with pytest.raises(ValueError, match="summary-only run: its records were folded"):
        _ = result.trace
    assert result.latency.p99 > 0  # the per-task table is kept: latencies, concurrency


def test_what_needs_the_whole_trace_is_refused_by_name() -> None:
    with pytest.raises(ModelError, match="parallel branches need all their records together"):
        asyncsim.simulate(asyncsim.load(MODELS / "api_fanout.yaml"), summary_only=True)
    with pytest.raises(ModelError, match="a pipeline's stage figures come from it"):
        asyncsim.simulate(asyncsim.load(MODELS / "rag_ingest.yaml"), summary_only=True)


def test_cli_summary_only(capsys: pytest.CaptureFixture[str]) -> None:
    model = str(MODELS / "rag_query.yaml")
    assert main(["run", model, "--json"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert main(["run", model, "--json", "--summary-only"]) == 0
    assert json.loads(capsys.readouterr().out) == full
    assert main(["run", model, "--summary-only", "--detail", "--json"]) == 2
    assert "--summary-only keeps no trace, and --detail is made from it" in capsys.readouterr().err
