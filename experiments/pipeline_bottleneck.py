"""Pipeline bottleneck: which stage limits a RAG ingestion pipeline, and how does it move with parse workers,
cores and the embed batch size?

    python experiments/pipeline_bottleneck.py            # writes reports/pipeline_bottleneck/ (report.md, PNGs, CSV)
    python experiments/pipeline_bottleneck.py --quick    # a small grid, few replications (used by the tests)

models/rag_ingest.yaml: 300 PDFs through parse (CPU, in the asyncio loop's process pool) -> chunk -> embed
(batched, 1M TPM) -> upsert (10-connection pool). The parse workers N are swept together with the pool's
processes (`asyncio+processes:N`, `stages.parse.workers=N`) on 2, 4, 8 and 16 cores, and the embed batch size
at two of those settings. Pure simulation; each run's lower bounds come from `asyncsim.bounds`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import _ai

import asyncsim as a
from asyncsim.report import fmt_s, header, metadata, publish, utilisation_figure
from asyncsim.sweep import build, load_raw

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "rag_ingest.yaml"
CORES = [2, 4, 8, 16]
WORKERS = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32]
BATCHES = [1, 2, 4, 8, 16, 32, 64]
QUICK_CORES, QUICK_WORKERS, QUICK_BATCHES = [2, 8], [1, 2, 8], [1, 16]
PARSE_LIMITS = ("cpu", "stage parse")  # bounds that mean "parsing is what binds"


def setting(workers: int, cores: int, batch: int | None = None) -> dict[str, Any]:
    """The sweep point: N parse workers, as many offload processes, on `cores` cores (and an embed batch)."""
    point = {"strategy": f"asyncio+processes:{workers}", "stages.parse.workers": workers, "machine.cores": cores}
    return point if batch is None else {**point, "stages.embed.batch": batch}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small grid and 3 replications")
    parser.add_argument("--out", default=str(ROOT / "reports" / "pipeline_bottleneck"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replications", "-r", type=int, default=None, help="runs per point (default 20, quick 3)")
    parser.add_argument("--workers", "-w", type=int, default=2)
    args = parser.parse_args(argv)
    reps = args.replications or (3 if args.quick else 20)
    cores_grid, workers_grid, batches = ((QUICK_CORES, QUICK_WORKERS, QUICK_BATCHES) if args.quick
                                         else (CORES, WORKERS, BATCHES))
    raw, _base = load_raw(MODEL)
    tasks = raw["arrivals"]["batch"]
    base_batch = raw["stages"]["embed"]["batch"]
    top = max(c for c in cores_grid)
    batch_configs = [(raw["stages"]["parse"]["workers"], raw["machine"]["cores"]), (top, top)]

    points = [setting(n, c) for c in cores_grid for n in workers_grid]
    points += [setting(n, c, b) for n, c in batch_configs for b in batches]
    frame = _ai.run(raw, points, replications=reps, seed=args.seed, workers=args.workers)
    frame["parse_workers"] = frame["stages.parse.workers"]
    frame["cores"] = frame["machine.cores"]
    frame["embed_batch"] = frame["stages.embed.batch"].fillna(base_batch).astype(int)
    frame["sweep"] = ["batch" if "stages.embed.batch" in points[p] else "workers" for p in frame["point"]]
    frame["config"] = [f"{n} workers on {c} cores" for n, c in zip(frame["parse_workers"], frame["cores"],
                                                                      strict=True)]
    frame["cores_label"] = [f"{c} cores" for c in frame["cores"]]
    summary = _ai.summarize(frame, ["sweep", "cores", "parse_workers", "embed_batch", "config", "cores_label"])
    by_workers = summary[summary["sweep"] == "workers"].sort_values(["cores", "parse_workers"])
    by_batch = summary[summary["sweep"] == "batch"].sort_values(["config", "embed_batch"])

    def at(n: int, c: int) -> Any:
        return by_workers[(by_workers["parse_workers"] == n) & (by_workers["cores"] == c)].iloc[0]

    # the first setting (fewest cores, then fewest workers) where parsing no longer binds
    moved = by_workers[~by_workers["binding"].isin(PARSE_LIMITS)]
    moved_row = moved.sort_values(["cores", "parse_workers"]).iloc[0] if len(moved) else None
    cpu_bound = [r for r in (at(c, c) for c in cores_grid if c in workers_grid) if r["binding"] in PARSE_LIMITS]
    model_row = at(*batch_configs[0])
    # how much faster the best setting with more workers than cores is than workers = cores
    gains = [float(at(c, c)["t_total_mean"] / g[g["parse_workers"] >= c]["t_total_mean"].min()) - 1
             for c, g in by_workers.groupby("cores") if c in workers_grid]
    gain = max(gains)
    batch_spread = by_batch.groupby("config")["t_total_mean"].agg(lambda s: s.max() / s.min() - 1)
    answer = (
        f"parse is the bottleneck until there are as many parse workers as cores: T_total ≈ {tasks} × 1.5 s of CPU "
        f"/ min(workers, cores), {fmt_s(model_row['t_total_mean'])} with the model's {batch_configs[0][0]} on "
        f"{batch_configs[0][1]} cores, "
        + ", ".join(f"{fmt_s(r['t_total_mean'])} with {r['parse_workers']} on {r['cores']}" for r in cpu_bound
                    if r['parse_workers'] != batch_configs[0][0])
        + ", and workers beyond the cores buy nothing ("
        + (f"at most {gain:.1%} faster)" if gain >= 0.0005 else "under 0.1% faster)")
    )
    if moved_row is not None:
        answer += (f"; at {moved_row['parse_workers']} workers on {moved_row['cores']} cores "
                   f"({fmt_s(moved_row['t_total_mean'])}) the binding limit moves to "
                   f"{_limit_words(moved_row['binding'])} ({fmt_s(moved_row['binding_s_mean'])} floor)"
                   + (f" and {moved_row['failed_mean']:.1f} documents per run are lost to 429s"
                      if moved_row["failed_mean"] > 0 else ""))
    answer += (f"; the embed batch size (1–{max(batches)}) changes T_total by at most {batch_spread.max():.1%}, "
               "since embedding is limited by tokens, not requests.")

    # one run per configuration for the queues over time and the utilisation picture
    seed0 = a.replication_seeds(args.seed, reps)[0]
    queue_series = {}
    for n, c in batch_configs:
        result = a.simulate(build(raw, setting(n, c)), seed=seed0)
        queue_series[f"{n} parse workers on {c} cores (seed {seed0})"] = result.queue_series()
    picks = [(n, c) for n, c in [batch_configs[0], (8, 2), (8, 8), (top, top)]
             if c in cores_grid and n in workers_grid]
    util = {f"{n} on {c} cores": _utilisation(at(n, c)) for n, c in dict.fromkeys(picks)}

    command = ["python", "experiments/pipeline_bottleneck.py", *(argv if argv is not None else sys.argv[1:])]
    meta = metadata(command, seed=args.seed)
    lines = header("Pipeline bottleneck: parse workers, cores and embed batches", meta=meta,
                   question=f"for {tasks} PDFs through parse → chunk → embed → upsert "
                            "(models/rag_ingest.yaml), which stage is the bottleneck, and how does it move as "
                            "parse workers (with as many offload processes) and cores are added, and as the embed "
                            "batch size changes?",
                   answer=answer[0].upper() + answer[1:])
    lines += [
        "## Model", "",
        f"[`models/rag_ingest.yaml`](../../models/rag_ingest.yaml). Swept: `stages.parse.workers=N` together "
        f"with `strategy=asyncio+processes:N` (the parse CPU runs in the loop's process pool, one process per "
        f"worker) for N in {{{','.join(map(str, workers_grid))}}}, on `machine.cores` "
        f"{{{','.join(map(str, cores_grid))}}}; then `stages.embed.batch` in {{{','.join(map(str, batches))}}} "
        f"at {batch_configs[0][0]} workers on {batch_configs[0][1]} cores (the model) and at {top} on {top}. "
        f"{reps} replications per point (seeds derived from {args.seed}, the same at every point: paired), "
        "95% confidence bands (Student t). *Binding limit*: the largest lower bound of `asyncsim.bounds` "
        "(CPU on the usable cores, each stage's work over its workers, the embed service's RPM/TPM after a "
        "minute's burst); *bottleneck*: `Result.bottleneck`, the stage with the highest worker utilisation.", "",
        *_ai.yaml_block(MODEL), "",
        "## Throughput against parse workers", "",
        "![throughput and T_total against parse workers, one line per core count](throughput.png)", "",
        "Dotted: each core count's ceiling, the documents over the lowest binding bound on its line. "
        "Dashed (right): each point's binding bound. Throughput grows linearly with the parse workers until "
        "they fill the cores, then stays flat: the extra processes only share the same cores. With 16 cores "
        "the CPU floor drops under the embed service's token floor, so the ceiling is no longer the cores.", "",
        "## Where the bottleneck sits", "", *_map_table(by_workers), "",
        "## Utilisation per stage", "",
        "![worker utilisation per stage, cores and executor processes](utilisation.png)", "",
        "Mean over the replications. A stage's utilisation is the share of its workers' time spent running "
        "its steps, including waiting for a process of the shared pool: the chunk stage's 20 ms CPU step "
        "also runs in the process pool, queued behind 1.5 s parses, so chunk looks almost as busy as parse "
        "without being the cause — it is the pool (and the cores under it) that both wait for. Once parse "
        "keeps up, embed's utilisation rises and upsert stays nearly idle.", "",
        "## Queues over time", "",
        "![items queued for each stage over time](queues.png)", "",
        "One run per configuration (the first replication's seed). Items queued for a stage: waiting to "
        "enter its bounded queue, in it, or collecting a batch. With the model's 2 workers everything waits "
        "for parse, whose backlog drains at a steady 2 documents per 1.5 s. With 16 on 16 it drains 8 times "
        "faster, and chunk's queue fills up to its 16 places: chunk's single worker sends its 20 ms step to "
        "the same process pool and waits behind the parses; the last documents wait for embed's token "
        "bucket.", "",
        "## Embed batch size", "",
        "![T_total, embed requests, embed utilisation and lost documents against the batch size](batch.png)", "",
        "Bigger batches cut the number of embed requests (and the per-request overhead), not the tokens, "
        "which is what the 1M TPM limit counts; and with at most a few documents a second arriving, batches "
        "rarely fill before `max_wait` (0.2 s) anyway.", "",
        "## Numbers", "", *_numbers(summary), "",
        "The per-point summary (every stage, service and bound column) is in [`summary.csv`](summary.csv).",
    ]
    ceilings = {f"{c} cores": tasks / float(by_workers[by_workers["cores"] == c]["binding_s_mean"].min())
                for c in cores_grid}
    by_workers = by_workers.assign(ceiling_mean=tasks / by_workers["binding_s_mean"], ceiling_ci95=0.0)
    figures = {
        "throughput.png": _ai.band_panels(
            by_workers, x="parse_workers", hue="cores_label", xlabel="parse workers = offload processes",
            panels=[{"metric": "throughput", "ylabel": "documents / s, 95% CI band", "floor": ceilings,
                     "floor_label": "ceiling (lowest binding bound)"},
                    {"metric": "t_total", "ylabel": "T_total (s), 95% CI band", "curve": "binding_s",
                     "curve_label": "binding bound", "logy": "log"}]),
        "utilisation.png": utilisation_figure(util),
        "queues.png": _ai.queue_figure(queue_series, title="Items queued for each stage"),
        "batch.png": _ai.band_panels(
            by_batch, x="embed_batch", hue="config", xlabel="embed batch size (stages.embed.batch)",
            panels=[{"metric": "t_total", "ylabel": "T_total (s)", "logy": "log"},
                    {"metric": "svc.embed.requests", "ylabel": "embed requests"},
                    {"metric": "stage.embed.utilization", "ylabel": "embed stage utilisation"},
                    {"metric": "failed", "ylabel": "documents lost (429s)", "logy": "symlog"}]),
    }
    return publish(args.out, lines, figures, {"summary.csv": summary.to_csv(index=False)})


def _limit_words(name: str) -> str:
    if name.startswith("service ") and (" tpm " in name or " rpm " in name):
        svc, unit = name.split()[1:3]
        return f"the {svc} service's {unit.upper()} limit"
    return name


def _utilisation(row: Any) -> dict[str, float | None]:
    """A summary row's mean utilisation per stage, of the cores and of the executor's processes."""
    stages = [c.removeprefix("stage.").removesuffix(".utilization_mean") for c in row.index
              if c.startswith("stage.") and c.endswith(".utilization_mean")]
    out: dict[str, float | None] = {f"stage {s}": float(row[f"stage.{s}.utilization_mean"]) for s in stages}
    for res in ("executor", "cores"):
        if f"util.{res}_mean" in row.index:
            out[res] = float(row[f"util.{res}_mean"])
    return out


def _map_table(by_workers: Any) -> list[str]:
    """Cores down, workers across: T_total, the binding limit and the bottleneck stage at each setting."""
    workers = sorted(by_workers["parse_workers"].unique())
    lines = ["T_total (mean), binding limit / bottleneck stage:", "",
             "| cores \\ workers | " + " | ".join(map(str, workers)) + " |",
             "| --- |" + " --- |" * len(workers)]
    short = {"cpu": "cpu", "stage parse": "parse stage"}
    for c, g in by_workers.groupby("cores"):
        cells = []
        for n in workers:
            r = g[g["parse_workers"] == n].iloc[0]
            limit = short.get(r["binding"], r["binding"].replace("service ", "").replace(" (server)", ""))
            cells.append(f"{fmt_s(r['t_total_mean'])}<br>{limit} / {r['bottleneck']}")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return lines


def _numbers(summary: Any) -> list[str]:
    lines = ["| sweep | cores | parse workers | embed batch | runs | T_total | docs/s | failed | binding limit | "
             "its bound | bottleneck | parse util. | chunk util. | embed util. | upsert util. | embed requests |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | "
             "---: |"]
    for _, r in summary.iterrows():
        utils = " | ".join(f"{r[f'stage.{s}.utilization_mean']:.0%}" for s in ("parse", "chunk", "embed", "upsert"))
        lines.append(f"| {r['sweep']} | {r['cores']} | {r['parse_workers']} | {r['embed_batch']} | "
                     f"{r['replications']} | {fmt_s(r['t_total_mean'])} ± {fmt_s(r['t_total_ci95'])} | "
                     f"{r['throughput_mean']:.3g} | {r['failed_mean']:.2g} | {r['binding']} | "
                     f"{fmt_s(r['binding_s_mean'])} | {r['bottleneck']} | {utils} | "
                     f"{r['svc.embed.requests_mean']:.0f} |")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
