"""Shared machinery for the frozen, validated model data (pydantic).

Every model class rejects unknown keys, and the YAML shorthand
`{kind: {...}}` (one key naming the variant) is parsed by `tagged_union`, so that validation errors
carry the user's own YAML path (`task[1].io.lognormal.cv`).
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Tag


class Frozen(BaseModel):
    """Base of all model data: immutable; unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def __repr_args__(self) -> Any:
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value is not None or field.default is not None:
                yield field.alias or name, value

    def evolve(self, **changes: Any) -> Frozen:
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
