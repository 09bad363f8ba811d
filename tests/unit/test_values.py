"""Scalar values: enums that keep unknown values, and timestamps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given

from remstate.errors import InvalidInput
from remstate.schema import (
    IssueType,
    Severity,
    Status,
    format_timestamp,
    parse_issue_type,
    parse_severity,
    parse_status,
    parse_timestamp,
)
from tests.helpers import T0
from tests.unit.strategies import (
    FAST,
    aware_datetimes,
)


class TestEnums:
    @pytest.mark.parametrize(
        ("parse", "value", "member"),
        [
            (parse_status, "in_progress", Status.IN_PROGRESS),
            (parse_severity, "critical", Severity.CRITICAL),
            (parse_issue_type, "documentation", IssueType.DOCUMENTATION),
            (parse_status, Status.FAILED, Status.FAILED),
        ],
    )
    def test_known_value_gives_member(
        self, parse: Callable[..., Any], value: str, member: Any
    ) -> None:
        """A known value gives the enum member, strict or not."""
        assert parse(value, strict=True) is member
        assert parse(value, strict=False) is member

    @pytest.mark.parametrize("parse", [parse_status, parse_severity, parse_issue_type])
    def test_unknown_value_is_kept_unless_strict(self, parse: Callable[..., Any]) -> None:
        """Reading keeps a newer version's value as a plain str; new input must be known."""
        kept = parse("from_the_future", strict=False)
        assert kept == "from_the_future"
        assert type(kept) is str
        with pytest.raises(InvalidInput, match="expected one of"):
            parse("from_the_future", strict=True)

    @pytest.mark.parametrize("parse", [parse_status, parse_severity, parse_issue_type])
    def test_non_string_raises(self, parse: Callable[..., Any]) -> None:
        """Only strings are values."""
        with pytest.raises(InvalidInput):
            parse(3, strict=False)


class TestTimestamps:
    @pytest.mark.parametrize(
        ("value", "text"),
        [
            (datetime(2024, 5, 1, 12, 0, tzinfo=UTC), "2024-05-01T12:00:00Z"),
            (datetime(2024, 5, 1, 12, 0, 0, 5, tzinfo=UTC), "2024-05-01T12:00:00.000005Z"),
            (
                datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
                "2024-05-01T12:00:00Z",
            ),
            (datetime(5, 1, 2, tzinfo=UTC), "0005-01-02T00:00:00Z"),
        ],
    )
    def test_format_is_rfc3339_utc_with_z(self, value: datetime, text: str) -> None:
        """UTC, ``Z``, microseconds only when not zero, four-digit years."""
        assert format_timestamp(value) == text

    def test_format_refuses_naive(self) -> None:
        """A naive datetime has no instant: InvalidInput."""
        with pytest.raises(InvalidInput, match="timezone-aware"):
            format_timestamp(datetime(2024, 5, 1))

    @pytest.mark.parametrize(
        "text",
        [
            "2024-05-01T12:00:00Z",
            "2024-05-01T12:00:00+00:00",
            "2024-05-01T14:00:00+02:00",
            "2024-05-01T12:00:00",
            "2024-05-01 12:00:00",
            "2024-05-01t12:00:00z",
            "2024-05-01T12:00:00.000000000Z",
            " 2024-05-01T12:00:00Z ",
        ],
    )
    def test_parse_is_tolerant(self, text: str) -> None:
        """Z, offsets, naive (taken as UTC), lower case and nanoseconds all parse."""
        parsed = parse_timestamp(text)
        assert parsed == T0
        assert parsed.tzinfo is UTC

    def test_parse_truncates_nanoseconds(self) -> None:
        """Digits past microseconds (Go's RFC3339Nano) are dropped."""
        assert parse_timestamp("2024-05-01T12:00:00.123456789Z").microsecond == 123456

    @pytest.mark.parametrize("text", ["", "yesterday", "2024-13-01T00:00:00Z", 1714564800])
    def test_parse_refuses_garbage(self, text: object) -> None:
        """What is not a timestamp raises InvalidInput."""
        with pytest.raises(InvalidInput):
            parse_timestamp(text)

    @FAST
    @given(value=aware_datetimes)
    def test_round_trip(self, value: datetime) -> None:
        """parse(format(t)) is the same instant, in UTC."""
        assert parse_timestamp(format_timestamp(value)) == value
