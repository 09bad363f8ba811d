"""The export format: one task's whole state, its history included, as one JSON object.

``remstate export`` writes one such object a line (JSON Lines); ``remstate
import`` reads them back. Version 1, its fields (every one always present):

- ``format``: ``"remstate.io/export"``; ``version``: ``1``. A reader refuses
  a newer version rather than guess (as the schema does);
- ``task_id``, ``iteration``, ``status``, ``last_update`` (RFC 3339, UTC);
- ``policy``: ``{"max_iterations": int|null, "ttl_seconds": int|null}``;
- ``metadata``: the task's metadata object; ``extra_data``: data keys of the
  head this remstate does not know, kept as they were (strings);
- ``soft_deleted_at``: when the task was soft-deleted, or null when active;
- ``iteration_history``, ``feedback_history``, ``error_messages``: every
  record of each kind, oldest first, wherever it is stored (head or history
  segments), in the form the head's data keys hold; feedback with its
  resolution as read (a resolution made after an entry moved to a segment
  is laid over it).

How the history was split into segments is not exported: it is how one store
laid the records out, not part of the state. An import writes the records
into the head and lets the writer move them to segments as it does for any
write, so an imported state reads back identical (ids, timestamps,
resolutions, records, errors, metadata, policy, status, last update).

Strict on new input: an import line with an unknown field, a missing one, a
wrong type, a duplicate id, or an iteration counter that disagrees with its
records is refused with ``InvalidInput`` naming the field.

Pure functions, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from remstate.errors import CorruptState, InvalidInput
from remstate.schema.naming import validate_task_id
from remstate.schema.records import ErrorRecord, FeedbackEntry, IterationRecord, record_id
from remstate.schema.state import TaskState
from remstate.schema.values import KIND_ERRORS, KIND_FEEDBACK, KIND_ITERATIONS, format_timestamp
from remstate.schema.values import parse_timestamp as _parse_timestamp

__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "ExportedState", "parse_export_line"]

EXPORT_FORMAT = "remstate.io/export"
EXPORT_VERSION = 1

_FIELDS = (
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
)
#: The fields ``TaskState.from_dict`` reads.
_STATE_FIELDS = frozenset(_FIELDS) - {"format", "version", "soft_deleted_at"}


@dataclass(frozen=True, slots=True)
class ExportedState:
    """One task's whole state: ``state`` holds every record of its history in the head
    (no segments), as an import writes it; and when it was soft-deleted, if it was."""

    state: TaskState
    soft_deleted_at: datetime | None = None

    @classmethod
    def of(
        cls,
        head: TaskState,
        *,
        iterations: Sequence[IterationRecord],
        feedback: Sequence[FeedbackEntry],
        errors: Sequence[ErrorRecord],
        soft_deleted_at: datetime | None = None,
    ) -> ExportedState:
        """The export of a task whose head is ``head`` and whose whole history is given."""
        state = TaskState(
            task_id=head.task_id,
            iteration=head.iteration,
            status=head.status,
            last_update=head.last_update,
            iteration_history=tuple(iterations),
            feedback_history=tuple(feedback),
            error_messages=tuple(errors),
            metadata=head.metadata,
            extra_data=head.extra_data,
            policy=head.policy,
        )
        return cls(state, soft_deleted_at)

    @property
    def task_id(self) -> str:
        return self.state.task_id

    def to_dict(self) -> dict[str, Any]:
        """The version 1 object (see the module docstring)."""
        s = self.state
        return {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "task_id": s.task_id,
            "iteration": s.iteration,
            "status": str(s.status),
            "last_update": format_timestamp(s.last_update),
            "policy": s.policy.to_dict(),
            "metadata": dict(s.metadata),
            "extra_data": dict(s.extra_data),
            "soft_deleted_at": (
                None if self.soft_deleted_at is None else format_timestamp(self.soft_deleted_at)
            ),
            "iteration_history": [r.to_dict() for r in s.iteration_history],
            "feedback_history": [e.to_dict() for e in s.feedback_history],
            "error_messages": [r.to_dict() for r in s.error_messages],
        }

    def to_line(self) -> str:
        """One line of JSON (no newline), non-ASCII kept as it is."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, obj: object) -> ExportedState:
        """Read a version 1 object, strictly.

        Raises:
            InvalidInput: not such an object; the message names the field.
        """
        if not isinstance(obj, Mapping):
            raise InvalidInput(f"expected a JSON object, not {type(obj).__name__}")
        if obj.get("format") != EXPORT_FORMAT:
            raise InvalidInput(f"format must be {EXPORT_FORMAT!r}, not {obj.get('format')!r}")
        version = obj.get("version")
        if version != EXPORT_VERSION or isinstance(version, bool):
            if isinstance(version, int) and not isinstance(version, bool) and version > 1:
                raise InvalidInput(
                    f"version {version} was written by a newer remstate; this one reads "
                    f"version {EXPORT_VERSION}"
                )
            raise InvalidInput(f"version must be {EXPORT_VERSION}, not {version!r}")
        if unknown := sorted(set(obj) - set(_FIELDS)):
            raise InvalidInput(f"unknown fields {unknown}")
        if missing := [f for f in _FIELDS if f not in obj]:
            raise InvalidInput(f"missing fields {missing}")
        try:
            validate_task_id(obj["task_id"])
        except InvalidInput as e:
            raise InvalidInput(f"task_id: {e}") from None
        try:
            state = TaskState.from_dict({k: obj[k] for k in _STATE_FIELDS})
        except CorruptState as e:
            raise InvalidInput(str(e)) from None
        raw = obj["soft_deleted_at"]
        try:
            soft = None if raw is None else _parse_timestamp(raw)
        except InvalidInput as e:
            raise InvalidInput(f"soft_deleted_at: {e}") from None
        _check_history(state)
        return cls(state, soft)


def _check_history(state: TaskState) -> None:
    """The counter agrees with the records, and no id appears twice in a kind."""
    if state.iteration != len(state.iteration_history):
        raise InvalidInput(
            f"iteration is {state.iteration} but iteration_history holds "
            f"{len(state.iteration_history)} records"
        )
    for kind in (KIND_ITERATIONS, KIND_FEEDBACK, KIND_ERRORS):
        seen: set[str] = set()
        for record in state.held(kind):
            key = record_id(record)
            if key is None:
                continue
            if key in seen:
                raise InvalidInput(f"{kind}: the id {key!r} appears twice")
            seen.add(key)


def parse_export_line(line: str) -> ExportedState:
    """One line of an export file.

    Raises:
        InvalidInput: not JSON, or not a version 1 object (the message says why).
    """
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as e:
        raise InvalidInput(f"not JSON: {e}") from None
    return ExportedState.from_dict(obj)
