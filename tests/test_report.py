"""`asyncsim report` and its figures: every saved output kind, what is missing said plainly, bad input named."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest

import asyncsim as a
from asyncsim import _json
from asyncsim._saved import read_saved
from asyncsim.cli import main
from asyncsim.metrics import STATES
from asyncsim.report import concurrency_figure, detail, report, validation_report
from asyncsim.results import Result
from asyncsim.validate import Validation

from .conftest import ROOT

ETL = str(ROOT / "models" / "cpu_etl.yaml")
RAG = str(ROOT / "models" / "rag_query.yaml")
PNG = b"\x89PNG"


def _save(capsys, path, *argv: str):
    assert main(list(argv)) == 0
    path.write_text(capsys.readouterr().out)
    return path


def _report(capsys, source, out) -> str:
    assert main(["report", str(source), "--out", str(out)]) == 0
    assert f"wrote {out / 'report.md'}" in capsys.readouterr().out
    assert not list(out.glob(".*.tmp")), "a temporary file was left behind"
    return (out / "report.md").read_text()


def test_detail_holds_every_completed_latency_and_the_concurrency_series():
    result = a.simulate(a.load(RAG), seed=3)
    d = detail(result)
    assert len(d["latencies"]) == result.completed
    assert sum(d["latencies"]) / len(d["latencies"]) == pytest.approx(result.latency.mean)
    series = result.concurrency_series()
    assert list(d["series"]) == list(series.columns)
    assert {"time", "in_flight", *STATES} <= set(d["series"])
    assert d["series"]["in_flight"] == series["in_flight"].tolist()
    json.dumps(d)  # JSON-ready


def test_run_json_with_detail_only_adds_a_key(capsys):
    assert main(["run", ETL, "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["run", ETL, "--json", "--detail"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert set(full) == {*plain, "detail"}
    assert {k: v for k, v in full.items() if k != "detail"} == plain
    assert len(full["detail"]["latencies"]) == plain["completed"]


def test_a_run_with_detail_gets_every_figure(capsys, tmp_path):
    source = _save(capsys, tmp_path / "run.json", "run", RAG, "--seed", "2", "--json", "--detail")
    text = _report(capsys, source, tmp_path / "r")
    assert text.startswith("# rag-query under asyncio:64\n")
    assert "seed 2" in text
    for name in ("utilisation.png", "concurrency.png", "latency_cdf.png"):
        assert f"]({name})" in text
        assert (tmp_path / "r" / name).read_bytes()[:4] == PNG
    assert "| asyncio:64 | pool:db | 10 |" in text  # the resources table
    assert "per-task data" not in text


def test_a_run_without_detail_says_what_is_missing_instead_of_simulating(capsys, tmp_path):
    source = _save(capsys, tmp_path / "run.json", "run", ETL, "-r", "3", "--json")
    text = _report(capsys, source, tmp_path / "r")
    assert "mean of 3 replications ± 95% CI" in text
    assert "need per-task data, which `run.json` does not hold" in text
    assert "asyncsim run MODEL --json --detail" in text
    assert not (tmp_path / "r" / "concurrency.png").exists()
    assert (tmp_path / "r" / "utilisation.png").exists()


def test_compare_report_says_how_much_faster(capsys, tmp_path):
    source = _save(capsys, tmp_path / "cmp.json", "compare", ETL, "--strategies", "sequential,processes:2",
                   "--json", "--detail")
    text = _report(capsys, source, tmp_path / "r")
    assert text.startswith("# cpu-etl: sequential, processes:2")
    assert "processes:2 is 2" in text
    assert "x faster than sequential" in text
    assert (tmp_path / "r" / "latency_cdf.png").read_bytes()[:4] == PNG


def test_sweep_output_reports_crossovers_from_the_table_and_from_its_summary(capsys, tmp_path):
    # threads:8 (GIL-bound): T = 199 c + d; processes:2: T = 100 (c + d). With d = 10 ms they cross at c = d.
    model = tmp_path / "m.yaml"
    model.write_text("arrivals: {batch: 200}\ntask: [{cpu: 0.01}, {io: 0.01}]\n")
    table = tmp_path / "sw.parquet"
    assert main(["sweep", str(model), "--set", "strategy=threads:8,processes:2", "--set",
                 "task.0.cpu=0.005,0.008,0.012,0.02", "--out", str(table), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    crossing = re.search(r"processes:2 overtakes threads:8 at task\.0\.cpu=([\d.]+) ", printed)
    assert crossing is not None, printed
    assert float(crossing[1]) == pytest.approx(0.01, rel=0.02)
    for source in (table, tmp_path / "sw-summary.csv"):
        out = tmp_path / source.stem
        text = _report(capsys, source, out)
        assert text.startswith("# Sweep of strategy, task.0.cpu")
        assert f"- processes:2 overtakes threads:8 at task.0.cpu={crossing[1]} " in text
        assert "| threads:8 | 0.005 | 1 |" in text
        assert (out / "t_total.png").read_bytes()[:4] == PNG
        assert (out / "concurrency_split.png").read_bytes()[:4] == PNG


def test_sweep_json_summary_without_a_numeric_axis_gets_a_bar_chart(capsys, tmp_path):
    source = _save(capsys, tmp_path / "sw.json", "sweep", ETL, "--set", "strategy=threads:2,asyncio",
                   "-r", "2", "--workers", "1", "--json")
    text = _report(capsys, source, tmp_path / "r")
    assert "2 grid points, 4 runs (a summary" in text
    assert "Crossovers" not in text
    assert (tmp_path / "r" / "t_total.png").read_bytes()[:4] == PNG


def _validation(seed_measured: int, *, with_detail: bool) -> dict:
    """A validate-shaped object from three simulations (no real run needed to test the report)."""
    w = a.load(ETL)
    runs = {k: a.simulate(w, strategy="threads:4", seed=s) for k, s in
            (("predicted", 0), ("measured", seed_measured), ("replayed", 0))}
    data = Validation(w.name, "threads:4", 0.5, "asyncio", runs["predicted"], runs["measured"],
                      runs["replayed"]).to_dict()
    if with_detail:
        for k, r in runs.items():
            data[k]["detail"] = detail(r)
    return data


@pytest.mark.parametrize("with_detail", [False, True])
def test_validate_output_gets_an_overlay(tmp_path, capsys, with_detail):
    source = tmp_path / "v.json"
    source.write_text(json.dumps([_validation(1, with_detail=with_detail), _validation(0, with_detail=with_detail)]))
    text = _report(capsys, source, tmp_path / "r")
    assert text.startswith("# cpu-etl: predicted vs measured")
    assert "for 1 of 2 strategies" in text or "for 2 of 2 strategies" in text
    assert (tmp_path / "r" / "overlay.png").read_bytes()[:4] == PNG
    assert ("--detail --out validate.json" in text) is not with_detail


def test_validate_output_shows_lost_work_and_a_scale_that_changed_the_outcome(tmp_path, capsys):
    data = _validation(0, with_detail=False)
    data["measured"]["failed"], data["measured"]["completed"] = 2, data["measured"]["completed"] - 2
    data["scale_check"] = {"time_scale": 0.002, "matches": False, "differences": ["failed 0 vs 24"]}
    source = tmp_path / "v.json"
    source.write_text(json.dumps([data]))
    text = _report(capsys, source, tmp_path / "r")
    assert "Failed tasks: predicted as measured for 0 of 1 strategies." in text
    assert "| threads:4 | 200 | 198 | 0 | 2 ⚠ |" in text
    assert ("⚠ threads:4: time scale 0.002 changes the outcome of the nominal prediction (scale 1, waits on "
            "sockets): failed 0 vs 24 (at 0.002 vs nominal).") in text


def test_the_validation_suite_results_are_rendered_as_its_report(tmp_path, capsys):
    shutil.copy(ROOT / "reports" / "validation" / "results.json", tmp_path / "results.json")
    text = _report(capsys, tmp_path / "results.json", tmp_path / "r")
    assert text.startswith("# Validation: does asyncsim predict real runs?")


def test_the_validation_report_judges_the_nominal_error_on_runs_that_held_their_cpu_speed(tmp_path):
    row = {"model": "m", "time_scale": 1.0, "predicted": 1.0, "replayed": 1.0, "measured": 1.0, "replay_error": 0.01,
           "concurrency_error": 0.0, "tasks": 10, "failed_replayed": 0, "failed_measured": 0}
    rows = [{**row, "strategy": "asyncio", "error": 0.03, "cpu_speed": 1.02},  # held, within 8%
            {**row, "strategy": "threads:8", "error": 0.12, "cpu_speed": 1.04},  # held, off by 12%
            {**row, "strategy": "processes:2", "error": -0.2, "cpu_speed": 0.8},  # the machine slowed: not judged
            {**row, "strategy": "asyncio:20", "error": 0.0, "cpu_speed": None}]  # no CPU step: held
    meta = {"command": "x", "asyncsim": "0", "python": "3.11", "platform": "p", "cpu_count": 2, "created": "now"}
    text = validation_report(rows, [], meta, tmp_path).read_text()
    assert "nominal prediction, which also carries this machine's CPU speed drift, is shown beside it: within 8% " \
           "in 2 of the 3 runs whose CPU held the rate it was calibrated at" in text
    assert "| m | processes:2 | 1 | 0.80 * | 1 s |" in text
    assert "| m | asyncio:20 | 1 | - | 1 s |" in text


def test_a_state_added_to_the_series_is_drawn_without_code_changes():
    series = pd.DataFrame({"time": [0.0, 1.0, 2.0], "in_flight": [2, 2, 0], **{s: [1, 1, 0] for s in STATES[:2]}})
    assert concurrency_figure({"x": series})[:4] == PNG


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("missing.json", None, "no such file"),
        ("model.yaml", "arrivals: {batch: 1}\ntask: [{cpu: 0.1}]\n", "not valid JSON"),
        ("plan.json", json.dumps({"path": "strategy", "answer": 3, "curve": [], "slos": []}), "a plan --json output"),
        ("empty.json", "[]", "an empty list"),
        ("other.json", json.dumps({"hello": 1}), "a JSON object with keys hello"),
        ("other.csv", "a,b\n1,2\n", "a table with columns a, b"),
        ("bytes.json", b"\xff\xfe\x00garbage", "not a text file"),
        ("run.json", json.dumps({"strategy": "asyncio", "t_total": 1.0, "concurrency": {"mean": 1.0}}),
         "missing 'model'; expected the output of run --json"),
        ("compare.json", json.dumps([{"strategy": "a", "t_total": 1.0, "concurrency": {}}] * 2),
         "item 0: missing 'model'"),
    ],
)
def test_bad_input_is_one_line_naming_the_file_and_exit_2(tmp_path, capsys, name, content, problem):
    source = tmp_path / name
    if isinstance(content, bytes):
        source.write_bytes(content)
    elif content is not None:
        source.write_text(content)
    assert main(["report", str(source), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"error: {source}: ")
    assert problem in err[0]
    assert not (tmp_path / "r" / "report.md").exists()


def test_importing_the_report_module_does_not_import_plotting_libraries():
    code = "import sys, asyncsim.report; print(any(m in sys.modules for m in ('matplotlib', 'seaborn')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_report_from_python_returns_the_path(tmp_path):
    source = tmp_path / "run.json"
    source.write_text(json.dumps(a.simulate(a.load(ETL), strategy="threads:2").to_dict()))
    assert report(source, tmp_path / "r") == tmp_path / "r" / "report.md"


def test_saved_runs_are_read_into_types(capsys, tmp_path):
    source = _save(capsys, tmp_path / "run.json", "run", ETL, "-r", "3", "--json")
    saved = read_saved(source)
    (run,) = saved.runs
    data = json.loads(source.read_text())
    assert run.replications == 3
    assert run.result.t_total == data["t_total"]
    assert run.half("latency", "p99") == data["ci95"]["latency"]["p99"]
    assert run.half("no", "such") is None
    assert run.detail is None
    assert _json.dumps(run.result.to_dict()) == _json.dumps(Result.from_dict(data).to_dict())
