"""Rankings never prefer a setting that loses work: sentences, orderings, sweep tables and reports."""

from __future__ import annotations

import json

import pandas as pd

from asyncsim.cli import main
from asyncsim.ranking import complete, lost, lost_text, ranked, speedups

from .conftest import ROOT

LLM = str(ROOT / "models" / "llm_batch.yaml")


def _run(strategy: str, t_total: float, completed: int, tasks: int = 100) -> dict:
    return {"strategy": strategy, "t_total": t_total, "tasks": tasks, "completed": completed,
            "failed": tasks - completed}


def test_the_fastest_run_that_loses_work_is_not_called_faster():
    results = [_run("asyncio:4", 400.0, 100), _run("asyncio:8", 200.0, 100), _run("asyncio", 10.0, 8)]
    assert speedups(results) == [
        "asyncio:8 is 2x faster than asyncio:4",
        "asyncio loses 92 of 100 tasks (not ranked: its T_total covers only what it finished)",
    ]
    assert [r["strategy"] for r in ranked(results)] == ["asyncio:8", "asyncio:4", "asyncio"]


def test_when_nothing_completes_the_sentence_says_so():
    results = [_run("a", 10.0, 60), _run("b", 5.0, 90), _run("c", 1.0, 10)]
    lines = speedups(results)
    assert lines[0] == "no strategy completes every task; the fewest lost: b (loses 10 of 100 tasks)"
    assert [r["strategy"] for r in ranked(results)] == ["b", "a", "c"]  # fewest lost first, then by T_total


def test_summary_rows_use_means_and_older_summaries_their_failed_count():
    row = pd.Series({"tasks_mean": 100.0, "completed_mean": 99.5, "failed_mean": 0.5, "t_total_mean": 3.0})
    assert lost(row) == 0.5
    assert not complete(row)
    assert lost_text(row) == "loses 0.5 of 100 tasks"
    old = pd.Series({"failed_mean": 2.0, "t_total_mean": 3.0})
    assert lost(old) == 2.0
    assert lost_text(old) == "loses 2 tasks"


def test_compare_ranks_the_lossy_fastest_strategy_last(capsys):
    assert main(["compare", LLM, "--strategies", "asyncio:4,asyncio:8,asyncio", "--json"]) == 0
    runs = {r["strategy"]: r for r in json.loads(capsys.readouterr().out)}
    assert runs["asyncio"]["t_total"] < runs["asyncio:8"]["t_total"]  # fastest because it lost most tasks
    assert runs["asyncio"]["failed"] > 1000
    assert main(["compare", LLM, "--strategies", "asyncio:4,asyncio:8,asyncio"]) == 0
    text = capsys.readouterr().out
    assert "asyncio:8 is 2x faster than asyncio:4" in text
    assert "asyncio is" not in text
    assert f"asyncio loses {runs['asyncio']['failed']:,} of 2,000 tasks (not ranked" in text
    for column in ("completed", "failed", "429s", "retries", "goodput/s", "throttled"):
        assert column in text
    assert "asyncio ⚠" in text


def test_sweep_table_summary_and_report_mark_lost_work(tmp_path, capsys):
    out = tmp_path / "s.csv"
    assert main(["sweep", LLM, "--set", "strategy=asyncio:{8,32}", "-r", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Fastest without lost work: strategy=asyncio:8" in text
    assert "asyncio:32 ⚠" in text
    summary = pd.read_csv(tmp_path / "s-summary.csv")
    for column in ("completed_mean", "failed_mean", "failed_fraction_mean", "goodput_mean", "rate_limited_mean",
                   "retries_mean", "tokens_wasted_mean", "cost_mean"):
        assert column in summary.columns
    assert summary.set_index("strategy").loc["asyncio:32", "failed_mean"] > 0
    assert main(["report", str(out), "--out", str(tmp_path / "r")]) == 0
    report = (tmp_path / "r" / "report.md").read_text()
    assert "Fastest without lost work: strategy=asyncio:8" in report
    assert "| asyncio:32 ⚠ |" in report
    assert "| strategy | runs | completed | failed | 429s | retries |" in report
