"""Saved outputs: read what `run`, `compare`, `sweep`, `validate` (and the validation suite) wrote, and say
which kind it is. Reading never simulates anything.

Kinds, by shape:
* `run` — a JSON object with `t_total`, `strategy` and `concurrency` (`replications` when replicated);
* `compare` — a JSON list of such objects;
* `validate` — a JSON object (or list of them) with `predicted`, `measured` and `replayed`;
* `suite` — `experiments/validation_suite.py`'s `results.json`: `meta`, `rows`, `skipped`;
* `sweep` — a table with one row per run (`.parquet` or `.csv`: `point`, parameters, `replication`, `seed`,
  metrics), summarised here;
* `summary` — a sweep summary (`NAME-summary.csv`, or `sweep --json`): `point`, parameters, `replications`,
  `<metric>_mean` and `<metric>_ci95`.

Runs are read into types: each run of `run` and `compare` is a `SavedRun` (its figures as a `results.Result`,
and the replications, half-widths and per-task `Detail` the command added), each strategy of `validate` a
`SavedValidation`; a malformed one is refused with the key that is wrong.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ModelError
from .results import Result
from .sweep import summarize

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Detail", "Saved", "SavedRun", "SavedValidation", "read_saved"]

_RUN_KEYS = {"strategy", "t_total", "concurrency"}
_VALIDATE_KEYS = {"predicted", "measured", "replayed"}
_EXPECTED = ("expected the output of run --json, compare --json, validate --json/--out, sweep --out "
             "(.parquet/.csv or its -summary.csv) or sweep --json")


@dataclass(frozen=True)
class Detail:
    """The per-task data `--detail` saves with a run (see `report.detail`): the `seed` of the run it comes
    from, the `latencies` of the completed tasks (seconds) and the concurrency `series` by column (`time`,
    `in_flight` and one per task state)."""

    seed: int | None
    latencies: list[float]
    series: dict[str, list[float]]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Detail:
        """Raises: ValueError naming a missing key."""
        for key in ("latencies", "series"):
            if key not in d:
                raise ValueError(f"detail: missing {key!r}")
        return cls(d.get("seed"), list(d["latencies"]), {k: list(v) for k, v in d["series"].items()})


@dataclass(frozen=True, eq=False)
class SavedRun:
    """One run as `run --json` (or one of `compare --json`, or one side of `validate`) saved it: its figures
    as a `Result` (the means, over `replications` when there are several), and what the command added: the
    95% half-widths `ci95` (shaped as the figures' JSON: `{"t_total": h, "latency": {"p99": h}}`; empty for a
    single run) and the per-task `detail` (`--detail`)."""

    result: Result
    replications: int | None = None
    ci95: Mapping[str, Any] = field(default_factory=dict)
    detail: Detail | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SavedRun:
        """Raises: ValueError naming the first key that is missing or malformed."""
        detail = Detail.from_dict(d["detail"]) if d.get("detail") is not None else None
        return cls(Result.from_dict(d), d.get("replications"), d.get("ci95") or {}, detail)

    def half(self, *path: str) -> float | None:
        """The 95% half-width of a figure, by its path in the JSON (`half("latency", "p99")`); None when the
        run was not replicated or the figure has none."""
        value: Any = self.ci95
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        return value if isinstance(value, float | int) else None


@dataclass(frozen=True, eq=False)
class SavedValidation:
    """One strategy of `validate --json`: the `predicted`, `measured` and `replayed` runs, the relative errors
    of the nominal prediction (`error`) and of the replay (`replay_error`) by flat metric name (NaN: none),
    and the time scale's check against the nominal prediction (`scale_check`, as `validate.ScaleCheck.to_dict`
    writes it; None when not made)."""

    model: str
    strategy: str
    time_scale: float
    predicted: SavedRun
    measured: SavedRun
    replayed: SavedRun
    error: dict[str, float]
    replay_error: dict[str, float]
    scale_check: Mapping[str, Any] | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SavedValidation:
        """Raises: ValueError naming the first key that is missing or malformed."""
        runs = {}
        for side in ("predicted", "measured", "replayed"):
            try:
                runs[side] = SavedRun.from_dict(d[side])
            except ValueError as exc:
                raise ValueError(f"{side}: {exc}") from None
        first = runs["predicted"].result
        return cls(d.get("model", first.model), d.get("strategy", first.strategy), d.get("time_scale", 1.0),
                   error=dict(d.get("error") or {}), replay_error=dict(d.get("replay_error") or {}),
                   scale_check=d.get("scale_check"), **runs)


@dataclass(frozen=True, eq=False)
class Saved:
    """One saved output: its `kind` (see the module docstring) and what it holds.

    `runs` for run (one) and compare; `validations` for validate; `suite` for the validation suite (its JSON
    object: `meta`, `rows`, `skipped`); `summary` for sweep and summary (a sweep is summarised here, and
    `table` keeps its per-run table), with the swept `params`.
    """

    path: Path
    kind: str
    runs: tuple[SavedRun, ...] = ()
    validations: tuple[SavedValidation, ...] = ()
    suite: Mapping[str, Any] | None = None
    summary: pd.DataFrame | None = None
    table: pd.DataFrame | None = None
    params: tuple[str, ...] = ()


def read_saved(path: str | os.PathLike[str]) -> Saved:
    """Read and classify a saved output.

    Raises:
        ModelError: (source = the file) when it cannot be read or is none of the known kinds.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError("no such file" if not path.exists() else "not a file", source=str(path))
    if path.suffix in (".parquet", ".csv"):
        return _table(path)
    try:
        data = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise ModelError(f"not a text file; {_EXPECTED}", source=str(path)) from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"line {exc.lineno}: not valid JSON ({exc.msg}); {_EXPECTED}", source=str(path)) from None
    data = _nan_for_null(data)
    if isinstance(data, dict):
        if {"meta", "rows", "skipped"} <= set(data):
            return Saved(path, "suite", suite=data)
        if set(data) >= _VALIDATE_KEYS:
            return Saved(path, "validate", validations=_typed(SavedValidation.from_dict, [data], path))
        if set(data) >= _RUN_KEYS:
            return Saved(path, "run", runs=_typed(SavedRun.from_dict, [data], path))
        if {"answer", "curve", "slos"} <= set(data):
            raise ModelError(f"a plan --json output, which report does not read; {_EXPECTED}", source=str(path))
        keys = ", ".join(list(data)[:6]) or "none"
        raise ModelError(f"a JSON object with keys {keys}; {_EXPECTED}", source=str(path))
    if isinstance(data, list) and data and all(isinstance(d, dict) for d in data):
        if all(set(d) >= _VALIDATE_KEYS for d in data):
            return Saved(path, "validate", validations=_typed(SavedValidation.from_dict, data, path))
        if all(set(d) >= _RUN_KEYS for d in data):
            return Saved(path, "compare", runs=_typed(SavedRun.from_dict, data, path))
        if all("t_total_mean" in d for d in data):
            import pandas as pd

            frame = pd.DataFrame.from_records(data)
            return Saved(path, "summary", summary=frame, params=_params(frame, "replications", path))
    what = "an empty list" if data == [] else f"a JSON {type(data).__name__} of another shape"
    raise ModelError(f"{what}; {_EXPECTED}", source=str(path))


def _typed(read: Any, items: list[dict[str, Any]], path: Path) -> tuple[Any, ...]:
    """Each item read by `read` (a `from_dict`).

    Raises:
        ModelError: (source = the file) naming the item and the key that is wrong.
    """
    out = []
    for k, item in enumerate(items):
        try:
            out.append(read(item))
        except (ValueError, TypeError) as exc:
            where = f"item {k}: " if len(items) > 1 else ""
            raise ModelError(f"{where}{exc}; {_EXPECTED}", source=str(path)) from None
    return tuple(out)


# Figures that are numbers whenever they exist (and a sweep summary's `<metric>_mean` and `<metric>_ci95`): the
# commands write a missing one (NaN in memory) as null, since strict JSON has no NaN; reading turns it back into
# NaN for the arithmetic of reports.
_NUMBERS = frozenset(("latency", "error", "replay_error", "concurrency_error"))
_NUMBER_SUFFIXES = ("_mean", "_ci95")


def _nan_for_null(data: Any, numbers: bool = False) -> Any:
    if isinstance(data, dict):
        return {k: _nan_for_null(v, numbers or k in _NUMBERS or str(k).endswith(_NUMBER_SUFFIXES))
                for k, v in data.items()}
    if isinstance(data, list):
        return [_nan_for_null(v, numbers) for v in data]
    return math.nan if data is None and numbers else data


def _table(path: Path) -> Saved:
    import pandas as pd

    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as exc:  # pyarrow and the CSV parser raise many types; all mean "unreadable"
        raise ModelError(f"cannot read as {path.suffix[1:]}: {exc}", source=str(path)) from None
    columns = set(frame.columns)
    if {"point", "replication", "seed", "t_total"} <= columns:
        params = _params(frame, "replication", path)
        return Saved(path, "sweep", summary=summarize(frame, list(params)), table=frame, params=params)
    if {"point", "replications", "t_total_mean"} <= columns:
        return Saved(path, "summary", summary=frame, params=_params(frame, "replications", path))
    shown = ", ".join(map(str, list(frame.columns)[:6])) or "none"
    raise ModelError(f"a table with columns {shown}; {_EXPECTED}", source=str(path))


def _params(frame: Any, end: str, path: Path) -> tuple[str, ...]:
    """The swept parameters: the columns between `point` and `end` (as `sweep` writes them)."""
    columns = list(frame.columns)
    if "point" not in columns or end not in columns or columns.index("point") > columns.index(end):
        raise ModelError(f"a sweep table must have 'point', the parameters, then {end!r}", source=str(path))
    return tuple(columns[columns.index("point") + 1:columns.index(end)])
