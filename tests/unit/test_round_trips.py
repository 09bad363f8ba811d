"""Every schema type, through every form it is stored in, reads back exactly.

``read(write(x)) == x`` for each type, with the hard strings of
``strategies``: any Unicode, astral-plane characters, combining marks,
right-to-left scripts and bidi controls, lone surrogates inside JSON, empty
strings and collections, and strings up to 60 KB (sometimes).

- The dict form (``to_dict``/``from_dict``, what the CLI and HTTP API show),
  through JSON text as remstate writes it: plain, or gzip+base64.
- The stored form: ``TaskState`` through ``encode_state``/``decode_state``
  (the head object), entries through ``encode_segment``/``decode_segment``,
  the history index and the resolutions through their ConfigMap values.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, timedelta
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from remstate.schema import (
    KEY_FEEDBACK_RESOLUTIONS,
    KEY_HISTORY_INDEX,
    ErrorRecord,
    FeedbackEntry,
    HistoryIndex,
    IterationRecord,
    Resolutions,
    SegmentRef,
    TaskState,
    decode_json,
    decode_segment,
    decode_state,
    encode_json,
    encode_segment,
    encode_state,
    find_segment_problems,
    object_name,
)
from remstate.store.base import StoredObject
from tests.helpers import T0
from tests.unit.strategies import (
    FAST,
    ROUND_TRIP,
    TRICKY,
    error_records,
    feedback_entries,
    history_indexes,
    iteration_records,
    resolution_maps,
    segment_refs,
    task_states,
    unicode_text,
)

#: Compressed whenever larger than 0 bytes, past the default 4096, or never.
compress_overs = st.sampled_from([0, 4096, sys.maxsize])
_DATA_KEY = re.compile(r"[-._a-zA-Z0-9]+")

# Hand-picked hard cases, run on every test run whatever Hypothesis draws.
_RTL_ASTRAL = "שלום 👩\u200d👩\u200d👧 مرحبا e\u0301\u20dd 𝄞𠜎\u202e"
_HARD_ENTRY = FeedbackEntry(
    id="01J\u05e9😀",
    timestamp=T0,
    author="Zoë \u200fمحمد",
    severity="critical",
    issue_type="from a newer remstate ✨",
    description=(_RTL_ASTRAL * 1200)[:60_000],
    resolved=True,
    resolved_at=T0 + timedelta(microseconds=1),
    extra={"lone": "\ud800!", "nested": [{"ü": None}], "": ""},
)
_HARD_STATE = TaskState(
    task_id="Org/Repo#5 \u05e9\u0301",
    iteration=1,
    status="waiting on 人",
    last_update=T0,
    iteration_history=(IterationRecord(1, T0, "\u0301" * 20_000),),
    feedback_history=(_HARD_ENTRY, FeedbackEntry("", T0, "", "", "", "")),
    history_index=HistoryIndex(
        (SegmentRef(1, "task-x-state-h1", 0, 3, "uid-😀", extra={"future": "ℵ"}),),
        {"\ud800!": 1, "": 1},
    ),
    error_messages=(ErrorRecord(None, ""), ErrorRecord(T0, "\x00\ufeff\u2028")),
    metadata={"": "", "big": "漢" * 20_000, "rtl": {"مفتاح": [_RTL_ASTRAL, "", [], {}]}},
    extra_data={"future.key": "\u202e" * 1000, "empty": ""},
    archived_resolutions={"01J\u05e9😀": T0, "e 1": None},
)
_EMPTY_STATE = TaskState(task_id="t", iteration=0, status="", last_update=T0)


def through_value(value: dict[str, Any], compress_over: int) -> Any:
    """A dict written as remstate writes a ConfigMap value, and read back."""
    return decode_json(encode_json(value, compress_over=compress_over), field="f")


class TestStrategies:
    @FAST
    @given(text=unicode_text(surrogates=True))
    def test_hard_strings_are_json_safe(self, text: str) -> None:
        """The strategies never make what remstate refuses (a split surrogate pair)."""
        assert decode_json(encode_json(text), field="f") == text

    def test_tricky_characters_cover_the_hard_cases(self) -> None:
        """Astral, combining, right-to-left and bidi controls are all drawn from."""
        joined = "".join(TRICKY)
        assert any(ord(c) > 0xFFFF for c in joined)
        assert "\u0301" in joined
        assert "\u202e" in joined
        assert "\u05e9" in joined


class TestDictForm:
    """``X.from_dict(read(write(x.to_dict()))) == x`` for every type."""

    @ROUND_TRIP
    @given(record=iteration_records, compress_over=compress_overs)
    @example(record=IterationRecord(0, T0), compress_over=0)
    @example(record=IterationRecord(7, T0, _RTL_ASTRAL * 3000, {"x": "\udfff"}), compress_over=0)
    def test_iteration_record(self, record: IterationRecord, compress_over: int) -> None:
        """IterationRecord, unknown keys included."""
        assert IterationRecord.from_dict(through_value(record.to_dict(), compress_over)) == record
        assert IterationRecord.from_dict(json.loads(record.to_json())) == record

    @ROUND_TRIP
    @given(e=feedback_entries, compress_over=compress_overs)
    @example(e=_HARD_ENTRY, compress_over=4096)
    @example(e=FeedbackEntry("x", T0, "", "", "", ""), compress_over=0)
    def test_feedback_entry(self, e: FeedbackEntry, compress_over: int) -> None:
        """FeedbackEntry, unknown enum values and keys included; its cached JSON too."""
        assert FeedbackEntry.from_dict(through_value(e.to_dict(), compress_over)) == e
        assert FeedbackEntry.from_dict(json.loads(e.to_json())) == e

    @ROUND_TRIP
    @given(record=error_records, compress_over=compress_overs)
    @example(record=ErrorRecord(None, ""), compress_over=0)
    def test_error_record(self, record: ErrorRecord, compress_over: int) -> None:
        """ErrorRecord, with and without a time."""
        assert ErrorRecord.from_dict(through_value(record.to_dict(), compress_over)) == record
        assert ErrorRecord.from_dict(json.loads(record.to_json())) == record

    @ROUND_TRIP
    @given(ref=segment_refs, compress_over=compress_overs)
    def test_segment_ref(self, ref: SegmentRef, compress_over: int) -> None:
        """SegmentRef, unknown keys included."""
        data = ref.to_dict()
        assert SegmentRef.from_dict(through_value(data, compress_over)) == ref

    @ROUND_TRIP
    @given(index=history_indexes, compress_over=compress_overs)
    @example(index=HistoryIndex(), compress_over=0)
    def test_history_index(self, index: HistoryIndex, compress_over: int) -> None:
        """HistoryIndex: the grouped form decodes to the same segments and moved IDs."""
        assert HistoryIndex.from_dict(through_value(index.to_dict(), compress_over)) == index

    @ROUND_TRIP
    @given(state=task_states, compress_over=compress_overs)
    @example(state=_HARD_STATE, compress_over=4096)
    @example(state=_EMPTY_STATE, compress_over=0)
    def test_task_state(self, state: TaskState, compress_over: int) -> None:
        """TaskState, every field, through its JSON form."""
        assert TaskState.from_dict(through_value(state.to_dict(), compress_over)) == state

    @FAST
    @given(status=unicode_text())
    def test_unknown_status_stays_a_string(self, status: str) -> None:
        """A status we do not know is neither lost nor an error."""
        state = TaskState("t", 0, status, T0)
        assert TaskState.from_dict(state.to_dict()).status == status


class TestStoredForm:
    """What goes into ConfigMaps reads back exactly, and is storable."""

    @staticmethod
    def assert_storable(data: dict[str, str]) -> None:
        """Keys the API server accepts; values valid UTF-8 (no lone surrogates)."""
        for key, value in data.items():
            assert _DATA_KEY.fullmatch(key), key
            value.encode("utf-8")

    @ROUND_TRIP
    @given(state=task_states, compress_over=compress_overs)
    @example(state=_HARD_STATE, compress_over=4096)
    @example(state=_HARD_STATE, compress_over=sys.maxsize)
    @example(state=_EMPTY_STATE, compress_over=0)
    def test_task_state_through_the_head_object(self, state: TaskState, compress_over: int) -> None:
        """decode_state(encode_state(s)) == s, compressed or not; written as version 1."""
        data, labels, annotations = encode_state(
            state, compress_over=compress_over, max_bytes=sys.maxsize
        )
        self.assert_storable(data)
        obj = StoredObject(name="task-x-state", data=data, labels=labels, annotations=annotations)
        # The encoding, not the invariants: arbitrary states are rarely consistent.
        decoded = decode_state(obj, check=False)
        assert decoded == state
        assert decoded.schema_version == 1
        assert (KEY_HISTORY_INDEX in data) == bool(state.history_index)
        assert (KEY_FEEDBACK_RESOLUTIONS in data) == bool(state.archived_resolutions)

    @ROUND_TRIP
    @given(
        entries=st.lists(feedback_entries, max_size=6),
        n=st.integers(0, 999_999),
        first_seq=st.integers(0, 10**12),
        task_id=unicode_text(min_size=1),
        compress_over=compress_overs,
    )
    @example(entries=[_HARD_ENTRY], n=1, first_seq=0, task_id="t", compress_over=4096)
    @example(entries=[], n=0, first_seq=0, task_id="t", compress_over=0)
    def test_entries_through_a_segment(
        self,
        entries: list[FeedbackEntry],
        n: int,
        first_seq: int,
        task_id: str,
        compress_over: int,
    ) -> None:
        """decode_segment(encode_segment(...)) gives back the entries and counters exactly."""
        data = encode_segment(
            task_id, n, first_seq, entries, compress_over=compress_over, max_bytes=sys.maxsize
        )
        self.assert_storable(data)
        obj = StoredObject(name="s", data=data)
        segment = decode_segment(obj)
        assert (segment.task_id, segment.n, segment.first_seq) == (task_id, n, first_seq)
        assert list(segment.entries) == entries
        assert find_segment_problems(obj) == []

    @ROUND_TRIP
    @given(index=history_indexes, compress_over=compress_overs)
    def test_history_index_through_its_value(self, index: HistoryIndex, compress_over: int) -> None:
        """The ``history_index`` value decodes to the index it encodes, alone and in a head."""
        text = index.encoded(compress_over)
        text.encode("utf-8")
        assert HistoryIndex.from_dict(decode_json(text, field=KEY_HISTORY_INDEX)) == index
        state = TaskState("t", 0, "pending", T0, history_index=index)
        data = encode_state(state, compress_over=compress_over).data
        assert decode_state(StoredObject(name=object_name("t"), data=data)).history_index == index

    @ROUND_TRIP
    @given(resolutions=resolution_maps, compress_over=compress_overs)
    def test_resolutions_through_their_value(
        self, resolutions: dict[str, datetime | None], compress_over: int
    ) -> None:
        """The ``feedback_resolutions`` value decodes to the resolutions it encodes."""
        encoded = Resolutions(resolutions).encoded(compress_over)
        stored = decode_json(encoded, field=KEY_FEEDBACK_RESOLUTIONS)
        assert stored == Resolutions(resolutions).to_dict()
        state = TaskState(
            "t",
            0,
            "pending",
            T0,
            history_index=HistoryIndex((SegmentRef(1, "task-t-state-h1", 0, 1, "u"),)),
            archived_resolutions=resolutions,
        )
        data = encode_state(state, compress_over=compress_over).data
        head = StoredObject(name=object_name("t"), data=data)
        assert decode_state(head).archived_resolutions == resolutions
