"""Steady state: MSER-5, the warm-up applied to the latency figures and throughput, and the stability verdict."""

from __future__ import annotations

import json

import numpy as np
import pytest

import asyncsim as a
from asyncsim.cli import main
from asyncsim.steady import MIN_BATCHES, Steady, mser5, transient

from .conftest import ROOT

RAG = str(ROOT / "models" / "rag_query.yaml")


def _mm1(rate: float, count: int, *, arrivals: object = None) -> a.Workload:
    """One server (sequential: FIFO, one task at a time), exponential service of mean 1 s: M/M/1 at ρ = rate."""
    return a.Workload(name="mm1", arrivals=arrivals or a.Poisson(rate=rate, count=count),
                      task=(a.io(a.Exponential(1.0)),), strategy="sequential")


# ------------------------------------------------------------------------------------------- MSER-5


def test_mser5_matches_a_hand_computation():
    # batch means 9, 2, 1, 3 (b = 4, so d ∈ {0, 1, 2}); Z_d = Σ_{j>d} (Y_j − Ȳ_d)² / (b − d)²:
    # Z_0 = (5.25² + 1.75² + 2.75² + 0.75²) / 16 = 38.75 / 16 = 2.42; Z_1 = (0² + 1² + 1²) / 9 = 0.222;
    # Z_2 = (1² + 1²) / 4 = 0.5  →  d = 1: the first batch, 5 observations
    values = [5, 13, 9, 8, 10, 2, 1, 3, 2, 2, 1, 1, 1, 1, 1, 3, 4, 2, 3, 3]
    assert mser5(values) == 5
    assert mser5([*values, 100, 100, 100]) == 5  # an incomplete last batch is left out
    assert mser5(values[:10]) == 0  # two batches: nothing to compare a truncation with
    assert mser5([10.3] * 5 + [0.7] * 995) == 5  # every later d has Z_d = 0 give or take rounding: the first wins


def test_mser5_finds_a_known_transient():
    noise = np.random.default_rng(1).normal(0.0, 1.0, 2000)
    step = noise + np.r_[np.full(200, 5.0), np.zeros(1800)]  # a shifted start of exactly 200 observations
    decay = noise + 10 * np.exp(-np.arange(2000) / 100)  # within 1σ of the level after ≈ 230 observations
    assert mser5(step) == 200
    assert 150 <= mser5(decay) <= 400
    assert mser5(noise) == 0


def test_a_trend_to_mid_run_is_no_steady_state_and_noise_is():
    n = MIN_BATCHES * 5 * 2
    arrival, failed = np.arange(n, dtype=float), np.zeros(n, dtype=bool)
    noise = np.random.default_rng(2).exponential(1.0, n)
    assert transient(arrival, arrival + noise, failed)[2] is False
    warmup_s, dropped, trending = transient(arrival, arrival + noise + 0.05 * arrival, failed)  # +1 σ per 20
    assert trending is True
    assert (warmup_s, dropped) == (n // 2, n // 2)  # MSER-5 stops at the end of the half it searches
    short = slice(0, MIN_BATCHES * 5 - 5)  # too few batches to tell a trend from noise
    assert transient(arrival[short], (arrival + 0.01 * arrival ** 2)[short], failed[short])[2] is False


# ------------------------------------------------------------------------------------------- the warm-up


def test_warmup_seconds_drop_early_arrivals_from_the_latency_figures_only():
    whole = a.simulate(a.load(RAG), seed=0)
    r = a.simulate(a.load(RAG), seed=0, warmup=5.0)
    frame = r.to_frame()
    kept = frame[frame["arrival"] >= 5.0]  # no task fails in this model: every row completed
    p50, p95, p99 = np.percentile(kept["latency"], [50, 95, 99])
    assert r.latency.to_dict() == pytest.approx({"mean": kept["latency"].mean(), "p50": p50, "p95": p95, "p99": p99,
                                                 "max": kept["latency"].max()}, rel=1e-12)
    # throughput: tasks finishing in [5 s, last finish] over its length
    last = frame["done"].max()
    assert r.throughput == pytest.approx((frame["done"] >= 5.0).sum() / (last - 5.0), rel=1e-12)
    assert r.goodput == r.throughput
    assert r.time_split.total == pytest.approx(r.latency.mean, rel=1e-9)  # the split still adds up
    assert (r.steady.warmup_s, r.steady.rule, r.steady.dropped) == (5.0, "given", int((frame["arrival"] < 5).sum()))
    assert r.latency != whole.latency
    for same in ("t_total", "tasks", "completed", "concurrency", "resources", "services"):
        assert getattr(r, same) == getattr(whole, same), same


def test_no_warmup_is_the_whole_run():
    whole = a.simulate(a.load(RAG), seed=0)
    zero = a.simulate(a.load(RAG), seed=0, warmup=0.0)
    assert json.dumps(zero.to_dict()) == json.dumps(whole.to_dict())
    assert whole.throughput == whole.completed / whole.t_total


@pytest.mark.parametrize(("warmup", "message"), [
    (-1.0, "must be 'auto' or seconds >= 0"), ("soon", "must be 'auto' or seconds >= 0"),
    (1e6, "drops every task (the last arrives at"),
])
def test_a_bad_warmup_is_refused_before_the_run(warmup, message):
    with pytest.raises(a.ModelError, match=message.replace("(", r"\(")):
        a.simulate(a.load(RAG), warmup=warmup)


# ------------------------------------------------------------------------------------------- the verdict


def test_mm1_at_half_load_is_stable_and_its_trimmed_mean_matches_theory():
    r = a.simulate(_mm1(0.5, 20_000), seed=0, warmup="auto")
    assert r.steady.stable
    assert r.steady.binding == "concurrency (sequential)"
    assert r.steady.load == pytest.approx(0.5, abs=0.02)  # the drawn work over the arrival span
    # 1/(μ − λ) = 2 s; tolerance: 4 standard errors of 20 batch means of the run's own latencies
    frame = r.to_frame()
    batches = frame.sort_values("arrival")["latency"].to_numpy()[:20_000].reshape(20, -1).mean(axis=1)
    assert abs(r.latency.mean - 2.0) < 4 * batches.std(ddof=1) / np.sqrt(20)


def test_mm1_started_full_the_warmup_drops_the_backlog():
    # 100 tasks at t = 0, then Poisson at λ = 0.5: the first hundred latencies are far above steady state
    gaps = np.random.default_rng(3).exponential(2.0, 5000)
    w = _mm1(0.5, 0, arrivals=a.TraceArrivals(times=tuple(np.r_[np.zeros(100), np.cumsum(gaps)])))
    whole, trimmed = a.simulate(w, seed=0), a.simulate(w, seed=0, warmup="auto")
    assert trimmed.steady.rule == "MSER-5"
    assert trimmed.steady.dropped >= 100
    assert trimmed.steady.warmup_s == trimmed.steady.transient_s > 0
    assert abs(trimmed.latency.mean - 2.0) < abs(whole.latency.mean - 2.0) / 4


def test_overload_is_unstable_and_names_the_binding_limit():
    w = a.Workload(name="overloaded", arrivals=a.Poisson(rate=1.3, count=2000),
                   task=(a.cpu(0.001), a.use("db", [a.io(a.Exponential(1.0))])), pools={"db": a.Pool(capacity=1)},
                   strategy="asyncio")
    s = a.simulate(w, seed=0, warmup="auto").steady
    assert not s.stable
    assert s.overloaded
    assert s.binding == "pool db"
    assert s.load == pytest.approx(1.3, abs=0.08)
    assert s.reason.startswith("the queue grows without bound: offered load 1")
    assert s.summary().startswith("unstable: the queue grows without bound (offered load 1")


def test_closed_workloads_are_stable_without_a_load():
    w = a.Workload(name="closed", arrivals=a.Closed(users=8, think=a.Exponential(0.5), count=2000),
                   task=(a.io(a.Exponential(0.1)), a.use("db", [a.io(0.05)])), pools={"db": a.Pool(capacity=2)})
    s = a.simulate(w, seed=0, warmup="auto").steady
    assert s.stable
    assert (s.load, s.binding) == (None, None)
    assert "closed workload: 8 user(s)" in s.reason


def test_batch_arrivals_have_no_verdict():
    w = a.load(ROOT / "models" / "web_fetch.yaml")
    r = a.simulate(w, seed=0, warmup="auto")
    assert r.steady is None
    assert "steady" not in r.to_dict()
    with pytest.raises(a.ModelError, match="drops every task"):
        a.simulate(w, warmup=1.0)


def test_replications_are_stable_only_if_every_one_is():
    w = a.load(RAG).evolve(arrivals=a.Poisson(rate=26, count=600))  # ρ ≈ 1: some seeds overload the LLM
    summary = a.replicate(w, replications=4, seed=0)
    verdicts = [r.steady.stable for r in summary.runs]
    assert 0 < sum(verdicts) < 4, verdicts
    d = summary.to_dict()["steady"]
    assert d["stable"] is False
    assert d["reason"].startswith(f"{4 - sum(verdicts)} of 4 replications: the queue grows without bound")
    assert d["load"] == pytest.approx(np.mean([r.steady.load for r in summary.runs]))


def test_steady_round_trips_through_its_dict():
    s = a.simulate(a.load(RAG), seed=1, warmup="auto").steady
    assert Steady.from_dict(json.loads(json.dumps(s.to_dict()))) == s


# ------------------------------------------------------------------------------------------- command line


def _strict_json(text: str) -> object:
    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_cli_run_warmup_auto_json_carries_steady(capsys):
    assert main(["run", RAG, "--warmup", "auto", "--json"]) == 0
    d = _strict_json(capsys.readouterr().out)
    assert list(d["steady"]) == ["warmup_s", "rule", "dropped", "transient_s", "load", "binding", "stable", "reason"]
    assert d["steady"]["stable"] is True
    assert d["steady"]["binding"] == "service llm (concurrency)"


def test_cli_run_says_the_verdict(capsys, tmp_path):
    assert main(["run", RAG, "--warmup", "5"]) == 0
    assert "steady state: warm-up 5 s dropped (given, " in capsys.readouterr().out
    hot = tmp_path / "hot.yaml"
    hot.write_text((ROOT / "models" / "rag_query.yaml").read_text().replace("rate: 8.0", "rate: 40.0"))
    assert main(["run", str(hot)]) == 0
    out = capsys.readouterr().out
    assert "unstable: the queue grows without bound (offered load 1" in out
    assert "of service llm (concurrency)); latency percentiles grow with the run's length" in out
    assert main(["compare", str(hot), "--strategies", "asyncio:64,asyncio:16"]) == 0
    out = capsys.readouterr().out
    assert out.count("unstable") >= 4  # marked in the table, and a line per strategy


def test_cli_says_batch_arrivals_have_no_steady_state(capsys):
    assert main(["run", str(ROOT / "models" / "web_fetch.yaml"), "--warmup", "auto"]) == 0
    assert "--warmup: batch arrivals (all at once) have no steady state" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["soon", "-2", "inf"])
def test_cli_bad_warmup_is_one_line_and_exit_2(capsys, value):
    assert main(["run", RAG, f"--warmup={value}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --warmup: must be seconds")
    assert err.count("\n") == 1


def test_sweep_and_plan_pass_the_warmup_through(capsys):
    from asyncsim.sweep import load_raw, sweep

    raw, base = load_raw(RAG)
    frame = sweep(raw, [{"arrivals.poisson.rate": 8.0}], warmup=5.0, base_dir=base)
    r = a.simulate(a.load(RAG), seed=int(frame.loc[0, "seed"]), warmup=5.0)
    assert frame.loc[0, "latency_p95"] == r.latency.p95
    assert frame.loc[0, "throughput"] == r.throughput
    assert main(["plan", RAG, "--vary", "strategy=asyncio:1..64", "--slo", "p95 < 5s", "-r", "2",
                 "--warmup", "auto", "--json"]) == 0
    curve = {p["value"]: p["mean"]["latency_p95"] for p in json.loads(capsys.readouterr().out)["curve"]}
    trimmed = [a.simulate(a.load(RAG), strategy="asyncio:16", seed=s, warmup="auto").latency.p95
               for s in a.replication_seeds(0, 2)]
    assert curve["asyncio:16"] == pytest.approx(np.mean(trimmed), rel=1e-12)


def test_a_report_says_the_verdict_of_each_saved_run(capsys, tmp_path):
    hot = tmp_path / "hot.yaml"
    hot.write_text((ROOT / "models" / "rag_query.yaml").read_text().replace("rate: 8.0", "rate: 40.0"))
    runs = {"run.json": ["run", RAG, "--warmup", "auto", "-r", "2"],
            "compare.json": ["compare", str(hot), "--strategies", "asyncio:64,asyncio:16"]}
    for name, argv in runs.items():
        assert main([*argv, "--json"]) == 0
        (tmp_path / name).write_text(capsys.readouterr().out)
        assert main(["report", str(tmp_path / name), "--out", str(tmp_path / name.removesuffix(".json"))]) == 0
        capsys.readouterr()
    run = (tmp_path / "run" / "report.md").read_text()
    assert "\nSteady state: " in run
    assert "of service llm (concurrency).\n" in run
    compare = (tmp_path / "compare" / "report.md").read_text()
    assert "- asyncio:16: **Unstable: the queue grows without bound (offered load " in compare
    assert "latency percentiles grow with the run's length and are not an answer**." in compare
    assert "| asyncio:64 (unstable) |" in compare
