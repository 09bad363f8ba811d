"""Object names, label values and the well-known label and annotation keys.

A task ID is whatever the caller uses: ``42``, ``PROJ-17``, ``org/repo#5``,
a sentence in Japanese. Object names must be DNS-1123 subdomains and label
values must be at most 63 characters, so an ID that does not fit is mapped,
deterministically:

- an ID that is already a valid name part (``[a-z0-9-]``, alphanumeric at
  both ends, no ``--``, short enough) is used as it is: ``task-42-state``;
- any other ID becomes ``{slug}--{hash}``: a readable slug, cut to 40
  characters (``x`` when nothing readable is left), and 12 characters of
  base32(sha256(id)).

An ID used as it is never contains ``--`` and a mapped one always does, so an
ID can never take another's name; two mapped IDs meet only if their sha256
digests share 60 bits. The original ID is kept in an annotation and in
``data.task_id``; the name is never parsed back.

Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata
from collections.abc import Iterable

from remstate.errors import InvalidInput

__all__ = [
    "ANNOTATION_ITERATION",
    "ANNOTATION_LAST_UPDATE",
    "ANNOTATION_MAX_ITERATIONS",
    "ANNOTATION_SCHEMA_VERSION",
    "ANNOTATION_SEGMENTS",
    "ANNOTATION_SNAPSHOT_KEPT",
    "ANNOTATION_SOFT_DELETED_AT",
    "ANNOTATION_TASK_ID",
    "ANNOTATION_TTL",
    "LABEL_LIFECYCLE",
    "LABEL_MANAGED_BY",
    "LABEL_ROLE",
    "LABEL_STATUS",
    "LABEL_TASK",
    "LIFECYCLE_ACTIVE",
    "LIFECYCLE_SOFT_DELETED",
    "MANAGED_BY",
    "MAX_SEGMENT_NUMBER",
    "MAX_TASK_ID_LENGTH",
    "ROLE_SEGMENT",
    "ROLE_SNAPSHOT",
    "ROLE_STATE",
    "format_ranges",
    "label_safe",
    "label_value",
    "managed_selector",
    "object_name",
    "parse_ranges",
    "segment_name",
    "snapshot_name",
    "task_selector",
    "validate_task_id",
]

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "remstate"
LABEL_TASK = "remstate.io/task"
LABEL_STATUS = "remstate.io/status"
LABEL_LIFECYCLE = "remstate.io/lifecycle"
LIFECYCLE_ACTIVE = "active"
LIFECYCLE_SOFT_DELETED = "soft-deleted"
LABEL_ROLE = "remstate.io/role"
ROLE_STATE = "state"
ROLE_SEGMENT = "history-segment"
#: A copy of a head taken before a critical operation (repair, restore, purge...).
ROLE_SNAPSHOT = "snapshot"

ANNOTATION_TASK_ID = "remstate.io/task-id"
ANNOTATION_LAST_UPDATE = "remstate.io/last-update"
ANNOTATION_SCHEMA_VERSION = "remstate.io/schema-version"
ANNOTATION_SOFT_DELETED_AT = "remstate.io/soft-deleted-at"
#: On a snapshot that outlives its head on purpose (``keep_snapshot`` at a purge):
#: it has no owner, is never an orphan, and no later snapshot pushes it out.
ANNOTATION_SNAPSHOT_KEPT = "remstate.io/snapshot-kept"
#: The task's own retention (per-task policy), in seconds; absent: the cleanup's default.
ANNOTATION_TTL = "remstate.io/ttl"
#: The task's stored iteration limit (per-task policy), for metadata-only readers.
ANNOTATION_MAX_ITERATIONS = "remstate.io/max-iterations"
#: The task's iteration counter, kept current on every write, so that ``ls`` (and
#: any other listing) summarises a task from its head's metadata alone.
ANNOTATION_ITERATION = "remstate.io/iteration"
#: The segment numbers the head refers to, as ranges ("0-41,43"), so that a
#: metadata-only scan can tell an orphan segment without reading the head's data.
ANNOTATION_SEGMENTS = "remstate.io/segments"
#: Set on every write to the id of the attempt that made it, so that an
#: operation whose response was lost recognises its own committed write.
ANNOTATION_WRITE_ID = "remstate.io/write-id"

MAX_TASK_ID_LENGTH = 1024
#: Segment numbers have at most 6 digits: ``-h999999`` is the 8 characters kept free.
MAX_SEGMENT_NUMBER = 999_999

_PREFIX = "task-"
_STATE_SUFFIX = "-state"
_MAX_NAME = 253
_SEGMENT_ROOM = len(f"-h{MAX_SEGMENT_NUMBER}")
_MAX_AS_IS = _MAX_NAME - _SEGMENT_ROOM - len(_PREFIX) - len(_STATE_SUFFIX)
_MAX_LABEL = 63
_SLUG_LENGTH = 40
_HASH_LENGTH = 12

_NAME_PART = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_RANGE = re.compile(r"(\d{1,6})(?:-(\d{1,6}))?")


def validate_task_id(task_id: str) -> str:
    """Return ``task_id`` if remstate accepts it as a task ID.

    Raises:
        InvalidInput: it is empty, longer than 1024 characters, not a string,
            or holds a control character or a lone surrogate.
    """
    if not isinstance(task_id, str):
        raise InvalidInput(f"task ID must be a string, not {type(task_id).__name__}")
    if not task_id:
        raise InvalidInput("task ID must not be empty")
    if len(task_id) > MAX_TASK_ID_LENGTH:
        raise InvalidInput(
            f"task ID is {len(task_id)} characters long; the maximum is {MAX_TASK_ID_LENGTH}"
        )
    for ch in task_id:
        category = unicodedata.category(ch)
        if category == "Cc":
            raise InvalidInput(f"task ID must not contain control characters ({ch!r})")
        if category == "Cs":
            raise InvalidInput("task ID must be valid Unicode (it holds a lone surrogate)")
    return task_id


def _hash(value: str) -> str:
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:_HASH_LENGTH]


def _mapped(value: str) -> str:
    slug = _NOT_SLUG.sub("-", value.lower()).strip("-")[:_SLUG_LENGTH].strip("-")
    return f"{slug or 'x'}--{_hash(value)}"


def _name_part(task_id: str) -> str:
    validate_task_id(task_id)
    if len(task_id) <= _MAX_AS_IS and "--" not in task_id and _NAME_PART.fullmatch(task_id):
        return task_id
    return _mapped(task_id)


def object_name(task_id: str) -> str:
    """The name of the task's state ConfigMap: ``task-{id}-state``.

    Raises:
        InvalidInput: the task ID is not acceptable (see :func:`validate_task_id`).
    """
    return f"{_PREFIX}{_name_part(task_id)}{_STATE_SUFFIX}"


def segment_name(task_id: str, n: int) -> str:
    """The name of the task's history segment number ``n``: ``task-{id}-state-h{n}``.

    Raises:
        InvalidInput: bad task ID, or ``n`` outside 0..999999.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_SEGMENT_NUMBER:
        raise InvalidInput(f"segment number must be an int in 0..{MAX_SEGMENT_NUMBER}, not {n!r}")
    return f"{object_name(task_id)}-h{n}"


def snapshot_name(task_id: str, n: int) -> str:
    """The name of the task's snapshot number ``n``: ``task-{id}-state-s{n}``.

    Raises:
        InvalidInput: bad task ID, or ``n`` outside 0..999999.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_SEGMENT_NUMBER:
        raise InvalidInput(f"snapshot number must be an int in 0..{MAX_SEGMENT_NUMBER}, not {n!r}")
    return f"{object_name(task_id)}-s{n}"


def format_ranges(numbers: Iterable[int]) -> str:
    """Segment numbers as ranges, for :data:`ANNOTATION_SEGMENTS`: ``{0, 1, 2, 5}`` -> ``0-2,5``."""
    parts: list[str] = []
    ordered = sorted(set(numbers))
    start = 0
    for i, n in enumerate(ordered):
        if i + 1 == len(ordered) or ordered[i + 1] != n + 1:
            first = ordered[start]
            parts.append(str(n) if first == n else f"{first}-{n}")
            start = i + 1
    return ",".join(parts)


def parse_ranges(text: str) -> frozenset[int]:
    """The numbers :func:`format_ranges` wrote.

    Raises:
        InvalidInput: not such ranges, or a number outside 0..999999.
    """
    numbers: set[int] = set()
    for part in text.split(",") if text else ():
        match = _RANGE.fullmatch(part)
        if match is None:
            raise InvalidInput(f"not a range of segment numbers: {part!r}")
        first = int(match[1])
        last = first if match[2] is None else int(match[2])
        if not first <= last <= MAX_SEGMENT_NUMBER:
            raise InvalidInput(f"not a range of segment numbers: {part!r}")
        numbers.update(range(first, last + 1))
    return frozenset(numbers)


def label_safe(value: str) -> str:
    """A valid label value that stands for ``value``; the same mapping as names.

    Used for values read back from storage (an unknown status, say), so it
    accepts any string; the empty string stays empty, which labels allow.
    """
    if not value:
        return ""
    if len(value) <= _MAX_LABEL and "--" not in value and _LABEL_VALUE.fullmatch(value):
        return value
    return _mapped(value)


def label_value(task_id: str) -> str:
    """The task ID in label-safe form, for the ``remstate.io/task`` label.

    Raises:
        InvalidInput: the task ID is not acceptable (see :func:`validate_task_id`).
    """
    return label_safe(validate_task_id(task_id))


def task_selector(task_id: str, *, role: str | None = None) -> str:
    """A label selector for the task's objects (state and segments, or one ``role``)."""
    selector = f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_TASK}={label_value(task_id)}"
    return selector if role is None else f"{selector},{LABEL_ROLE}={role}"


def managed_selector(
    *, role: str | None = None, lifecycle: str | None = None, status: str | None = None
) -> str:
    """A label selector for remstate's objects, optionally of one role, lifecycle, status."""
    parts = [f"{LABEL_MANAGED_BY}={MANAGED_BY}"]
    if role is not None:
        parts.append(f"{LABEL_ROLE}={role}")
    if lifecycle is not None:
        parts.append(f"{LABEL_LIFECYCLE}={lifecycle}")
    if status is not None:
        parts.append(f"{LABEL_STATUS}={label_safe(status)}")
    return ",".join(parts)
