"""How figures are written for people, one way everywhere (the command line's tables and the reports)."""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["fmt_ci", "fmt_count", "fmt_money", "fmt_num", "fmt_s"]


def fmt_s(seconds: float | None) -> str:
    """A duration: 850 µs, 12.3 ms, 4.56 s, 7.5 min, 2.1 h; "-" for none (or NaN), "0 s" for zero."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    a = abs(seconds)
    if a == 0:
        return "0 s"
    for limit, scale, unit in ((1e-3, 1e6, "µs"), (1, 1e3, "ms"), (120, 1, "s"), (7200, 1 / 60, "min")):
        if a < limit:
            return f"{seconds * scale:.3g} {unit}"
    return f"{seconds / 3600:.3g} h"


def fmt_num(value: float) -> str:
    """A plain figure to three significant digits."""
    return f"{value:.3g}"


def fmt_count(value: float) -> str:
    """A task count: 2,000, or 169.7 for a mean over replications."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def fmt_money(value: float) -> str:
    """An amount in the model's currency: 0.4244, or 1,234.50 from a hundred on."""
    return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.4g}"


def fmt_ci(value: float, half: float | None, fmt: Callable[[float], str] = fmt_s) -> str:
    """A figure, ± its 95% half-width when it has one that is not 0 (a mean over replications)."""
    if half is None or math.isnan(half) or half == 0:
        return fmt(value)
    return f"{fmt(value)} ± {fmt(half)}"
