"""Strategy strings: every documented form parses and prints back; bad ones name the allowed forms."""

from __future__ import annotations

import pytest

import asyncsim as a


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sequential", a.Sequential()),
        ("threads:8", a.Threads(8)),
        ("processes:4", a.Processes(4)),
        ("asyncio", a.Asyncio()),
        ("asyncio:20", a.Asyncio(limit=20)),
        ("asyncio:20+threads:4", a.Asyncio(limit=20, offload=a.Threads(4))),
        ("asyncio:5+processes:2", a.Asyncio(limit=5, offload=a.Processes(2))),
        ("asyncio+threads:3", a.Asyncio(offload=a.Threads(3))),
    ],
)
def test_round_trip(text, expected):
    assert a.parse_strategy(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("asynco", "not a valid strategy 'asynco'"),
        ("threads", "threads needs a worker count"),
        ("threads:0", "threads needs a count >= 1"),
        ("sequential:2", "not a valid strategy"),
        ("threads:2+processes:2", "not a valid strategy"),
        ("asyncio:4+asyncio:2", "offload must be threads:N or processes:N"),
        ("asyncio+threads", "offload must be threads:N or processes:N"),
    ],
)
def test_bad_strategies(text, message):
    with pytest.raises(a.ModelError, match=message):
        a.parse_strategy(text)


@pytest.mark.parametrize(
    ("text", "guess"),
    [("thread:8", "threads:8"), ("asynco", "asyncio"), ("async:5", "asyncio:5"), ("sequental", "sequential"),
     ("asyncio:20+proces:2", "asyncio:20+processes:2"), ("foo:3", None), ("threads:8+asyncio", None)],
)
def test_a_misspelt_strategy_suggests_the_nearest_valid_one(text, guess):
    with pytest.raises(a.ModelError) as info:
        a.parse_strategy(text)
    message = info.value.problems[0]
    assert message.startswith(f"strategy: not a valid strategy {text!r} (allowed: ")
    assert message.endswith(f"; did you mean {guess}?" if guess else ")")
