"""Reports: Markdown plus figures, written atomically. The only module that imports plotting libraries
(lazily, so the simulator never pays for them).

    >>> report("sweep.parquet", "reports/my-sweep")        # any run / compare / sweep / validate output
    >>> write_report("reports/x", header("Title", question="...", answer="...", meta=metadata()), {"a.png": png})

Save, then analyse: `report` reads what the commands saved and never simulates; a figure whose data the
file lacks (per-task data for concurrency over time and latency CDFs, written by `--detail`) is replaced
by a line saying what is missing and how to get it.
"""

from __future__ import annotations

import io
import math
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._format import fmt_ci, fmt_count, fmt_num, fmt_s
from ._io import write_atomic
from ._saved import Saved, SavedValidation, read_saved
from ._version import __version__
from .curves import Crossover, crossovers
from .ranking import best_point, complete, lost_text, ranked, speedups
from .results import Result
from .states import STATES
from .validate import MIN_TIMED_CPU_S, NOMINAL_TARGET, STEADY_SPEED, held_speed

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["concurrency_figure", "detail", "header", "latency_cdf_figure", "metadata", "overlay_figure",
           "per_strategy", "plotting_missing", "report", "split_figure", "sweep_axes", "sweep_figure", "sweep_table",
           "utilisation_figure", "validation_report", "write_report"]

# one colour per state, stable across figures (a state added later gets the next palette colour)
_STATE_COLORS = {"computing": "#4C72B0", "waiting": "#55A868", "queued": "#DD8452", "throttled": "#8172B3"}


def metadata(command: Sequence[str] | None = None, **extra: Any) -> dict[str, Any]:
    """What a report records about how it was made: versions, machine, command, time."""

    return {
        "asyncsim": __version__, "python": platform.python_version(), "platform": platform.platform(),
        "cpu_count": os.cpu_count(), "command": " ".join(command if command is not None else sys.argv),
        "created": datetime.now(UTC).isoformat(timespec="seconds"), **extra,
    }


def plotting_missing() -> str | None:
    """What to install when matplotlib or seaborn (the `report` extra) cannot be imported here; else None."""
    try:
        import matplotlib  # noqa: F401
        import seaborn  # noqa: F401
    except ImportError as exc:
        return (f"asyncsim report draws its figures with matplotlib and seaborn ({exc.name or 'one'} is not "
                "installed): pip install 'asyncsim[report]'")
    return None


def _pct(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{x * 100:+.1f}%"


def _figure_png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return buf.getvalue()


def _scatter(rows: list[dict[str, Any]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(6.5, 6))
    measured = [r["measured"] for r in rows]
    lo, hi = min(measured) / 1.5, max(measured) * 1.5
    ax.plot([lo, hi], [lo, hi], color="0.4", lw=1, label="y = x (perfect prediction)")
    ax.fill_between([lo, hi], [lo * 0.95, hi * 0.95], [lo * 1.05, hi * 1.05], color="0.85", label="±5%")
    models = sorted({r["model"] for r in rows})
    palette = dict(zip(models, sns.color_palette("deep", len(models)), strict=True))
    for r in rows:
        ax.scatter(r["measured"], r["replayed"], color=palette[r["model"]], marker="o", s=36, zorder=3)
        ax.scatter(r["measured"], r["predicted"], facecolors="none", edgecolors=palette[r["model"]], marker="s",
                   s=36, zorder=3)
    for m in models:
        ax.scatter([], [], color=palette[m], label=m)
    ax.scatter([], [], color="0.3", marker="o", label="replayed (measured CPU)")
    ax.scatter([], [], facecolors="none", edgecolors="0.3", marker="s", label="nominal prediction")
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="measured T_total (model s)",
           ylabel="predicted T_total (model s)", title="Predicted vs measured T_total")
    ax.legend(fontsize=8, loc="upper left")
    png = _figure_png(fig)
    plt.close(fig)
    return png


def per_strategy(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Median and worst T_total errors of the validation rows, per strategy."""
    import statistics

    out: dict[str, dict[str, float]] = {}
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        mine = [r for r in rows if r["strategy"] == strategy]
        out[strategy] = {
            "runs": len(mine),
            "median_abs_replay": statistics.median(abs(r["replay_error"]) for r in mine),
            "worst_replay": max((r["replay_error"] for r in mine), key=abs),
            "median_abs_nominal": statistics.median(abs(r["error"]) for r in mine),
        }
    return out


def validation_report(rows: list[dict[str, Any]], skipped: list[dict[str, Any]], meta: dict[str, Any],
                      out_dir: str | os.PathLike[str]) -> Path:
    """Write report.md and predicted_vs_measured.png for a validation run; returns the report's path.

    Each row: model, strategy, time_scale, predicted, replayed, measured (T_total, model s),
    error, replay_error, concurrency_error (relative), and cpu_speed (`validate.cpu_speed`; None without CPU).
    """
    out = Path(out_dir)
    errs = sorted(abs(r["replay_error"]) for r in rows)
    within = sum(e <= 0.05 for e in errs)
    whole = [r for r in rows if not (r.get("failed_replayed") or r.get("failed_measured"))]
    whole_within = sum(abs(r["replay_error"]) <= 0.05 for r in whole)
    worst = max(rows, key=lambda r: abs(r["replay_error"])) if rows else None
    median = errs[len(errs) // 2] if errs else math.nan
    lines = [
        "# Validation: does asyncsim predict real runs?",
        "",
        "**Question:** how far are asyncsim's predictions from real runs of the same draws on this machine?  ",
        f"**Answer:** the replayed prediction (the scheduling model, given the CPU time each step really took) is "
        f"within 5% of the measured T_total in {within} of {len(rows)} runs (median |error| "
        f"{median * 100:.1f}%, worst {_pct(worst['replay_error']) if worst else '-'} for "
        f"{worst['model'] + ' / ' + worst['strategy'] if worst else '-'})"
        + (f", and in {whole_within} of the {len(whole)} runs that lose no task" if len(whole) < len(rows) else "")
        + "; the nominal prediction, which also carries this machine's CPU speed drift, is shown beside it"
        + _nominal_summary(rows) + ".",
        "",
        f"Command: `{meta['command']}` · seed {meta.get('seed', 0)} · asyncsim {meta['asyncsim']} · "
        f"Python {meta['python']} · {meta['platform']} · {meta['cpu_count']} CPUs · {meta['created']}",
        "",
        "![predicted vs measured](predicted_vs_measured.png)",
        "",
        "| model | strategy | time scale | CPU speed | predicted | replayed | measured | error | replay error | "
        "mean-concurrency error (replay) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        flag = " ⚠" if abs(r["replay_error"]) > 0.05 else ""
        lines.append(
            f"| {r['model']} | {r['strategy']} | {r['time_scale']:g} | {_speed(r.get('cpu_speed'))} | "
            f"{r['predicted']:.4g} s | "
            f"{r['replayed']:.4g} s | {r['measured']:.4g} s | {_pct(r['error'])} | {_pct(r['replay_error'])}{flag} | "
            f"{_pct(r['concurrency_error'])} |"
        )
    lossy = [r for r in rows if r.get("failed_replayed") or r.get("failed_measured")]
    if lossy:
        lines += ["", "Runs that lose tasks (failed after their retries, or timed out waiting for a pool): their "
                  "T_total covers the completed tasks only, and which request wins a freed token or slot is decided "
                  "by microseconds, so these runs are chaotic; compare how many tasks each lost:", "",
                  "| model | strategy | tasks | failed (replayed) | failed (measured) |",
                  "| --- | --- | ---: | ---: | ---: |"]
        lines += [f"| {r['model']} | {r['strategy']} | {r['tasks']} | {r['failed_replayed']} | "
                  f"{r['failed_measured']} |" for r in lossy]
    lines += ["", "## Fidelity per strategy", "",
              "| strategy | runs | median abs. replay error | worst replay error | median abs. nominal error |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for strategy, stats in per_strategy(rows).items():
        lines.append(f"| {strategy} | {stats['runs']} | {stats['median_abs_replay'] * 100:.1f}% | "
                     f"{_pct(stats['worst_replay'])} | {stats['median_abs_nominal'] * 100:.1f}% |")
    if skipped:
        lines += ["", "Not run (a real run would exceed the time budget):", ""]
        lines += [f"- {s['model']} / {s['strategy']}: {s['reason']}" for s in skipped]
    lines += [
        "", "Errors are (predicted − measured) / measured, in model seconds (real seconds / time scale). ",
        "T_total is from the first arrival to the last completion. Predictions use this machine's calibrated "
        "overheads (`asyncsim calibrate`), converted to model time at each run's time scale. ",
        f"CPU speed: how fast the run's CPU steps ran against the rate measured just before it (1.10: 10% faster; "
        f"`validate.cpu_speed`; '-': no CPU step of at least {MIN_TIMED_CPU_S * 1e6:.0f} µs of real time to time); a "
        f"run off by more than {STEADY_SPEED:.0%} (*) was measured again and the "
        f"steadiest of its runs kept. Its nominal error is mostly the machine's speed, not the "
        f"model's: the replay takes each step's CPU time from the run instead.", "",
    ]
    if rows:
        write_atomic(out / "predicted_vs_measured.png", _scatter(rows))
    return write_atomic(out / "report.md", "\n".join(lines))


def _speed(speed: float | None) -> str:
    if speed is None:
        return "-"
    return f"{speed:.2f}" + ("" if held_speed(speed) else " *")


def _nominal_summary(rows: list[dict[str, Any]]) -> str:
    """`; within 8% in k of n runs whose CPU held its speed`, for rows that carry a CPU speed."""
    steady = [r for r in rows if "cpu_speed" in r and held_speed(r["cpu_speed"])]
    if not steady:
        return ""
    within = sum(abs(r["error"]) <= NOMINAL_TARGET for r in steady)
    return (f": within {NOMINAL_TARGET:.0%} in {within} of the {len(steady)} runs whose CPU held the rate it was "
            f"calibrated at (within {STEADY_SPEED:.0%}; a run with no CPU step long enough to time counts as held)")


# ------------------------------------------------------------------------------------------- data


def detail(result: Result) -> dict[str, Any]:
    """Per-task data a report's figures need, as JSON-ready lists (the `detail` key of `--detail` output).

    `latencies`: seconds, one per completed task; `series`: `Result.concurrency_series()` as columns
    (`time`, `in_flight` and one per state). Its size grows with the number of tasks.
    """
    import numpy as np

    ok = ~np.isnan(result.done)
    series = result.concurrency_series()
    return {"seed": result.seed, "latencies": (result.done - result.arrival)[ok].tolist(),
            "series": {col: series[col].tolist() for col in series.columns}}


def _states(columns: Sequence[str]) -> list[str]:
    """The task states present, in `metrics.STATES` order (a newer state is picked up by name)."""
    return [s for s in STATES if s in columns]


# ------------------------------------------------------------------------------------------- figures


def _plot() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return plt, sns


def plotting() -> tuple[Any, Any]:
    """matplotlib's pyplot and seaborn, set up as every report's figures are (Agg backend, one theme)."""
    return _plot()


def png(fig: Any) -> bytes:
    """A figure as PNG bytes; the figure is closed."""
    return _png(fig)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    png = _figure_png(fig)
    plt.close(fig)
    return png


def _grid(n: int, *, width: float = 5.0, height: float = 3.2, cols: int = 2) -> tuple[Any, list[Any]]:
    plt, _ = _plot()
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def concurrency_figure(series: Mapping[str, Any], *, title: str = "Tasks in flight over time") -> bytes:
    """Stacked step areas of tasks computing / waiting / queued (/ throttled) over time, a panel per label.

    `series` maps a label (a strategy) to a frame (or dict of columns) shaped like `Result.concurrency_series()`.
    """
    import pandas as pd

    fig, axes = _grid(len(series))
    for ax, (label, data) in zip(axes, series.items(), strict=True):
        frame = pd.DataFrame(data)
        states = _states(list(frame.columns))
        colors = [_STATE_COLORS.get(s, f"C{i + 4}") for i, s in enumerate(states)]
        ax.stackplot(frame["time"], *(frame[s] for s in states), labels=states, colors=colors, step="post",
                     alpha=0.85, linewidth=0)
        ax.step(frame["time"], frame["in_flight"], where="post", color="0.2", lw=0.8, label="in flight")
        ax.set(title=str(label), xlabel="time (s)", ylabel="tasks")
    axes[0].legend(fontsize=8, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)


def latency_cdf_figure(latencies: Mapping[str, Sequence[float]]) -> bytes:
    """Empirical CDF of task latency, one line per label (a strategy)."""
    import pandas as pd

    plt, sns = _plot()
    frame = pd.concat([pd.DataFrame({"latency (s)": list(v), "strategy": str(k)}) for k, v in latencies.items()],
                      ignore_index=True)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sns.ecdfplot(data=frame, x="latency (s)", hue="strategy", ax=ax)
    ax.set(title="Latency CDF", ylabel="fraction of tasks done within")
    return _png(fig)


def utilisation_figure(utilisation: Mapping[str, Mapping[str, float | None]]) -> bytes | None:
    """Bars of utilisation per bounded resource, grouped by label (a strategy): `utilisation[label][resource]`
    (None for an unbounded resource, left out); None when no resource is bounded."""
    import pandas as pd

    rows = [{"resource": name, "strategy": str(label), "utilisation": u}
            for label, by_resource in utilisation.items() for name, u in by_resource.items() if u is not None]
    if not rows:
        return None
    plt, sns = _plot()
    frame = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(max(6.5, 1.1 * frame["resource"].nunique() * max(1, len(utilisation)) / 2), 4))
    sns.barplot(data=frame, x="resource", y="utilisation", hue="strategy", ax=ax)
    ax.set(ylim=(0, max(1.0, float(frame["utilisation"].max()) * 1.1)), title="Utilisation per resource",
           ylabel="mean busy / capacity")
    ax.axhline(1.0, color="0.4", lw=0.8, ls="--")
    return _png(fig)


def sweep_figure(summary: pd.DataFrame, *, x: str, hue: str | None, metric: str = "t_total",
                 crossings: Sequence[Crossover] = (), xlabel: str | None = None, ylabel: str | None = None,
                 logy: bool = False, measured: Sequence[tuple[str, float, float]] = ()) -> bytes:
    """A metric's mean against `x` with its 95% CI band, one line per `hue` value; crossings marked.

    `summary` has `<metric>_mean` and `<metric>_ci95` columns (a sweep summary); `crossings` are
    `curves.Crossover`s of this metric; `measured` (hue value, x, y) points from real runs are drawn as crosses.
    """
    plt, sns = _plot()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    groups = [(None, summary)] if hue is None else list(summary.groupby(hue, sort=False))
    palette = sns.color_palette("deep", len(groups))
    colors = {str(label): color for color, (label, _) in zip(palette, groups, strict=True)}
    marked = False
    for color, (label, g) in zip(palette, groups, strict=True):
        g = g.sort_values(x)
        mean, half = g[f"{metric}_mean"].astype(float), g[f"{metric}_ci95"].astype(float).fillna(0.0)
        ax.plot(g[x], mean, marker="o", ms=3.5, color=color, label=None if label is None else str(label))
        ax.fill_between(g[x], mean - half, mean + half, color=color, alpha=0.25, lw=0)
        lossy = _lossy(g)
        if lossy.any():  # a point that loses work is not comparable: it finished early because it did less
            ax.scatter(g[x][lossy], mean[lossy], marker="x", s=45, color="#C44E52", zorder=4,
                       label=None if marked else "loses work (not comparable)")
            marked = True
    mine = sorted((c for c in crossings if c.metric == metric), key=lambda c: c.x)
    span = float(summary[x].max() - summary[x].min()) or 1.0
    clusters: list[list[Crossover]] = []
    for c in mine:  # crossings closer than 3% of the axis share one label
        if clusters and c.x - clusters[-1][0].x < 0.03 * span:
            clusters[-1].append(c)
        else:
            clusters.append([c])
    for cluster in clusters:
        for c in cluster:
            ax.axvline(c.x, color="0.5", lw=0.8, ls=":")
        text = "\n".join(f"{c.a} > {c.b} at {c.x:.3g}" for c in cluster)
        ax.annotate(text, (cluster[0].x, cluster[0].value), xytext=(6, 8), textcoords="offset points", fontsize=7,
                    color="0.2", bbox={"boxstyle": "round", "fc": "white", "ec": "0.8", "alpha": 0.85})
    for k, (label, mx, my) in enumerate(measured):
        ax.scatter([mx], [my], marker="X", s=70, color=colors.get(str(label), "0.2"), edgecolors="black",
                   linewidths=0.6, zorder=4, label="measured (real run)" if k == 0 else None)
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel or x, ylabel=ylabel or f"{metric} (mean, 95% CI band)")
    if hue is not None or marked:
        ax.legend(fontsize=8, title=hue)
    return _png(fig)


def _lossy(summary: pd.DataFrame) -> pd.Series:
    """Per row of a sweep summary: does the point lose work (see `asyncsim.ranking`)?"""
    import pandas as pd

    if "failed_mean" not in summary.columns:  # a summary from before lost work was recorded
        return pd.Series(False, index=summary.index)
    return summary.apply(lambda row: not complete(row), axis=1).astype(bool)


def split_figure(summary: pd.DataFrame, *, x: str, hue: str | None, xlabel: str | None = None,
                 states: Sequence[str] | None = None) -> bytes:
    """Mean tasks in flight against `x`, stacked by state (computing / waiting / queued / …), a panel per hue.

    `states` picks some of them (e.g. computing and waiting: the tasks being worked on).
    """
    title = "Mean tasks in flight, by state" if states is None else f"Mean tasks {' or '.join(states)}"
    states = [s for s in (states or STATES) if f"concurrency_{s}_mean_mean" in summary.columns]
    groups = [("all", summary)] if hue is None else list(summary.groupby(hue, sort=False))
    fig, axes = _grid(len(groups), width=4.6, height=3.2, cols=3 if len(groups) > 4 else 2)
    for ax, (label, g) in zip(axes, groups, strict=True):
        g = g.sort_values(x)
        ax.stackplot(g[x], *(g[f"concurrency_{s}_mean_mean"] for s in states), labels=states,
                     colors=[_STATE_COLORS.get(s, f"C{i + 4}") for i, s in enumerate(states)], alpha=0.85, lw=0)
        ax.set(title=str(label), xlabel=xlabel or x, ylabel="mean tasks")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)


_OVERLAY = (("T_total", "t_total"), ("throughput", "throughput"), ("mean in flight", "concurrency_mean"),
            ("p50", "latency_p50"), ("p95", "latency_p95"))  # (label, flat metric)


def overlay_figure(validations: Sequence[SavedValidation]) -> bytes:
    """Simulated against measured: predicted and replayed metrics as multiples of the measured ones (= 1),
    a panel per strategy; with `detail` in the file, tasks in flight over time for all three overlaid below."""
    import pandas as pd

    with_series = all(run.detail is not None for v in validations for run in (v.predicted, v.measured, v.replayed))
    n = len(validations)
    fig, axes = _grid(n * (2 if with_series else 1), width=5.2, height=3.2, cols=n if with_series else 2)
    _, sns = _plot()
    for ax, v in zip(axes, validations, strict=False):
        measured = v.measured.result.metrics()
        simulated = {"predicted": v.predicted.result.metrics(), "replayed": v.replayed.result.metrics()}
        rows = [{"metric": label, "run": run, "ratio": simulated[run][key] / m if (m := measured[key]) else math.nan}
                for label, key in _OVERLAY for run in ("predicted", "replayed")]
        frame = pd.DataFrame(rows)
        ax.axhline(1.0, color="0.3", lw=1)
        ax.axhspan(0.95, 1.05, color="0.88")
        sns.stripplot(data=frame, x="metric", y="ratio", hue="run", ax=ax, size=7, jitter=False, dodge=True,
                      palette={"predicted": "#C44E52", "replayed": "#4C72B0"})
        ax.set(title=f"{v.strategy} (time scale {v.time_scale:g})", xlabel="",
               ylabel="simulated / measured")
        ax.legend(fontsize=7)
    if with_series:
        for ax, v in zip(axes[n:], validations, strict=True):
            for run, saved, style in (("measured", v.measured, dict(color="0.2", lw=1.6)),
                                      ("predicted", v.predicted, dict(color="#C44E52", lw=1)),
                                      ("replayed", v.replayed, dict(color="#4C72B0", lw=1, ls="--"))):
                assert saved.detail is not None  # with_series
                s = saved.detail.series
                ax.step(s["time"], s["in_flight"], where="post", label=run, **style)
            ax.set(title=f"{v.strategy}: tasks in flight", xlabel="time (model s)", ylabel="tasks")
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


# ------------------------------------------------------------------------------------------- markdown


def _meta_line(meta: Mapping[str, Any]) -> str:
    seed = f" · seed {meta['seed']}" if "seed" in meta else ""
    return (f"Command: `{meta['command']}`{seed} · asyncsim {meta['asyncsim']} · Python {meta['python']} · "
            f"{meta['platform']} · {meta['cpu_count']} CPUs · {meta['created']}")


def header(title: str, *, meta: Mapping[str, Any], question: str | None = None,
           answer: str | None = None) -> list[str]:
    """A report's opening lines: `# title`, the question and its one-sentence answer, then how it was made."""
    lines = [f"# {title}", ""]
    if question:
        lines.append(f"**Question:** {question}  ")
    if answer:
        lines.append(f"**Answer:** {answer}")
    if question or answer:
        lines.append("")
    return [*lines, _meta_line(meta), ""]


def write_report(out_dir: str | os.PathLike[str], lines: Sequence[str],
                 figures: Mapping[str, bytes | None] | None = None,
                 files: Mapping[str, str | bytes] | None = None) -> Path:
    """Write each figure (PNG bytes; None is skipped) and file, then `report.md` last; returns its path."""
    out = Path(out_dir)
    for name, data in {**(files or {}), **(figures or {})}.items():
        if data is not None:
            write_atomic(out / name, data)
    return write_atomic(out / "report.md", "\n".join(lines).rstrip() + "\n")


def publish(out_dir: str | os.PathLike[str], lines: Sequence[str], figures: Mapping[str, bytes | None] | None = None,
            files: Mapping[str, str | bytes] | None = None) -> int:
    """An experiment's last step: write its report (`write_report`), say where, and print its answer line
    (`header`'s fourth); returns the exit code, 0."""
    path = write_report(out_dir, lines, figures, files)
    print(f"wrote {path}")
    print(lines[3])
    return 0


def sweep_axes(summary: pd.DataFrame, params: Sequence[str]) -> tuple[str | None, str | None, pd.DataFrame]:
    """Pick a sweep's x axis and line labels: (x, hue, frame with a `hue` column).

    x is the first numeric parameter with more than one value (None if there is none); the other varying
    parameters are joined into one label per line (`strategy`'s value alone when it is the only one).
    """
    import pandas as pd

    varying = [p for p in params if summary[p].nunique(dropna=False) > 1]
    numeric = [p for p in varying if pd.api.types.is_numeric_dtype(summary[p])]
    x = numeric[0] if numeric else None
    rest = [p for p in varying if p != x]
    if not rest:
        return x, None, summary
    hue = rest[0] if len(rest) == 1 else " · ".join(rest)
    labels = summary[rest[0]].astype(str) if len(rest) == 1 else summary[rest].astype(str).apply(
        lambda r: ", ".join(f"{k}={v}" for k, v in r.items()), axis=1)
    return x, hue, summary.assign(**{hue: labels})


def sweep_table(summary: pd.DataFrame, params: Sequence[str]) -> list[str]:
    """A Markdown table of a sweep summary: the parameters, completed and failed tasks (429s, retries and cost
    where the runs have them), then T_total, goodput, p95 and mean in flight; ⚠ marks points that lose work."""
    outcome = [("completed", "completed", fmt_count), ("failed", "failed", fmt_count)]
    for title, metric, fmt in (("429s", "rate_limited", fmt_count), ("retries", "retries", fmt_count),
                               ("cost", "cost", fmt_num)):
        if f"{metric}_mean" in summary.columns and (summary[f"{metric}_mean"] > 0).any():
            outcome.append((title, metric, fmt))
    cols = [*outcome, ("T_total", "t_total", fmt_s), ("goodput/s", "goodput", fmt_num), ("p95", "latency_p95", fmt_s),
            ("mean in flight", "concurrency_mean", fmt_num)]
    cols = [c for c in cols if f"{c[1]}_mean" in summary.columns]
    lines = ["| " + " | ".join([*params, "runs", *(c[0] for c in cols)]) + " |",
             "| " + " | ".join(["---"] * len(params) + ["---:"] * (len(cols) + 1)) + " |"]
    lossy = _lossy(summary)
    for (_, row), bad in zip(summary.iterrows(), lossy, strict=True):
        cells = [str(row[p]) for p in params] + [str(row["replications"])]
        if bad and cells:
            cells[0] += " ⚠"
        cells += [fmt_ci(float(row[f"{m}_mean"]), float(row.get(f"{m}_ci95", math.nan)), f) for _, m, f in cols]
        lines.append("| " + " | ".join(cells) + " |")
    if lossy.any():
        lines += ["", "⚠ loses work: its T_total covers only what it finished, so it is not ranked against the "
                  "points that complete every task."]
    return lines


# ------------------------------------------------------------------------------------------- report FILE


_NEEDS_DETAIL = ("Concurrency over time and the latency CDF need per-task data, which {what} does not hold; "
                 "write it with `{how}` and report that file.")


def report(path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
           command: Sequence[str] | None = None) -> Path:
    """Turn a saved run / compare / sweep / validate output into `out_dir/report.md` plus PNG figures.

    Nothing is simulated again. Returns the report's path.

    Raises:
        ModelError: (source = the file) when it is none of the outputs `_saved.read_saved` knows.
    """
    saved = read_saved(path)
    meta = metadata(command, source=str(path))
    if saved.suite is not None:
        return validation_report(saved.suite["rows"], saved.suite["skipped"], saved.suite["meta"], out_dir)
    if saved.runs:
        lines, figures = _runs_doc(saved, meta)
    elif saved.validations:
        lines, figures = _validate_doc(saved.validations, meta)
    else:
        lines, figures = _sweep_doc(saved, meta)
    return write_report(out_dir, lines, figures)


def _runs_doc(saved: Saved, meta: dict[str, Any]) -> tuple[list[str], dict[str, bytes | None]]:
    runs = saved.runs
    results = [run.result for run in runs]
    first = results[0]
    if saved.kind == "run":
        reps = f", mean of {runs[0].replications} replications ± 95% CI" if runs[0].replications is not None else ""
        title = f"{first.model} under {first.strategy}"
        lost = first.tasks - first.completed
        loss = f" ({fmt_count(lost)} lost: {lost / first.tasks:.1%} of the work)" if lost > 0 else ""
        cost = f", cost {fmt_num(first.cost.total)}" if first.cost is not None else ""
        opening = (f"{fmt_count(first.completed)} of {fmt_count(first.tasks)} tasks completed{loss} in "
                   f"{fmt_s(first.t_total)}{cost} (seed {first.seed}{reps}).")
    else:
        title = f"{first.model}: {', '.join(r.strategy for r in results)}"
        opening = "; ".join(speedups(results)) + f" (paired: the same draws, seed {first.seed})."
    lines = [*header(title, meta=meta), opening, "", *_steady_lines(results)]
    flat = [r.metrics() for r in results]
    outcome = [("429s", "rate_limited"), ("retries", "retries"), ("cost", "cost")]
    outcome = [(t, k) for t, k in outcome if any(m.get(k, 0) > 0 for m in flat)]
    states = [s for s in STATES if any(r.concurrency.by_state()[s] for r in results)]
    cols = ["strategy", "completed", "failed", *(t for t, _ in outcome), "T_total", "goodput/s", "p50", "p95", "p99",
            "in flight", "peak", *states]
    lines += ["| " + " | ".join(cols) + " |", "| --- |" + " ---: |" * (len(cols) - 1)]
    for run, r, m in zip(runs, results, flat, strict=True):
        lat, conc = r.latency, r.concurrency
        cells = [r.strategy + ("" if complete(r) else " ⚠"), fmt_count(r.completed), fmt_count(r.failed),
                 *(fmt_num(m[k]) if k == "cost" else fmt_count(m[k]) for _, k in outcome),
                 fmt_ci(r.t_total, run.half("t_total")), fmt_ci(r.goodput, run.half("goodput"), fmt_num),
                 *(fmt_ci(getattr(lat, p), run.half("latency", p)) for p in ("p50", "p95", "p99")),
                 fmt_ci(conc.mean, run.half("concurrency", "mean"), fmt_num), f"{conc.peak:g}",
                 *(fmt_num(conc.by_state()[s]) for s in states)]
        if r.steady is not None and not r.steady.stable:
            cells[0] += " (unstable)"
        lines.append("| " + " | ".join(cells) + " |")
    if not all(complete(r) for r in results):
        lines += ["", "⚠ loses work: its T_total covers only what it finished, so it is not ranked."]
    lines.append("")
    figures: dict[str, bytes | None] = {
        "utilisation.png": utilisation_figure({r.strategy: {str(k): v.utilization for k, v in r.resources.items()}
                                               for r in results})}
    if figures["utilisation.png"] is not None:
        lines += ["![utilisation per resource](utilisation.png)", ""]
    lines += _resources_table(results)
    details = [run.detail for run in runs]
    if all(d is not None for d in details):
        series = {r.strategy: d.series for r, d in zip(results, details, strict=True) if d is not None}
        latencies = {r.strategy: d.latencies for r, d in zip(results, details, strict=True) if d is not None}
        figures["concurrency.png"] = concurrency_figure(series)
        figures["latency_cdf.png"] = latency_cdf_figure(latencies)
        lines += ["![tasks in flight over time, by state](concurrency.png)", "",
                  "![latency CDF](latency_cdf.png)", ""]
        if runs[0].replications is not None and details[0] is not None:
            lines += [f"The per-task figures show one replication (seed {details[0].seed}).", ""]
    else:
        how = ("asyncsim run MODEL --json --detail > run.json" if saved.kind == "run"
               else "asyncsim compare MODEL --strategies ... --json --detail > compare.json")
        lines += [_NEEDS_DETAIL.format(what=f"`{saved.path.name}`", how=how), ""]
    return lines, figures


def _steady_lines(results: Sequence[Result]) -> list[str]:
    """Each run's steady-state verdict (open and closed arrivals): a sentence for one run, a bullet per strategy."""
    out = []
    for r in results:
        if r.steady is None:
            continue
        text = r.steady.summary()
        text = text[0].upper() + text[1:]
        if not r.steady.stable:
            text = f"**{text}**"
        out.append(f"{text}." if len(results) == 1 else f"- {r.strategy}: {text}.")
    return [*out, ""] if out else []


def _resources_table(results: Sequence[Result]) -> list[str]:
    lines = ["| strategy | resource | capacity | utilisation | mean busy | mean wait/task | mean queue |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        for resource, res in r.resources.items():
            util = "-" if res.utilization is None else f"{res.utilization:.1%}"
            cap = "∞" if res.capacity is None else f"{res.capacity:g}"
            lines.append(f"| {r.strategy} | {resource} | {cap} | {util} | {res.mean_busy:.3g} | "
                         f"{fmt_s(res.mean_wait)} | {res.mean_queue:.3g} |")
    return [*lines, ""]


def _validate_doc(runs: Sequence[SavedValidation], meta: dict[str, Any]) -> tuple[list[str], dict[str, bytes | None]]:
    worst = max(runs, key=lambda v: abs(v.replay_error["t_total"]))
    within = sum(abs(v.replay_error["t_total"]) <= 0.05 for v in runs)
    lines = [*header(f"{runs[0].model}: predicted vs measured", meta=meta),
             f"The replayed prediction is within 5% of the measured T_total for {within} of {len(runs)} "
             f"strategies (worst: {worst.strategy}, {_pct(worst.replay_error['t_total'])}).", "",
             "| strategy | time scale | predicted | replayed | measured | error | replay error | "
             "mean in flight: replay error |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for v in runs:
        err, rerr = v.error, v.replay_error
        flag = " ⚠" if abs(rerr["t_total"]) > 0.05 else ""
        lines.append(f"| {v.strategy} | {v.time_scale:g} | {fmt_s(v.predicted.result.t_total)} | "
                     f"{fmt_s(v.replayed.result.t_total)} | {fmt_s(v.measured.result.t_total)} | "
                     f"{_pct(err['t_total'])} | {_pct(rerr['t_total'])}{flag} | {_pct(rerr['concurrency_mean'])} |")
    lines += ["", *_lost_work(runs), "![simulated vs measured](overlay.png)", "",
              "Errors are (simulated − measured) / measured in model seconds; ⚠ marks a replay error above 5%. "
              "*Predicted* uses the model's nominal durations, *replayed* the CPU time each step really took."]
    if not all(v.measured.detail is not None for v in runs):
        lines.append("Tasks in flight over time, overlaid, need per-task data: write it with "
                     "`asyncsim validate MODEL --strategies ... --detail --out validate.json`.")
    return [*lines, ""], {"overlay.png": overlay_figure(runs)}


def _lost_work(runs: Sequence[SavedValidation]) -> list[str]:
    """Tasks completed and failed (and 429s and retries, summed over services) predicted vs measured; a
    strategy whose failed count differs is marked, and so is a time scale that changed the model's outcome."""
    services = any(v.measured.result.services for v in runs)
    same = sum(v.predicted.result.failed == v.measured.result.failed for v in runs)
    cols = {"completed": "completed", "failed": "failed", **({"429s": "rate_limited", "retries": "retries"}
                                                             if services else {})}
    lines = [f"Failed tasks: predicted as measured for {same} of {len(runs)} strategies.", "",
             "| strategy | " + " | ".join(f"{c}: predicted | {c}: measured" for c in cols) + " |",
             "| --- |" + " ---: |" * (2 * len(cols))]
    for v in runs:
        cells = [v.strategy]
        flat = [v.predicted.result.metrics(), v.measured.result.metrics()]
        for col, key in cols.items():
            pm = [float(m[key]) for m in flat]
            flag = " ⚠" if col == "failed" and pm[0] != pm[1] else ""
            cells += [f"{pm[0]:g}", f"{pm[1]:g}{flag}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *(["⚠ marks a failed count that differs between prediction and measurement.", ""]
                    if same < len(runs) else [])]
    for v in runs:
        check = v.scale_check
        if check is not None and not check["matches"]:
            lines += [f"⚠ {v.strategy}: time scale {check['time_scale']:g} changes the outcome of the nominal "
                      f"prediction (scale 1, waits on sockets): {', '.join(check['differences'])} "
                      f"(at {check['time_scale']:g} vs nominal).", ""]
    return lines


def _sweep_doc(saved: Saved, meta: dict[str, Any]) -> tuple[list[str], dict[str, bytes | None]]:
    summary, params = saved.summary, list(saved.params)
    assert summary is not None  # read_saved gives every sweep and summary one
    x, hue, frame = sweep_axes(summary, params)
    runs = int(summary["replications"].sum())
    source = "from the per-run table" if saved.kind == "sweep" else "a summary"
    lines = [*header(f"Sweep of {', '.join(params) or 'the model'}", meta=meta),
             f"{len(summary)} grid points, {runs} runs ({source}; means with 95% confidence half-widths). "
             + best_point([row for _, row in summary.iterrows()], params), ""]
    figures: dict[str, bytes | None] = {}
    if x is not None:
        found = crossovers(frame, x=x, by=hue) if hue else []
        if found:
            lines += ["Crossovers (T_total, linear interpolation between grid points; differences inside the 95% "
                      "CIs count as ties; points that lose work are left out):", "", *(f"- {c}" for c in found), ""]
        elif hue:
            lines += [f"No crossovers: no line's T_total crosses another's as {x} grows.", ""]
        figures["t_total.png"] = sweep_figure(frame, x=x, hue=hue, crossings=found, ylabel="T_total (s)")
        lines += ["![T_total against the parameter, 95% CI bands](t_total.png)", ""]
        if any(f"concurrency_{s}_mean_mean" in frame.columns for s in STATES):
            figures["concurrency_split.png"] = split_figure(frame, x=x, hue=hue)
            lines += ["![mean tasks in flight by state](concurrency_split.png)", ""]
    else:
        figures["t_total.png"] = _bar_figure(frame, hue or params[0] if params else None)
        lines += ["![T_total per grid point, 95% CI](t_total.png)", ""]
    lines += [*sweep_table(summary, params), "",
              _NEEDS_DETAIL.format(what="a sweep", how="asyncsim run MODEL --strategy S --json --detail > run.json")]
    return [*lines, ""], figures


def _bar_figure(summary: pd.DataFrame, label: str | None) -> bytes:
    """T_total per grid point, best first by `asyncsim.ranking`: points that lose work last, hatched and labelled."""
    plt, sns = _plot()
    order = ranked([row for _, row in summary.iterrows()])
    labels = [str(row[label]) if label else str(row.name) for row in order]
    lossy = [not complete(row) for row in order]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(order)), 4))
    colors = sns.color_palette("deep", len(order))
    bars = ax.bar(labels, [row["t_total_mean"] for row in order],
                  yerr=[0.0 if row["t_total_ci95"] != row["t_total_ci95"] else row["t_total_ci95"] for row in order],
                  color=["0.8" if bad else c for bad, c in zip(lossy, colors, strict=True)],
                  hatch=None, capsize=3)
    for bar, row, bad in zip(bars, order, lossy, strict=True):
        if bad:
            bar.set_hatch("//")
            ax.annotate(f"⚠ {lost_text(row)}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        xytext=(0, 4), textcoords="offset points", ha="center", fontsize=7, color="#C44E52",
                        rotation=90 if len(order) > 6 else 0)
    ax.set(ylabel="T_total (s), 95% CI", xlabel=label or "",
           title="best first; hatched: loses work (finishes early because it did less)" if any(lossy) else None)
    ax.tick_params(axis="x", rotation=30)
    return _png(fig)
