"""The pure repair: from a damaged head (and its segments as read) to the state to write.

No store: objects are built with the schema's own encoder, then damaged.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from remstate.objects import StoredObject
from remstate.schema import (
    IterationRecord,
    Problem,
    ProblemCode,
    TaskState,
    decode_state,
    find_problems,
    segment_object,
    segment_ref,
    state_object,
)
from remstate.schema.repair import RepairResult, finish, prepare, problems_of, repairable
from remstate.schema.repair_history import MAX_RECONSTRUCTED, REPAIRED_NOTE
from tests.helpers import T0
from tests.unit.samples import fb, sample_state, with_data


def head(state: TaskState | None = None) -> StoredObject:
    obj = state_object(state or sample_state())
    return dataclasses.replace(obj, uid="uid-head", resource_version="7")


def repair(
    obj: StoredObject, segments: dict[str, StoredObject | None] | None = None
) -> RepairResult:
    prepared = prepare(obj, "42", now=T0)
    return finish(prepared, segments or {}, problems_of(obj))


def written(result: RepairResult) -> TaskState:
    """The repaired state, as a strict reader reads it back once written."""
    assert result.state is not None
    assert result.remaining == ()
    return decode_state(state_object(result.state))


class TestPrepare:
    def test_a_clean_head_needs_no_repair(self) -> None:
        """Nothing found, nothing repaired, nothing lost."""
        result = repair(head())
        assert result.repairs == ()
        assert result.losses == ()
        assert result.state == sample_state()

    def test_a_newer_version_is_unsupported_and_not_repaired(self) -> None:
        """schema_version 2: no state, unsupported; the problem is not repairable."""
        obj = with_data(head(), schema_version="2")
        result = repair(obj)
        assert result.unsupported
        assert result.state is None
        assert [repairable(p) for p in problems_of(obj)] == [False]

    def test_a_malformed_value_is_dropped_and_named(self) -> None:
        """The value is written empty; the loss names the key and shows its start."""
        result = repair(with_data(head(), metadata='{"a": '))
        assert written(result).metadata == {}
        assert [x.key for x in result.losses] == ["metadata"]
        assert '{"a": ' in result.losses[0].detail
        assert result.repairs[0].kind == ProblemCode.MALFORMED_JSON

    def test_one_bad_entry_is_left_out_and_the_others_kept(self) -> None:
        """Of three entries, the one that does not parse is named; two stay."""
        obj = head()
        entries = json.loads((obj.data or {})["feedback_history"])
        entries[1]["severity"] = ["not", "a", "string"]
        result = repair(with_data(obj, feedback_history=json.dumps(entries)))
        state = written(result)
        assert len(state.feedback_history) == len(entries) - 1
        assert [x.key for x in result.losses] == ["feedback_history[1]"]

    def test_a_bad_entry_timestamp_is_mended_and_the_original_kept(self) -> None:
        """The entry stays, stamped with last_update, its original under unreadable_timestamp."""
        obj = head()
        entries = json.loads((obj.data or {})["feedback_history"])
        entries[0]["timestamp"] = "noon-ish"
        result = repair(with_data(obj, feedback_history=json.dumps(entries)))
        state = written(result)
        assert state.feedback_history[0].extra["unreadable_timestamp"] == "noon-ish"
        assert state.feedback_history[0].timestamp == state.last_update
        assert result.losses == ()

    def test_a_missing_status_comes_from_its_label(self) -> None:
        """The status label still says which status the task had."""
        obj = head(sample_state(status="awaiting_review"))
        result = repair(with_data(obj, status=None))
        assert written(result).status == "awaiting_review"

    def test_a_missing_last_update_comes_from_its_annotation(self) -> None:
        """The last-update annotation stands in; nothing is lost."""
        obj = head()
        result = repair(with_data(obj, last_update=None))
        assert written(result).last_update == sample_state().last_update
        assert result.losses == ()

    def test_another_tasks_id_is_replaced_and_named(self) -> None:
        """The object's name says which task it is; the stored id is named lost."""
        result = repair(with_data(head(), task_id="43"))
        assert written(result).task_id == "42"
        assert [x.key for x in result.losses] == ["task_id"]


class TestCounter:
    def test_a_counter_behind_its_records_is_raised(self) -> None:
        """The records are evidence: the counter becomes their number."""
        state = written(repair(with_data(head(), iteration="0")))
        assert (
            state.iteration == len(state.iteration_history) == len(sample_state().iteration_history)
        )

    def test_a_counter_ahead_is_kept_with_records_made_up(self) -> None:
        """Noted records are made up, so the maximum is still enforced from the counter."""
        base = sample_state()
        result = repair(with_data(head(), iteration=str(base.iteration + 4)))
        state = written(result)
        assert state.iteration == base.iteration + 4
        assert [r.note for r in state.iteration_history[-4:]] == [REPAIRED_NOTE] * 4
        assert result.losses == ()

    def test_a_counter_far_ahead_is_lowered_and_named(self) -> None:
        """Past MAX_RECONSTRUCTED records, the counter is lowered; its value is named lost."""
        base = sample_state()
        result = repair(with_data(head(), iteration=str(base.iteration + MAX_RECONSTRUCTED + 1)))
        assert written(result).iteration == len(base.iteration_history)
        assert [x.key for x in result.losses] == ["iteration"]


class TestIndex:
    def build(self) -> tuple[TaskState, dict[str, StoredObject]]:
        """A state whose oldest two iteration records moved to segment 1, and the next two to 2."""
        records = tuple(IterationRecord(i, T0) for i in range(1, 7))
        state = dataclasses.replace(sample_state(), iteration=6, iteration_history=records)
        owner_head = head(state)
        segments = {}
        for _ in range(2):
            moved = state.iteration_history[:2]
            obj = segment_object(state, moved, kind="iterations")
            obj = dataclasses.replace(obj, uid=f"uid-{obj.name}")
            segments[obj.name] = obj
            state = state.with_segment(segment_ref(obj).n, obj.name, obj.uid, 2, kind="iterations")
        assert owner_head.uid
        return state, segments

    def test_a_missing_segment_leaves_the_index_and_is_named(self) -> None:
        """Its records are named lost; the later segment closes up over the gap."""
        state, segments = self.build()
        first, second = state.segments
        result = repair(head(state), {first.name: None, second.name: segments[second.name]})
        repaired = written(result)
        assert [(s.n, s.first_seq) for s in repaired.segments] == [(second.n, 0)]
        assert [x.key for x in result.losses] == [f"history segment {first.name}"]
        # The counter keeps its 6 iterations: two records made up for the lost ones.
        assert repaired.iteration == repaired.iteration_total == 6

    def test_a_replaced_segment_that_reads_is_adopted(self) -> None:
        """Another uid, the same records: taken as it is, nothing lost."""
        state, segments = self.build()
        first = state.segments[0]
        replaced = dataclasses.replace(segments[first.name], uid="another-uid")
        result = repair(head(state), {**segments, first.name: replaced})
        assert written(result).segments[0].uid == "another-uid"
        assert result.losses == ()

    def test_an_unreadable_segment_is_left_out_and_left_in_place(self) -> None:
        """Its loss says the object stays (the snapshot refers to it)."""
        state, segments = self.build()
        second = state.segments[1]
        broken = with_data(segments[second.name], iteration_history="[{")
        result = repair(head(state), {**segments, second.name: broken})
        assert [s.n for s in written(result).segments] == [state.segments[0].n]
        assert "left in place" in result.losses[0].detail

    def test_an_unreadable_index_is_rebuilt_from_the_segments_its_annotation_names(self) -> None:
        """Only the segments remstate.io/segments names (an orphan's records are in the head)."""
        state, segments = self.build()
        obj = with_data(head(state), history_index="{")
        prepared = prepare(obj, "42", now=T0)
        assert prepared.rebuild_from == {s.n for s in state.segments}
        result = finish(prepared, {}, problems_of(obj), list(segments.values()))
        repaired = written(result)
        assert [(s.n, s.first_seq, s.count) for s in repaired.segments] == [
            (s.n, s.first_seq, s.count) for s in state.segments
        ]
        assert repaired.iteration == repaired.iteration_total == 6
        assert [x.key for x in result.losses] == ["history_index"]


class TestDuplicates:
    def test_a_duplicate_feedback_id_is_renamed_not_dropped(self) -> None:
        """Both entries stay; the second gets a new id and keeps the old one as renamed_from."""
        state = sample_state()
        copy = fb(0, description="another finding")
        obj = head()
        entries = json.loads((obj.data or {})["feedback_history"])
        entries.append(json.loads(copy.to_json()))
        result = repair(with_data(obj, feedback_history=json.dumps(entries)))
        repaired = written(result)
        assert len(repaired.feedback_history) == len(state.feedback_history) + 1
        assert repaired.feedback_history[-1].extra["renamed_from"] == copy.id
        assert find_problems(state_object(repaired)) == []


@pytest.mark.parametrize(
    ("code", "fixed"),
    [
        (code, code not in {ProblemCode.NO_DATA, ProblemCode.UNSUPPORTED_SCHEMA_VERSION})
        for code in ProblemCode
    ],
)
def test_what_is_repairable(code: ProblemCode, fixed: bool) -> None:
    """Every kind is repairable but a newer version and no data."""
    assert repairable(Problem("x", code, "")) is fixed
