"""The typed state: enums that keep unknown values, timestamps, records and their limits."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from ulid import ULID

from remstate.errors import CorruptState, InvalidInput
from remstate.schema import (
    MAX_JSON_DEPTH,
    ErrorRecord,
    FeedbackEntry,
    HistoryIndex,
    IssueType,
    IterationRecord,
    Resolutions,
    SegmentRef,
    Severity,
    Status,
    TaskState,
    apply_resolutions,
    format_timestamp,
    parse_issue_type,
    parse_severity,
    parse_status,
    parse_timestamp,
)
from remstate.schema.datavalue import dumps
from tests.helpers import T0, entry
from tests.unit.strategies import (
    FAST,
    aware_datetimes,
)


def clock() -> datetime:
    return T0


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


class TestTaskState:
    def test_new(self) -> None:
        """A new task: iteration 0, pending, no history, the clock's time."""
        state = TaskState.new("42", clock=clock, metadata={"repo": "a/b"})
        assert (state.iteration, state.status, state.last_update) == (0, Status.PENDING, T0)
        assert state.feedback_total == 0
        assert state.metadata == {"repo": "a/b"}

    def test_new_validates(self) -> None:
        """Bad task IDs, unknown statuses and non-JSON metadata are refused."""
        with pytest.raises(InvalidInput):
            TaskState.new("", clock=clock)
        with pytest.raises(InvalidInput):
            TaskState.new("42", clock=clock, status="zombie")
        with pytest.raises(InvalidInput):
            TaskState.new("42", clock=clock, metadata={"x": {1, 2}})

    def test_naive_last_update_is_refused(self) -> None:
        """The state's time must be aware."""
        with pytest.raises(InvalidInput):
            TaskState("42", 0, "pending", datetime(2024, 5, 1))

    def test_lists_become_tuples_and_known_status_strings_members(self) -> None:
        """Construction normalises, so equal states compare equal."""
        state = TaskState("42", 0, "completed", T0, iteration_history=[IterationRecord(1, T0)])  # type: ignore[arg-type]
        assert state.iteration_history == (IterationRecord(1, T0),)
        assert state.status is Status.COMPLETED

    def test_history_across_segments(self) -> None:
        """Sequence numbers continue from the last segment into the head."""
        head = tuple(entry(id=f"e{i}") for i in range(3))
        history = HistoryIndex(
            (SegmentRef(1, "s1", 0, 10, "u1"), SegmentRef(2, "s2", 10, 5, "u2")),
            {"e-old": 2},
        )
        state = TaskState("42", 0, "pending", T0, feedback_history=head, history_index=history)
        assert state.head_first_seq == 15
        assert state.feedback_total == 18
        assert state.next_segment_number == 3
        assert state.segment_for_seq(0) == history.segments[0]
        assert state.segment_for_seq(14) == history.segments[1]
        assert state.segment_for_seq(15) is None
        assert state.segment_for_seq(-1) is None
        assert state.find_feedback("e1") == head[1]
        assert state.find_feedback("e-old") is None
        assert state.moved_to_segment("e-old") == 2

    def test_metadata_nested_past_the_limit_is_refused(self) -> None:
        """Metadata may nest MAX_JSON_DEPTH levels (itself included); deeper is InvalidInput."""
        deep: Any = {}
        for _ in range(MAX_JSON_DEPTH - 1):
            deep = {"k": deep}
        TaskState.new("42", clock=clock, metadata=deep)
        with pytest.raises(InvalidInput, match="levels deep"):
            TaskState.new("42", clock=clock, metadata={"k": deep})
        very_deep: Any = []
        for _ in range(5000):
            very_deep = [very_deep]
        with pytest.raises(InvalidInput, match="levels deep"):
            TaskState("42", 0, "pending", T0, metadata={"k": very_deep})

    def test_record_extras_nested_past_the_limit_are_refused(self) -> None:
        """Unknown keys of records are bounded the same way (their object is level 1)."""
        deep: Any = []
        for _ in range(MAX_JSON_DEPTH):
            deep = [deep]
        with pytest.raises(InvalidInput, match="levels deep"):
            FeedbackEntry("x", T0, "a", "low", "bug", "d", extra={"k": deep})
        with pytest.raises(InvalidInput, match="levels deep"):
            ErrorRecord(T0, "m", extra={"k": deep})
        with pytest.raises(InvalidInput, match="levels deep"):
            IterationRecord(1, T0, extra={"k": deep})

    def test_schema_version_is_not_part_of_equality(self) -> None:
        """A migrated state equals the same state read from version 1."""
        a = TaskState("42", 0, "pending", T0, schema_version=0)
        assert a == TaskState("42", 0, "pending", T0)

    def test_from_dict_reports_the_field(self) -> None:
        """A bad nested value raises CorruptState with its path."""
        data = TaskState.new("42", clock=clock).to_dict()
        data["feedback_history"] = [{"id": "x"}]
        with pytest.raises(CorruptState) as info:
            TaskState.from_dict(data)
        assert info.value.field == "feedback_history[0].timestamp"


def archived(i: int, **changes: Any) -> FeedbackEntry:
    fields: dict[str, Any] = {
        "id": f"e{i}",
        "timestamp": T0 + timedelta(seconds=i),
        "author": "alice",
        "severity": "high",
        "issue_type": "bug",
        "description": f"feedback {i}",
    }
    fields.update(changes)
    return FeedbackEntry(**fields)


def two_segments() -> HistoryIndex:
    return HistoryIndex(
        (SegmentRef(1, "s1", 0, 2, "u1"), SegmentRef(2, "s2", 2, 2, "u2")), {"e3": 2}
    )


class TestResolutions:
    def test_is_a_validated_mapping_equal_to_a_dict(self) -> None:
        """IDs are feedback IDs; times are aware, kept in UTC; it equals the same dict."""
        tz = timezone(timedelta(hours=3))
        r = Resolutions({"e1": T0.astimezone(tz), "e2": None})
        assert r == {"e1": T0, "e2": None}
        assert {"e1": T0, "e2": None} == r  # noqa: SIM300 -- dict == Resolutions, the reflected way
        assert r != {"e1": T0}
        assert r["e1"] == T0
        assert r["e1"] is not None
        assert r["e1"].tzinfo is UTC
        assert list(r) == ["e1", "e2"]
        assert len(r) == 2
        assert "e2" in r
        assert "e3" not in r
        assert r.to_dict() == {"e1": "2024-05-01T12:00:00Z", "e2": None}

    @pytest.mark.parametrize(
        "items",
        [
            {"": T0},
            {"x" * 129: T0},
            {"line\nbreak": T0},
            {3: T0},
            {"e1": datetime(2024, 5, 1)},
            {"e1": "2024-05-01T12:00:00Z"},
        ],
    )
    def test_refuses_bad_ids_and_times(self, items: Any) -> None:
        """Not a valid feedback ID, a naive time or not a time: InvalidInput."""
        with pytest.raises(InvalidInput):
            Resolutions(items)
        with pytest.raises(InvalidInput):
            TaskState("42", 0, "pending", T0, archived_resolutions=items)

    def test_state_holds_resolutions_and_keeps_them_across_replace(self) -> None:
        """A dict becomes Resolutions; a carried-over one is the same object (its cache too)."""
        state = TaskState("42", 0, "pending", T0, archived_resolutions={"e1": T0})
        assert isinstance(state.archived_resolutions, Resolutions)
        assert state.archived_resolutions == {"e1": T0}
        again = dataclasses.replace(state, iteration=1)
        assert again.archived_resolutions is state.archived_resolutions
        assert TaskState("42", 0, "pending", T0).archived_resolutions == {}

    def test_part_of_equality(self) -> None:
        """Two states that differ only in resolutions differ."""
        a = TaskState("42", 0, "pending", T0, archived_resolutions={"e1": T0})
        assert a != TaskState("42", 0, "pending", T0)
        assert a != TaskState("42", 0, "pending", T0, archived_resolutions={"e1": None})
        assert a == TaskState("42", 0, "pending", T0, archived_resolutions=Resolutions({"e1": T0}))

    def test_encoded_once(self) -> None:
        """The encoding is computed once per mapping and compression threshold."""
        r = Resolutions({f"id-{i}": T0 for i in range(300)})
        assert r.encoded(4096) is r.encoded(4096)
        assert r.encoded(4096).startswith("gzip+base64:")
        assert r.encoded(10**9) == dumps(r.to_dict())

    def test_to_dict_and_from_dict(self) -> None:
        """The state's JSON form carries them as ID -> RFC 3339 or null."""
        state = TaskState("42", 0, "pending", T0, archived_resolutions={"e1": T0, "e2": None})
        data = state.to_dict()
        assert data["archived_resolutions"] == {"e1": "2024-05-01T12:00:00Z", "e2": None}
        assert TaskState.from_dict(json.loads(json.dumps(data))) == state
        del data["archived_resolutions"]
        assert TaskState.from_dict(data).archived_resolutions == {}

    @pytest.mark.parametrize("value", [[], {"e1": 3}, {"e1": "soon"}, {"": None}])
    def test_from_dict_names_the_field(self, value: Any) -> None:
        """A malformed map raises CorruptState naming ``archived_resolutions``."""
        data = TaskState("42", 0, "pending", T0).to_dict()
        data["archived_resolutions"] = value
        with pytest.raises(CorruptState) as info:
            TaskState.from_dict(data)
        assert info.value.field == "archived_resolutions"


class TestApplyResolutions:
    def test_overrides_resolved_and_resolved_at(self) -> None:
        """A time resolves; ``None`` un-resolves and clears the time; others are untouched."""
        later = T0 + timedelta(days=1)
        entries = [archived(0), archived(1, resolved=True, resolved_at=T0), archived(2)]
        out = apply_resolutions(entries, {"e0": later, "e1": None})
        assert (out[0].resolved, out[0].resolved_at) == (True, later)
        assert (out[1].resolved, out[1].resolved_at) == (False, None)
        assert out[2] is entries[2]
        assert out[0].to_json() == dumps(out[0].to_dict())  # no stale cached JSON
        assert dataclasses.replace(out[0], resolved=False, resolved_at=None) == entries[0]

    def test_same_objects_when_nothing_applies(self) -> None:
        """No ID in the map, an empty map, or entries that already agree: the same objects."""
        entries = [archived(0), archived(1, resolved=True, resolved_at=T0)]
        for resolutions in ({}, {"zz": T0}, {"e1": T0, "e0": None}):
            out = apply_resolutions(entries, resolutions)
            assert isinstance(out, tuple)
            assert all(a is b for a, b in zip(out, entries, strict=True))

    def test_resolved_without_time_is_overridden(self) -> None:
        """``resolved=True`` with no time, and ``None`` in the map: now unresolved."""
        (out,) = apply_resolutions([archived(0, resolved=True)], {"e0": None})
        assert not out.resolved


class TestSegmentRev:
    def test_a_stored_rev_is_an_unknown_key(self) -> None:
        """``rev`` (written by remstates that rewrote segments) is kept in ``extra``, as it was."""
        ref = SegmentRef(1, "s1", 0, 2, "u1")
        assert "rev" not in ref.to_dict()
        assert SegmentRef.from_dict(ref.to_dict()) == ref
        old = SegmentRef.from_dict({**ref.to_dict(), "rev": 3})
        assert old.extra == {"rev": 3}
        assert old.to_dict()["rev"] == 3
        assert SegmentRef.from_dict(old.to_dict()) == old
        assert old != ref
        assert old.cache_key == ref.cache_key == ("s1", "u1")

    def test_any_stored_rev_reads(self) -> None:
        """A non-integer ``rev`` is no longer a field of ours: it reads, and stays as it was."""
        data = {**SegmentRef(1, "s1", 0, 2, "u1").to_dict(), "rev": "2"}
        assert SegmentRef.from_dict(data).to_dict() == data


class TestHistoryIndexFromDict:
    def test_round_trip(self) -> None:
        """``from_dict(to_dict(i)) == i``: segments with their rev, and the moved IDs."""
        index = two_segments()
        assert HistoryIndex.from_dict(json.loads(json.dumps(index.to_dict()))) == index
        assert HistoryIndex.from_dict({}) == HistoryIndex()

    @pytest.mark.parametrize(
        ("data", "field"),
        [
            ({"segments": {}}, "history_index.segments"),
            ({"segments": [{"n": 1}]}, "history_index.segments[0].name"),
            ({"recent_moved": []}, "history_index.recent_moved"),
            ({"recent_moved": {"x": ["a"]}}, "history_index.recent_moved.x"),
            ({"recent_moved": {"1" * 5000: ["a"]}}, "history_index.recent_moved." + "1" * 40),
            ({"recent_moved": {"1": "a"}}, "history_index.recent_moved.1"),
            ({"recent_moved": {"1": [3]}}, "history_index.recent_moved.1[0]"),
        ],
    )
    def test_bad_index_names_the_field(self, data: Any, field: str) -> None:
        """A malformed index raises CorruptState with the path of what is wrong."""
        with pytest.raises(CorruptState) as info:
            HistoryIndex.from_dict(data)
        assert info.value.field == field
