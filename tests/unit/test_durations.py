"""Durations as the CLI and the library take them (``remstate.schema.durations``)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from remstate.errors import InvalidInput
from remstate.schema.durations import duration_argument, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("24h", timedelta(hours=24)),
        ("90m", timedelta(minutes=90)),
        ("1h30m", timedelta(minutes=90)),
        ("2w", timedelta(days=14)),
        ("3600s", timedelta(hours=1)),
        ("3600", timedelta(hours=1)),
        (" 14D ", timedelta(days=14)),
    ],
)
def test_parses_what_people_write(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "0", "0d", "-1d", "7 days", "1.5h", "P7D", "d", "7x", "99999999999999d"]
)
def test_refuses_anything_else(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [1, 59, 60, 3_600, 86_400, 90_061, 604_800, 1_209_600 + 5])
def test_format_reads_back(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize(
    "value", [0, -5, 1.5, float("nan"), float("inf"), True, None, [], timedelta(milliseconds=1)]
)
def test_argument_refuses_bad_values(value: object) -> None:
    with pytest.raises(InvalidInput):
        duration_argument(value, "ttl")  # type: ignore[arg-type]


def test_argument_takes_the_three_forms() -> None:
    week = timedelta(days=7)
    assert duration_argument(week, "ttl") == week
    assert duration_argument("7d", "ttl") == week
    assert duration_argument(604_800, "ttl") == week
