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
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelError
from .sweep import summarize

__all__ = ["Saved", "read_saved"]

_RUN_KEYS = {"strategy", "t_total", "concurrency"}
_VALIDATE_KEYS = {"predicted", "measured", "replayed"}
_EXPECTED = ("expected the output of run --json, compare --json, validate --json/--out, sweep --out "
             "(.parquet/.csv or its -summary.csv) or sweep --json")


@dataclass(frozen=True)
class Saved:
    """One saved output: its `kind` (see the module docstring), its data and, for sweeps, the parameters.

    `data` is a dict (run, suite), a list of dicts (compare, validate) or a pandas DataFrame (sweep and
    summary; a sweep is already summarised here, and `runs` keeps its per-run table).
    """

    path: Path
    kind: str
    data: Any
    params: tuple[str, ...] = ()
    runs: Any = None


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
            return Saved(path, "suite", data)
        if set(data) >= _VALIDATE_KEYS:
            return Saved(path, "validate", [data])
        if set(data) >= _RUN_KEYS:
            return Saved(path, "run", data)
        if {"answer", "curve", "slos"} <= set(data):
            raise ModelError(f"a plan --json output, which report does not read; {_EXPECTED}", source=str(path))
        keys = ", ".join(list(data)[:6]) or "none"
        raise ModelError(f"a JSON object with keys {keys}; {_EXPECTED}", source=str(path))
    if isinstance(data, list) and data and all(isinstance(d, dict) for d in data):
        if all(set(d) >= _VALIDATE_KEYS for d in data):
            return Saved(path, "validate", data)
        if all(set(d) >= _RUN_KEYS for d in data):
            return Saved(path, "compare", data)
        if all("t_total_mean" in d for d in data):
            import pandas as pd

            frame = pd.DataFrame.from_records(data)
            return Saved(path, "summary", frame, _params(frame, "replications", path))
    what = "an empty list" if data == [] else f"a JSON {type(data).__name__} of another shape"
    raise ModelError(f"{what}; {_EXPECTED}", source=str(path))


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
        return Saved(path, "sweep", summarize(frame, list(params)), params, runs=frame)
    if {"point", "replications", "t_total_mean"} <= columns:
        return Saved(path, "summary", frame, _params(frame, "replications", path))
    shown = ", ".join(map(str, list(frame.columns)[:6])) or "none"
    raise ModelError(f"a table with columns {shown}; {_EXPECTED}", source=str(path))


def _params(frame: Any, end: str, path: Path) -> tuple[str, ...]:
    """The swept parameters: the columns between `point` and `end` (as `sweep` writes them)."""
    columns = list(frame.columns)
    if "point" not in columns or end not in columns or columns.index("point") > columns.index(end):
        raise ModelError(f"a sweep table must have 'point', the parameters, then {end!r}", source=str(path))
    return tuple(columns[columns.index("point") + 1:columns.index(end)])
