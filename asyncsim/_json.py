"""Strict JSON out: everything asyncsim writes as JSON parses with any JSON parser.

Python's `json.dumps` writes `NaN` and `Infinity`, which are not JSON (RFC 8259): `JSON.parse`, `jq` and
most other languages' parsers refuse them. A figure that has no value (no task completed, a relative error
against 0) is written as `null` instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["dumps", "strict"]


def dumps(obj: Any, *, indent: int | None = None, sort_keys: bool = False,
          default: Callable[[Any], Any] | None = None) -> str:
    """`json.dumps` of `strict(obj)`, refusing anything that would not be JSON.

    `default` is called, as by `json.dumps`, for objects JSON has no form for (e.g. `str`).

    Raises:
        TypeError: for an object JSON has no form for and no `default`.
    """
    return json.dumps(strict(obj), indent=indent, sort_keys=sort_keys, default=default, allow_nan=False)


def strict(obj: Any) -> Any:
    """A copy of `obj` fit for strict JSON: NaN and ±inf become None, numpy scalars and arrays become Python
    numbers and lists, tuples become lists; anything else is returned unchanged."""
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Mapping):
        return {_key(k): strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return strict(obj.tolist())
    return obj


def _key(key: Any) -> Any:
    """Mapping keys as `json.dumps` accepts them (numpy scalars as Python ones)."""
    return key.item() if isinstance(key, np.generic) else key
