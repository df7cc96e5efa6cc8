"""Parameter sweeps: set dotted paths of a model to each combination of values, simulate every point.

    >>> raw, base = load_raw("models/rag_query.yaml")
    >>> points = grid([parse_set("strategy=asyncio:{8,16,32}"), parse_set("pools.db=5,10")])
    >>> frame = sweep(raw, points, replications=5, seed=1, workers=4, base_dir=base)
    >>> summarize(frame, ["strategy", "pools.db"])

A point is `{path: value}`; paths index the model's YAML structure (`services.llm.concurrency`,
`task.0.io`). Each point is applied to a deep copy of the raw YAML dict and validated with
`Workload.from_dict`, so a bad value is reported with its YAML path; every point is validated before
anything runs. Every point uses the same replication seeds, so points are compared paired.

Resume (`out=`): finished runs are saved after every chunk by rewriting the whole file atomically
(`write_atomic`), as Parquet (`.parquet`, types kept) or CSV (any other suffix). A rewrite costs more
than appending, but an interrupted sweep leaves either the previous file or the new one, never a torn
last line, and Parquet cannot be appended to. A run already in `out` — same parameter values,
replication and seed — is not run again; rows of `out` outside the current grid are kept in the file
but not returned.

Dask (`scheduler=`): the same chunks go to a `dask.distributed` cluster instead of the local pool,
given as a scheduler address (`tcp://host:8786`) or a `distributed.Client`; the frame is the same.
The workers must be able to import `asyncsim` and read any files the model refers to (`base_dir`).
"""

from __future__ import annotations

import copy
import io
import itertools
import json
import math
import os
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ._io import write_atomic
from .api import PRECISE, ci_half_width, more_replications, relative_half_width, replication_seeds, simulate
from .errors import ModelError
from .results import METRICS
from .spec import Workload

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["METRICS", "apply", "grid", "load_raw", "parse_set", "summarize", "sweep"]

_NAME_MAPS = ("pools", "services")  # their keys are user names: a new one would silently add an entry
_RANGE = re.compile(r"\s*(-?\d+)\.\.(-?\d+)\s*")

Progress = Callable[[int, int], None]


# ------------------------------------------------------------------------------------------- --set


def parse_set(text: str) -> tuple[str, list[Any]]:
    """Parse `PATH=VALUES` (`pools.db=5,10`, `strategy=asyncio:{1,2,4}`, `x={1..4}`) into a path and values.

    Values are split at top-level commas, brace groups are expanded as bash does (the product of the
    alternatives; `{a..b}` is an integer range), and each value is read with `yaml.safe_load`. A brace
    group holding `": "` is a YAML flow mapping, not an expansion.

    Raises:
        ModelError: `--set: ...` naming the problem and the text.
    """
    path, sep, values = text.partition("=")
    path = path.strip()
    if not sep:
        raise ModelError(f"--set: expected PATH=VALUES, got {text!r}")
    if not path or any(not part for part in path.split(".")):
        raise ModelError(f"--set: empty part in the path {path!r} (write it as a.b.c)")
    if not values.strip():
        raise ModelError(f"--set {path}: no values given")
    out: list[Any] = []
    for item in _split(values, text):
        if not item.strip():
            raise ModelError(f"--set {path}: empty value in {values!r}")
        for word in _expand(item, text):
            try:
                out.append(yaml.safe_load(word))
            except yaml.YAMLError as exc:
                raise ModelError(f"--set {path}: {word!r} is not a valid YAML value ({exc})") from None
    return path, out


def _split(text: str, whole: str) -> list[str]:
    """Split at commas outside braces and brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth < 0:
                raise ModelError(f"--set: unbalanced {ch!r} in {whole!r}")
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise ModelError(f"--set: unclosed brace or bracket in {whole!r}")
    parts.append(text[start:])
    return parts


def _expand(word: str, whole: str) -> list[str]:
    """Bash brace expansion of one word: the first group's alternatives, each expanded recursively."""
    start = word.find("{")
    while start >= 0:
        end = _closing(word, start, whole)
        inner = word[start + 1:end]
        if ": " not in inner:
            alternatives = _alternatives(inner, whole)
            if alternatives is not None:
                head, tail = word[:start], word[end + 1:]
                return [w for alt in alternatives for w in _expand(head + alt + tail, whole)]
        start = word.find("{", end + 1)
    return [word]


def _closing(word: str, start: int, whole: str) -> int:
    depth = 0
    for i in range(start, len(word)):
        depth += {"{": 1, "}": -1}.get(word[i], 0)
        if depth == 0:
            return i
    raise ModelError(f"--set: unclosed brace in {whole!r}")


def _alternatives(inner: str, whole: str) -> list[str] | None:
    """The alternatives of a brace group, or None when it is not an expansion (`{x}` stays as it is)."""
    match = _RANGE.fullmatch(inner)
    if match:
        lo, hi = int(match[1]), int(match[2])
        step = 1 if hi >= lo else -1
        return [str(n) for n in range(lo, hi + step, step)]
    if ".." in inner and "," not in inner:
        raise ModelError(f"--set: a range must be {{a..b}} with integers a and b, got {{{inner}}} in {whole!r}")
    parts = _split(inner, whole)
    return parts if len(parts) > 1 else None


def grid(sets: Iterable[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    """Every combination of the values (Cartesian product); the first path varies slowest.

    Raises:
        ModelError: when a path is given twice or has no values.
    """
    sets = list(sets)
    seen: set[str] = set()
    for path, values in sets:
        if path in seen:
            raise ModelError(f"--set: {path} is given twice (list all its values in one --set)")
        if not values:
            raise ModelError(f"--set {path}: no values given")
        seen.add(path)
    paths = [path for path, _ in sets]
    return [dict(zip(paths, combo, strict=True)) for combo in itertools.product(*(v for _, v in sets))]


# ------------------------------------------------------------------------------------------- apply


def load_raw(path: str | os.PathLike[str]) -> tuple[dict[str, Any], Path]:
    """Read a model file as a raw dict (validated once here) and the folder its relative files live in.

    Raises:
        ModelError: when the file cannot be read or the model is invalid.
    """
    path = Path(path)
    Workload.from_yaml(path)  # the base model must be valid before any point is made from it
    return yaml.safe_load(path.read_text()), path.parent


def apply(raw: dict[str, Any], point: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `raw` with each dotted path of `point` set to its value (integers index lists).

    Every container on a path must exist, except a missing top-level `machine` (all its fields have
    defaults); the last key may be new in a mapping (validation then rejects an unknown field), except
    under `pools` and `services`, whose keys are names.

    Raises:
        ModelError: naming the path and the keys that do exist.
    """
    data = copy.deepcopy(raw)
    for path, value in point.items():
        parts = path.split(".")
        if len(parts) > 1 and parts[0] == "machine" and isinstance(data, dict):
            data.setdefault("machine", {})
        node: Any = data
        for depth, part in enumerate(parts):
            here = ".".join(parts[:depth + 1])
            last = depth == len(parts) - 1
            if isinstance(node, dict):
                if part not in node and (not last or (depth == 1 and parts[0] in _NAME_MAPS)):
                    raise ModelError(f"--set {path}: {here} does not exist ({_keys(node)})")
                if last:
                    node[part] = copy.deepcopy(value)
                else:
                    node = node[part]
            elif isinstance(node, list):
                if not re.fullmatch(r"\d+", part) or int(part) >= len(node):
                    raise ModelError(f"--set {path}: {here} does not exist (a list of {len(node)}: "
                                     f"indices 0..{len(node) - 1})")
                if last:
                    node[int(part)] = copy.deepcopy(value)
                else:
                    node = node[int(part)]
            else:
                parent = ".".join(parts[:depth])
                raise ModelError(f"--set {path}: {parent} is {node!r}, which has no {part!r} inside")
    return data


def _keys(node: dict[str, Any]) -> str:
    return "keys here: " + ", ".join(map(str, node)) if node else "nothing is defined here"


def _label(point: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in point.items()) or "the model"


def build(raw: dict[str, Any], point: dict[str, Any], *, base_dir: str | os.PathLike[str] | None = None
          ) -> Workload:
    """The validated Workload at `point` (`apply`, then `Workload.from_dict`)."""
    return Workload.from_dict(apply(raw, point), base_dir=base_dir, source=f"--set {_label(point)}")


# ------------------------------------------------------------------------------------------- sweep


def _run_chunk(raw: dict[str, Any], base_dir: str | None,
               jobs: list[tuple[int, dict[str, Any], int, int]],
               warmup: float | str | None = None, engine: str = "auto") -> list[dict[str, Any]]:
    """Simulate a chunk of (point index, point, replication, seed) runs; the worker's entry point."""
    rows, models = [], {}
    for index, point, replication, seed in jobs:
        if index not in models:
            models[index] = build(raw, point, base_dir=base_dir)
        metrics = simulate(models[index], seed=seed, warmup=warmup, engine=engine).metrics()
        rows.append({"point": index, **point, "replication": replication, "seed": seed,
                     **{key: metrics[key] for key in METRICS}})
    return rows


def sweep(raw: dict[str, Any], points: list[dict[str, Any]], *, replications: int = 1, seed: int = 0,
          workers: int = 1, progress: Progress | None = None, out: str | os.PathLike[str] | None = None,
          base_dir: str | os.PathLike[str] | None = None, chunk_size: int | None = None,
          scheduler: str | Any | None = None, warmup: float | str | None = None,
          precision: float | None = None, max_replications: int | None = None, engine: str = "auto"
          ) -> pd.DataFrame:
    """Simulate every point `replications` times; one row per run, ordered by (point, replication).

    Columns: `point` (index into `points`), one per path, `replication`, `seed`, then `METRICS`.
    `workers > 1` runs chunks of runs in a process pool; the frame is the same as with one worker.
    `scheduler` (a Dask scheduler address or a `distributed.Client`) runs the chunks on that cluster
    instead (`workers` then only sizes the chunks); a client made from an address is closed at the end,
    a given one is left open. `progress(done, total)` is called with 0 first and after each chunk;
    `total` counts only the runs not already in `out`.
    `warmup` (seconds or "auto") and `engine` (auto, des or fast) are passed to every `simulate`.
    With `precision` (and `max_replications`, 64 by default), a point whose `PRECISE` metrics' 95% half-width
    is above that share of their mean after `replications` runs gets twice as many, round after round, up to
    the maximum; `frame.attrs["stopped"]` says per point (its index) why it stopped. The seeds are a prefix of
    one sequence, so the result depends only on the seed, whatever the workers or scheduler.

    Raises:
        ModelError: when a point makes an invalid model (all points are checked before any run),
            `out` holds a sweep with other columns, or `scheduler` is given without dask.distributed.
    """
    import pandas as pd

    if replications < 1:
        raise ValueError(f"replications must be >= 1, got {replications}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    base = None if base_dir is None else str(base_dir)
    problems: list[str] = []
    for point in points:
        try:
            build(raw, point, base_dir=base)
        except ModelError as exc:
            problems.extend(str(exc).splitlines())
    if problems:
        raise ModelError(list(dict.fromkeys(problems)))  # a bad path fails at every point: say it once

    params = list(dict.fromkeys(k for p in points for k in p))
    columns = ["point", *params, "replication", "seed", *METRICS]
    most = max_replications or (64 if precision is not None else replications)
    if most < replications:
        raise ValueError(f"max_replications ({most}) must be >= replications ({replications})")
    all_seeds = replication_seeds(seed, most)
    seeds = all_seeds[:replications]
    kept = pd.DataFrame(columns=columns)
    saved: dict[tuple[Any, ...], dict[str, Any]] = {}
    if out is not None and Path(out).exists():
        kept = _read(Path(out))
        if list(kept.columns) != columns:
            raise ModelError(f"{out} holds another sweep (columns {list(kept.columns)}); choose another file")
        saved = {_key(params, r): r for r in kept.to_dict("records")}

    rows: list[dict[str, Any]] = []

    def jobs(index: int, point: dict[str, Any], reps: range) -> list[tuple[int, dict[str, Any], int, int]]:
        """The runs of `point` for replications `reps` not already in `out` (those go straight to `rows`)."""
        found_todo = []
        for replication in reps:
            row = {"point": index, **point, "replication": replication, "seed": all_seeds[replication]}
            found = saved.pop(_key(params, row), None)
            if found is None:
                found_todo.append((index, point, replication, all_seeds[replication]))
            else:
                rows.append({**found, **row})  # this grid's own values, not the file's round-tripped ones
        return found_todo

    todo = [job for index, point in enumerate(points) for job in jobs(index, point, range(len(seeds)))]

    def frame_of(found: list[dict[str, Any]]) -> pd.DataFrame:
        ordered = sorted(found, key=lambda r: (r["point"], r["replication"]))
        return pd.DataFrame.from_records(ordered, columns=columns)

    def finish(chunk_rows: list[dict[str, Any]]) -> None:
        rows.extend(chunk_rows)
        if out is not None:
            _write(Path(out), frame_of(rows), others, columns)
        if progress is not None:
            progress(len(rows) - done_before, total)

    def execute(todo: list[tuple[int, dict[str, Any], int, int]]) -> None:
        size = chunk_size or max(1, min(32, math.ceil(len(todo) / (workers * 8))))
        chunks = [todo[i:i + size] for i in range(0, len(todo), size)]
        if scheduler is not None:
            _run_dask(scheduler, raw, base, chunks, finish, warmup, engine)
        elif workers == 1 or len(chunks) <= 1:
            for chunk in chunks:
                finish(_run_chunk(raw, base, chunk, warmup, engine))
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
                futures = [pool.submit(_run_chunk, raw, base, chunk, warmup, engine) for chunk in chunks]
                for future in futures:
                    finish(future.result())

    others: list[dict[str, Any]] = []  # rows of `out` outside this grid stay in the file (set before writing)
    done_before = len(rows)
    total = len(todo)
    if progress is not None:
        progress(0, total)
    if precision is None:
        others = list(saved.values())
        execute(todo)
        return frame_of(rows).reset_index(drop=True)
    stopped: dict[int, str] = {}
    reps = dict.fromkeys(range(len(points)), len(seeds))
    while True:
        others = list(saved.values())
        execute(todo)
        todo = []
        for index, point in enumerate(points):
            if index in stopped:
                continue
            mine = [r for r in rows if r["point"] == index]
            widths = {k: relative_half_width([r[k] for r in mine]) for k in PRECISE
                      if not all(math.isnan(r[k]) for r in mine)}
            loose = {k: w for k, w in widths.items() if w > precision}
            if not loose:
                stopped[index] = f"within ±{precision:.1%} after {reps[index]}"
            elif reps[index] >= most:
                stopped[index] = (f"the maximum of {most} (" + ", ".join(f"{k} ±{w:.1%}" for k, w in loose.items())
                                  + ")")
            else:
                more = more_replications(reps[index], most)
                todo += jobs(index, point, range(reps[index], more))
                reps[index] = more
        total += len(todo)
        if len(stopped) == len(points):
            frame = frame_of(rows).reset_index(drop=True)
            frame.attrs["stopped"] = stopped
            return frame


def _run_dask(scheduler: str | Any, raw: dict[str, Any], base: str | None,
              chunks: list[list[tuple[int, dict[str, Any], int, int]]],
              finish: Callable[[list[dict[str, Any]]], None], warmup: float | str | None = None,
              engine: str = "auto") -> None:
    """Run the chunks on a Dask cluster, calling `finish` with each chunk's rows as it completes."""
    try:
        import distributed
    except ImportError:
        raise ModelError("--scheduler: dask.distributed is not installed (pip install 'asyncsim[dask]')") from None
    own = isinstance(scheduler, str)
    try:
        client: distributed.Client = distributed.Client(scheduler) if isinstance(scheduler, str) else scheduler
    except (OSError, TimeoutError) as exc:
        raise ModelError(f"--scheduler: cannot connect to {scheduler} ({exc})") from None
    try:
        if not chunks:
            return
        futures = [client.submit(_run_chunk, raw, base, chunk, warmup, engine, pure=False) for chunk in chunks]
        try:
            for future in distributed.as_completed(futures):
                finish(future.result())
        finally:
            client.cancel(futures)  # an error or interruption: do not leave the rest running
    finally:
        if own:
            client.close()


def _canonical(value: Any) -> str:
    """One spelling per value, the same after a CSV or Parquet round trip (5.0 and 5 are one value)."""
    if hasattr(value, "item"):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _key(params: list[str], row: dict[str, Any]) -> tuple[Any, ...]:
    return (*(_canonical(row.get(p)) for p in params), int(row["replication"]), int(row["seed"]))


def _read(path: Path) -> pd.DataFrame:
    import pandas as pd

    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, keep_default_na=False,
                                                                               na_values=[""])


def _write(path: Path, frame: pd.DataFrame, others: list[dict[str, Any]], columns: list[str]) -> None:
    import pandas as pd

    if others:
        frame = pd.concat([frame, pd.DataFrame.from_records(others, columns=columns)], ignore_index=True)
    if path.suffix == ".parquet":
        frame = frame.copy()
        for col in frame.columns:  # mixed or nested values: a Parquet column holds one type
            if pd.api.types.is_object_dtype(frame[col]) and not all(isinstance(v, str) for v in frame[col]):
                frame[col] = frame[col].map(_canonical)
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        write_atomic(path, buffer.getvalue())
    else:
        write_atomic(path, frame.to_csv(index=False))


# --------------------------------------------------------------------------------------- summarize


def summarize(frame: pd.DataFrame, params: list[str]) -> pd.DataFrame:
    """Per grid point: `replications`, then `<metric>_mean` and `<metric>_ci95` (95% half-width, Student t).

    The half-width is NaN for a point with a single replication, 0 for a metric that did not vary.
    """
    import pandas as pd

    keys = ["point"] if "point" in frame.columns else params
    metrics = [m for m in METRICS if m in frame.columns]
    out = []
    for _, group in frame.groupby(keys, sort=False, dropna=False):
        row = {"point": group["point"].iloc[0]} if "point" in frame.columns else {}
        row.update({p: group[p].iloc[0] for p in params})
        row["replications"] = len(group)
        for m in metrics:
            values = group[m].to_numpy(dtype=float)
            row[f"{m}_mean"] = float(values.mean())
            row[f"{m}_ci95"] = ci_half_width(values)
        out.append(row)
    return pd.DataFrame.from_records(out)
