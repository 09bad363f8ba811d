"""The scalar values of a task's state: limits, kinds, enums and timestamps.

- **Nothing written by a newer remstate is lost on read.** An enum value we
  do not know stays a plain ``str``; only *new input* (``parse_*(strict=True)``)
  must use values we know.
- **Round trips are exact.** Timestamps are normalised to UTC (naive ones are
  refused) and written in one RFC 3339 form, so reading back gives the same value.

Pure code, no I/O.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from remstate.errors import InvalidInput

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
    "SEGMENT_NUMBER",
    "Clock",
    "IssueType",
    "Severity",
    "Status",
    "format_timestamp",
    "parse_issue_type",
    "parse_severity",
    "parse_status",
    "parse_timestamp",
    "utc_now",
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
