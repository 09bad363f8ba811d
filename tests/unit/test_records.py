"""The history records: feedback entries, iteration and error records, and their limits."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from ulid import ULID

from remstate.errors import CorruptState, InvalidInput
from remstate.schema import (
    ErrorRecord,
    FeedbackEntry,
    IterationRecord,
    SegmentRef,
    Severity,
    TaskState,
)
from remstate.schema.datavalue import dumps
from tests.helpers import T0, entry


def clock() -> datetime:
    return T0


class TestFeedbackEntry:
    def test_new_generates_a_ulid_from_the_clock(self) -> None:
        """With no ID given, a ULID is made, carrying the entry's time."""
        e = entry(id=None, timestamp=None, clock=clock)
        assert ULID.from_str(e.id).datetime == T0
        assert e.timestamp == T0
        assert entry(id=None, timestamp=None, clock=clock).id != e.id

    def test_new_keeps_a_given_id_and_time(self) -> None:
        """A caller's ID and timestamp are used as given."""
        when = T0 + timedelta(hours=1)
        e = entry(id="review-7", timestamp=when)
        assert (e.id, e.timestamp) == ("review-7", when)

    def test_new_parses_enums_strictly(self) -> None:
        """New input must use known severities and issue types."""
        assert entry(severity="high").severity is Severity.HIGH
        with pytest.raises(InvalidInput, match="severity"):
            entry(severity="apocalyptic")
        with pytest.raises(InvalidInput, match="issue type"):
            entry(issue_type="vibes")

    @pytest.mark.parametrize(
        "changes",
        [
            {"id": ""},
            {"id": "x" * 129},
            {"id": "line\nbreak"},
            {"author": "a" * 257},
            {"description": "é" * (32 * 1024 + 1)},
            {"timestamp": datetime(2024, 5, 1)},
            {"description": 42},
        ],
    )
    def test_new_refuses_bad_input(self, changes: dict[str, Any]) -> None:
        """Empty/long/unprintable IDs, long author or description, naive time: InvalidInput."""
        with pytest.raises(InvalidInput):
            entry(**changes)

    def test_new_refuses_text_json_cannot_carry(self) -> None:
        """A surrogate pair held as two code points would not read back: refused up front."""
        with pytest.raises(InvalidInput, match="surrogate pair"):
            entry(description="broken \ud83d\ude00 emoji")
        with pytest.raises(InvalidInput, match="surrogate pair"):
            TaskState.new("42", clock=clock, metadata={"k": "\ud83d\ude00"})
        assert entry(description="lone \ud83d").description == "lone \ud83d"

    def test_limits_are_inclusive(self) -> None:
        """128-character IDs, 256-character authors and 64 KiB descriptions are fine."""
        e = entry(id="i" * 128, author="a" * 256, description="d" * 64 * 1024)
        assert (len(e.id), len(e.author), len(e.description)) == (128, 256, 64 * 1024)
        assert FeedbackEntry.from_dict(e.to_dict()) == e

    def test_reading_keeps_what_validation_would_refuse(self) -> None:
        """Stored entries with unknown values are kept; ``validate`` flags them for new input."""
        e = FeedbackEntry("x", T0, "a", "apocalyptic", "bug", "d")
        assert e.severity == "apocalyptic"
        with pytest.raises(InvalidInput):
            e.validate()

    def test_timestamps_are_normalised_to_utc(self) -> None:
        """Any zone is stored as UTC; the instant is unchanged."""
        tz = timezone(timedelta(hours=-5))
        e = FeedbackEntry("x", T0.astimezone(tz), "a", "low", "bug", "d", True, T0.astimezone(tz))
        assert e.timestamp.tzinfo is UTC
        assert e.resolved_at is not None
        assert e.resolved_at.tzinfo is UTC

    def test_extra_must_not_shadow_known_keys(self) -> None:
        """``extra`` is for unknown keys only."""
        with pytest.raises(InvalidInput, match="known keys"):
            FeedbackEntry("x", T0, "a", "low", "bug", "d", extra={"author": "b"})

    def test_to_dict_layout(self) -> None:
        """Known keys in order, ``resolved_at`` only when set, then unknown keys."""
        e = FeedbackEntry("x", T0, "a", "low", "bug", "d", extra={"votes": 3})
        assert list(e.to_dict()) == [
            "id",
            "timestamp",
            "author",
            "severity",
            "issue_type",
            "description",
            "resolved",
            "votes",
        ]
        assert e.to_dict()["timestamp"] == "2024-05-01T12:00:00Z"

    def test_to_json_is_cached_compact_json(self) -> None:
        """``to_json`` equals the compact dump of ``to_dict``; its size is in UTF-8 bytes."""
        e = FeedbackEntry("x", T0, "ü", "low", "bug", "d")
        assert e.to_json() == dumps(e.to_dict())
        assert e.to_json() is e.to_json()
        assert e.json_size() == len(e.to_json().encode())

    def test_cache_does_not_leak_into_equality_or_replace(self) -> None:
        """A replaced entry serialises its own fields, not the original's cache."""
        e = FeedbackEntry("x", T0, "a", "low", "bug", "d")
        e.to_json()
        resolved = dataclasses.replace(e, resolved=True)
        assert '"resolved":true' in resolved.to_json()
        assert FeedbackEntry("x", T0, "a", "low", "bug", "d") == e

    def test_from_dict_reports_the_field(self) -> None:
        """A missing or mistyped field raises CorruptState naming it."""
        with pytest.raises(CorruptState) as info:
            FeedbackEntry.from_dict({"id": "x", "timestamp": "2024-05-01T00:00:00Z"})
        assert info.value.field == "feedback_history.author"
        with pytest.raises(CorruptState) as info:
            FeedbackEntry.from_dict({**entry().to_dict(), "timestamp": "soon"})
        assert info.value.field == "feedback_history.timestamp"


class TestOtherRecords:
    def test_iteration_record_reads_v0_timestamp_key(self) -> None:
        """A version 0 record's ``timestamp`` is read as ``started_at``."""
        record = IterationRecord.from_dict({"iteration": 1, "timestamp": "2024-05-01T12:00:00Z"})
        assert record == IterationRecord(1, T0)

    def test_iteration_record_validate(self) -> None:
        """Negative iterations and notes over 64 KiB are refused as new input."""
        with pytest.raises(InvalidInput):
            IterationRecord(-1, T0).validate()
        with pytest.raises(InvalidInput):
            IterationRecord(1, T0, "n" * (64 * 1024 + 1)).validate()
        IterationRecord(1, T0, "n" * 64 * 1024).validate()

    def test_error_record_new_and_limits(self) -> None:
        """``ErrorRecord.new`` stamps the clock's time and checks the 64 KiB limit."""
        assert ErrorRecord.new("boom", clock=clock) == ErrorRecord(T0, "boom")
        with pytest.raises(InvalidInput):
            ErrorRecord.new("b" * (64 * 1024 + 1), clock=clock)

    def test_error_record_reads_bare_strings(self) -> None:
        """Version 0 kept error messages as strings: they read as records with no time."""
        assert ErrorRecord._read("boom", "error_messages[0]") == ErrorRecord(None, "boom")

    def test_segment_ref_refuses_negative_numbers(self) -> None:
        """Sequence numbers and counts are not negative."""
        with pytest.raises(InvalidInput):
            SegmentRef(1, "s", -1, 3, "uid")

    def test_bool_is_not_an_int(self) -> None:
        """``True`` is not accepted where an int is meant."""
        with pytest.raises(InvalidInput):
            IterationRecord(True, T0)
