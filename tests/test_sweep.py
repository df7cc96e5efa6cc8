"""Parameter sweeps: `--set` parsing, the grid, applying paths, paired runs, workers and resume."""

from __future__ import annotations

import pandas as pd
import pytest

from asyncsim import ModelError, replication_seeds
from asyncsim.sweep import METRICS, apply, grid, load_raw, parse_set, summarize, sweep

RAW = {
    "name": "tiny",
    "arrivals": {"batch": 20},
    "task": [{"cpu": 0.001}, {"use": {"pool": "db", "steps": [{"io": {"exponential": {"mean": 0.01}}}]}}],
    "pools": {"db": 2},
    "strategy": "asyncio:4",
}
SETS = [("strategy", ["asyncio:1", "asyncio:2", "asyncio:4"]), ("pools.db", [1, 2])]


@pytest.mark.parametrize(("text", "path", "values"), [
    ("pools.db=8,16,32", "pools.db", [8, 16, 32]),
    ("strategy=asyncio:{1,2,4,8}", "strategy", ["asyncio:1", "asyncio:2", "asyncio:4", "asyncio:8"]),
    ("strategy=asyncio:{1..4}", "strategy", ["asyncio:1", "asyncio:2", "asyncio:3", "asyncio:4"]),
    ("x={3..1}", "x", [3, 2, 1]),
    ("strategy=threads:{4,8},sequential", "strategy", ["threads:4", "threads:8", "sequential"]),
    ("x=a{1,2}{b,c}", "x", ["a1b", "a1c", "a2b", "a2c"]),
    ("arrivals.poisson.rate=0.5,10,true", "arrivals.poisson.rate", [0.5, 10, True]),
    ("task.0.io={exponential: {mean: 0.1, cv: 1}},0.2", "task.0.io", [{"exponential": {"mean": 0.1, "cv": 1}}, 0.2]),
    ("x=[1, 2],3", "x", [[1, 2], 3]),
    (" x = {7} ", "x", [{7: None}]),
])
def test_parse_set(text, path, values):
    assert parse_set(text) == (path, values)


@pytest.mark.parametrize(("text", "problem"), [
    ("pools.db", "expected PATH=VALUES"),
    ("=1,2", "empty part in the path"),
    ("a..b=1", "empty part in the path"),
    ("x=", "no values given"),
    ("x=1,,2", "empty value"),
    ("x=asyncio:{1,2", "unclosed"),
    ("x=1}", "unbalanced"),
    ("x={a..c}", "a range must be"),
    ("x={1..2..3}", "a range must be"),
    ("x=[1, 2", "unclosed"),
    ("x=a: b: c", "not a valid YAML value"),
])
def test_parse_set_errors(text, problem):
    with pytest.raises(ModelError, match=problem) as info:
        parse_set(text)
    assert str(info.value).startswith("--set")


def test_grid_is_the_product_with_the_first_path_slowest():
    assert grid([("a", [1, 2]), ("b", ["x", "y", "z"])]) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 1, "b": "z"},
        {"a": 2, "b": "x"}, {"a": 2, "b": "y"}, {"a": 2, "b": "z"},
    ]
    assert grid([]) == [{}]
    with pytest.raises(ModelError, match="given twice"):
        grid([("a", [1]), ("a", [2])])


def test_apply_copies_and_sets_paths():
    data = apply(RAW, {"pools.db": 5, "task.1.use.steps.0.io": 0.2, "machine": {"cores": 4}, "strategy": "threads"})
    assert data["pools"] == {"db": 5}
    assert data["task"][1]["use"]["steps"][0] == {"io": 0.2}
    assert data["machine"] == {"cores": 4}
    assert data["strategy"] == "threads"
    assert RAW["pools"] == {"db": 2}
    assert RAW["task"][1]["use"]["steps"][0] == {"io": {"exponential": {"mean": 0.01}}}
    assert "machine" not in RAW
    assert apply(RAW, {"machine.cores": 8})["machine"] == {"cores": 8}  # a missing machine is all defaults


@pytest.mark.parametrize(("point", "problem"), [
    ({"pools.dbb": 3}, r"pools\.dbb does not exist \(keys here: db\)"),
    ({"arrivals.poisson.rate": 3}, r"arrivals\.poisson does not exist \(keys here: batch\)"),
    ({"task.5.io": 1}, r"task\.5 does not exist \(a list of 2: indices 0\.\.1\)"),
    ({"task.first.io": 1}, r"task\.first does not exist"),
    ({"task.0.cpu.mean": 1}, r"task\.0\.cpu is 0\.001, which has no 'mean' inside"),
])
def test_apply_names_a_missing_path_and_what_exists(point, problem):
    with pytest.raises(ModelError, match=problem):
        apply(RAW, point)


def test_every_point_is_validated_before_any_run():
    calls = []
    with pytest.raises(ModelError) as info:
        sweep(RAW, grid([("pools.db", [1, 0]), ("machine.cores", [2, -1])]), progress=lambda *a: calls.append(a))
    assert "pools.db.capacity: must be >= 1" in str(info.value)
    assert "machine.cores: must be >= 1" in str(info.value)
    assert len(info.value.problems) == 4  # (0, 2), (1, -1) and both fields of (0, -1): one line each
    assert calls == []


def test_load_raw(tmp_path):
    (tmp_path / "m.yaml").write_text("arrivals: {batch: 3}\ntask: [{io: 0.1}]\n")
    raw, base = load_raw(tmp_path / "m.yaml")
    assert raw == {"arrivals": {"batch": 3}, "task": [{"io": 0.1}]}
    assert base == tmp_path
    (tmp_path / "bad.yaml").write_text("arrivals: {batch: 0}\ntask: [{io: 0.1}]\n")
    with pytest.raises(ModelError, match="arrivals"):
        load_raw(tmp_path / "bad.yaml")


def test_sweep_gives_one_row_per_run_with_paired_seeds():
    frame = sweep(RAW, grid(SETS), replications=2, seed=7)
    assert len(frame) == 12
    assert list(frame.columns) == ["point", "strategy", "pools.db", "replication", "seed", *METRICS]
    assert frame["point"].tolist() == [p for p in range(6) for _ in range(2)]
    assert frame["seed"].tolist() == replication_seeds(7, 2) * 6
    assert (frame["completed"] == 20).all()
    assert not frame[list(METRICS)].isna().any().any()


def test_workers_give_the_same_frame():
    points = grid(SETS)
    serial = sweep(RAW, points, replications=2, seed=3)
    pd.testing.assert_frame_equal(sweep(RAW, points, replications=2, seed=3, workers=2, chunk_size=5), serial)


def test_t_total_does_not_grow_with_the_asyncio_limit():
    raw = {"arrivals": {"batch": 20}, "task": [{"io": {"exponential": {"mean": 0.05}}}]}
    frame = sweep(raw, grid([parse_set("strategy=asyncio:{1,2,4,8,16}")]), replications=2, seed=1)
    for _, runs in frame.groupby("replication"):
        t_total = runs.sort_values("point")["t_total"].to_numpy()
        assert (t_total[1:] <= t_total[:-1] + 1e-12).all(), t_total


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_resume_runs_only_the_missing_runs(tmp_path, suffix):
    out = tmp_path / f"runs{suffix}"
    points = grid(SETS)
    calls: list[tuple[int, int]] = []
    sweep(RAW, points[:3], replications=2, seed=5, out=out, chunk_size=2)
    assert len(pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)) == 6
    resumed = sweep(RAW, points, replications=2, seed=5, out=out, progress=lambda *a: calls.append(a))
    assert calls[0] == (0, 6)
    assert calls[-1] == (6, 6)
    pd.testing.assert_frame_equal(resumed, sweep(RAW, points, replications=2, seed=5))
    calls.clear()
    sweep(RAW, points, replications=2, seed=5, out=out, progress=lambda *a: calls.append(a))
    assert calls == [(0, 0)]
    sweep(RAW, points, replications=2, seed=6, out=out, progress=lambda *a: calls.append(a))
    assert calls[-1] == (12, 12)  # another root seed makes other runs


def test_resume_refuses_another_sweep(tmp_path):
    out = tmp_path / "runs.parquet"
    sweep(RAW, grid([("pools.db", [1])]), out=out)
    with pytest.raises(ModelError, match="holds another sweep"):
        sweep(RAW, grid([("strategy", ["asyncio:2"])]), out=out)


def test_summarize_gives_one_row_per_point():
    frame = sweep(RAW, grid(SETS), replications=3, seed=2)
    table = summarize(frame, ["strategy", "pools.db"])
    assert len(table) == 6
    assert table["replications"].tolist() == [3] * 6
    assert table[["strategy", "pools.db"]].to_dict("records") == grid(SETS)
    for metric in METRICS:
        assert f"{metric}_mean" in table
        assert f"{metric}_ci95" in table
    first = frame[frame["point"] == 0]["t_total"]
    assert table["t_total_mean"][0] == pytest.approx(first.mean())
    assert (table["t_total_ci95"] >= 0).all()
    assert summarize(frame[frame["replication"] == 0], ["strategy", "pools.db"])["t_total_ci95"].isna().all()
