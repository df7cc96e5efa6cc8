"""Reports: Markdown plus figures, written atomically. The only module that imports plotting libraries
(lazily, so the simulator never pays for them).
"""

from __future__ import annotations

import io
import math
import os
import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._io import write_atomic

__all__ = ["metadata", "per_strategy", "validation_report"]


def metadata(command: Sequence[str] | None = None, **extra: Any) -> dict[str, Any]:
    """What a report records about how it was made: versions, machine, command, time."""
    from . import __version__

    return {
        "asyncsim": __version__, "python": platform.python_version(), "platform": platform.platform(),
        "cpu_count": os.cpu_count(), "command": " ".join(command if command is not None else sys.argv),
        "created": datetime.now(UTC).isoformat(timespec="seconds"), **extra,
    }


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
    error, replay_error, concurrency_error (relative).
    """
    out = Path(out_dir)
    errs = sorted(abs(r["replay_error"]) for r in rows)
    within = sum(e <= 0.05 for e in errs)
    worst = max(rows, key=lambda r: abs(r["replay_error"])) if rows else None
    median = errs[len(errs) // 2] if errs else math.nan
    lines = [
        "# Validation: does asyncsim predict real runs?",
        "",
        "**Question:** how far are asyncsim's predictions from real runs of the same draws on this machine?  ",
        f"**Answer:** the replayed prediction (the scheduling model, given the CPU time each step really took) is "
        f"within 5% of the measured T_total in {within} of {len(rows)} runs (median |error| "
        f"{median * 100:.1f}%, worst {_pct(worst['replay_error']) if worst else '-'} for "
        f"{worst['model'] + ' / ' + worst['strategy'] if worst else '-'}); the nominal prediction, which also "
        "carries this machine's CPU speed drift, is shown beside it.",
        "",
        f"Command: `{meta['command']}` · seed {meta.get('seed', 0)} · asyncsim {meta['asyncsim']} · "
        f"Python {meta['python']} · {meta['platform']} · {meta['cpu_count']} CPUs · {meta['created']}",
        "",
        "![predicted vs measured](predicted_vs_measured.png)",
        "",
        "| model | strategy | time scale | predicted | replayed | measured | error | replay error | "
        "mean-concurrency error (replay) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        flag = " ⚠" if abs(r["replay_error"]) > 0.05 else ""
        lines.append(
            f"| {r['model']} | {r['strategy']} | {r['time_scale']:g} | {r['predicted']:.4g} s | "
            f"{r['replayed']:.4g} s | {r['measured']:.4g} s | {_pct(r['error'])} | {_pct(r['replay_error'])}{flag} | "
            f"{_pct(r['concurrency_error'])} |"
        )
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
        "overheads (`asyncsim calibrate`), converted to model time at each run's time scale.", "",
    ]
    if rows:
        write_atomic(out / "predicted_vs_measured.png", _scatter(rows))
    return write_atomic(out / "report.md", "\n".join(lines))
