"""Input and output hygiene: strict JSON out of every command, files written with the user's permissions."""

from __future__ import annotations

import importlib
import json
import math
import os
import stat

import numpy as np
import pytest

import asyncsim as a
from asyncsim import _json
from asyncsim._io import write_atomic
from asyncsim.cli import main

from .conftest import MODELS, ROOT

WEB = str(ROOT / "models" / "web_fetch.yaml")
# every task fails: no latency exists, so the figures are NaN in memory and must be null in JSON
ALL_FAIL = "arrivals: {batch: 3}\ntask: [{call: api}]\n" \
           "services: {api: {latency: 0.1, failures: {server_error: 1.0}, retry: {policy: none}}}\n"


def _strict_loads(text: str):
    """json.loads that refuses NaN and Infinity (what JSON.parse or jq would do)."""
    def refuse(constant: str):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def _out(capsys, *argv: str):
    assert main(list(argv)) == 0
    return _strict_loads(capsys.readouterr().out)


# ------------------------------------------------------------------------------------------ strict JSON


def test_dumps_writes_null_for_non_finite_numbers_and_plain_numbers_for_numpy():
    data = {"nan": math.nan, "inf": math.inf, "neg": -np.inf, "np": np.float64(1.5), "int": np.int64(3),
            "flag": np.bool_(True), "arr": np.array([1.0, np.nan]), "tuple": (1, math.nan), np.int64(7): "key"}
    text = _json.dumps(data)
    assert _strict_loads(text) == {"nan": None, "inf": None, "neg": None, "np": 1.5, "int": 3, "flag": True,
                                   "arr": [1.0, None], "tuple": [1, None], "7": "key"}
    assert "NaN" not in text
    assert "Infinity" not in text


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_run_json_of_every_shipped_model_is_strict_json(capsys, path):
    data = _out(capsys, "run", str(path), "--json")
    assert data["completed"] > 0


def test_a_run_without_completed_tasks_writes_null_latencies_with_a_reason(capsys, tmp_path):
    model = tmp_path / "fail.yaml"
    model.write_text(ALL_FAIL)
    single = _out(capsys, "run", str(model), "--json")
    assert single["latency"] == dict.fromkeys(("mean", "p50", "p95", "p99", "max"))
    assert single["null_reason"] == {"latency": "no task completed"}
    replicated = _out(capsys, "run", str(model), "--json", "-r", "2")
    assert replicated["ci95"]["latency"]["p99"] is None
    rows = _out(capsys, "compare", str(model), "--strategies", "asyncio,threads:2", "--json", "--detail")
    assert [r["latency"]["mean"] for r in rows] == [None, None]
    # a report reads the nulls back (as NaN: "no value") and renders
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps(single))
    assert main(["report", str(saved), "--out", str(tmp_path / "r")]) == 0


def test_every_json_command_writes_strict_json(capsys, tmp_path):
    model = tmp_path / "batch.yaml"
    model.write_text("name: io-batch\narrivals: {batch: 20}\ntask: [{io: 1.0}]\n")
    _out(capsys, "run", WEB, "-r", "2", "--json")
    _out(capsys, "compare", WEB, "--strategies", "sequential,asyncio", "--json")
    rows = _out(capsys, "sweep", str(model), "--set", "strategy=asyncio:{1,2}", "--workers", "1", "--json")
    assert rows[0]["t_total_ci95"] is None  # one replication: no confidence interval
    plan = _out(capsys, "plan", str(model), "--vary", "strategy=asyncio:1..64", "--deadline", "5s", "-r", "2",
                "--json")
    assert plan["value"] == "asyncio:4"


def test_validate_json_and_out_file_are_strict_json(capsys, tmp_path, monkeypatch):
    """The real runner is replaced by simulations: what is tested is how validate writes its results."""
    from asyncsim.profile import LoopProfile, MachineProfile

    module = importlib.import_module("asyncsim.validate")  # `asyncsim.validate` is also the function

    model = tmp_path / "fail.yaml"
    model.write_text(ALL_FAIL)
    profile = tmp_path / "profile.json"
    loop = LoopProfile(loop_step_s=0, sleep_overshoot_s=0, task_create_s=0, timer_floor_s=0)
    MachineProfile(cpu_rate=1e7, loops={"asyncio": loop}, thread_sleep_overshoot_s=0, thread_switch_s=0,
                   process_dispatch_s=0).save(profile)

    def fake_validate(workload, *, strategy, seed, time_scale, profile, loop):
        run = a.simulate(workload, strategy=strategy, seed=seed)
        return module.Validation(workload.name, str(strategy), time_scale, loop, run, run, run)

    monkeypatch.setattr(module, "validate", fake_validate)
    out = tmp_path / "v.json"
    printed = _out(capsys, "validate", str(model), "--machine-profile", str(profile), "--out", str(out), "--json")
    saved = _strict_loads(out.read_text())
    assert printed == saved
    assert saved["error"]["t_total"] is None  # relative to a measured 0
    assert saved["measured"]["null_reason"] == {"latency": "no task completed"}


def test_calibrate_json_and_profile_file_are_strict_json(capsys, tmp_path, monkeypatch):
    import asyncsim.real.calibrate
    from asyncsim.profile import LoopProfile, MachineProfile

    loop = LoopProfile(loop_step_s=1e-6, sleep_overshoot_s=1e-4, task_create_s=1e-6, timer_floor_s=1e-3)
    made = MachineProfile(cpu_rate=1e7, loops={"asyncio": loop}, thread_sleep_overshoot_s=1e-4,
                          thread_switch_s=1e-5, process_dispatch_s=1e-4)
    monkeypatch.setattr(asyncsim.real.calibrate, "calibrate", lambda **_: made)
    out = tmp_path / "profile.json"
    printed = _out(capsys, "calibrate", "--out", str(out), "--json")
    assert printed == _strict_loads(out.read_text())
    assert MachineProfile.read(out) == made


# ------------------------------------------------------------------------------------------ files


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it after."""
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_write_atomic_gives_a_new_file_the_mode_open_would(tmp_path, umask, mask, mode):
    umask(mask)
    path = write_atomic(tmp_path / "new.json", "{}")
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert [p.name for p in tmp_path.iterdir()] == ["new.json"]  # no temporary file left behind


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_write_atomic_keeps_the_mode_of_the_file_it_replaces(tmp_path, umask):
    umask(0o077)
    path = tmp_path / "shared.md"
    path.write_text("old")
    path.chmod(0o664)
    write_atomic(path, "new")
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o664
