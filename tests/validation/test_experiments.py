"""Every shipped experiment runs in its quick mode and writes a report that opens with its question."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ..conftest import ROOT

pytestmark = pytest.mark.validation


def test_validation_suite_quick_writes_a_report(tmp_path):
    script = ROOT / "experiments" / "validation_suite.py"
    subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path)], check=True, cwd=ROOT,
                   capture_output=True, timeout=300)
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# Validation: does asyncsim predict real runs?")
    assert "**Question:**" in report
    assert "**Answer:**" in report
    assert (tmp_path / "predicted_vs_measured.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"], "the quick run measured nothing"
    assert {"model", "strategy", "predicted", "replayed", "measured", "replay_error"} <= set(saved["rows"][0])
    assert saved["meta"]["seed"] == 0
    assert saved["meta"]["asyncsim"]
    # the report can be rewritten from the saved results alone (save, then analyse)
    (tmp_path / "report.md").unlink()
    subprocess.run([sys.executable, str(script), "--render", "--out", str(tmp_path)], check=True, cwd=ROOT,
                   capture_output=True, timeout=120)
    assert (tmp_path / "report.md").read_text().startswith("# Validation")


def test_gil_contention_quick_writes_a_report_with_a_real_run(tmp_path):
    script = ROOT / "experiments" / "gil_contention.py"
    subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path)], check=True, cwd=ROOT,
                   capture_output=True, timeout=300)
    report = (tmp_path / "report.md").read_text()
    lines = report.splitlines()
    assert lines[0] == "# GIL contention: threads, processes or offload?"
    assert lines[2].startswith("**Question:** ")
    assert lines[3].startswith("**Answer:** On 2 cores with a GIL, processes:2 overtakes threads:8 at a CPU share of ")
    assert "## Real runs" in report
    saved = json.loads((tmp_path / "real_runs.json").read_text())
    assert [(r["strategy"], r["cpu_share"]) for r in saved["rows"]] == [("threads:8", 0.5)]
    assert saved["rows"][0]["measured"] > 0
    for name in ("t_total.png", "active.png", "concurrency_split.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG", name


def test_ai_clients_quick_writes_a_report_of_a_real_openai_run(tmp_path):
    script = ROOT / "experiments" / "ai_clients.py"
    subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path)], check=True, cwd=ROOT,
                   capture_output=True, timeout=300)
    report = (tmp_path / "report.md").read_text()
    lines = report.splitlines()
    assert lines[0] == "# Real client libraries against asyncsim serve"
    assert lines[3].startswith("**Answer:** T_total within 5% in ")
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved) == 1
    assert saved[0]["client"] == "openai"
    assert saved[0]["measured"]["completed"] == 60
    assert saved[0]["client_cpu_s"] > 0
