"""Decoding a newer version of a head with the previous state reuses its records.

The result must always be exactly what a full decode gives: reuse is only a
shortcut, taken when the stored text begins with the known records' JSON.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import pytest

from remstate.schema import (
    ErrorRecord,
    FeedbackEntry,
    IterationRecord,
    TaskState,
    decode_state,
    state_object,
)
from remstate.store.base import StoredObject
from tests.helpers import T0


def grown(n: int, *, big: bool = False) -> TaskState:
    """A state with n iterations, n feedback entries and n errors."""
    text = "lorem ipsum " * (400 if big else 1)
    return dataclasses.replace(
        TaskState.new("t", clock=lambda: T0),
        iteration=n,
        iteration_history=tuple(
            IterationRecord(i + 1, T0 + timedelta(seconds=i), f"try {i}") for i in range(n)
        ),
        feedback_history=tuple(
            FeedbackEntry.new(
                author="a",
                severity="low",
                issue_type="bug",
                description=f"{i} {text}",
                id=f"f{i}",
                timestamp=T0,
            )
            for i in range(n)
        ),
        error_messages=tuple(ErrorRecord(T0, f"error {i}") for i in range(n)),
    )


def stored(state: TaskState) -> StoredObject:
    return state_object(state, resource_version="1")


class TestReuse:
    @pytest.mark.parametrize("big", [False, True])
    @pytest.mark.parametrize(("before", "after"), [(0, 3), (3, 3), (3, 4), (10, 50)])
    def test_a_grown_state_decodes_the_same_with_or_without_the_previous(
        self, before: int, after: int, big: bool
    ) -> None:
        """Plain or compressed, the reused decode equals the full decode."""
        previous = decode_state(stored(grown(before, big=big)))
        obj = stored(grown(after, big=big))
        reused = decode_state(obj, previous=previous)
        assert reused == decode_state(obj) == grown(after, big=big)

    def test_records_before_the_new_ones_are_the_same_objects(self) -> None:
        """Known records are reused, not decoded again."""
        previous = decode_state(stored(grown(20)))
        reused = decode_state(stored(grown(21)), previous=previous)
        kept = reused.iteration_history[:20]
        assert all(a is b for a, b in zip(previous.iteration_history, kept, strict=True))

    def test_a_changed_record_is_read_in_full(self) -> None:
        """When an earlier record changed (a resolved entry), the new text wins."""
        previous = decode_state(stored(grown(5)))
        changed = grown(5)
        entries = list(changed.feedback_history)
        entries[2] = dataclasses.replace(entries[2], resolved=True, resolved_at=T0)
        changed = dataclasses.replace(changed, feedback_history=tuple(entries))
        obj = stored(changed)
        assert decode_state(obj, previous=previous) == changed

    def test_another_writers_formatting_is_read_in_full(self) -> None:
        """JSON with other spacing (kubectl edit, another tool) decodes the same."""
        previous = decode_state(stored(grown(5)))
        obj = stored(grown(6))
        assert obj.data is not None
        spaced = {
            k: json.dumps(json.loads(v), indent=1) if k.endswith(("history", "messages")) else v
            for k, v in obj.data.items()
        }
        assert decode_state(dataclasses.replace(obj, data=spaced), previous=previous) == grown(6)

    def test_a_shrunk_history_is_read_in_full(self) -> None:
        """A head whose feedback moved to a segment does not start with the old records."""
        previous = decode_state(stored(grown(10)))
        shrunk = dataclasses.replace(grown(10), feedback_history=grown(10).feedback_history[6:])
        assert decode_state(stored(shrunk), previous=previous) == shrunk
