"""The records a task's history holds: iterations, feedback entries and errors.

Each is a frozen dataclass; a change is a new value (``dataclasses.replace``).
Keys a newer remstate wrote stay in ``extra`` and are written back as they
were; only *new input* (through ``new`` and ``validate``) must use values we
know. ``from_dict(to_dict(x)) == x`` for every record.

Pure code, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ulid import ULID

from remstate.errors import InvalidInput
from remstate.schema.datavalue import dumps, utf8_len
from remstate.schema.fields import (
    _bool,
    _check_extra,
    _check_feedback_id,
    _check_text,
    _check_type,
    _construct,
    _extra,
    _get,
    _int,
    _object,
    _path,
    _public,
    _str,
    _time,
)
from remstate.schema.frozen import (
    cache_field,
    cached_json,
    remember,
    set_normalized,
)
from remstate.schema.values import (
    KIND_ERRORS,
    KIND_FEEDBACK,
    KIND_ITERATIONS,
    MAX_AUTHOR_LENGTH,
    Clock,
    IssueType,
    Severity,
    _utc,
    format_timestamp,
    parse_issue_type,
    parse_severity,
    utc_now,
)

__all__ = [
    "ErrorRecord",
    "FeedbackEntry",
    "HistorySegment",
    "IterationRecord",
    "Records",
    "record_id",
    "validate_record_id",
]

# -- records --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IterationRecord:
    """One iteration of the loop: its number (from 1) and when it started."""

    iteration: int
    started_at: datetime
    note: str = ""
    #: Keys written by a newer remstate, kept and written back as they were.
    extra: Mapping[str, Any] = field(default_factory=dict)

    # Compact JSON of to_dict(), computed once: records are immutable and carried
    # from state to state, so a write re-serialises only the new one.
    _json: str | None = cache_field()

    _KEYS = frozenset({"iteration", "started_at", "note"})

    def __post_init__(self) -> None:
        _check_type(self.iteration, int, "iteration")
        set_normalized(self, "started_at", _utc(self.started_at, "started_at"))
        _check_type(self.note, str, "note")
        set_normalized(self, "extra", _check_extra(self.extra, self._KEYS, "iteration record"))

    def validate(self) -> None:
        """Check the limits on new input.

        Raises:
            InvalidInput: a negative iteration or a note over 64 KiB.
        """
        if self.iteration < 0:
            raise InvalidInput(f"iteration must not be negative, not {self.iteration}")
        _check_text(self.note, "note")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "iteration": self.iteration,
            "started_at": format_timestamp(self.started_at),
        }
        if self.note:
            out["note"] = self.note
        out.update(self.extra)
        return out

    def to_json(self) -> str:
        """Compact JSON of :meth:`to_dict`, computed once per record."""
        return cached_json(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IterationRecord:
        """Read the form :meth:`to_dict` writes.

        Raises:
            CorruptState: a field is missing or of the wrong type.
        """
        return _public(lambda: cls._read(data, "iteration_history"))

    @classmethod
    def _read(cls, value: object, path: str) -> IterationRecord:
        obj = _object(value, path)
        # Version 0 sketches called the start time "timestamp".
        key = "started_at" if "started_at" in obj or "timestamp" not in obj else "timestamp"
        known = cls._KEYS | {key}
        iteration = _int(_get(obj, "iteration", path), _path(path, "iteration"))
        started_at = _time(_get(obj, key, path), _path(path, key))
        note = _str(obj.get("note", ""), _path(path, "note"))
        extra = _extra(obj, known)
        return _construct(path, lambda: cls(iteration, started_at, note, extra))


@dataclass(frozen=True, slots=True)
class FeedbackEntry:
    """One piece of reviewer feedback. ``id`` makes appends idempotent."""

    id: str
    timestamp: datetime
    author: str
    severity: Severity | str
    issue_type: IssueType | str
    description: str
    resolved: bool = False
    resolved_at: datetime | None = None
    #: Keys written by a newer remstate, kept and written back as they were.
    extra: Mapping[str, Any] = field(default_factory=dict)
    # The compact JSON of to_dict() and its UTF-8 size, computed once: entries
    # are immutable and carried from state to state, so an append re-serialises
    # only the new entry.
    _json: tuple[str, int] | None = cache_field()

    _KEYS = frozenset(
        {
            "id",
            "timestamp",
            "author",
            "severity",
            "issue_type",
            "description",
            "resolved",
            "resolved_at",
        }
    )

    def __post_init__(self) -> None:
        _check_type(self.id, str, "feedback id")
        set_normalized(self, "timestamp", _utc(self.timestamp, "timestamp"))
        _check_type(self.author, str, "author")
        set_normalized(self, "severity", parse_severity(self.severity, strict=False))
        set_normalized(self, "issue_type", parse_issue_type(self.issue_type, strict=False))
        _check_type(self.description, str, "description")
        _check_type(self.resolved, bool, "resolved")
        if self.resolved_at is not None:
            set_normalized(self, "resolved_at", _utc(self.resolved_at, "resolved_at"))
        set_normalized(self, "extra", _check_extra(self.extra, self._KEYS, "feedback entry"))

    @classmethod
    def new(
        cls,
        *,
        author: str,
        severity: Severity | str,
        issue_type: IssueType | str,
        description: str,
        id: str | None = None,  # noqa: A002 -- the entry's field is called id
        timestamp: datetime | None = None,
        clock: Clock = utc_now,
        extra: Mapping[str, Any] | None = None,
    ) -> FeedbackEntry:
        """A new, validated entry; a ULID ``id`` is generated when none is given.

        Raises:
            InvalidInput: an unknown severity or issue type, or a field beyond
                its limit (see :meth:`validate`).
        """
        when = clock() if timestamp is None else timestamp
        entry = cls(
            id=str(ULID.from_datetime(_utc(when, "timestamp"))) if id is None else id,
            timestamp=when,
            author=author,
            severity=parse_severity(severity, strict=True),
            issue_type=parse_issue_type(issue_type, strict=True),
            description=description,
            extra=extra or {},
        )
        entry.validate()
        return entry

    def validate(self) -> None:
        """Check the limits on new input.

        Raises:
            InvalidInput: an empty, long (over 128) or unprintable id; an author
                over 256 characters; a description over 64 KiB; an unknown
                severity or issue type; text JSON cannot carry exactly.
        """
        _check_feedback_id(self.id)
        if len(self.author) > MAX_AUTHOR_LENGTH:
            raise InvalidInput(
                f"author is {len(self.author)} characters; the maximum is {MAX_AUTHOR_LENGTH}"
            )
        _check_text(self.description, "description")
        parse_severity(self.severity, strict=True)
        parse_issue_type(self.issue_type, strict=True)
        self.to_json()  # what JSON cannot carry exactly fails now (cached for the write)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "timestamp": format_timestamp(self.timestamp),
            "author": self.author,
            "severity": str(self.severity),
            "issue_type": str(self.issue_type),
            "description": self.description,
            "resolved": self.resolved,
        }
        if self.resolved_at is not None:
            out["resolved_at"] = format_timestamp(self.resolved_at)
        out.update(self.extra)
        return out

    def to_json(self) -> str:
        """Compact JSON of :meth:`to_dict`, computed once per entry."""
        return self._cached()[0]

    def json_size(self) -> int:
        """UTF-8 bytes of :meth:`to_json`."""
        return self._cached()[1]

    def _cached(self) -> tuple[str, int]:
        if self._json is None:
            text = dumps(self.to_dict())
            remember(self, "_json", (text, utf8_len(text)))
        assert self._json is not None
        return self._json

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeedbackEntry:
        """Read the form :meth:`to_dict` writes.

        Raises:
            CorruptState: a field is missing or of the wrong type.
        """
        return _public(lambda: cls._read(data, "feedback_history"))

    @classmethod
    def _read(cls, value: object, path: str, *, default_id: str | None = None) -> FeedbackEntry:
        obj = _object(value, path)
        if "id" in obj or default_id is None:
            id_ = _str(_get(obj, "id", path), _path(path, "id"))
        else:
            id_ = default_id
        timestamp = _time(_get(obj, "timestamp", path), _path(path, "timestamp"))
        author = _str(_get(obj, "author", path), _path(path, "author"))
        severity = _str(_get(obj, "severity", path), _path(path, "severity"))
        issue_type = _str(_get(obj, "issue_type", path), _path(path, "issue_type"))
        description = _str(_get(obj, "description", path), _path(path, "description"))
        resolved = _bool(obj.get("resolved", False), _path(path, "resolved"))
        raw_resolved_at = obj.get("resolved_at")
        resolved_at = (
            None if raw_resolved_at is None else _time(raw_resolved_at, _path(path, "resolved_at"))
        )
        extra = _extra(obj, cls._KEYS)
        return _construct(
            path,
            lambda: cls(
                id_,
                timestamp,
                author,
                severity,
                issue_type,
                description,
                resolved,
                resolved_at,
                extra,
            ),
        )


@dataclass(frozen=True, slots=True)
class ErrorRecord:
    """An error message, with when it was recorded (unknown for version 0 states)."""

    timestamp: datetime | None
    message: str
    #: Keys written by a newer remstate, kept and written back as they were.
    extra: Mapping[str, Any] = field(default_factory=dict)

    # Compact JSON of to_dict(), computed once: records are immutable and carried
    # from state to state, so a write re-serialises only the new one.
    _json: str | None = cache_field()

    _KEYS = frozenset({"timestamp", "message"})

    def __post_init__(self) -> None:
        if self.timestamp is not None:
            set_normalized(self, "timestamp", _utc(self.timestamp, "timestamp"))
        _check_type(self.message, str, "message")
        set_normalized(self, "extra", _check_extra(self.extra, self._KEYS, "error record"))

    @classmethod
    def new(cls, message: str, *, clock: Clock = utc_now) -> ErrorRecord:
        """A new, validated record stamped with the clock's time.

        Raises:
            InvalidInput: the message is not a string or is over 64 KiB.
        """
        record = cls(clock(), message)
        record.validate()
        return record

    def validate(self) -> None:
        """Check the limits on new input.

        Raises:
            InvalidInput: the message is over 64 KiB.
        """
        _check_text(self.message, "error message")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.timestamp is not None:
            out["timestamp"] = format_timestamp(self.timestamp)
        out["message"] = self.message
        out.update(self.extra)
        return out

    def to_json(self) -> str:
        """Compact JSON of :meth:`to_dict`, computed once per record."""
        return cached_json(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ErrorRecord:
        """Read the form :meth:`to_dict` writes.

        Raises:
            CorruptState: a field is missing or of the wrong type.
        """
        return _public(lambda: cls._read(data, "error_messages"))

    @classmethod
    def _read(cls, value: object, path: str) -> ErrorRecord:
        if isinstance(value, str):  # version 0 kept bare strings
            return ErrorRecord(None, value)
        obj = _object(value, path)
        raw_ts = obj.get("timestamp")
        timestamp = None if raw_ts is None else _time(raw_ts, _path(path, "timestamp"))
        message = _str(_get(obj, "message", path), _path(path, "message"))
        extra = _extra(obj, cls._KEYS)
        return _construct(path, lambda: cls(timestamp, message, extra))


#: The records of one kind, as the head or a segment holds them.
Records = tuple[FeedbackEntry, ...] | tuple[IterationRecord, ...] | tuple[ErrorRecord, ...]


def record_id(record: FeedbackEntry | IterationRecord | ErrorRecord) -> str | None:
    """The ID that makes a record's write idempotent: a feedback entry's ``id``,
    an increment's key (``op``), an error record's ``id``; ``None`` if it has none."""
    if isinstance(record, FeedbackEntry):
        return record.id
    key = record.extra.get("op" if isinstance(record, IterationRecord) else "id")
    return key if isinstance(key, str) else None


def validate_record_id(value: object, what: str) -> str:
    """An idempotency key given by a caller: 1 to 128 printable characters.

    Raises:
        InvalidInput: anything else.
    """
    return _check_feedback_id(value, what)


@dataclass(frozen=True, slots=True)
class HistorySegment:
    """The content of one history segment object, as read back.

    A segment holds one kind of record: ``entries`` (feedback),
    ``iterations`` or ``errors``; :attr:`records` is whichever it holds.
    """

    task_id: str
    n: int
    first_seq: int
    entries: tuple[FeedbackEntry, ...] = ()
    kind: str = KIND_FEEDBACK
    iterations: tuple[IterationRecord, ...] = ()
    errors: tuple[ErrorRecord, ...] = ()

    def __post_init__(self) -> None:
        set_normalized(self, "entries", tuple(self.entries))
        set_normalized(self, "iterations", tuple(self.iterations))
        set_normalized(self, "errors", tuple(self.errors))

    @property
    def records(self) -> Records:
        if self.kind == KIND_ITERATIONS:
            return self.iterations
        if self.kind == KIND_ERRORS:
            return self.errors
        return self.entries

    @property
    def count(self) -> int:
        return len(self.records)
