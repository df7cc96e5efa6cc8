"""Shared by the AI-workload experiments (rate limits, pipelines): runs that keep what `asyncsim.sweep` drops.

`sweep` records T_total, latency and concurrency; these studies also need each service's 429s, retries and
lost calls, each pipeline stage's utilisation, the bottleneck, and the binding limit's lower bound
(`asyncsim.bounds`). `run` simulates every (point, replication) with the same paired seeds as `sweep`,
over a local process pool, and `summarize` gives means with 95% CIs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import asyncsim as a
from asyncsim.bounds import bounds
from asyncsim.scenario import build_scenario
from asyncsim.sweep import build


def measure(raw: dict[str, Any], point: dict[str, Any], seed: int) -> dict[str, Any]:
    """One run of `raw` at `point`: its totals (goodput, lost work and cost among them), `svc.<name>.<key>`,
    `stage.<name>.<key>`, `util.<resource>`,
    `bound.<limit>` (seconds), the binding limit and, for a pipeline, the bottleneck stage."""
    workload = build(raw, point)
    scenario = build_scenario(workload, seed=seed)
    result = a.simulate(scenario)
    limits = bounds(scenario)
    flat = result.metrics()
    row: dict[str, Any] = {"seed": seed, **{k: flat[k] for k in ("t_total", "throughput", "goodput", "completed",
                                                                  "failed", "failed_fraction", "cost", "cost_wasted")},
                           "binding": limits[0].name, "binding_s": limits[0].seconds}
    row.update({f"bound.{b.name}": b.seconds for b in limits})
    for name, service in result.services.items():
        row.update({f"svc.{name}.{k}": v for k, v in service.to_dict().items()})
    for name, stage in result.stages.items():
        row.update({f"stage.{name}.{k}": v for k, v in stage.to_dict().items()})
    row.update({f"util.{k}": v.utilization for k, v in result.resources.items() if v.utilization is not None})
    if result.bottleneck is not None:
        row["bottleneck"] = result.bottleneck
    return row


def _chunk(raw: dict[str, Any], jobs: list[tuple[int, dict[str, Any], int, int]]) -> list[dict[str, Any]]:
    return [{"point": i, **p, "replication": r, **measure(raw, p, s)} for i, p, r, s in jobs]


def run(raw: dict[str, Any], points: Sequence[dict[str, Any]], *, replications: int, seed: int,
        workers: int) -> Any:
    """Every point `replications` times (seeds from `asyncsim.replication_seeds(seed, ...)`, the same at every
    point): a DataFrame with one row per run, ordered by (point, replication), whatever `workers` is."""
    import pandas as pd

    seeds = a.replication_seeds(seed, replications)
    jobs = [(i, p, r, s) for i, p in enumerate(points) for r, s in enumerate(seeds)]
    size = max(1, math.ceil(len(jobs) / (workers * 8)))
    chunks = [jobs[k:k + size] for k in range(0, len(jobs), size)]
    if workers == 1:
        rows = [row for c in chunks for row in _chunk(raw, c)]
    else:
        with ProcessPoolExecutor(workers) as pool:
            rows = [row for done in pool.map(_chunk, [raw] * len(chunks), chunks) for row in done]
    return pd.DataFrame.from_records(rows)


def summarize(frame: Any, keys: Sequence[str]) -> Any:
    """Per point: `replications`, `<column>_mean` and `<column>_ci95` (Student t) of every numeric column,
    and the most common value of every text column (`binding`, `bottleneck`)."""
    import pandas as pd
    from scipy import stats

    skip = {"point", "replication", "seed", *keys}
    out = []
    for _, group in frame.groupby("point", sort=True):
        n = len(group)
        t = float(stats.t.ppf(0.975, n - 1)) if n > 1 else math.nan
        row: dict[str, Any] = {k: group[k].iloc[0] for k in keys}
        row["replications"] = n
        for col in group.columns:
            if col in skip:
                continue
            if pd.api.types.is_numeric_dtype(group[col]):
                values = group[col].astype(float)
                row[f"{col}_mean"] = float(values.mean())
                row[f"{col}_ci95"] = t * float(values.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
            elif group[col].map(lambda v: isinstance(v, str)).all():
                row[col] = group[col].mode().iloc[0]
        out.append(row)
    return pd.DataFrame.from_records(out)


def yaml_block(path: Any) -> list[str]:
    """A model file as a fenced YAML block, comments and all."""
    from pathlib import Path

    return ["```yaml", Path(path).read_text().rstrip(), "```"]


# ------------------------------------------------------------------------------------------- figures


def _plot() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return plt, sns


def _png(fig: Any) -> bytes:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def band_panels(summary: Any, *, x: str, hue: str | None, panels: Sequence[Mapping[str, Any]],
                xlabel: str, logx: bool = True, cols: int = 2, title: str | None = None) -> bytes:
    """Panels of metric means against `x` with 95% CI bands, one line per `hue` value.

    Each panel: `metric` (a summary column stem), `ylabel`, and optionally `floor` (a horizontal line:
    a value, drawn per hue as `{hue value: value}` or for all as a number), `floor_label`, `curve` (a second
    metric stem drawn dashed, e.g. a per-point lower bound), `curve_label`, `logy` ("log", or "symlog" for
    counts that may be 0), `mark_lossy` (cross the points that lose work: their figures are not comparable).
    """
    plt, sns = _plot()
    n = len(panels)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.6 * cols, 3.6 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    groups = [(None, summary)] if hue is None else list(summary.groupby(hue, sort=False))
    palette = sns.color_palette("deep", len(groups))
    for ax, panel in zip(flat, panels, strict=False):
        metric = panel["metric"]
        for color, (label, g) in zip(palette, groups, strict=True):
            g = g.sort_values(x)
            mean = g[f"{metric}_mean"].astype(float)
            half = g[f"{metric}_ci95"].astype(float).fillna(0.0)
            ax.plot(g[x], mean, marker="o", ms=3.5, color=color, label=None if label is None else str(label))
            ax.fill_between(g[x], (mean - half).clip(lower=0), mean + half, color=color, alpha=0.25, lw=0)
            if panel.get("mark_lossy") and "failed_mean" in g.columns:
                lossy = (g["failed_mean"] > 0).to_numpy()
                ax.scatter(g[x][lossy], mean[lossy], marker="x", s=45, color="#C44E52", zorder=4,
                           label="loses work (not comparable)" if label == groups[0][0] else None)
            if panel.get("curve"):
                ax.plot(g[x], g[f"{panel['curve']}_mean"], color=color, lw=1, ls="--",
                        label=panel.get("curve_label") if label == groups[0][0] else None)
        floor = panel.get("floor")
        if floor is not None:
            floors = floor if isinstance(floor, Mapping) else {None: floor}
            for k, (label, value) in enumerate(floors.items()):
                color = "0.25" if label is None else palette[[str(g[0]) for g in groups].index(str(label))]
                ax.axhline(value, color=color, lw=1.2, ls=":",
                           label=(panel.get("floor_label") if k == 0 else None))
        if logx:
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
        if panel.get("logy"):
            if panel["logy"] == "symlog":
                ax.set_yscale("symlog", linthresh=1)
                ax.set_ylim(bottom=0)
            else:
                ax.set_yscale("log")
        ax.set(xlabel=xlabel, ylabel=panel["ylabel"])
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)


def queue_figure(series: Mapping[str, Any], *, title: str) -> bytes:
    """Items queued for each pipeline stage over time (`Result.queue_series()` frames), a panel per label."""
    plt, sns = _plot()
    n = len(series)
    fig, axes = plt.subplots(1, n, figsize=(6.2 * n, 3.8), squeeze=False)
    for ax, (label, frame) in zip(axes.flat, series.items(), strict=True):
        stages = list(dict.fromkeys(frame["stage"]))
        palette = sns.color_palette("deep", len(stages))
        for color, stage in zip(palette, stages, strict=True):
            g = frame[frame["stage"] == stage]
            ax.step(g["time"], g["queued"], where="post", color=color, lw=1.2, label=stage)
        ax.set(title=str(label), xlabel="time (s)", ylabel="items queued for the stage")
        ax.legend(fontsize=8, title="stage")
    fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)
