"""Shared machinery for the frozen, validated model data (pydantic).

Every model class rejects unknown keys, and the YAML shorthand
`{kind: {...}}` (one key naming the variant) is parsed by `tagged_union`, so that validation errors
carry the user's own YAML path (`task[1].io.lognormal.cv`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Self, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Tag, ValidationError


class Frozen(BaseModel):
    """Base of all model data: immutable; unknown keys are errors; every number is finite (no inf or NaN)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, allow_inf_nan=False)

    def __repr_args__(self) -> Any:
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value is not None or field.default is not None:
                yield field.alias or name, value

    def evolve(self, **changes: Any) -> Self:
        """A copy with `changes` applied and validated again (the model is never mutated)."""
        data = {name: getattr(self, name) for name in type(self).model_fields}
        data.update(changes)
        return type(self).model_validate(data)


def single_key(value: Any) -> str | None:
    """The variant named by a one-key mapping `{kind: ...}`, or None."""
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        return key if isinstance(key, str) else None
    return None


def unwrap(value: Any, key: str) -> Any:
    """`{key: inner}` -> `inner`; anything else unchanged (for before-validators)."""
    if isinstance(value, dict) and len(value) == 1 and key in value:
        return value[key]
    return value


def tagged_union(variants: dict[str, type], tag_of: Any, what: str) -> Any:
    """An annotated union choosing the variant by `tag_of(value)`, with a clear error otherwise."""
    members = tuple(Annotated[cls, Tag(tag)] for tag, cls in variants.items())
    allowed = ", ".join(variants)
    return Annotated[
        Union[members],  # noqa: UP007 - a runtime-built union needs the subscription form
        Discriminator(
            tag_of,
            custom_error_type=f"invalid_{what}",
            custom_error_message=f"not a valid {what} (allowed: {allowed})",
        ),
    ]


def allowed_keys(cls: type[BaseModel]) -> list[str]:
    """The keys a model file may use for `cls` (aliases where a field has one)."""
    return [f.alias or name for name, f in cls.model_fields.items()]


def closest(word: Any, choices: Iterable[str]) -> str | None:
    """The choice a misspelt `word` most likely meant (difflib; else the one choice it begins), or None."""
    if not isinstance(word, str) or not word:
        return None
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=1) or [c for c in choices if c.startswith(word)]
    return close[0] if len(close) == 1 else None


def did_you_mean(word: Any, choices: Iterable[str]) -> str:
    """`; did you mean X?` with the `closest` choice, or '' when none is close."""
    guess = closest(word, choices)
    return f"; did you mean {guess}?" if guess else ""


_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0,
            "seconds": 1.0, "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0, "h": 3600.0,
            "hr": 3600.0, "hour": 3600.0, "hours": 3600.0}
_WITH_UNIT = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zµ]+)\s*", re.IGNORECASE)


def duration_text(text: str) -> str | None:
    """For a duration written with a unit (`2s`, `300ms`, `"5 ms"`, `1h`): how to write it (in seconds)."""
    match = _WITH_UNIT.fullmatch(text)
    if not match or match.group(2).lower() not in _SECONDS:
        return None
    seconds = float(match.group(1)) * _SECONDS[match.group(2).lower()]
    return f"give seconds as a number ({text.strip()} -> {seconds:g})"


_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
_TYPES = {"int": "an integer", "float": "a number", "bool": "true or false", "string": "a string"}


def yaml_errors(exc: ValidationError, owner: Callable[[tuple[Any, ...]], type[BaseModel]]) -> list[str]:
    """One `yaml.path: problem` line per pydantic error; `owner(loc)` names the model class a YAML location
    stands for (to list the keys it allows)."""
    lines: list[str] = []
    errors = exc.errors()
    for err in errors:
        loc = err["loc"]
        if err["type"] == "too_short" and any(e["loc"][: len(loc)] == loc and e is not err for e in errors):
            continue  # pydantic adds "too short" after dropping the invalid items; the items' errors say it
        if err["type"] == "references":
            lines.extend(err["ctx"]["problems"])
            continue
        path = _path(err["loc"])
        if err["type"] == "extra_forbidden":
            allowed = allowed_keys(owner(err["loc"][:-1]))
            lines.append(f"{path}: unknown key (allowed: {', '.join(allowed)}){did_you_mean(loc[-1], allowed)}")
        else:
            lines.append(f"{path or '(top level)'}: {_message(err)}")
    return lines


def _path(loc: tuple[Any, ...]) -> str:
    parts: list[Any] = []
    for item in loc:
        if parts and item == parts[-1]:  # a union tag followed by the field of the same name
            continue
        parts.append(item)
    if parts and parts[-1] == "constant":  # `cpu: -1` is reported at `cpu`
        parts.pop()
    text = ""
    for item in parts:
        text += f"[{item}]" if isinstance(item, int) else (f".{item}" if text else str(item))
    return text


def _message(err: Any) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()))
        return f"must be {_BOUNDS[kind]} {f'{bound:g}' if isinstance(bound, float) else bound} (got {value!r})"
    if kind == "finite_number":
        return f"must be a finite number (got {value!r})"
    if kind == "missing":
        return "is required"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length', 1)} item(s)"
    if kind in ("float_parsing", "invalid_distribution") and isinstance(value, str) and duration_text(value):
        return str(duration_text(value))
    if kind == "literal_error":
        expected = re.findall(r"'([^']*)'", ctx.get("expected", ""))
        return f"must be one of {', '.join(expected)} (got {value!r}){did_you_mean(value, expected)}"
    for name, what in _TYPES.items():
        if kind.startswith(name + "_") or kind == name + "_type":
            return f"must be {what} (got {value!r})"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if kind.startswith("invalid_") or kind in ("model_type", "dict_type", "list_type", "tuple_type"):
        allowed = re.search(r"\(allowed: ([^)]*)\)", msg)  # tagged_union's message lists the variants
        hint = did_you_mean(single_key(value), allowed.group(1).split(", ")) if allowed else ""
        return f"{msg} (got {value!r}){hint}"
    return msg
