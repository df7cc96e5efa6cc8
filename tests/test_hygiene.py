"""Input and output hygiene: strict JSON out of every command, files written with the user's permissions."""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import asyncsim as a
from asyncsim import _json
from asyncsim._io import write_atomic
from asyncsim.cli import main

from .conftest import MODELS, ROOT

WEB = str(ROOT / "models" / "web_fetch.yaml")
ETL = str(ROOT / "models" / "cpu_etl.yaml")
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
    summary = _out(capsys, "sweep", str(model), "--set", "strategy=asyncio,threads:2", "--workers", "1", "--json")
    assert summary[0]["latency_p95_mean"] is None
    # a report reads the nulls back (as NaN: "no value") and renders
    for name, data in (("run", single), ("compare", rows), ("sweep", summary)):
        saved = tmp_path / f"{name}.json"
        saved.write_text(json.dumps(data))
        assert main(["report", str(saved), "--out", str(tmp_path / name)]) == 0


def test_every_json_command_writes_strict_json(capsys, tmp_path):
    model = tmp_path / "batch.yaml"
    model.write_text("name: io-batch\narrivals: {batch: 20}\ntask: [{io: 1.0}]\n")
    _out(capsys, "run", WEB, "-r", "2", "--json")
    _out(capsys, "compare", WEB, "--strategies", "sequential,asyncio", "--json")
    rows = _out(capsys, "sweep", str(model), "--set", "strategy=asyncio:{1,2}", "--workers", "1", "--json")
    assert rows[0]["t_total_ci95"] is None  # one replication: no confidence interval
    plan = _out(capsys, "plan", str(model), "--vary", "strategy=asyncio:1..64", "--deadline", "5s", "-r", "2",
                "--json")
    assert plan["value"] is not None


def _simulated_validate(tmp_path, monkeypatch, speed=lambda _strategy: None) -> Path:
    """`validate` with its real runs replaced by simulations, each with the CPU speed `speed(strategy)`; returns
    the path of a zero-overhead machine profile to give it (so nothing is calibrated either)."""
    from asyncsim.profile import LoopProfile, MachineProfile

    module = importlib.import_module("asyncsim.validate")  # `asyncsim.validate` is also the function
    profile = tmp_path / "profile.json"
    loop = LoopProfile(loop_step_s=0, sleep_overshoot_s=0, task_create_s=0, timer_floor_s=0)
    MachineProfile(cpu_rate=1e7, loops={"asyncio": loop}, thread_sleep_overshoot_s=0, thread_switch_s=0,
                   process_dispatch_s=0).save(profile)

    def fake_validate(workload, *, strategy, seed, time_scale, profile, loop, **_):
        run = a.simulate(workload, strategy=strategy, seed=seed)
        return module.Validation(workload.name, str(strategy), time_scale, loop, run, run, run,
                                 cpu_speed=speed(str(strategy)))

    monkeypatch.setattr(module, "validate", fake_validate)
    return profile


def test_validate_json_and_out_file_are_strict_json(capsys, tmp_path, monkeypatch):
    """The real runner is replaced by simulations: what is tested is how validate writes its results."""
    profile = _simulated_validate(tmp_path, monkeypatch)
    model = tmp_path / "fail.yaml"
    model.write_text(ALL_FAIL)
    out = tmp_path / "v.json"
    printed = _out(capsys, "validate", str(model), "--machine-profile", str(profile), "--out", str(out), "--json")
    saved = _strict_loads(out.read_text())
    assert printed == saved
    assert saved["error"]["latency_p50"] is None  # relative to a measured latency that does not exist
    assert saved["measured"]["null_reason"] == {"latency": "no task completed"}


def test_validate_says_when_the_machine_speed_moved_during_the_run(capsys, tmp_path, monkeypatch):
    """A run whose CPU ran 20% slower than calibrated: the table is followed by a line saying so."""
    profile = _simulated_validate(tmp_path, monkeypatch, lambda strategy: 0.8 if strategy == "sequential" else 1.03)
    assert main(["validate", ETL, "--strategies", "sequential,asyncio", "--machine-profile", str(profile),
                 "--time-scale", "1"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert ("sequential: the CPU steps ran 20% slower than the rate measured before the run: the machine's speed "
            "moved, and the nominal error carries it (the replay does not)") in text
    assert "asyncio: the CPU steps ran" not in text  # 3% off: it held its speed
    assert main(["validate", ETL, "--strategy", "sequential", "--machine-profile", str(profile), "--time-scale", "1",
                 "--json"]) == 0
    assert _strict_loads(capsys.readouterr().out)["cpu_speed"] == 0.8


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


# ------------------------------------------------------------------------------- malformed models: exit 2


BASE = {
    "arrivals": "{batch: 3}",
    "task": "[{call: api}, {use: {pool: db, steps: [{io: 0.1}]}}]",
    "pools": "{db: 2}",
    "services": "{api: {latency: 0.1}}",
}


def _model(tmp_path, **changes: str | None):
    """A valid small model with top-level entries replaced (YAML flow text) or removed (None), as a file."""
    path = tmp_path / "m.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in (BASE | changes).items() if v is not None))
    return path


def _exit_2(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


NON_FINITE = [
    ({"arrivals": "{poisson: {rate: .inf, count: 3}}"}, "arrivals.poisson.rate: must be a finite number (got inf)"),
    ({"arrivals": "{poisson: {rate: 1, duration: .nan}}"}, "arrivals.poisson.duration: must be a finite number"),
    ({"arrivals": "{trace: {times: [0, .inf]}}"}, "arrivals.trace.times[1]: must be a finite number (got inf)"),
    ({"arrivals": "{uniform: {interval: -.inf, count: 2}}"}, "arrivals.uniform.interval: must be a finite number"),
    ({"arrivals": "{closed: {users: 2, think: .nan, count: 4}}"}, "arrivals.closed.think: must be a finite number"),
    ({"task": "[{cpu: .nan}]"}, "task[0].cpu: must be a finite number (got nan)"),
    ({"task": "[{io: -.inf}]"}, "task[0].io: must be a finite number (got -inf)"),
    ({"task": "[{io: 1.0e+400}]"}, "task[0].io: must be a finite number (got inf)"),  # YAML overflows to inf
    ({"task": "[{io: 1e400}]"}, "task[0].io: must be a finite number (got '1e400')"),  # YAML 1.1: a string
    ({"task": "[{io: {lognormal: {mean: .inf, cv: 1}}}]"}, "task[0].io.lognormal.mean: must be a finite number"),
    ({"task": "[{io: {uniform: {low: 0, high: .inf}}}]"}, "task[0].io.uniform.high: must be a finite number"),
    ({"task": "[{io: {normal: {mean: .nan, sd: 1}}}]"}, "task[0].io.normal.mean: must be a finite number"),
    ({"task": "[{io: {empirical: {values: [1, .nan]}}}]"}, "task[0].io.empirical.values[1]: must be a finite"),
    ({"task": "[{parallel: [[{io: 1}], [{cpu: .inf}]]}]"}, "task[0].parallel[1][0].cpu: must be a finite number"),
    ({"task": None, "tasks": "[{steps: [{io: 1}], weight: .inf}]"}, "tasks[0].weight: must be a finite number"),
    ({"task": None, "tasks": "[{steps: [{io: 1}], deadline: .nan}]"}, "tasks[0].deadline: must be a finite number"),
    ({"pools": "{db: {capacity: 2, timeout: .inf}}"}, "pools.db.timeout: must be a finite number (got inf)"),
    ({"services": "{api: {latency: .inf}}"}, "services.api.latency: must be a finite number (got inf)"),
    ({"services": "{api: {latency: 0.1, timeout: 1e400}}"},  # YAML 1.1 reads 1e400 as a string; pydantic as inf
     "services.api.timeout: must be a finite number (got '1e400')"),
    ({"services": "{api: {latency: 0.1, rate_limit: {rpm: .inf}}}"}, "services.api.rate_limit.rpm: must be a finite"),
    ({"services": "{api: {latency: 0.1, client_limit: {rpm: 60, window: .nan}}}"},
     "services.api.client_limit.window: must be a finite number (got nan)"),
    ({"services": "{api: {latency: 0.1, failures: {server_error: .nan}}}"},
     "services.api.failures.server_error: must be a finite number"),
    ({"services": "{api: {latency: 0.1, retry: {initial: .inf}}}"}, "services.api.retry.initial: must be a finite"),
    ({"services": "{api: {latency: 0.1, tokens: {input: .inf}}}"}, "services.api.tokens.input: must be a finite"),
    ({"services": "{api: {batching: {max_batch: 4, fixed: .inf}}}"}, "services.api.batching.fixed: must be a finite"),
    ({"machine": "{switch_interval_s: .inf}"}, "machine.switch_interval_s: must be a finite number (got inf)"),
    ({"task": None, "stages": "{a: {steps: [{io: 1}], max_wait: .inf}}"}, "stages.a.max_wait: must be a finite"),
]

OVERFLOW = [
    ({"task": "[{io: {lognormal: {mean: 1.0e+300, cv: 1.0e+10}}}]"},
     "task[0].io.lognormal: lognormal(mean=1e+300, cv=1e+10) is out of range: its mean is 1e+300"),
    ({"task": "[{io: {lognormal: {mu: 1000, sigma: 1}}}]"},
     "task[0].io.lognormal: lognormal(mu=1000, sigma=1) is out of range: its mean is inf"),
    ({"task": "[{cpu: {gamma: {mean: 1.0e+300, cv: 10}}}]"}, "task[0].cpu.gamma: gamma(mean=1e+300, cv=10) is out"),
    ({"task": "[{io: {normal: {mean: -1.0e+300, sd: 1}}}]"}, "task[0].io.normal: normal(mean=-1e+300, sd=1) is out"),
    ({"task": "[{io: 1.0e+200}]"}, "task[0].io: must be <= 1e+150 (got 1e+200)"),
    ({"services": "{api: {latency: 0.1, tokens: {output: {exponential: {mean: 1.0e+160}}}}}"},
     "services.api.tokens.output.exponential: exponential(mean=1e+160) is out of range: its mean is 1e+160"),
]


TYPOS = [
    ({"machine": "{cors: 2}"}, "machine.cors: unknown key (allowed: cores, gil, …); did you mean cores?"),
    ({"pools": "{db: {capacity: 1, timout: 2}}"},
     "pools.db.timout: unknown key (allowed: capacity, timeout, …); did you mean timeout?"),
    ({"arrivals": "{possion: {rate: 1, count: 2}}"}, "arrivals: not a valid arrival process …; did you mean poisson?"),
    ({"task": "[{io: {gama: {mean: 1, cv: 1}}}]"}, "task[0].io: not a valid distribution …; did you mean gamma?"),
    ({"task": "[{io: 1}, {cpus: 1}]"}, "task[1]: not a valid step …; did you mean cpu?"),
    ({"strategy": "thread:8"}, "strategy: not a valid strategy 'thread:8' (allowed: …); did you mean threads:8?"),
    ({"strategy": "asyncio:20+proces:2"}, "strategy: not a valid strategy …; did you mean asyncio:20+processes:2?"),
    ({"task": "[{call: apj}]"}, "task[0].call: unknown service 'apj' (known: api); did you mean api?"),
    ({"task": "[{use: {pool: dbb, steps: [{io: 1}]}}]"}, "task[0].use.pool: unknown pool 'dbb' (known: db); did you "
                                                         "mean db?"),
    ({"services": "{api: {latency: 0.1, retry: {policy: expo}}}"},
     "services.api.retry.policy: must be one of none, exponential, full_jitter (got 'expo'); did you mean "
     "exponential?"),
    ({"policy": "fifoo"}, "policy.kind: must be one of fifo, lifo, priority, sjf, fair, edf (got 'fifoo'); did you "
                          "mean fifo?"),
]

DURATIONS = [
    ({"task": "[{io: 2s}]"}, "task[0].io: give seconds as a number (2s -> 2)"),
    ({"task": "[{io: 300ms}]"}, "task[0].io: give seconds as a number (300ms -> 0.3)"),
    ({"task": '[{cpu: "5 ms"}]'}, "task[0].cpu: give seconds as a number (5 ms -> 0.005)"),
    ({"services": "{api: {latency: {lognormal: {mean: 1.5s, cv: 1}}}}"},
     "services.api.latency.lognormal.mean: give seconds as a number (1.5s -> 1.5)"),
    ({"services": "{api: {latency: 0.1, timeout: 1min}}"},
     "services.api.timeout: give seconds as a number (1min -> 60)"),
    ({"pools": "{db: {capacity: 1, timeout: 500us}}"}, "pools.db.timeout: give seconds as a number (500us -> 0.0005)"),
    ({"arrivals": "{uniform: {interval: 2h, count: 2}}"},
     "arrivals.uniform.interval: give seconds as a number (2h -> 7200)"),
]


@pytest.mark.parametrize(("changes", "problem"), NON_FINITE + OVERFLOW + TYPOS + DURATIONS,
                         ids=lambda x: x.split(":")[0] if isinstance(x, str) else "")
def test_a_malformed_model_exits_2_naming_the_yaml_path(capsys, tmp_path, changes, problem):
    """Each bad model gives exit code 2 and a line `error: FILE: yaml.path: problem…` (… stands for any text)."""
    path = _model(tmp_path, **changes)
    err = _exit_2(capsys, "run", str(path))
    expected = re.escape(f"error: {path}: ") + ".*?".join(re.escape(part) for part in problem.split("…"))
    assert re.search(expected, err), err


def test_a_number_yaml_reads_as_text_is_still_a_number_of_seconds(tmp_path):
    w = a.load(_model(tmp_path, task="[{io: 1e-3}, {cpu: 2e-3}]"))  # YAML 1.1 reads both as strings
    assert [s.duration.mean for s in w.task] == [0.001, 0.002]


@pytest.mark.parametrize(("name", "content", "problem"), [
    ("times.csv", "time\n0\ninf\n", "arrivals.trace: times.csv line 3: must be a finite number (got 'inf')"),
    ("samples.txt", "0.1\nnan\n", "task[0].io.empirical: samples.txt line 2: must be a finite number (got 'nan')"),
])
def test_non_finite_numbers_in_files_a_model_reads_exit_2(capsys, tmp_path, name, content, problem):
    (tmp_path / name).write_text(content)
    changes = {"arrivals": "{trace: {file: times.csv}}"} if name == "times.csv" else \
        {"task": "[{io: {empirical: {file: samples.txt}}}]"}
    path = _model(tmp_path, **changes)
    assert problem in _exit_2(capsys, "run", str(path))


def test_non_finite_values_in_a_sweep_exit_2_before_running(capsys, tmp_path):
    path = _model(tmp_path)
    err = _exit_2(capsys, "sweep", str(path), "--set", "task.1.use.steps.0.io=0.1,.inf,.nan", "--workers", "1")
    assert "--set task.1.use.steps.0.io=inf: task[1].use.steps[0].io: must be a finite number (got inf)" in err
    assert "--set task.1.use.steps.0.io=nan: task[1].use.steps[0].io: must be a finite number (got nan)" in err


@pytest.mark.parametrize("argv", [
    ["run", "{model}", "--max-sim-time", "inf"],
    ["run", "{model}", "--max-sim-time", "nan"],
    ["plan", "{model}", "--vary", "pools.db=1..4", "--deadline", "1s", "--cost", "inf"],
    ["plan", "{model}", "--vary", "pools.db=1..4", "--deadline", "1s", "--confidence", "nan"],
])
def test_non_finite_numbers_on_the_command_line_exit_2(capsys, tmp_path, argv):
    path = _model(tmp_path)
    with pytest.raises(SystemExit) as info:
        main([x.format(model=path) for x in argv])
    assert info.value.code == 2
    assert "must be a finite number" in capsys.readouterr().err


def test_a_non_finite_time_scale_is_refused(tmp_path):
    from asyncsim.validate import check_time_scale

    with pytest.raises(a.ModelError, match=r"--time-scale: must be a finite number > 0 \(got inf\)"):
        check_time_scale(a.load(_model(tmp_path)), math.inf, 0.001)


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


# ------------------------------------------------------------------------------------------ the command


SUBCOMMANDS = ("run", "compare", "sweep", "plan", "validate", "calibrate", "serve", "twin", "record", "fit", "check",
               "report")


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"asyncsim {a.__version__}"


def test_python_dash_m_asyncsim_is_the_command():
    done = subprocess.run([sys.executable, "-m", "asyncsim", "--version"], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    assert done.stdout.strip() == f"asyncsim {a.__version__}"


def test_help_lists_every_subcommand_with_a_line_of_help(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one line per subcommand
    with pytest.raises(SystemExit):
        main(["--help"])
    listed: dict[str, str] = {}
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("    ") and not line.startswith("     "):  # a subcommand; its help may wrap below
            name, _, text = line.strip().partition(" ")
            listed[name] = text.strip()
        elif line.startswith("     ") and listed:
            listed[list(listed)[-1]] += line.strip()
    assert set(listed) == set(SUBCOMMANDS)
    assert all(len(text) > 10 for text in listed.values())


@pytest.mark.parametrize(("command", "defaults"), [
    ("run", ["--replications REPLICATIONS, -r REPLICATIONS independent runs (mean and 95% CI; the first round, "
             "with --precision) (default: 1)",
             "--seed SEED random seed (default: 0)"]),
    ("compare", ["--seed SEED random seed (default: 0)"]),
    ("sweep", ["(default: the number of cores)",
               "runs per grid point (the first round, with --precision) (default: 1)"]),
    ("plan", ["one-sided confidence for each SLO (default: 0.95)",
              "seeded runs per candidate (the first round, with --precision) (default: 5)"]),
    ("validate", ["(default: 1)", "event loop for asyncio runs (default: asyncio)", "(default: the model's)"]),
    ("calibrate", ["where to write the profile (JSON) (default: machine-profile.json)", "(median) (default: 3)"]),
])
def test_each_subcommand_help_shows_its_defaults(capsys, monkeypatch, command, defaults):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps and pads; compare words
    for default in defaults:
        assert default in text
    assert "(default: None)" not in text
    assert "(default: False)" not in text


def test_report_without_the_plotting_libraries_says_how_to_install_them(capsys, tmp_path, monkeypatch):
    saved = tmp_path / "run.json"
    assert main(["run", WEB, "--json"]) == 0
    saved.write_text(capsys.readouterr().out)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    assert main(["report", str(saved), "--out", str(tmp_path / "r")]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == ["error: asyncsim report draws its figures with matplotlib and seaborn "
                                         "(matplotlib is not installed): pip install 'asyncsim[report]'"]
    assert not (tmp_path / "r").exists()
