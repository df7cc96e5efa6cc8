"""The command line: summaries, JSON, comparisons, replications, and exit codes for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from asyncsim._format import fmt_s
from asyncsim.cli import main
from asyncsim.console import diff as _diff

from .conftest import ROOT

WEB = str(ROOT / "models" / "web_fetch.yaml")


def _json(capsys, *argv: str):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_run_prints_a_readable_summary(capsys):
    assert main(["run", WEB]) == 0
    out = capsys.readouterr().out
    for word in ("web-fetch", "asyncio:50", "T_total", "latency", "in flight", "resources", "loop"):
        assert word in out


def test_run_json_has_the_documented_shape(capsys):
    d = _json(capsys, "run", WEB, "--strategy", "threads:8", "--seed", "3", "--json")
    assert list(d) == ["model", "strategy", "seed", "tasks", "completed", "failed", "failed_fraction", "t_total",
                       "throughput", "goodput",
                       "latency", "concurrency", "time_split", "resources", "engine", "bounds", "binding"]
    assert d["engine"] == "des"  # CPU steps under the GIL: the fast path does not apply
    assert d["binding"] == max(d["bounds"], key=d["bounds"].get)
    assert d["bounds"][d["binding"]] <= d["t_total"]
    assert (d["strategy"], d["seed"], d["tasks"], d["completed"]) == ("threads:8", 3, 500, 500)
    assert list(d["latency"]) == ["mean", "p50", "p95", "p99", "max"]
    assert list(d["concurrency"]) == ["mean", "peak", "computing_mean", "waiting_mean", "queued_mean",
                                      "throttled_mean"]
    assert list(d["time_split"]) == ["task", "wait", "queue", "throttled"]
    assert set(d["resources"]["workers"]) >= {"utilization", "mean_wait", "mean_queue"}


def test_run_json_shows_each_services_client_rules_expanded(capsys):
    d = _json(capsys, "run", str(ROOT / "models" / "llm_batch.yaml"), "--json")
    llm = d["clients"]["llm"]
    assert (llm["client"], llm["retry"]["max_retries"], llm["retry"]["retry_after_window"]) == (
        "openai-python", 2, [0.0, 120.0])
    assert "_calculate_retry_timeout" in llm["source"]
    assert llm["server"] == {"retry_after": "exact", "concurrent_limit": None}


def test_same_seed_gives_byte_identical_json_across_processes():
    cmd = [sys.executable, "-m", "asyncsim.cli", "run", WEB, "--strategy", "asyncio:20", "--seed", "5", "--json"]
    first = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    second = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert first == second
    assert json.loads(first)["seed"] == 5


def test_replications_report_means_and_ci(capsys):
    d = _json(capsys, "run", WEB, "--strategy", "asyncio:20", "--replications", "5", "--json")
    assert d["replications"] == 5
    assert d["ci95"]["t_total"] > 0
    assert d["tasks"] == 500
    single = _json(capsys, "run", WEB, "--strategy", "asyncio:20", "--json")
    assert abs(d["t_total"] - single["t_total"]) < 5 * d["ci95"]["t_total"]


def test_compare_is_paired_and_names_the_fastest(capsys):
    rows = _json(capsys, "compare", WEB, "--strategies", "sequential,threads:8,asyncio", "--json")
    assert [r["strategy"] for r in rows] == ["sequential", "threads:8", "asyncio"]
    assert rows[2]["t_total"] < rows[1]["t_total"] < rows[0]["t_total"]
    assert main(["compare", WEB, "--strategies", "sequential,asyncio"]) == 0
    assert "asyncio is" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", WEB, "--strategy", "asynco"], "strategy: not a valid strategy 'asynco'"),
        (["run", "nope.yaml"], "nope.yaml: cannot read the model file"),
        (["run", WEB, "--replications", "0"], "--replications: must be >= 1"),
        (["compare", WEB, "--strategies", ","], "--strategies: give at least one strategy"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_bad_model_file_lists_every_problem(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("arrivals: {batch: 0}\ntask: [{cpu: -1}, {io: {lognormal: {mean: 1, cv: 0}}}]\n")
    assert main(["run", str(bad)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"error: {bad}: arrivals.batch.count: must be >= 1 (got 0)",
        f"error: {bad}: task[0].cpu: must be >= 0 (got -1)",
        f"error: {bad}: task[1].io.lognormal.cv: must be > 0 (got 0)",
    ]


def test_deadlock_exits_1_with_a_message(tmp_path, capsys):
    model = tmp_path / "dead.yaml"
    model.write_text("arrivals: {batch: 2}\ntask: [{use: {pool: p, steps: [{use: {pool: p, steps: [{io: 1}]}}]}}]\n"
                     "pools: {p: 1}\n")
    assert main(["run", str(model)]) == 1
    err = capsys.readouterr().err
    assert "deadlock at t=0s: 2 of 2 tasks can never finish" in err
    assert "task 1 waits for pool:p (held by task 0) since t=0s" in err
    assert "cycle: task 0 -> pool:p -> task 0" in err


def test_a_run_limit_stops_a_long_run_and_says_which(tmp_path, capsys):
    model = tmp_path / "long.yaml"
    model.write_text("arrivals: {poisson: {rate: 10, duration: 3600}}\ntask: [{io: 1}]\n")
    assert main(["run", str(model), "--max-sim-time", "60"]) == 1
    assert "stopped by --max-sim-time 60 s at t=60s" in capsys.readouterr().err
    assert main(["run", str(model), "--max-events", "1000"]) == 1
    assert "stopped by --max-events 1000" in capsys.readouterr().err
    assert main(["run", str(model), "--max-events", "0"]) == 2


def test_fmt_s():
    assert [fmt_s(x) for x in (0, 5e-6, 0.0123, 4.56, 450, 9000)] == ["0 s", "5 µs", "12.3 ms", "4.56 s",
                                                                       "7.5 min", "2.5 h"]


def test_sweep_prints_a_summary_and_resumes_from_its_output(tmp_path, capsys):
    out = tmp_path / "sweep.csv"
    argv = ["sweep", WEB, "--set", "strategy=asyncio:{10,50}", "-r", "2", "--workers", "1", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "asyncio:10" in text
    assert "asyncio:50" in text
    first = out.read_text()
    assert len(first.strip().splitlines()) == 1 + 4  # header + 2 points x 2 replications
    assert main([*argv[:3], "strategy=asyncio:{10,50,100}", *argv[4:], "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [row["strategy"] for row in summary] == ["asyncio:10", "asyncio:50", "asyncio:100"]
    assert summary[0]["t_total_mean"] > summary[1]["t_total_mean"] > summary[2]["t_total_mean"]
    assert (tmp_path / "sweep-summary.csv").exists()


def test_sweep_reports_bad_points_before_running(capsys):
    assert main(["sweep", WEB, "--set", "strategy=asyncio:{0,5}", "--set", "pools.x=1"]) == 2
    err = capsys.readouterr().err
    assert "--set" in err
    assert "Traceback" not in err


def test_plan_finds_the_smallest_limit_meeting_a_deadline(tmp_path, capsys):
    model = tmp_path / "batch.yaml"
    model.write_text("name: io-batch\narrivals: {batch: 100}\ntask: [{io: 1.0}]\n")
    # 100 tasks of 1 s under asyncio:K take ceil(100/K) s: the smallest K finishing within 7 s is 15
    argv = ["plan", str(model), "--vary", "strategy=asyncio:1..512", "--deadline", "7s", "-r", "2",
            "--objective", "smallest"]
    assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["value"] == "asyncio:15"
    assert data["slos"] == ["t_total <= 7s", "failed <= 0"]
    assert data["evaluations"] < 25  # a search, not a grid of 512
    assert main(argv) == 0
    assert "asyncio:15 is the smallest setting" in capsys.readouterr().out
    # by default the fastest: 1 s from asyncio:100 on
    assert main([*argv[:-2], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["value"] == "asyncio:100"
    assert main(["plan", str(model), "--vary", "strategy=asyncio", "--allow-failures"]) == 2
    assert "--slo" in capsys.readouterr().err


@pytest.mark.parametrize(("p", "m", "exact", "shown"), [
    (3, 3, True, "0"), (4, 3, True, "[red]+1"),          # a task lost is flagged however few
    (104, 100, False, "+4"), (106, 100, False, "[red]+6"),  # 429s and retries: beyond max(1, 5%)
    (1, 0, False, "+1"),
])
def test_count_rows_flag_lost_work(p, m, exact, shown):
    assert _diff(p, m, exact=exact) == shown
