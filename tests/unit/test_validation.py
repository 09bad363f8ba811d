"""Corruption: decoding raises CorruptState, the validator reports every problem."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remstate.errors import (
    CorruptState,
    InvalidInput,
    RemstateError,
    UnsupportedSchemaVersion,
)
from remstate.schema import (
    ANNOTATION_LAST_UPDATE,
    ANNOTATION_TASK_ID,
    DATA_KEYS,
    GZIP_MARKER,
    KEY_HISTORY_INDEX,
    HistoryIndex,
    ProblemCode,
    SegmentRef,
    decode_segment,
    decode_state,
    decoding,
    encode_segment,
    encode_state,
    find_problems,
    find_segment_problems,
    salvage_state,
    validation,
)
from remstate.store.base import StoredObject
from tests.helpers import T0
from tests.unit.samples import codes, fb, sample_state, stored, with_data
from tests.unit.strategies import FAST


class TestCorruption:
    @pytest.mark.parametrize(
        ("key", "value", "code"),
        [
            ("feedback_history", "[{", ProblemCode.MALFORMED_JSON),
            ("iteration_history", "zstd+b64:AAAA", ProblemCode.UNKNOWN_ENCODING),
            ("metadata", GZIP_MARKER + "@@@", ProblemCode.BAD_ENCODING),
            ("error_messages", "{}", ProblemCode.BAD_VALUE),
            ("metadata", "[]", ProblemCode.BAD_VALUE),
            ("iteration", "two", ProblemCode.BAD_VALUE),
            ("iteration", "-1", ProblemCode.BAD_VALUE),
            ("last_update", "yesterday", ProblemCode.BAD_TIMESTAMP),
            ("schema_version", "one", ProblemCode.BAD_VALUE),
            (KEY_HISTORY_INDEX, "[]", ProblemCode.BAD_VALUE),
        ],
    )
    def test_bad_field_raises_and_is_reported(
        self, key: str, value: str, code: ProblemCode
    ) -> None:
        """Decoding raises CorruptState naming the field; the validator gives its code."""
        obj = with_data(stored(sample_state()), **{key: value})
        with pytest.raises(CorruptState) as info:
            decode_state(obj)
        assert info.value.field == key
        assert info.value.task_id in ("42", None)
        assert (key, code) in codes(find_problems(obj))

    @pytest.mark.parametrize(
        ("entry", "field", "code"),
        [
            ({"id": "x"}, "feedback_history[1].timestamp", ProblemCode.MISSING_KEY),
            (
                {**fb(9).to_dict(), "timestamp": "soon"},
                "feedback_history[1].timestamp",
                ProblemCode.BAD_TIMESTAMP,
            ),
            (
                {**fb(9).to_dict(), "resolved": "yes"},
                "feedback_history[1].resolved",
                ProblemCode.BAD_VALUE,
            ),
            ("just a string", "feedback_history[1]", ProblemCode.BAD_VALUE),
        ],
    )
    def test_bad_entry_is_located(self, entry: Any, field: str, code: ProblemCode) -> None:
        """A bad entry is reported with its index and field."""
        good = fb(0).to_dict()
        obj = with_data(stored(sample_state()), feedback_history=json.dumps([good, entry]))
        with pytest.raises(CorruptState) as info:
            decode_state(obj)
        assert info.value.field == field
        assert codes(find_problems(obj)) == {(field, code)}

    def test_salvage_keeps_the_good_entries(self) -> None:
        """Salvage reads what it can: bad entries are left out and reported."""
        good = [fb(0).to_dict(), fb(2).to_dict()]
        obj = with_data(
            stored(sample_state()), feedback_history=json.dumps([good[0], {"id": 1}, good[1]])
        )
        state, problems = salvage_state(obj)
        assert state is not None
        assert [e.id for e in state.feedback_history] == ["e0", "e2"]
        assert problems

    @pytest.mark.parametrize(
        "key", ["iteration_history", "feedback_history", "error_messages", "metadata"]
    )
    def test_missing_json_key_reads_as_empty_and_is_reported(self, key: str) -> None:
        """Missing JSON keys default to empty when decoding; the validator reports them."""
        obj = with_data(stored(sample_state(iteration=0, iteration_history=())), **{key: None})
        decode_state(obj)
        assert (key, ProblemCode.MISSING_KEY) in codes(find_problems(obj))

    def test_missing_status_is_fatal(self) -> None:
        """No default for status is safe: CorruptState."""
        obj = with_data(stored(sample_state()), status=None)
        with pytest.raises(CorruptState) as info:
            decode_state(obj)
        assert info.value.field == "status"
        assert codes(find_problems(obj)) == {("status", ProblemCode.MISSING_KEY)}

    def test_missing_task_id_and_last_update_come_from_annotations(self) -> None:
        """The annotations stand in for a missing task_id or last_update."""
        obj = with_data(stored(sample_state()), task_id=None, last_update=None)
        state = decode_state(obj)
        assert (state.task_id, state.last_update) == ("42", T0)
        assert codes(find_problems(obj)) == {
            ("task_id", ProblemCode.MISSING_KEY),
            ("last_update", ProblemCode.MISSING_KEY),
        }

    def test_missing_last_update_falls_back_to_creation_time(self) -> None:
        """With no annotation either, the creation time stands in."""
        obj = dataclasses.replace(
            with_data(stored(sample_state()), last_update=None),
            annotations={},
            creation_timestamp=T0 - timedelta(days=1),
        )
        assert decode_state(obj).last_update == T0 - timedelta(days=1)

    def test_missing_iteration_is_counted(self) -> None:
        """A missing iteration is the length of the history."""
        obj = with_data(stored(sample_state()), iteration=None)
        assert decode_state(obj).iteration == 2
        assert codes(find_problems(obj)) == {("iteration", ProblemCode.MISSING_KEY)}

    def test_iteration_mismatch(self) -> None:
        """An iteration count that disagrees with the history is reported, and refused on read."""
        obj = stored(sample_state(iteration=5))
        with pytest.raises(CorruptState, match="iteration is 5 but iteration_history has 2"):
            decode_state(obj)
        assert decode_state(obj, check=False).iteration == 5
        assert codes(find_problems(obj)) == {("iteration", ProblemCode.ITERATION_MISMATCH)}

    def test_duplicate_ids(self) -> None:
        """Two entries with one ID, or an ID both in the head and moved, are reported."""
        history = HistoryIndex((SegmentRef(1, "task-42-state-h1", 0, 1, "u"),), {"e1": 1})
        obj = stored(sample_state(feedback_history=(fb(0), fb(0)), history_index=history))
        obj2 = stored(sample_state(history_index=history))
        assert codes(find_problems(obj)) == {("feedback_history", ProblemCode.DUPLICATE_ID)}
        assert codes(find_problems(obj2)) == {("feedback_history", ProblemCode.DUPLICATE_ID)}

    def test_index_mismatch(self) -> None:
        """Segments out of order, with gaps or wrongly named, are reported."""
        history = HistoryIndex(
            (
                SegmentRef(2, "task-42-state-h2", 0, 3, "u"),
                SegmentRef(1, "task-42-state-h1", 5, 3, "u"),
                SegmentRef(3, "elsewhere", 8, 3, "u"),
            )
        )
        problems = find_problems(stored(sample_state(history_index=history)))
        assert {p.code for p in problems} == {ProblemCode.INDEX_MISMATCH}
        assert len(problems) == 3

    def test_annotation_mismatch(self) -> None:
        """Cleanup reads annotations: missing or disagreeing ones are reported."""
        obj = stored(sample_state())
        obj = dataclasses.replace(
            obj,
            annotations={ANNOTATION_TASK_ID: "41", ANNOTATION_LAST_UPDATE: "2020-01-01T00:00:00Z"},
        )
        assert {p.code for p in find_problems(obj)} == {ProblemCode.ANNOTATION_MISMATCH}
        assert len(find_problems(obj)) == 2

    @pytest.mark.parametrize(
        ("key", "value"),
        [
            # The reviewer's case: json.loads recursed until RecursionError.
            ("metadata", "[" * 200_000),
            ("feedback_history", "[" * 200_000),
            ("iteration_history", "[" * 200_000),
            ("error_messages", '{"a":' * 200_000),
            (KEY_HISTORY_INDEX, "[" * 200_000),
            ("metadata", GZIP_MARKER + base64.b64encode(gzip.compress(b"[" * 200_000)).decode()),
            # Decodes, but is deeper than any state holds (normalising it recursed too).
            ("metadata", '{"a":' + "[" * 900 + "]" * 900 + "}"),
            # Floats JSON reads as infinity: the state cannot hold them.
            ("metadata", '{"a":1e400}'),
            # int() refuses more than 4300 digits with a ValueError.
            ("schema_version", "1" * 5000),
            (KEY_HISTORY_INDEX, '{"segments":[],"recent_moved":{"' + "1" * 5000 + '":["a"]}}'),
        ],
    )
    def test_hostile_values_are_corruption_not_crashes(self, key: str, value: str) -> None:
        """Whatever a value holds, decode raises CorruptState naming it; validate reports it."""
        obj = with_data(stored(sample_state()), **{key: value})
        with pytest.raises(CorruptState) as info:
            decode_state(obj)
        assert info.value.field is not None
        assert info.value.field.startswith(key)
        problems = find_problems(obj)
        assert any(p.field.startswith(key) for p in problems), problems
        state, salvaged = salvage_state(obj)
        assert salvaged == problems
        assert state is not None or key == "schema_version"

    @pytest.mark.parametrize("key", ["feedback_history", "iteration_history", "error_messages"])
    def test_too_deep_entry_is_left_out_and_located(self, key: str) -> None:
        """An entry whose unknown keys nest too deeply is one bad entry, not a crash."""
        good = json.loads(encode_state(sample_state()).data[key])[0]
        bad = {**good, "future": json.loads("[" * 500 + "]" * 500)}
        obj = with_data(stored(sample_state()), **{key: json.dumps([good, bad])})
        with pytest.raises(CorruptState) as info:
            decode_state(obj)
        assert info.value.field == f"{key}[1]"
        state, problems = salvage_state(obj)
        assert state is not None
        assert len(getattr(state, key)) == 1
        assert (f"{key}[1]", ProblemCode.BAD_VALUE) in codes(problems)

    def test_deep_segment_is_corruption(self) -> None:
        """Segments are read as safely: CorruptState, and problems from the validator."""
        data = {**encode_segment("t", 1, 0, [fb(0)]), "feedback_history": "[" * 200_000}
        obj = StoredObject(name="s", data=data)
        with pytest.raises(CorruptState) as info:
            decode_segment(obj)
        assert info.value.field == "feedback_history"
        assert codes(find_segment_problems(obj)) == {
            ("feedback_history", ProblemCode.MALFORMED_JSON),
            ("count", ProblemCode.INDEX_MISMATCH),
        }

    def test_any_surprise_while_reading_is_contained(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Last resort: an unexpected exception becomes CorruptState, or a problem on "data"."""

        def explode(*_: Any) -> Any:
            raise RecursionError("maximum recursion depth exceeded")

        monkeypatch.setattr(decoding, "_read_metadata", explode)
        monkeypatch.setattr(decoding, "read_segment", explode)
        monkeypatch.setattr(validation, "read_segment", explode)
        obj = stored(sample_state())
        with pytest.raises(CorruptState, match="nested too deeply") as info:
            decode_state(obj)
        assert isinstance(info.value.__cause__, RecursionError)
        assert codes(find_problems(obj)) == {("data", ProblemCode.BAD_VALUE)}
        assert salvage_state(obj)[0] is None
        segment = StoredObject(name="s", data=encode_segment("t", 1, 0, [fb(0)]))
        with pytest.raises(CorruptState):
            decode_segment(segment)
        assert codes(find_segment_problems(segment)) == {("data", ProblemCode.BAD_VALUE)}

    def test_our_own_errors_pass_through_unchanged(self) -> None:
        """The guard does not swallow remstate's errors: a newer version stays one."""
        obj = with_data(stored(sample_state()), schema_version="2")
        with pytest.raises(UnsupportedSchemaVersion):
            decode_state(obj)

    def test_metadata_only_object(self) -> None:
        """An object read without data cannot be decoded: InvalidInput; reported as no_data."""
        obj = StoredObject(name="x", data=None)
        with pytest.raises(InvalidInput):
            decode_state(obj)
        assert codes(find_problems(obj)) == {("data", ProblemCode.NO_DATA)}

    def test_intact_object_has_no_problems(self) -> None:
        """A state we wrote validates clean."""
        assert find_problems(stored(sample_state())) == []

    @FAST
    @given(
        data=st.dictionaries(
            st.sampled_from([*DATA_KEYS, KEY_HISTORY_INDEX, "other"]),
            st.text(max_size=30)
            | st.sampled_from(
                [
                    "[]",
                    "{}",
                    "1",
                    "[{}]",
                    '{"segments":[{}]}',
                    GZIP_MARKER,
                    "[" * 100_000,
                    "[" * 700 + "]" * 700,
                    '[{"k":' + "[" * 700 + "]" * 700 + "}]",
                    '{"a":1e400}',
                    "9" * 5000,
                    '{"recent_moved":{"' + "9" * 5000 + '":[]}}',
                ]
            ),
        )
    )
    def test_validator_never_raises_and_decoder_raises_only_ours(
        self, data: dict[str, str]
    ) -> None:
        """Whatever the data, the validator returns results and the decoder raises ours."""
        obj = StoredObject(name="x", data=data)
        problems = find_problems(obj)
        try:
            decode_state(obj)
        except RemstateError:
            assert problems
        salvage_state(obj)
