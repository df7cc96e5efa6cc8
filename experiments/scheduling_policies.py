"""Scheduling a shared LLM key: which limiter policy keeps chat within its SLO without starving a backfill?

    python experiments/scheduling_policies.py            # writes reports/scheduling_policies/ (report.md, PNGs, CSV)
    python experiments/scheduling_policies.py --quick    # three loads, two replications (used by the tests)

models/shared_llm.yaml: interactive chat requests (Poisson, deadline = the SLO) and a backlog of documents (all
queued at t = 0, with its own due time) share one API key through one client-side limiter; the limiter's
`policy` decides which waiting request gets the key's next tokens. Swept: the policy (fifo, priority, fair share
with equal weights and 3:1 for chat, edf) and the chat's arrival rate, as a share of the requests per second the
limiter lets through. Pure simulation; every point gets the same replication seeds (paired).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import _ai
import numpy as np

import asyncsim as a
from asyncsim.report import fmt_s, header, metadata, write_report
from asyncsim.sweep import build, load_raw

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "shared_llm.yaml"
# label -> (limiter policy, chat's fair-share weight); the batch's weight stays 1
POLICIES = {"fifo": ("fifo", 1), "priority": ("priority", 1), "fair 1:1": ("fair", 1), "fair 3:1": ("fair", 3),
            "edf": ("edf", 1)}
LOADS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
QUICK_LOADS = [0.1, 0.5, 0.9]
CDF_LOAD, QUICK_CDF_LOAD = 0.7, 0.5  # the load whose latency distributions are drawn
CHAT, BATCH = "interactive", "batch"


def capacity(workload: a.Workload) -> float:
    """Requests per second the `llm` client limiter lets through at the mean charge per request."""
    svc = workload.services["llm"]
    limit, tokens = svc.client_limit, svc.tokens
    assert limit is not None
    assert tokens is not None
    out = tokens.max_tokens if limit.count_max_tokens and tokens.max_tokens else tokens.output.mean
    rates = [limit.rpm / 60] if limit.rpm else []
    if limit.tpm:
        rates.append(limit.tpm / 60 / (tokens.input.mean + out))
    return min(rates)


def point(label: str, load: float, cap: float) -> dict[str, Any]:
    """The sweep point: the limiter's policy, the chat's weight and its arrival rate (`load` of `cap`)."""
    policy, weight = POLICIES[label]
    return {"services.llm.client_limit.policy": policy, "tasks.0.weight": weight,
            "tasks.0.arrivals.poisson.rate": round(load * cap, 9)}


def measure(raw: dict[str, Any], pt: dict[str, Any], seed: int, cap: float) -> dict[str, Any]:
    """One run's per-class numbers: `i.` the chat, `b.` the backfill."""
    r = a.simulate(build(raw, pt), seed=seed)
    row: dict[str, Any] = {"seed": seed, "failed": r.failed, "t_total": r.t_total}
    for prefix, name in (("i", CHAT), ("b", BATCH)):
        c = r.classes[name]
        missed = c.deadline_missed
        assert missed is not None, f"class {name} of models/shared_llm.yaml lost its deadline"
        row.update({f"{prefix}.p50": c.latency.p50, f"{prefix}.p95": c.latency.p95, f"{prefix}.p99": c.latency.p99,
                    f"{prefix}.max": c.latency.max})
        row.update({f"{prefix}.t_total": c.t_total, f"{prefix}.throughput": c.throughput,
                    f"{prefix}.goodput": c.goodput, f"{prefix}.failed": c.failed,
                    f"{prefix}.share": c.goodput / cap, f"{prefix}.completed": c.completed,
                    f"{prefix}.missed": missed, f"{prefix}.missed_pct": 100 * missed / c.tasks})
    return row


def _chunk(raw: dict[str, Any], cap: float, jobs: list[tuple[int, dict[str, Any], int, int]]) -> list[dict[str, Any]]:
    return [{"point": i, "replication": k, **measure(raw, p, s, cap)} for i, p, k, s in jobs]


def run(raw: dict[str, Any], points: list[dict[str, Any]], *, replications: int, seed: int, workers: int,
        cap: float) -> Any:
    """Every point `replications` times with the same seeds: one row per run, ordered by (point, replication)."""
    import pandas as pd

    seeds = a.replication_seeds(seed, replications)
    jobs = [(i, p, k, s) for i, p in enumerate(points) for k, s in enumerate(seeds)]
    jobs.sort(key=lambda j: -j[1]["tasks.0.arrivals.poisson.rate"])  # the longest runs first: even chunks
    size = max(1, math.ceil(len(jobs) / (workers * 6)))
    chunks = [jobs[k:k + size] for k in range(0, len(jobs), size)]
    if workers == 1:
        rows = [row for c in chunks for row in _chunk(raw, cap, c)]
    else:
        with ProcessPoolExecutor(workers) as pool:
            rows = [row for done in pool.map(_chunk, [raw] * len(chunks), [cap] * len(chunks), chunks)
                    for row in done]
    return pd.DataFrame.from_records(rows).sort_values(["point", "replication"], ignore_index=True)


def verdicts(summary: Any, slo: float, due: float) -> dict[str, dict[str, Any]]:
    """Per policy: the loads where chat meets its SLO (mean p99 <= slo) and the backfill its due time (mean
    T_total <= due), `upto` (the highest load up to which both hold at every load; 0 when none), and the first
    load where each fails with the numbers there."""
    out = {}
    for label, g in summary.groupby("policy", sort=False):
        g = g.sort_values("load")
        slo_ok = g["i.p99_mean"] <= slo
        due_ok = g["b.t_total_mean"] <= due
        both = (slo_ok & due_ok).tolist()
        upto = 0.0
        for load, ok in zip(g["load"], both, strict=True):
            if not ok:
                break
            upto = load
        out[label] = {"upto": upto, "rows": g, "slo_fail": g[~slo_ok].head(1), "due_fail": g[~due_ok].head(1),
                      "at_upto": g[g["load"] == upto]}
    return out


def answer_text(v: dict[str, dict[str, Any]], slo: float, due: float, batch_n: int) -> tuple[str, str]:
    """The one-sentence answer and the recommended policy's label."""
    def pct(x: float) -> str:
        return f"{x * 100:.0f}%"

    def fails(label: str) -> str:
        d = v[label]
        at: dict[float, list[str]] = {}
        if len(d["slo_fail"]):
            r = d["slo_fail"].iloc[0]
            at.setdefault(r["load"], []).append(f"chat p99 {fmt_s(r['i.p99_mean'])}")
        if len(d["due_fail"]):
            r = d["due_fail"].iloc[0]
            at.setdefault(r["load"], []).append(f"backfill {r['b.share_mean']:.0%} of the key, done after "
                                                f"{fmt_s(r['b.t_total_mean'])}")
        parts = []
        for load, why in sorted(at.items()):
            what = ("breaks the SLO" if why[0].startswith("chat") else "starves the backfill") if len(why) == 1 \
                else "breaks the SLO and starves the backfill"
            parts.append(f"{what} from {pct(load)} ({'; '.join(why)})")
        return " and ".join(parts) if parts else "never fails in this range"

    def key(label: str) -> tuple[float, float]:
        d = v[label]
        p99 = float(d["at_upto"]["i.p99_mean"].iloc[0]) if len(d["at_upto"]) else math.inf
        return d["upto"], -p99

    best = max(v, key=key)
    b = v[best]
    if b["upto"] == 0:
        return "no policy meets the chat SLO and the backfill's due time together at any load swept", best
    row = b["at_upto"].iloc[0]
    lost = "no request lost" if row["failed_mean"] == 0 else f"{row['failed_mean']:g} requests lost"
    text = (f"{best} meets the chat's p99 ≤ {slo:g} s SLO and finishes the {batch_n}-document backfill by its "
            f"{fmt_s(due)} due time at every load up to {pct(b['upto'])} of the key (there: chat p99 "
            f"{fmt_s(row['i.p99_mean'])}, backfill done in {fmt_s(row['b.t_total_mean'])}; goodput "
            f"{row['i.goodput_mean']:.2f} chat answers/s and {row['b.goodput_mean']:.2f} documents/s, {lost}) "
            f"and {fails(best)}")
    others = [f"{label} {fails(label)}" for label in v if label != best]
    return text + "; " + ", ".join(others[:-1]) + f" and {others[-1]}.", best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three loads and 2 replications")
    parser.add_argument("--out", default=str(ROOT / "reports" / "scheduling_policies"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replications", "-r", type=int, default=None, help="runs per point (default 20, quick 2)")
    parser.add_argument("--workers", "-w", type=int, default=2)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    reps = args.replications or (2 if args.quick else 20)
    loads = QUICK_LOADS if args.quick else LOADS
    cdf_load = QUICK_CDF_LOAD if args.quick else CDF_LOAD
    raw, _base = load_raw(MODEL)
    workload = a.load(MODEL)
    cap = capacity(workload)
    chat, batch = workload.task_types
    slo, due = float(chat.deadline or math.inf), float(batch.deadline or math.inf)
    batch_n = batch.arrivals.count  # type: ignore[union-attr]
    labels = list(POLICIES)
    grid = [(label, load) for label in labels for load in loads]
    frame = run(raw, [point(lb, x, cap) for lb, x in grid], replications=reps, seed=args.seed,
                workers=args.workers, cap=cap)
    frame["policy"] = [grid[p][0] for p in frame["point"]]
    frame["load"] = [grid[p][1] for p in frame["point"]]
    frame["load_pct"] = frame["load"] * 100
    summary = _ai.summarize(frame, ["policy", "load"])
    summary["load_pct"] = summary["load"] * 100
    v = verdicts(summary, slo, due)
    answer, best = answer_text(v, slo, due, batch_n)

    seed0 = a.replication_seeds(args.seed, reps)[0]
    samples = {}
    for label in labels:
        df = a.simulate(build(raw, point(label, cdf_load, cap)), seed=seed0).to_frame()
        samples[label] = {name: df.loc[df["type"] == name, "latency"].to_numpy() for name in (CHAT, BATCH)}
    elapsed = time.perf_counter() - started

    command = ["python", "experiments/scheduling_policies.py", *(argv if argv is not None else sys.argv[1:])]
    meta = metadata(command, seed=args.seed)
    lam = chat.arrivals.rate  # type: ignore[union-attr]
    default_policy = workload.services["llm"].client_limit.policy  # type: ignore[union-attr]
    need = batch_n / (due * cap)  # the backfill's least share of the key that meets its due time
    feasible = 1 - need
    lines = header(
        "Scheduling a shared LLM key: FIFO vs priority vs fair share", meta=meta,
        question=f"chat requests (SLO: p99 ≤ {slo:g} s per answer) and a backfill of {batch_n} documents (due within "
                 f"{fmt_s(due)}) share one API key's limiter ({cap:.2f} requests/s at 95% of 200k TPM); as chat "
                 f"grows from {loads[0]:.0%} to {loads[-1]:.0%} of the key, which limiter policy meets the chat SLO "
                 "without starving the backfill, and where does each policy fail?",
        answer=answer[0].upper() + answer[1:])
    lines += [
        "## Setup", "",
        f"[`models/shared_llm.yaml`](../../models/shared_llm.yaml) (its default: chat at {lam:g} requests/s, "
        f"{lam / cap:.0%} of the key, policy `{default_policy}`). Swept: `services.llm.client_limit.policy` over "
        f"{', '.join(f'`{p}`' for p in dict.fromkeys(p for p, _ in POLICIES.values()))} "
        "(fair share twice: chat weight 1 and 3, the backfill's 1), and the chat's Poisson rate "
        f"(`tasks.0.arrivals.poisson.rate`) at {', '.join(f'{x:.0%}' for x in loads)} of the {cap:.2f} requests/s "
        "the limiter lets through (190k TPM over ≈1,300 tokens charged per request: the TPM limit binds). Chat "
        "arrives for 20 minutes; the backlog is queued at t = 0 and alone would take "
        f"{fmt_s(batch_n / cap)}. {reps} replications per point (seeds derived from {args.seed}, the same at "
        "every point: paired); means with 95% confidence intervals (Student t). Criteria: the SLO is met when the "
        f"mean p99 of the chat's latency is ≤ {slo:g} s; the backfill is *starved* when it is not done by its due "
        f"time ({fmt_s(due)}, mean T_total of the batch class). Run time: {elapsed:.0f} s on this "
        f"{meta['cpu_count']}-CPU machine.", "",
        "## Chat latency against load", "",
        "![per-class p95 and p99 against the chat's share of the key, by policy](latency.png)", "",
        "FIFO serves the whole backlog first: chat requests arriving meanwhile wait behind it, however light the "
        "chat traffic, and the queue they leave drains slowly at high load. Priority hands every token to a "
        "waiting chat request, so chat waits at most for the next token interval until its own load nears the "
        "whole key. Fair share gives chat at most w/(w + 1) of the tokens while the backfill waits (w: the chat's "
        "weight; 50% at 1:1, 75% at 3:1): its delay climbs steeply as its load nears that cap, and beyond it the chat "
        "queue grows until the backlog is done. "
        "EDF orders by due time: a chat request (due 10 s after it arrives) beats the backlog until the backlog's "
        "own due time is nearer than a new request's; then the late backlog takes the whole key and chat waits.", "",
        "## The backfill", "",
        "![the backfill's goodput and T_total, the chat's goodput and answers over the SLO against load, "
        "by policy](batch.png)", "",
        "Every policy but FIFO gives the backfill what chat leaves while chat is within its share (the limiter is "
        "work-conserving); they differ once chat wants more. Priority then leaves the backfill only 1 − load of "
        "the key; fair share guarantees it 1/(1 + w). FIFO's share above 100% is the limiter's 10 s burst "
        f"spent at t = 0. No policy can do both once the chat's load exceeds {feasible:.0%}: the backfill needs "
        f"{need:.0%} of the key to finish by its due time ({batch_n} requests in {fmt_s(due)} at {cap:.2f}/s).", "",
        f"## Latency distributions at {cdf_load:.0%} of the key", "",
        f"![latency CDFs per class at {cdf_load:.0%} load](cdf.png)", "",
        f"One run (seed {seed0}) per policy; where two policies serve in the same order their lines coincide "
        "(edf and priority while no backlog request is due sooner than a chat request).", "",
        "## Numbers", "", *_table(summary, labels), "",
        "Every column of the summary (means and 95% CI half-widths) is in [`summary.csv`](summary.csv).", "",
        "## Model", "", *_ai.yaml_block(MODEL),
    ]
    figures = {
        "latency.png": _ai.band_panels(
            summary, x="load_pct", hue="policy", logx=False, xlabel="chat load (% of the key's requests/s)",
            panels=[{"metric": "i.p95", "ylabel": "chat p95 latency (s)", "logy": "log", "floor": slo,
                     "floor_label": f"SLO {slo:g} s"},
                    {"metric": "i.p99", "ylabel": "chat p99 latency (s)", "logy": "log", "floor": slo,
                     "floor_label": f"SLO {slo:g} s"},
                    {"metric": "b.p95", "ylabel": "backfill p95 latency (s)", "logy": "log"},
                    {"metric": "b.p99", "ylabel": "backfill p99 latency (s)", "logy": "log"}]),
        "batch.png": _ai.band_panels(
            summary, x="load_pct", hue="policy", logx=False, xlabel="chat load (% of the key's requests/s)",
            panels=[{"metric": "b.goodput", "ylabel": "backfill goodput (documents done/s)"},
                    {"metric": "b.t_total", "ylabel": "backfill T_total (s)", "floor": due,
                     "floor_label": f"due time {fmt_s(due)}"},
                    {"metric": "i.goodput", "ylabel": "chat goodput (answers done/s)"},
                    {"metric": "i.missed_pct", "ylabel": f"chat answers over {slo:g} s (%)", "logy": "symlog"}]),
        "cdf.png": _cdf_figure(samples, slo=slo, load=cdf_load),
    }
    path = write_report(args.out, lines, figures, {"summary.csv": summary.to_csv(index=False)})
    print(f"wrote {path} in {elapsed:.0f} s (recommended: {best})")
    print(lines[3])
    return 0


def _table(summary: Any, labels: list[str]) -> list[str]:
    def ci(row: Any, col: str, fmt: Any = fmt_s) -> str:
        mean, half = float(row[f"{col}_mean"]), float(row[f"{col}_ci95"])
        return fmt(mean) if math.isnan(half) or half == 0 else f"{fmt(mean)} ± {fmt(half)}"

    def num(x: float) -> str:
        return f"{x:.2f}"

    lines = ["| policy | chat load | chat p95 | chat p99 | chat over SLO | chat goodput/s | backfill p95 | "
             "backfill p99 | backfill T_total | backfill goodput/s | backfill share of key | lost |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    order = {label: k for k, label in enumerate(labels)}
    for _, r in summary.sort_values(["policy", "load"], key=lambda s: s.map(order) if s.name == "policy" else s
                                    ).iterrows():
        lines.append(f"| {r['policy']} | {r['load']:.0%} | {ci(r, 'i.p95')} | {ci(r, 'i.p99')} | "
                     f"{ci(r, 'i.missed_pct', lambda x: f'{x:.1f}%')} | {ci(r, 'i.goodput', num)} | "
                     f"{ci(r, 'b.p95')} | {ci(r, 'b.p99')} | {ci(r, 'b.t_total')} | {ci(r, 'b.goodput', num)} | "
                     f"{ci(r, 'b.share', lambda x: f'{x:.0%}')} | {ci(r, 'failed', lambda x: f'{x:g}')} |")
    return lines


def _cdf_figure(samples: dict[str, dict[str, np.ndarray]], *, slo: float, load: float) -> bytes:
    """Empirical latency CDFs, a panel per class, a line per policy."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    classes = list(next(iter(samples.values())))
    fig, axes = plt.subplots(1, len(classes), figsize=(6.0 * len(classes), 4.0), squeeze=False)
    palette = sns.color_palette("deep", len(samples))
    dashes = ["-", "-", "-", "-", "--", ":"]
    for ax, name in zip(axes.flat, classes, strict=True):
        for k, (color, (label, by_class)) in enumerate(zip(palette, samples.items(), strict=True)):
            x = np.sort(by_class[name])
            ax.step(x, np.arange(1, x.size + 1) / x.size, where="post", color=color, lw=1.4,
                    ls=dashes[k % len(dashes)], label=label)
        if name == CHAT:
            ax.axvline(slo, color="0.3", lw=1, ls=":", label=f"SLO {slo:g} s")
        ax.set_xscale("log")
        ax.set(title=f"{name} at {load:.0%} load", xlabel="latency (s)", ylabel="fraction done within")
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


if __name__ == "__main__":
    raise SystemExit(main())
