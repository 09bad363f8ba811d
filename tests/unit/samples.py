"""States and stored objects the schema's unit tests share."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from remstate.schema import (
    ErrorRecord,
    FeedbackEntry,
    HistoryIndex,
    IterationRecord,
    ProblemCode,
    SegmentRef,
    Status,
    TaskState,
    encode_state,
    object_name,
)
from remstate.store.base import StoredObject
from tests.helpers import T0


def fb(i: int, **changes: Any) -> FeedbackEntry:
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


def sample_state(**changes: Any) -> TaskState:
    fields: dict[str, Any] = {
        "task_id": "42",
        "iteration": 2,
        "status": Status.IN_PROGRESS,
        "last_update": T0,
        "iteration_history": (IterationRecord(1, T0), IterationRecord(2, T0, "second")),
        "feedback_history": (fb(0), fb(1, resolved=True, resolved_at=T0)),
        "error_messages": (ErrorRecord(T0, "boom"),),
        "metadata": {"repo": "org/repo", "pr": 5},
    }
    fields.update(changes)
    return TaskState(**fields)


def stored(state: TaskState, **kwargs: Any) -> StoredObject:
    data, labels, annotations = encode_state(state, **kwargs)
    return StoredObject(
        name=object_name(state.task_id),
        data=data,
        labels=labels,
        annotations=annotations,
        uid="u-1",
    )


def with_data(obj: StoredObject, **changes: str | None) -> StoredObject:
    data = dict(obj.data or {})
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return dataclasses.replace(obj, data=data)


def codes(problems: list[Any]) -> set[tuple[str, ProblemCode]]:
    return {(p.field, p.code) for p in problems}


def archived_state(**changes: Any) -> TaskState:
    """A state whose entries e0, e1 moved to segment 1; e2 is in the head."""
    history = HistoryIndex((SegmentRef(1, "task-42-state-h1", 0, 2, "u1"),), {"e0": 1, "e1": 1})
    fields: dict[str, Any] = {
        "feedback_history": (fb(2),),
        "history_index": history,
        "archived_resolutions": {"e0": T0, "e1": None},
    }
    fields.update(changes)
    return sample_state(**fields)
