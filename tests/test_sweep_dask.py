"""The Dask back end of sweeps: the same frame as serial, resume, the CLI's --scheduler."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

from asyncsim import ModelError
from asyncsim.cli import main
from asyncsim.sweep import grid, load_raw, parse_set, sweep

distributed = pytest.importorskip("distributed")

pytestmark = [pytest.mark.slow]

MODEL = """\
name: tiny
arrivals: {batch: 20}
task:
  - cpu: 0.001
  - use: {pool: db, steps: [{io: {exponential: {mean: 0.01}}}]}
pools: {db: 2}
strategy: asyncio:4
"""


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as local:
        yield local


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster) as dask_client:
        yield dask_client


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(MODEL)
    raw, base = load_raw(path)
    return path, raw, base, grid([parse_set("strategy=asyncio:{1,2,4}")])


def test_dask_gives_the_serial_frame(client, model):
    _, raw, base, points = model
    calls: list[tuple[int, int]] = []
    serial = sweep(raw, points, replications=2, seed=3, base_dir=base)
    dask = sweep(raw, points, replications=2, seed=3, base_dir=base, scheduler=client, chunk_size=1,
                 progress=lambda *a: calls.append(a))
    pd.testing.assert_frame_equal(dask, serial)
    assert calls == [(n, 6) for n in range(7)]
    assert client.status == "running"  # a client we were given is left open


def test_an_address_makes_and_closes_its_own_client(cluster, model):
    _, raw, base, points = model
    serial = sweep(raw, points, replications=2, seed=3, base_dir=base)
    pd.testing.assert_frame_equal(
        sweep(raw, points, replications=2, seed=3, base_dir=base, scheduler=cluster.scheduler_address), serial)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_resume_through_dask(client, model, tmp_path, suffix):
    _, raw, base, points = model
    out = tmp_path / f"runs{suffix}"
    sweep(raw, points[:2], replications=2, seed=3, base_dir=base, out=out, scheduler=client, chunk_size=1)
    calls: list[tuple[int, int]] = []
    resumed = sweep(raw, points, replications=2, seed=3, base_dir=base, out=out, scheduler=client,
                    progress=lambda *a: calls.append(a))
    assert calls[0] == (0, 2)
    assert calls[-1] == (2, 2)
    pd.testing.assert_frame_equal(resumed, sweep(raw, points, replications=2, seed=3, base_dir=base))


def test_cli_scheduler(cluster, model, tmp_path, capsys):
    path, *_ = model
    out = tmp_path / "sweep.csv"
    argv = ["sweep", str(path), "--set", "strategy=asyncio:{1,2}", "-r", "2", "--out", str(out),
            "--scheduler", cluster.scheduler_address]
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    assert len(pd.read_csv(out)) == 4


def test_missing_dask_is_a_model_error(model, monkeypatch):
    _, raw, base, points = model
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed raises ImportError
    with pytest.raises(ModelError, match=r"dask.distributed is not installed"):
        sweep(raw, points, base_dir=base, scheduler="tcp://127.0.0.1:1")
