"""Older schema versions read and migrate; newer ones are refused."""

from __future__ import annotations

import json

import pytest

from remstate.errors import (
    UnsupportedSchemaVersion,
)
from remstate.schema import (
    MIGRATED_NOTE,
    ErrorRecord,
    IterationRecord,
    ProblemCode,
    Status,
    decode_segment,
    decode_state,
    find_problems,
    segment_object,
)
from remstate.store.base import StoredObject
from tests.helpers import T0
from tests.unit.samples import codes, fb, sample_state, stored, with_data

V0_NAME = "task-42-state"
V0_DATA = {
    "task_id": "42",
    "iteration": "2",
    "status": "in_progress",
    "last_update": "2024-05-01T12:00:00",
    "feedback_history": json.dumps(
        [
            {
                "timestamp": "2024-05-01T11:00:00",
                "author": "alice",
                "severity": "high",
                "issue_type": "bug",
                "description": "null pointer",
                "resolved": False,
            },
            {
                "timestamp": "2024-05-01T11:30:00",
                "author": "bob",
                "severity": "Urgent",
                "issue_type": "bug",
                "description": "null pointer",
                "resolved": True,
            },
        ]
    ),
    "error_messages": json.dumps(["timeout talking to CI"]),
    "metadata": json.dumps({"repo": "org/repo"}),
}


class TestVersion0:
    def test_migrates_on_read(self) -> None:
        """A version 0 object reads as a full state: IDs, iterations, error records."""
        state = decode_state(StoredObject(name=V0_NAME, data=V0_DATA))
        assert state.schema_version == 0
        assert (state.task_id, state.iteration, state.status) == ("42", 2, Status.IN_PROGRESS)
        assert state.last_update == T0
        assert [e.author for e in state.feedback_history] == ["alice", "bob"]
        assert state.feedback_history[1].severity == "Urgent"  # unknown, kept
        assert all(e.id.startswith("v0-") for e in state.feedback_history)
        assert len({e.id for e in state.feedback_history}) == 2
        assert state.iteration_history == (
            IterationRecord(1, T0, MIGRATED_NOTE),
            IterationRecord(2, T0, MIGRATED_NOTE),
        )
        assert state.error_messages == (ErrorRecord(None, "timeout talking to CI"),)
        assert state.metadata == {"repo": "org/repo"}

    def test_ids_are_stable(self) -> None:
        """The same version 0 object always gives the same IDs (retries see the same)."""
        a = decode_state(StoredObject(name=V0_NAME, data=V0_DATA))
        b = decode_state(StoredObject(name=V0_NAME, data=dict(V0_DATA)))
        assert [e.id for e in a.feedback_history] == [e.id for e in b.feedback_history]

    def test_explicit_zero_is_version_0(self) -> None:
        """``schema_version: "0"`` reads as version 0."""
        state = decode_state(StoredObject(name=V0_NAME, data={**V0_DATA, "schema_version": "0"}))
        assert state.schema_version == 0

    def test_written_back_as_version_1(self) -> None:
        """Migrate on write: encoding writes version 1, which reads back equal."""
        state = decode_state(StoredObject(name=V0_NAME, data=V0_DATA))
        obj = stored(state)
        assert (obj.data or {})["schema_version"] == "1"
        again = decode_state(obj)
        assert again == state
        assert again.schema_version == 1
        assert find_problems(obj) == []

    def test_v0_is_valid(self) -> None:
        """An intact version 0 object has no problems (it lacks annotations by design)."""
        assert find_problems(StoredObject(name=V0_NAME, data=V0_DATA)) == []


class TestNewerVersion:
    def test_decode_raises_unsupported(self) -> None:
        """A newer schema version is a clear error; the reader does not guess."""
        obj = with_data(stored(sample_state()), schema_version="2")
        with pytest.raises(UnsupportedSchemaVersion) as info:
            decode_state(obj)
        assert (info.value.found, info.value.supported) == (2, 1)

    def test_validate_reports_unsupported_only(self) -> None:
        """The validator says why it cannot check, and checks nothing else."""
        obj = with_data(stored(sample_state()), schema_version="7", metadata="{broken")
        assert codes(find_problems(obj)) == {
            ("schema_version", ProblemCode.UNSUPPORTED_SCHEMA_VERSION)
        }

    def test_segment_newer_version(self) -> None:
        """Segments carry the version too."""
        obj = segment_object(sample_state(), [fb(0)])
        obj = with_data(obj, schema_version="3")
        with pytest.raises(UnsupportedSchemaVersion):
            decode_segment(obj)
