"""The history index: segment references, resolutions of archived entries, one reader."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from remstate.errors import CorruptState, InvalidInput
from remstate.schema import (
    KEY_HISTORY_INDEX,
    HistoryIndex,
    Resolutions,
    SegmentRef,
    TaskState,
    apply_resolutions,
    decode_state,
    find_problems,
    salvage_state,
)
from remstate.schema.datavalue import dumps
from tests.helpers import T0
from tests.unit.samples import fb, sample_state, stored

#: An entry as a segment holds it (the samples' entry, by the name these tests read).
archived = fb


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


class TestOneReader:
    @pytest.mark.parametrize(
        ("index", "field"),
        [
            ({"segments": {}}, "history_index.segments"),
            ({"segments": [{"n": 1}]}, "history_index.segments[0].name"),
            ({"recent_moved": []}, "history_index.recent_moved"),
            ({"recent_moved": {"x": ["a"]}}, "history_index.recent_moved.x"),
            ({"recent_moved": {"1": "a"}}, "history_index.recent_moved.1"),
            ({"recent_moved": {"1": [3]}}, "history_index.recent_moved.1[0]"),
        ],
    )
    def test_decoder_validator_and_from_dict_agree(self, index: Any, field: str) -> None:
        """The same broken index gives the same field everywhere: one reader reads it."""
        with pytest.raises(CorruptState) as info:
            HistoryIndex.from_dict(index)
        assert info.value.field == field
        obj = stored(sample_state())
        obj = dataclasses.replace(obj, data={**(obj.data or {}), KEY_HISTORY_INDEX: dumps(index)})
        with pytest.raises(CorruptState) as decoded:
            decode_state(obj)
        assert decoded.value.field == field
        assert [p.field for p in find_problems(obj)] == [field]

    def test_a_collecting_read_keeps_what_it_can(self) -> None:
        """Each broken part is reported and left out; the rest of the index reads."""
        good = SegmentRef(1, "task-42-state-h1", 0, 2, "u1").to_dict()
        index = {"segments": [good, {"n": 2}], "recent_moved": {"1": ["e0", 7], "x": ["e9"]}}
        obj = stored(sample_state())
        obj = dataclasses.replace(obj, data={**(obj.data or {}), KEY_HISTORY_INDEX: dumps(index)})
        state, problems = salvage_state(obj)
        assert state is not None
        assert [s.n for s in state.segments] == [1]
        assert dict(state.recent_moved_ids) == {"e0": 1}
        assert {p.field for p in problems} >= {
            "history_index.segments[1].name",
            "history_index.recent_moved.1[1]",
            "history_index.recent_moved.x",
        }
