"""The export format, version 1: what a line holds, and every line an import refuses."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from remstate import InvalidInput
from remstate.schema import (
    EXPORT_FORMAT,
    ErrorRecord,
    ExportedState,
    IterationRecord,
    Policy,
    TaskState,
    parse_export_line,
)
from tests.helpers import T0, entry


def sample() -> ExportedState:
    head = TaskState(
        task_id="Org/Repo#5",
        iteration=2,
        status="in_progress",
        last_update=T0,
        metadata={"pr": 5},
        policy=Policy(max_iterations=4, ttl=timedelta(days=14)),
    )
    return ExportedState.of(
        head,
        iterations=[
            IterationRecord(1, T0, "first", {"op": "s1"}),
            IterationRecord(2, T0 + timedelta(seconds=1)),
        ],
        feedback=[entry(0), entry(1)],
        errors=[ErrorRecord(T0, "boom", {"id": "e1"})],
    )


def line(**changes: Any) -> str:
    obj = sample().to_dict()
    for key, value in changes.items():
        if value is _DROP:
            del obj[key]
        else:
            obj[key] = value
    return json.dumps(obj)


_DROP = object()


class TestFormat:
    def test_fields(self) -> None:
        """Version 1 holds these fields, always, and the records in their stored form."""
        obj = sample().to_dict()
        assert list(obj) == [
            "format",
            "version",
            "task_id",
            "iteration",
            "status",
            "last_update",
            "policy",
            "metadata",
            "extra_data",
            "soft_deleted_at",
            "iteration_history",
            "feedback_history",
            "error_messages",
        ]
        assert (obj["format"], obj["version"]) == (EXPORT_FORMAT, 1)
        assert obj["policy"] == {"max_iterations": 4, "ttl_seconds": 14 * 86400}
        assert obj["iteration_history"][0] == {
            "iteration": 1,
            "started_at": "2024-05-01T12:00:00Z",
            "note": "first",
            "op": "s1",
        }
        assert obj["error_messages"] == [
            {"timestamp": "2024-05-01T12:00:00Z", "message": "boom", "id": "e1"}
        ]

    def test_round_trip(self) -> None:
        """A line reads back equal, soft-delete time included; non-ASCII stays as it is."""
        when = datetime(2026, 1, 2, tzinfo=UTC)
        state = sample().state
        exported = ExportedState.of(
            state,
            iterations=state.iteration_history,
            feedback=[entry(0, description="naïve ✓")],
            errors=state.error_messages,
            soft_deleted_at=when,
        )
        text = exported.to_line()
        assert "naïve ✓" in text
        assert parse_export_line(text) == exported


BAD = [
    pytest.param("{not json", "not JSON", id="not JSON"),
    pytest.param("[1, 2]", "expected a JSON object", id="an array"),
    pytest.param(line(format="other"), "format must be", id="another format"),
    pytest.param(line(version=2), "newer remstate", id="a newer version"),
    pytest.param(line(version="1"), "version must be 1", id="version a string"),
    pytest.param(line(version=True), "version must be 1", id="version a bool"),
    pytest.param(line(extra_field=1), "unknown fields", id="an unknown field"),
    pytest.param(line(metadata=_DROP), "missing fields", id="a missing field"),
    pytest.param(line(task_id=""), "task_id", id="an empty task id"),
    pytest.param(line(task_id=7), "task_id", id="a task id that is a number"),
    pytest.param(line(iteration="2"), "iteration", id="iteration a string"),
    pytest.param(line(iteration=3), "iteration is 3 but", id="counter and records disagree"),
    pytest.param(line(last_update="yesterday"), "last_update", id="a bad time"),
    pytest.param(line(metadata=[1]), "metadata", id="metadata not an object"),
    pytest.param(line(policy={"max_iterations": 0}), "max_iterations", id="limit out of range"),
    pytest.param(line(soft_deleted_at="soon"), "soft_deleted_at", id="a bad soft-delete time"),
    pytest.param(
        line(feedback_history=[entry(0).to_dict(), entry(0).to_dict()]),
        "appears twice",
        id="a feedback id twice",
    ),
    pytest.param(
        line(feedback_history=[{"id": "x"}]), "feedback_history", id="an entry with no fields"
    ),
    pytest.param(
        line(error_messages=[{"message": "a", "id": "e"}, {"message": "b", "id": "e"}]),
        "appears twice",
        id="an error id twice",
    ),
    pytest.param(line(extra_data={"k": 1}), "extra_data", id="extra data not a string"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_refused(text: str, message: str) -> None:
    """Each malformed line is InvalidInput, naming what is wrong."""
    with pytest.raises(InvalidInput, match=message):
        parse_export_line(text)
