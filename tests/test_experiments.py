"""Pure-simulation experiments run in their quick mode and write a report that opens with its question."""

from __future__ import annotations

import csv
import subprocess
import sys

from .conftest import ROOT


def test_blocking_vs_async_quick_writes_its_report(tmp_path):
    script = ROOT / "experiments" / "blocking_vs_async.py"
    subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path)], check=True, cwd=ROOT,
                   capture_output=True, timeout=300)
    report = (tmp_path / "report.md").read_text()
    lines = report.splitlines()
    assert lines[0] == "# Blocking vs async: when does asyncio pay off?"
    assert lines[2].startswith("**Question:** ")
    assert lines[3].startswith("**Answer:** Sequential code is fastest only while I/O is under ")
    assert "python experiments/blocking_vs_async.py --quick" in report
    assert "seed 0" in report
    assert "asyncsim 0.1.0" in report
    assert "```yaml" in report
    assert "- asyncio overtakes sequential at io_share=" in report
    for name in ("t_total.png", "active.png", "concurrency_split.png", "concurrency.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG", name
    rows = list(csv.DictReader((tmp_path / "summary.csv").read_text().splitlines()))
    seq = [r for r in rows if r["strategy"] == "sequential"]
    # one task at a time, never more: sequential keeps exactly one task computing or waiting at every share
    assert seq
    assert all(abs(float(r["active_mean"]) - 1.0) < 1e-9 for r in seq)
