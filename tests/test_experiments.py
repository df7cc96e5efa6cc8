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


def test_rate_limit_sweep_quick_writes_its_report(tmp_path):
    script = ROOT / "experiments" / "rate_limit_sweep.py"
    subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path)], check=True, cwd=ROOT,
                   capture_output=True, timeout=300)
    report = (tmp_path / "report.md").read_text()
    lines = report.splitlines()
    assert lines[0] == "# Concurrency limit under a rate limit"
    assert lines[2].startswith("**Question:** for 2,000 chat completions against 500 RPM / 200,000 TPM")
    # asyncio:8 asks for just under 200k TPM: the largest quick-grid limit that loses no ticket
    assert lines[3].startswith("**Answer:** A limit of 8 (asyncio:8) has the highest goodput of the limits that "
                               "lose no ticket")
    # between the grid's 8 and 16
    assert "`asyncsim plan` finds asyncio:9 to be the fastest that loses none" in lines[3]
    assert "above the 12.1 min floor of the 200,000 TPM limit" in lines[3]
    assert "a client-side limiter at 95% of both limits leaves 0 429s" in lines[3]
    # the client libraries on the same key: the cookbook processor's own limiter keeps every ticket
    assert ("the openai-cookbook-processor client finishes the batch soonest without losing a ticket (asyncio:16"
            in lines[3])
    assert "| openai-python | 16 ⚠ |" in report
    assert "python experiments/rate_limit_sweep.py --quick" in report
    assert "seed 0" in report
    assert "asyncsim 0.1.0" in report
    assert "```yaml" in report
    for name in ("t_total.png", "errors.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG", name
    rows = list(csv.DictReader((tmp_path / "summary.csv").read_text().splitlines()))
    server = {int(r["limit"]): r for r in rows if r["client"] == "server 429s only"}
    limiter = {int(r["limit"]): r for r in rows if r["client"] != "server 429s only"}
    assert sorted(server) == sorted(limiter) == [2, 8, 16, 64]
    for k in (2, 8):  # within the limits: no 429, no lost ticket, T_total at or above every bound
        assert float(server[k]["svc.llm.rate_limited_mean"]) == 0 == float(server[k]["failed_mean"])
        assert float(server[k]["t_total_mean"]) >= float(server[k]["binding_s_mean"])
    assert float(server[64]["failed_mean"]) > float(server[16]["failed_mean"]) > 0
    for r in limiter.values():  # the limiter removes every 429 and every lost ticket
        assert float(r["svc.llm.rate_limited_mean"]) == 0 == float(r["failed_mean"])
        assert float(r["t_total_mean"]) >= float(r["floor_mean"])


def test_pipeline_bottleneck_quick_writes_its_report(tmp_path):
    script = ROOT / "experiments" / "pipeline_bottleneck.py"
    subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path)], check=True, cwd=ROOT,
                   capture_output=True, timeout=300)
    report = (tmp_path / "report.md").read_text()
    lines = report.splitlines()
    assert lines[0] == "# Pipeline bottleneck: parse workers, cores and embed batches"
    assert lines[2].startswith("**Question:** for 300 PDFs through parse → chunk → embed → upsert")
    assert lines[3].startswith("**Answer:** Parse is the bottleneck until there are as many parse workers as cores")
    assert "workers beyond the cores buy nothing" in lines[3]
    assert "python experiments/pipeline_bottleneck.py --quick" in report
    assert "seed 0" in report
    assert "asyncsim 0.1.0" in report
    assert "```yaml" in report
    for name in ("throughput.png", "utilisation.png", "queues.png", "batch.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG", name
    rows = list(csv.DictReader((tmp_path / "summary.csv").read_text().splitlines()))
    grid = {(int(r["cores"]), int(r["parse_workers"])): r for r in rows if r["sweep"] == "workers"}
    t = {k: float(r["t_total_mean"]) for k, r in grid.items()}
    # CPU-bound parse: T_total halves from 1 to 2 workers, then follows min(workers, cores)
    assert 1.9 < t[(2, 1)] / t[(2, 2)] < 2.1
    assert abs(t[(2, 8)] / t[(2, 2)] - 1) < 0.01
    assert 3.6 < t[(8, 2)] / t[(8, 8)] < 4.1  # 4x the workers, a little lost to the last parses (tail)
    for r in grid.values():
        assert r["bottleneck"] == "parse"
        assert r["binding"] in ("cpu", "stage parse")
        assert float(r["t_total_mean"]) >= float(r["binding_s_mean"])


def test_scheduling_policies_quick_writes_its_report(tmp_path):
    script = ROOT / "experiments" / "scheduling_policies.py"
    subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path)], check=True, cwd=ROOT,
                   capture_output=True, timeout=300)
    report = (tmp_path / "report.md").read_text()
    lines = report.splitlines()
    assert lines[0] == "# Scheduling a shared LLM key: FIFO vs priority vs fair share"
    assert lines[2].startswith("**Question:** chat requests (SLO: p99 ≤ 10 s per answer) and a backfill of 250")
    # priority serves chat first and leaves the backfill the rest: it holds both at 10% and 50% of the key
    assert lines[3].startswith("**Answer:** Priority meets the chat's p99 ≤ 10 s SLO and finishes the 250-document "
                               "backfill by its 10 min due time at every load up to 50% of the key")
    assert "no request lost" in lines[3]
    assert "fifo breaks the SLO from 10%" in lines[3]  # chat waits behind the whole backlog
    assert "fair 1:1 breaks the SLO from 50%" in lines[3]  # chat capped at half the key
    assert "python experiments/scheduling_policies.py --quick" in report
    assert "seed 0" in report
    assert "asyncsim 0.1.0" in report
    assert "```yaml" in report
    for name in ("latency.png", "batch.png", "cdf.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG", name
    rows = list(csv.DictReader((tmp_path / "summary.csv").read_text().splitlines()))
    at = {(r["policy"], float(r["load"])): r for r in rows}
    assert len(at) == 5 * 3
    assert float(at["priority", 0.1]["i.p99_mean"]) < 10 < float(at["fifo", 0.1]["i.p99_mean"])
    assert float(at["fifo", 0.1]["i.missed_mean"]) > 0 == float(at["priority", 0.1]["i.missed_mean"])
    # fair share guarantees the backfill its weighted share; priority leaves it what chat does not use
    assert float(at["fair 1:1", 0.9]["b.share_mean"]) > 0.45
    assert float(at["fair 3:1", 0.9]["b.share_mean"]) > 0.22
    assert float(at["priority", 0.9]["b.share_mean"]) < 0.15
    assert float(at["priority", 0.9]["b.t_total_mean"]) > 600 > float(at["fair 3:1", 0.9]["b.t_total_mean"])
    for r in rows:
        assert float(r["failed_mean"]) == 0
        # chat is served at its arrival rate under every policy (the limiter only reorders)
        assert abs(float(r["i.throughput_mean"]) / (float(r["load"]) * 2.4359) - 1) < 0.1
