"""The typed state of a remediation loop, independent of how it is stored.

Everything here is a frozen dataclass; a change is a new value
(``dataclasses.replace``), so an update is a pure function of the state.

Two rules shape the types:

- **Nothing written by a newer remstate is lost on read.** An enum value we
  do not know stays a plain ``str``; keys we do not know stay in ``extra``
  and are written back as they were. Only *new input* (through ``new`` and
  ``validate``, or ``parse_*(strict=True)``) must use values we know.
- **Round trips are exact.** Timestamps are normalised to UTC on
  construction (naive ones are refused), JSON values are normalised to what
  JSON reads back, so ``from_dict(to_dict(x)) == x``.

Resolutions of archived feedback: segments hold feedback that left the head.
Resolving (or un-resolving) such an entry is recorded in the head, in
``TaskState.archived_resolutions`` (entry ID -> resolved_at, ``None`` for
"marked unresolved"), which readers lay over the segment's entries with
:func:`apply_resolutions`. Segments are never rewritten, so a reader may cache
a segment's content by ``(name, uid)``; the head refuses a resolution past
:data:`RESOLUTIONS_LIMIT`.

Pure code, no I/O.
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from ulid import ULID

from remstate.errors import CorruptState, InvalidInput
from remstate.schema.encoding import compress_json_text, dumps, normalize_json, utf8_len
from remstate.schema.idfilter import IdFilter
from remstate.schema.naming import validate_task_id
from remstate.schema.problems import MalformedError, ProblemCode

__all__ = [
    "KINDS",
    "KIND_ERRORS",
    "KIND_FEEDBACK",
    "KIND_ID_FILTERS",
    "KIND_ITERATIONS",
    "MAX_AUTHOR_LENGTH",
    "MAX_FEEDBACK_ID_LENGTH",
    "MAX_TEXT_BYTES",
    "RECENT_MOVED_LIMIT",
    "RESOLUTIONS_LIMIT",
    "SCHEMA_VERSION",
    "Clock",
    "ErrorRecord",
    "FeedbackEntry",
    "HistoryIndex",
    "HistorySegment",
    "IssueType",
    "IterationRecord",
    "Records",
    "Resolutions",
    "SegmentRef",
    "Severity",
    "Status",
    "TaskState",
    "apply_resolutions",
    "format_timestamp",
    "parse_issue_type",
    "parse_severity",
    "parse_status",
    "parse_timestamp",
    "record_id",
    "utc_now",
    "validate_record_id",
]

#: The schema version this remstate writes, and the newest it reads.
SCHEMA_VERSION = 1

MAX_FEEDBACK_ID_LENGTH = 128
MAX_AUTHOR_LENGTH = 256
#: The most UTF-8 bytes of a description, a note or an error message.
MAX_TEXT_BYTES = 64 * 1024
#: The most IDs remembered as recently moved into segments (see ``HistoryIndex``).
RECENT_MOVED_LIMIT = 4096
#: The most resolutions of archived entries the head carries: past it, resolving
#: one more archived entry is refused (see ``TaskState.archived_resolutions``).
RESOLUTIONS_LIMIT = 1024
#: A segment number as the ``recent_moved`` keys write it (18 digits keep int() cheap).
SEGMENT_NUMBER = re.compile(r"[0-9]{1,18}")

#: The kinds of history a segment holds. Each kind has its own sequence numbers.
KIND_FEEDBACK = "feedback"
KIND_ITERATIONS = "iterations"
KIND_ERRORS = "errors"
KINDS = (KIND_FEEDBACK, KIND_ITERATIONS, KIND_ERRORS)
#: A segment of this kind holds no records but the ID filters of other segments:
#: those numbered ``first_seq`` to ``first_seq + count - 1``.
KIND_ID_FILTERS = "id-filters"

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The default clock: now, in UTC."""
    return datetime.now(UTC)


class Status(enum.StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    AWAITING_REVIEW = "awaiting_review"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"


class IssueType(enum.StrEnum):
    BUG = "bug"
    SECURITY = "security"
    PERFORMANCE = "performance"
    STYLE = "style"
    TEST = "test"
    DOCUMENTATION = "documentation"
    DESIGN = "design"
    OTHER = "other"


_E = TypeVar("_E", bound=enum.StrEnum)
_T = TypeVar("_T")


def _parse_enum(kind: type[_E], what: str, value: object, *, strict: bool) -> _E | str:
    if isinstance(value, kind):
        return value
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, not {type(value).__name__}")
    try:
        return kind(value)
    except ValueError:
        if strict:
            known = ", ".join(m.value for m in kind)
            raise InvalidInput(f"unknown {what} {value!r}; expected one of: {known}") from None
        return value


def parse_status(value: object, *, strict: bool) -> Status | str:
    """``value`` as a :class:`Status`; an unknown string is kept unless ``strict``.

    Raises:
        InvalidInput: not a string, or unknown and ``strict``.
    """
    return _parse_enum(Status, "status", value, strict=strict)


def parse_severity(value: object, *, strict: bool) -> Severity | str:
    """``value`` as a :class:`Severity`; an unknown string is kept unless ``strict``.

    Raises:
        InvalidInput: not a string, or unknown and ``strict``.
    """
    return _parse_enum(Severity, "severity", value, strict=strict)


def parse_issue_type(value: object, *, strict: bool) -> IssueType | str:
    """``value`` as an :class:`IssueType`; an unknown string is kept unless ``strict``.

    Raises:
        InvalidInput: not a string, or unknown and ``strict``.
    """
    return _parse_enum(IssueType, "issue type", value, strict=strict)


# -- timestamps ---------------------------------------------------------------

_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")


def _utc(value: object, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidInput(f"{what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{what} must be timezone-aware (got naive {value.isoformat()})")
    try:
        return value.astimezone(UTC)
    except OverflowError as e:
        raise InvalidInput(f"{what} is out of range in UTC: {value.isoformat()}") from e


def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with ``Z``; microseconds only when not zero.

    Raises:
        InvalidInput: ``value`` is naive, or not a datetime.
    """
    t = _utc(value, "timestamp")
    text = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    if t.microsecond:
        text += f".{t.microsecond:06d}"
    return text + "Z"


def parse_timestamp(text: object) -> datetime:
    """Parse RFC 3339 / ISO 8601 into an aware UTC datetime.

    Tolerant: ``Z`` or ``+00:00`` or any offset; a naive time is taken as UTC;
    digits past microseconds (Go's RFC3339Nano) are dropped.

    Raises:
        InvalidInput: not a string, or not a timestamp.
    """
    if not isinstance(text, str):
        raise InvalidInput(f"timestamp must be a string, not {type(text).__name__}")
    s = text.strip()
    if len(s) > 10 and s[10] == "t":
        s = f"{s[:10]}T{s[11:]}"
    if s.endswith(("z", "Z")):
        s = s[:-1] + "+00:00"
    s = _LONG_FRACTION.sub(r"\1", s, count=1)
    try:
        parsed = datetime.fromisoformat(s)
    except ValueError as e:
        raise InvalidInput(f"not an RFC 3339 timestamp: {text!r}") from e
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return _utc(parsed, "timestamp")


# -- reading helpers: raise MalformedError with a path ------------------------------


def _path(base: str, key: str | int) -> str:
    return f"{base}[{key}]" if isinstance(key, int) else (f"{base}.{key}" if base else key)


def _object(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedError(ProblemCode.BAD_VALUE, path, f"expected an object, not {_kind(value)}")
    return value


def _kind(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _get(obj: Mapping[str, Any], key: str, path: str) -> Any:
    try:
        return obj[key]
    except KeyError:
        raise MalformedError(ProblemCode.MISSING_KEY, _path(path, key), "missing") from None


def _str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise MalformedError(ProblemCode.BAD_VALUE, path, f"expected a string, not {_kind(value)}")
    return value


def _int(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedError(
            ProblemCode.BAD_VALUE, path, f"expected an integer, not {_kind(value)}"
        )
    return value


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise MalformedError(ProblemCode.BAD_VALUE, path, f"expected a boolean, not {_kind(value)}")
    return value


def _time(value: object, path: str) -> datetime:
    try:
        return parse_timestamp(value)
    except InvalidInput as e:
        raise MalformedError(ProblemCode.BAD_TIMESTAMP, path, str(e)) from None


def _array(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedError(ProblemCode.BAD_VALUE, path, f"expected an array, not {_kind(value)}")
    return value


def _extra(obj: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in known}


def _construct(path: str, build: Callable[[], _T]) -> _T:
    try:
        return build()
    except InvalidInput as e:
        raise MalformedError(ProblemCode.BAD_VALUE, path, str(e)) from None


def _public(build: Callable[[], _T]) -> _T:
    """Run an internal reader; turn its MalformedError into the public CorruptState."""
    try:
        return build()
    except MalformedError as e:
        raise CorruptState(str(e), field=e.field) from None


# -- construction helpers: raise InvalidInput -----------------------------------


def _check_extra(extra: Mapping[str, Any], known: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(extra, Mapping):
        raise InvalidInput(f"{what}.extra must be a mapping")
    clash = sorted(known.intersection(extra))
    if clash:
        raise InvalidInput(f"{what}.extra must not hold the known keys {clash}")
    out: dict[str, Any] = normalize_json(extra, what=f"{what}.extra")
    return out


def _check_type(value: object, kind: type, what: str) -> None:
    if isinstance(value, bool) and kind is int:
        raise InvalidInput(f"{what} must be an int, not bool")
    if not isinstance(value, kind):
        raise InvalidInput(f"{what} must be {kind.__name__}, not {type(value).__name__}")


def _check_text(value: str, what: str, *, max_bytes: int = MAX_TEXT_BYTES) -> None:
    size = utf8_len(value)
    if size > max_bytes:
        raise InvalidInput(f"{what} is {size} bytes; the maximum is {max_bytes}")


def _check_feedback_id(value: object, what: str = "feedback id") -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, not {type(value).__name__}")
    if not value or len(value) > MAX_FEEDBACK_ID_LENGTH or not value.isprintable():
        raise InvalidInput(
            f"{what} must be 1 to {MAX_FEEDBACK_ID_LENGTH} printable characters, "
            f"not {value[:140]!r}"
        )
    return value


def _json_once(record: IterationRecord | ErrorRecord) -> str:
    """A record's compact JSON, computed on first use and kept on the (frozen) record."""
    if record._json is None:
        _set(record, "_json", dumps(record.to_dict()))
    assert record._json is not None
    return record._json


def _set(obj: object, name: str, value: object) -> None:
    # Normalising a frozen dataclass in __post_init__ is the documented way.
    object.__setattr__(obj, name, value)


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
    _json: str | None = field(default=None, init=False, repr=False, compare=False)

    _KEYS = frozenset({"iteration", "started_at", "note"})

    def __post_init__(self) -> None:
        _check_type(self.iteration, int, "iteration")
        _set(self, "started_at", _utc(self.started_at, "started_at"))
        _check_type(self.note, str, "note")
        _set(self, "extra", _check_extra(self.extra, self._KEYS, "iteration record"))

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
        return _json_once(self)

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
    _json: tuple[str, int] | None = field(default=None, init=False, repr=False, compare=False)

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
        _set(self, "timestamp", _utc(self.timestamp, "timestamp"))
        _check_type(self.author, str, "author")
        _set(self, "severity", parse_severity(self.severity, strict=False))
        _set(self, "issue_type", parse_issue_type(self.issue_type, strict=False))
        _check_type(self.description, str, "description")
        _check_type(self.resolved, bool, "resolved")
        if self.resolved_at is not None:
            _set(self, "resolved_at", _utc(self.resolved_at, "resolved_at"))
        _set(self, "extra", _check_extra(self.extra, self._KEYS, "feedback entry"))

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
            _set(self, "_json", (text, utf8_len(text)))
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
    _json: str | None = field(default=None, init=False, repr=False, compare=False)

    _KEYS = frozenset({"timestamp", "message"})

    def __post_init__(self) -> None:
        if self.timestamp is not None:
            _set(self, "timestamp", _utc(self.timestamp, "timestamp"))
        _check_type(self.message, str, "message")
        _set(self, "extra", _check_extra(self.extra, self._KEYS, "error record"))

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
        return _json_once(self)

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


@dataclass(frozen=True, slots=True)
class SegmentRef:
    """A history segment: an immutable ConfigMap holding records of one ``kind``.

    It holds the records of its kind (feedback entries, iteration records or
    error records) with sequence numbers ``first_seq`` to
    ``first_seq + count - 1`` (sequence numbers count each kind's records from
    0, oldest first). It is never rewritten: a reader may cache its content by
    ``(name, uid)``. (Older remstates wrote a ``rev`` key here; it is kept as an
    unknown key.)
    ``id_filter`` holds the IDs of its records (feedback IDs, increment keys,
    error IDs); ``None`` (an index written before filters) means "maybe any ID".
    """

    n: int
    name: str
    first_seq: int
    count: int
    uid: str
    #: Keys written by a newer remstate, kept and written back as they were.
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: What the segment holds: feedback (the default, and all older indexes knew).
    kind: str = KIND_FEEDBACK
    #: A Bloom filter of the IDs it holds; ``None``: unknown, read the segment.
    #: Derived from the segment's content, so not part of equality.
    id_filter: IdFilter | None = field(default=None, compare=False)

    # "ids" is not among them: a filter in a form we do not know stays in extra.
    _KEYS = frozenset({"n", "name", "first_seq", "count", "uid", "kind"})

    def __post_init__(self) -> None:
        for name in ("n", "first_seq", "count"):
            _check_type(getattr(self, name), int, f"segment {name}")
            if getattr(self, name) < 0:
                raise InvalidInput(f"segment {name} must not be negative")
        _check_type(self.name, str, "segment name")
        _check_type(self.uid, str, "segment uid")
        _check_type(self.kind, str, "segment kind")
        _set(self, "extra", _check_extra(self.extra, self._KEYS, "segment reference"))
        if self.id_filter is not None:
            _check_type(self.id_filter, IdFilter, "segment id_filter")
            if "ids" in self.extra:
                raise InvalidInput("a segment reference has one ID filter, not two")

    @property
    def end_seq(self) -> int:
        """One past the last sequence number held."""
        return self.first_seq + self.count

    @property
    def cache_key(self) -> tuple[str, str]:
        """``(name, uid)``: the same key means the same content (segments are immutable)."""
        return (self.name, self.uid)

    def to_dict(self) -> dict[str, Any]:
        """The index's form; ``kind`` only when not feedback, so that older indexes
        read back unchanged."""
        out: dict[str, Any] = {
            "n": self.n,
            "name": self.name,
            "first_seq": self.first_seq,
            "count": self.count,
            "uid": self.uid,
        }
        if self.kind != KIND_FEEDBACK:
            out["kind"] = self.kind
        if self.id_filter is not None:
            out["ids"] = self.id_filter.to_dict()
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegmentRef:
        """Read the form :meth:`to_dict` writes.

        Raises:
            CorruptState: a field is missing or of the wrong type.
        """
        return _public(lambda: cls._read(data, "segments"))

    @classmethod
    def _read(cls, value: object, path: str) -> SegmentRef:
        obj = _object(value, path)
        n = _int(_get(obj, "n", path), _path(path, "n"))
        name = _str(_get(obj, "name", path), _path(path, "name"))
        first_seq = _int(_get(obj, "first_seq", path), _path(path, "first_seq"))
        count = _int(_get(obj, "count", path), _path(path, "count"))
        uid = _str(obj.get("uid", ""), _path(path, "uid"))
        kind = _str(obj.get("kind", KIND_FEEDBACK), _path(path, "kind"))
        extra = _extra(obj, cls._KEYS)
        id_filter = IdFilter.from_stored(extra.get("ids"))
        if id_filter is not None:
            del extra["ids"]
        return _construct(
            path,
            lambda: cls(n, name, first_seq, count, uid, extra, kind=kind, id_filter=id_filter),
        )


@dataclass(frozen=True, slots=True)
class HistoryIndex:
    """Where the history that left the head went: its segments, and the IDs moved last.

    It changes only when a segment is added, so it is a value of its own that
    an append carries over untouched, with its encoding computed once.
    """

    segments: tuple[SegmentRef, ...] = ()
    #: IDs most recently moved from the head into segments, oldest first, mapped
    #: to their segment number: a retried append is recognised at constant cost.
    recent_moved_ids: Mapping[str, int] = field(default_factory=dict)
    #: Keys written by a newer remstate, kept and written back as they were.
    extra: Mapping[str, Any] = field(default_factory=dict)
    _encoded: tuple[int, str] | None = field(default=None, init=False, repr=False, compare=False)
    # Each kind's segments, computed once: every lookup and total asks for them.
    _by_kind: dict[str, tuple[SegmentRef, ...]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    _KEYS = frozenset({"segments", "recent_moved"})

    def __post_init__(self) -> None:
        _set(self, "segments", _tuple_of(self.segments, SegmentRef, "segments"))
        moved = dict(self.recent_moved_ids)
        for entry_id, n in moved.items():
            _check_type(entry_id, str, "recent_moved_ids key")
            _check_type(n, int, "recent_moved_ids value")
        _set(self, "recent_moved_ids", moved)
        _set(self, "extra", _check_extra(self.extra, self._KEYS, "history index"))

    def __bool__(self) -> bool:
        return bool(self.segments or self.recent_moved_ids or self.extra)

    def segments_of(self, kind: str) -> tuple[SegmentRef, ...]:
        """The segments holding records of ``kind``, oldest first."""
        if self._by_kind is None:
            by_kind: dict[str, list[SegmentRef]] = {}
            for segment in self.segments:
                by_kind.setdefault(segment.kind, []).append(segment)
            _set(self, "_by_kind", {k: tuple(v) for k, v in by_kind.items()})
        assert self._by_kind is not None
        return self._by_kind.get(kind, ())

    def to_dict(self) -> dict[str, Any]:
        """The ``history_index`` document: IDs are grouped by segment, for compactness."""
        grouped: dict[str, list[str]] = {}
        for entry_id, n in self.recent_moved_ids.items():
            grouped.setdefault(str(n), []).append(entry_id)
        out = {"segments": [s.to_dict() for s in self.segments], "recent_moved": grouped}
        out.update(self.extra)
        return out

    def encoded(self, compress_over: int) -> str:
        """The ConfigMap value of :meth:`to_dict`, computed once per index."""
        if self._encoded is None or self._encoded[0] != compress_over:
            text = compress_json_text(dumps(self.to_dict()), compress_over=compress_over)
            _set(self, "_encoded", (compress_over, text))
        assert self._encoded is not None
        return self._encoded[1]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HistoryIndex:
        """Read the form :meth:`to_dict` writes (the ``history_index`` document).

        Raises:
            CorruptState: a field is missing or of the wrong type.
        """
        return _public(lambda: cls._read(data, "history_index"))

    @classmethod
    def _read(cls, value: object, path: str) -> HistoryIndex:
        obj = _object(value, path)
        seg_path = _path(path, "segments")
        segments = tuple(
            SegmentRef._read(v, _path(seg_path, i))
            for i, v in enumerate(_array(obj.get("segments", []), seg_path))
        )
        moved_path = _path(path, "recent_moved")
        moved: dict[str, int] = {}
        for n, ids in _object(obj.get("recent_moved", {}), moved_path).items():
            group = _path(moved_path, n[:40])
            if not SEGMENT_NUMBER.fullmatch(n):
                raise MalformedError(ProblemCode.BAD_VALUE, group, "not a segment number")
            for i, entry_id in enumerate(_array(ids, group)):
                moved[_str(entry_id, _path(group, i))] = int(n)
        extra = _extra(obj, cls._KEYS)
        return _construct(path, lambda: cls(segments, moved, extra))


class Resolutions(Mapping[str, datetime | None]):
    """Resolutions of archived feedback: entry ID -> resolved_at, ``None`` for unresolved.

    An immutable mapping, validated on construction (IDs are valid feedback
    IDs, times are aware and kept in UTC). It equals any mapping with the same
    items. Its encoding is computed once: the head carries it over from write
    to write, and re-encoding a full one costs more than an append.
    """

    __slots__ = ("_encoded", "_items")

    def __init__(
        self, items: Mapping[str, datetime | None] | Iterable[tuple[str, datetime | None]] = ()
    ) -> None:
        """Raises: InvalidInput: an ID that is not a valid feedback ID, or a bad time."""
        pairs = items.items() if isinstance(items, Mapping) else items
        out: dict[str, datetime | None] = {}
        for entry_id, resolved_at in pairs:
            _check_feedback_id(entry_id, "archived resolution id")
            out[entry_id] = None if resolved_at is None else _utc(resolved_at, "resolved_at")
        self._items = out
        self._encoded: tuple[int, str] | None = None

    @classmethod
    def of(cls, items: Mapping[str, datetime | None]) -> Resolutions:
        """``items`` itself if it is a :class:`Resolutions`, else a validated copy."""
        return items if isinstance(items, Resolutions) else cls(items)

    def __getitem__(self, entry_id: str) -> datetime | None:
        return self._items[entry_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._items

    def __repr__(self) -> str:
        return f"Resolutions({self._items!r})"

    def to_dict(self) -> dict[str, str | None]:
        """The stored form: ID -> RFC 3339 time, or null."""
        return {k: None if v is None else format_timestamp(v) for k, v in self._items.items()}

    def encoded(self, compress_over: int) -> str:
        """The ConfigMap value of :meth:`to_dict`, computed once per mapping."""
        if self._encoded is None or self._encoded[0] != compress_over:
            text = compress_json_text(dumps(self.to_dict()), compress_over=compress_over)
            self._encoded = (compress_over, text)
        return self._encoded[1]


def read_resolution(entry_id: object, value: object, path: str) -> tuple[str, datetime | None]:
    """Internal: one stored resolution (ID, RFC 3339 or null); raises ``MalformedError``."""
    try:
        _check_feedback_id(entry_id, "archived resolution id")
    except InvalidInput as e:
        raise MalformedError(ProblemCode.BAD_VALUE, path, str(e)) from None
    assert isinstance(entry_id, str)
    if value is None:
        return entry_id, None
    if not isinstance(value, str):
        raise MalformedError(
            ProblemCode.BAD_VALUE,
            path,
            f"resolution of {entry_id!r} must be a timestamp or null, not {_kind(value)}",
        )
    try:
        return entry_id, parse_timestamp(value)
    except InvalidInput as e:
        raise MalformedError(
            ProblemCode.BAD_TIMESTAMP, path, f"resolution of {entry_id!r}: {e}"
        ) from None


def apply_resolutions(
    entries: Sequence[FeedbackEntry], resolutions: Mapping[str, datetime | None]
) -> tuple[FeedbackEntry, ...]:
    """``entries`` with the resolutions laid over them.

    An entry whose ID is in ``resolutions`` gets ``resolved`` and
    ``resolved_at`` from it (``None``: unresolved, no time); every other
    entry, and every entry that already agrees, is the very same object.
    """
    if not resolutions:
        return tuple(entries)
    return tuple(_resolved(entry, resolutions) for entry in entries)


def _resolved(entry: FeedbackEntry, resolutions: Mapping[str, datetime | None]) -> FeedbackEntry:
    if entry.id not in resolutions:
        return entry
    resolved_at = resolutions[entry.id]
    resolved = resolved_at is not None
    if entry.resolved == resolved and entry.resolved_at == resolved_at:
        return entry
    return dataclasses.replace(entry, resolved=resolved, resolved_at=resolved_at)


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
        _set(self, "entries", tuple(self.entries))
        _set(self, "iterations", tuple(self.iterations))
        _set(self, "errors", tuple(self.errors))

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


def _tuple_of(value: Iterable[Any], kind: type, what: str) -> tuple[Any, ...]:
    if isinstance(value, str | bytes | Mapping):
        raise InvalidInput(f"{what} must be a sequence of {kind.__name__}")
    items = tuple(value)
    for item in items:
        if not isinstance(item, kind):
            raise InvalidInput(f"{what} must hold {kind.__name__}, not {type(item).__name__}")
    return items


@dataclass(frozen=True, slots=True)
class TaskState:
    """The whole state of one task, as held in its head object.

    ``feedback_history``, ``iteration_history`` and ``error_messages`` hold
    only the newest records, those still in the head; older ones are in the
    history ``segments`` of their kind. Sequence numbers are implicit: the head
    holds ``first_seq(kind)`` .. ``total(kind) - 1``. An archived entry's
    resolution, when changed after it left the head, is in
    ``archived_resolutions`` and overrides what its segment holds.

    The invariant the manager keeps (and the validator checks, from the head
    alone) is ``iteration == iteration_total``: the records in the head plus
    those its index counts in segments, numbered from 1.
    """

    task_id: str
    iteration: int
    status: Status | str
    last_update: datetime
    iteration_history: tuple[IterationRecord, ...] = ()
    feedback_history: tuple[FeedbackEntry, ...] = ()
    #: The segments holding older feedback, and the IDs moved there last.
    history: HistoryIndex = field(default_factory=HistoryIndex)
    error_messages: tuple[ErrorRecord, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    #: Data keys this remstate does not know, kept and written back as they were.
    extra_data: Mapping[str, str] = field(default_factory=dict)
    #: Resolutions of entries that are in segments: ID -> resolved_at, ``None``
    #: for "marked unresolved". Lay them over segment content with
    #: :func:`apply_resolutions`. Held as a :class:`Resolutions`.
    archived_resolutions: Mapping[str, datetime | None] = field(default_factory=Resolutions)
    #: The version of the object this state was read from (0: migrated on read).
    #: Not part of equality: it says where the state came from, not what it is.
    schema_version: int = field(default=SCHEMA_VERSION, compare=False)

    def __post_init__(self) -> None:
        _check_type(self.task_id, str, "task_id")
        _check_type(self.iteration, int, "iteration")
        if self.iteration < 0:
            raise InvalidInput(f"iteration must not be negative, not {self.iteration}")
        _set(self, "status", parse_status(self.status, strict=False))
        _set(self, "last_update", _utc(self.last_update, "last_update"))
        _set(
            self,
            "iteration_history",
            _tuple_of(self.iteration_history, IterationRecord, "iteration_history"),
        )
        _set(
            self,
            "feedback_history",
            _tuple_of(self.feedback_history, FeedbackEntry, "feedback_history"),
        )
        _check_type(self.history, HistoryIndex, "history")
        _set(self, "error_messages", _tuple_of(self.error_messages, ErrorRecord, "error_messages"))
        if not isinstance(self.metadata, Mapping):
            raise InvalidInput("metadata must be a mapping (a JSON object)")
        _set(self, "metadata", normalize_json(self.metadata, what="metadata"))
        extra_data = dict(self.extra_data)
        for key, text in extra_data.items():
            _check_type(key, str, "extra_data key")
            _check_type(text, str, "extra_data value")
        _set(self, "extra_data", extra_data)
        if not isinstance(self.archived_resolutions, Mapping):
            raise InvalidInput("archived_resolutions must be a mapping of ID to resolved_at")
        _set(self, "archived_resolutions", Resolutions.of(self.archived_resolutions))
        _check_type(self.schema_version, int, "schema_version")

    @classmethod
    def new(
        cls,
        task_id: str,
        *,
        clock: Clock = utc_now,
        status: Status | str = Status.PENDING,
        metadata: Mapping[str, Any] | None = None,
    ) -> TaskState:
        """The state of a task that has just been created: iteration 0, no history.

        Raises:
            InvalidInput: a bad task ID, an unknown status, metadata that is not JSON.
        """
        return cls(
            task_id=validate_task_id(task_id),
            iteration=0,
            status=parse_status(status, strict=True),
            last_update=clock(),
            metadata=metadata or {},
        )

    # -- the history across head and segments ---------------------------------

    @property
    def segments(self) -> tuple[SegmentRef, ...]:
        """The history segments, oldest first."""
        return self.history.segments

    @property
    def recent_moved_ids(self) -> Mapping[str, int]:
        """IDs recently moved into segments, oldest first, to their segment number."""
        return self.history.recent_moved_ids

    def segments_of(self, kind: str) -> tuple[SegmentRef, ...]:
        """The segments holding records of ``kind`` (see :data:`KINDS`), oldest first."""
        return self.history.segments_of(kind)

    def first_seq(self, kind: str) -> int:
        """The sequence number of the oldest record of ``kind`` held in the head."""
        segments = self.segments_of(kind)
        return segments[-1].end_seq if segments else 0

    def held(self, kind: str) -> Records:
        """The records of ``kind`` held in the head, oldest first."""
        if kind == KIND_ITERATIONS:
            return self.iteration_history
        if kind == KIND_ERRORS:
            return self.error_messages
        return self.feedback_history

    def total(self, kind: str) -> int:
        """How many records of ``kind`` the task has, in the head and in segments."""
        return self.first_seq(kind) + len(self.held(kind))

    @property
    def head_first_seq(self) -> int:
        """The sequence number of the oldest feedback entry held in the head."""
        return self.first_seq(KIND_FEEDBACK)

    @property
    def feedback_total(self) -> int:
        """How many feedback entries the task has, in the head and in segments."""
        return self.total(KIND_FEEDBACK)

    @property
    def iteration_total(self) -> int:
        """How many iteration records the task has, in the head and in segments."""
        return self.total(KIND_ITERATIONS)

    @property
    def error_total(self) -> int:
        """How many error records the task has, in the head and in segments."""
        return self.total(KIND_ERRORS)

    @property
    def next_segment_number(self) -> int:
        """The number the next history segment takes (segments of every kind share them)."""
        return max(s.n for s in self.segments) + 1 if self.segments else 1

    def find_feedback(self, entry_id: str) -> FeedbackEntry | None:
        """The entry with this ID if the head holds it."""
        for entry in reversed(self.feedback_history):
            if entry.id == entry_id:
                return entry
        return None

    def moved_to_segment(self, entry_id: str) -> int | None:
        """The segment number an entry was recently moved to, if it was."""
        return self.recent_moved_ids.get(entry_id)

    def with_segment(
        self,
        n: int,
        name: str,
        uid: str,
        count: int,
        *,
        kind: str = KIND_FEEDBACK,
        recent_limit: int = RECENT_MOVED_LIMIT,
    ) -> TaskState:
        """This state with its oldest ``count`` records of ``kind`` moved into segment ``n``.

        The segment joins the index with a filter of the moved records' IDs;
        moved feedback IDs also join ``recent_moved_ids``, which keeps the
        newest ``recent_limit``.

        Raises:
            InvalidInput: ``n`` is not above the last segment's number, ``kind``
                is unknown, or ``count`` is not between 1 and the number of
                records of ``kind`` in the head.
        """
        if kind not in KINDS:
            raise InvalidInput(f"unknown kind of history {kind!r}")
        if n < self.next_segment_number:
            raise InvalidInput(
                f"segment number {n} is not above the last one ({self.next_segment_number - 1})"
            )
        held = self.held(kind)
        if not 0 < count <= len(held):
            raise InvalidInput(f"segment {n} holds {count} {kind}; the head has {len(held)}")
        moved = held[:count]
        ids = [i for i in map(record_id, moved) if i is not None]
        segment = SegmentRef(
            n,
            name,
            self.first_seq(kind),
            count,
            uid,
            kind=kind,
            id_filter=IdFilter.of(ids),
        )
        recent = dict(self.recent_moved_ids)
        if kind == KIND_FEEDBACK:
            for entry_id in ids:
                recent.pop(entry_id, None)  # re-insert: the newest go last
                recent[entry_id] = n
            if len(recent) > recent_limit:
                recent = dict(itertools.islice(recent.items(), len(recent) - recent_limit, None))
        history = HistoryIndex((*self.segments, segment), recent, self.history.extra)
        if kind == KIND_ITERATIONS:
            return dataclasses.replace(
                self, iteration_history=self.iteration_history[count:], history=history
            )
        if kind == KIND_ERRORS:
            return dataclasses.replace(
                self, error_messages=self.error_messages[count:], history=history
            )
        return dataclasses.replace(
            self, feedback_history=self.feedback_history[count:], history=history
        )

    def filter_page_for(self, n: int) -> SegmentRef | None:
        """The filter page holding segment ``n``'s ID filter, if one does."""
        pages = self.segments_of(KIND_ID_FILTERS)
        i = bisect.bisect_right([p.first_seq for p in pages], n) - 1
        if i >= 0 and n < pages[i].end_seq:
            return pages[i]
        return None

    def movable_filters(self) -> list[SegmentRef]:
        """The segments whose inline ID filter a new filter page would take, oldest first:
        those numbered from the end of the last filter page's range on."""
        pages = self.segments_of(KIND_ID_FILTERS)
        first = pages[-1].end_seq if pages else 0
        return [s for s in self.segments if s.id_filter is not None and s.n >= first]

    def with_filter_page(self, page: SegmentRef) -> TaskState:
        """This state once the inline ID filters of the segments ``page`` covers (numbered
        ``page.first_seq`` .. ``page.end_seq - 1``) moved into that filter page.

        Raises:
            InvalidInput: ``page`` is not a filter page, its number is not above
                the last segment's, or its range does not follow the last page's.
        """
        if page.kind != KIND_ID_FILTERS:
            raise InvalidInput(f"segment {page.n} is not a filter page")
        if page.n < self.next_segment_number:
            raise InvalidInput(
                f"segment number {page.n} is not above the last one "
                f"({self.next_segment_number - 1})"
            )
        pages = self.segments_of(KIND_ID_FILTERS)
        if pages and page.first_seq != pages[-1].end_seq:
            raise InvalidInput(
                f"filter page {page.n} starts at {page.first_seq}, not at {pages[-1].end_seq}"
            )
        segments = tuple(
            dataclasses.replace(s, id_filter=None) if page.first_seq <= s.n < page.end_seq else s
            for s in self.segments
        )
        history = HistoryIndex((*segments, page), self.recent_moved_ids, self.history.extra)
        return dataclasses.replace(self, history=history)

    def with_filters(self, filters: Mapping[int, IdFilter]) -> TaskState:
        """This state with the ID filters of the segments numbered as the keys set.

        For indexes written before filters: the manager reads such a segment
        once, and its filter then spares every later lookup that read.
        """
        if not filters:
            return self
        segments = tuple(
            dataclasses.replace(
                s,
                id_filter=filters[s.n],
                extra={k: v for k, v in s.extra.items() if k != "ids"},
            )
            if s.n in filters
            else s
            for s in self.segments
        )
        history = HistoryIndex(segments, self.recent_moved_ids, self.history.extra)
        return dataclasses.replace(self, history=history)

    def segment_for_seq(self, seq: int, kind: str = KIND_FEEDBACK) -> SegmentRef | None:
        """The segment holding sequence number ``seq`` of ``kind``, if a segment does."""
        segments = self.segments_of(kind)
        i = bisect.bisect_right([s.first_seq for s in segments], seq) - 1
        if i >= 0 and seq < segments[i].end_seq:
            return segments[i]
        return None

    # -- plain JSON form (for the CLI and HTTP API) ---------------------------

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON, plus the derived totals of each kind of history."""
        return {
            "schema_version": self.schema_version,
            "task_id": self.task_id,
            "iteration": self.iteration,
            "status": str(self.status),
            "last_update": format_timestamp(self.last_update),
            "iteration_history": [r.to_dict() for r in self.iteration_history],
            "feedback_history": [e.to_dict() for e in self.feedback_history],
            "feedback_total": self.feedback_total,
            "iteration_total": self.iteration_total,
            "error_total": self.error_total,
            "segments": [s.to_dict() for s in self.segments],
            "recent_moved_ids": dict(self.recent_moved_ids),
            "error_messages": [r.to_dict() for r in self.error_messages],
            "metadata": dict(self.metadata),
            "extra_data": dict(self.extra_data),
            "archived_resolutions": Resolutions.of(self.archived_resolutions).to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskState:
        """Read the form :meth:`to_dict` writes (the totals are derived, not read).

        Raises:
            CorruptState: a field is missing or of the wrong type.
        """
        return _public(lambda: cls._read(data))

    @classmethod
    def _read(cls, value: object) -> TaskState:
        obj = _object(value, "")
        task_id = _str(_get(obj, "task_id", ""), "task_id")
        iteration = _int(_get(obj, "iteration", ""), "iteration")
        status = _str(_get(obj, "status", ""), "status")
        last_update = _time(_get(obj, "last_update", ""), "last_update")

        def items(key: str) -> list[Any]:
            return _array(obj.get(key, []), key)

        iterations = tuple(
            IterationRecord._read(v, _path("iteration_history", i))
            for i, v in enumerate(items("iteration_history"))
        )
        feedback = tuple(
            FeedbackEntry._read(v, _path("feedback_history", i))
            for i, v in enumerate(items("feedback_history"))
        )
        segments = tuple(
            SegmentRef._read(v, _path("segments", i)) for i, v in enumerate(items("segments"))
        )
        errors = tuple(
            ErrorRecord._read(v, _path("error_messages", i))
            for i, v in enumerate(items("error_messages"))
        )
        moved = _object(obj.get("recent_moved_ids", {}), "recent_moved_ids")
        metadata = _object(obj.get("metadata", {}), "metadata")
        extra_data = _object(obj.get("extra_data", {}), "extra_data")
        resolutions = dict(
            read_resolution(k, v, "archived_resolutions")
            for k, v in _object(obj.get("archived_resolutions", {}), "archived_resolutions").items()
        )
        version = _int(obj.get("schema_version", SCHEMA_VERSION), "schema_version")
        return _construct(
            "",
            lambda: cls(
                task_id=task_id,
                iteration=iteration,
                status=status,
                last_update=last_update,
                iteration_history=iterations,
                feedback_history=feedback,
                history=HistoryIndex(segments, moved),
                error_messages=errors,
                metadata=metadata,
                extra_data=extra_data,
                archived_resolutions=resolutions,
                schema_version=version,
            ),
        )
