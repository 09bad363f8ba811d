"""The ConfigMap layout of a task's state (schema version 1), and of its history segments.

The head object ``task-{id}-state`` holds, as ``data``::

    schema_version     "1"
    task_id            the original ID, verbatim
    iteration          decimal integer
    status             verbatim (a newer remstate's status is kept as it is)
    last_update        RFC 3339, UTC, "Z"
    iteration_history  JSON array of {iteration, started_at, note?}
    feedback_history   JSON array of {id, timestamp, author, severity, issue_type,
                       description, resolved, resolved_at?}: the newest entries only
    error_messages     JSON array of {timestamp?, message}
    metadata           JSON object
    history_index      only when segments exist: JSON object
                       {"segments": [{n, name, first_seq, count, uid, kind?, ids?}],
                        "recent_moved": {"<n>": [IDs moved into segment n, oldest first]}}
                       (``kind`` only when not "feedback": "iterations" or "errors";
                       ``ids``: a Bloom filter of the IDs the segment holds, see
                       ``idfilter``; without one, the segment may hold any ID)
    feedback_resolutions
                       only when not empty: JSON object {"<entry ID>": RFC 3339 | null},
                       resolutions of entries that are in segments, which override
                       what the segments hold (null: marked unresolved)

There is no stored total: the number of entries is the last segment's
``first_seq + count`` plus the head's entries. A stored total would change on
every append and force the whole index (up to 4096 IDs) to be re-encoded and
re-compressed on every write; without one, the index changes only when a
segment is added, and is encoded once.

The JSON values are plain when small and ``gzip+base64:`` when large (see
``encoding``). A key this version does not know is kept and written back.

A history segment ``task-{id}-state-h{n}`` is written once and never changes;
resolutions of its entries stay in the head's ``feedback_resolutions``, which
readers lay over its entries::

    schema_version, task_id, segment (n), first_seq, count, and one of
    feedback_history, iteration_history, error_messages (its kind)

A filter page (a segment of kind ``id-filters``) holds the ID filters of the
segments numbered ``first_seq`` .. ``first_seq + count - 1``, taken out of the
head's index so that the head stays small however long the history grows::

    schema_version, task_id, segment (n), first_seq, count,
    id_filters: {"<segment n>": {"k": ..., "bloom": ...}}

Each kind (feedback, iterations, errors) has its own sequence numbers; the
iteration counter equals the iteration records in the head plus the ``count``
of the index's iteration segments, so the invariant is checked from the head.

Reading is tolerant: a missing JSON key reads as empty, and a state with no
``schema_version`` is version 0 (the original sketch) and is migrated on read.
A field that cannot be read raises ``CorruptState`` naming it; the validator
(``validate_object``) reports every problem as data and never raises. Whatever
the stored bytes (JSON nested too deeply to decode, numbers too long to
convert...), decoding raises only remstate's errors.

Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from remstate.errors import CorruptState, InvalidInput, RemstateError, UnsupportedSchemaVersion
from remstate.schema.encoding import (
    COMPRESS_OVER,
    MAX_DATA_BYTES,
    compress_json_text,
    decode_text,
    decode_value,
    encode_json,
    normalize_json,
    value_bytes,
)
from remstate.schema.idfilter import IdFilter
from remstate.schema.index import (
    HistoryIndex,
    Resolutions,
    SegmentRef,
    read_resolution,
)
from remstate.schema.naming import (
    ANNOTATION_LAST_UPDATE,
    ANNOTATION_SCHEMA_VERSION,
    ANNOTATION_SOFT_DELETED_AT,
    ANNOTATION_TASK_ID,
    LABEL_LIFECYCLE,
    LABEL_MANAGED_BY,
    LABEL_ROLE,
    LABEL_STATUS,
    LABEL_TASK,
    LIFECYCLE_ACTIVE,
    LIFECYCLE_SOFT_DELETED,
    MANAGED_BY,
    ROLE_SEGMENT,
    ROLE_STATE,
    label_safe,
    object_name,
    segment_name,
)
from remstate.schema.problems import MalformedError, Problem, ProblemCode
from remstate.schema.records import (
    ErrorRecord,
    FeedbackEntry,
    HistorySegment,
    IterationRecord,
    record_id,
)
from remstate.schema.state import (
    TaskState,
)
from remstate.schema.values import (
    KIND_ERRORS,
    KIND_FEEDBACK,
    KIND_ID_FILTERS,
    KIND_ITERATIONS,
    SCHEMA_VERSION,
    format_timestamp,
    parse_timestamp,
)
from remstate.store.base import OwnerReference, StoredObject

__all__ = [
    "DATA_KEYS",
    "FILTER_PAGE_BYTES",
    "KEY_FEEDBACK_RESOLUTIONS",
    "KEY_HISTORY_INDEX",
    "MIGRATED_NOTE",
    "SEGMENT_DATA_KEYS",
    "EncodedObject",
    "StateTooLarge",
    "decode_filter_page",
    "decode_segment",
    "decode_state",
    "encode_records_segment",
    "encode_segment",
    "encode_state",
    "filter_page_object",
    "last_update_of",
    "owner_reference",
    "salvage_state",
    "segment_metadata",
    "segment_object",
    "segment_ref",
    "soft_deleted_at",
    "state_object",
    "validate_object",
    "validate_segment",
]

#: The data keys of a head object, in the order they are written.
DATA_KEYS = (
    "schema_version",
    "task_id",
    "iteration",
    "status",
    "last_update",
    "iteration_history",
    "feedback_history",
    "error_messages",
    "metadata",
)
#: Present only when the task has history segments.
KEY_HISTORY_INDEX = "history_index"
#: Present only when entries in segments were resolved or unresolved since they moved.
KEY_FEEDBACK_RESOLUTIONS = "feedback_resolutions"
#: The data key of each kind's records, in the head and in segments.
HISTORY_KEYS = {
    KIND_FEEDBACK: "feedback_history",
    KIND_ITERATIONS: "iteration_history",
    KIND_ERRORS: "error_messages",
}
#: The data keys of a (feedback) history segment.
SEGMENT_DATA_KEYS = (
    "schema_version",
    "task_id",
    "segment",
    "first_seq",
    "count",
    "feedback_history",
)

#: The note of the iteration records made up when migrating a version 0 state,
#: which counted iterations but did not record them.
MIGRATED_NOTE = "reconstructed from a schema version 0 state: start time unknown"
# A corrupt counter must not make us build millions of records.
_MAX_RECONSTRUCTED = 1000

_KNOWN_KEYS = frozenset((*DATA_KEYS, KEY_HISTORY_INDEX, KEY_FEEDBACK_RESOLUTIONS))
# 18 digits at most: int() of a longer string is slow, or refused (4300 digits).
_DIGITS = re.compile(r"[0-9]{1,18}")
_T = TypeVar("_T")


class StateTooLarge(InvalidInput):
    """The encoded object would exceed the API server's 1 MiB limit on data.

    Feedback moves to history segments (see ``plan_compaction``); this is
    raised when what cannot move (metadata, error messages...) is too large.
    """

    def __init__(self, name: str, size: int, limit: int) -> None:
        super().__init__(
            f"{name} would hold {size} bytes of data; the limit is {limit} "
            "(metadata, error messages or an entry are too large)"
        )
        self.name = name
        self.size = size
        self.limit = limit


class EncodedObject(NamedTuple):
    """What goes into a ConfigMap: data, labels and annotations."""

    data: dict[str, str]
    labels: dict[str, str]
    annotations: dict[str, str]


# -- writing -------------------------------------------------------------------


def _utf8(value: str, what: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidInput(f"{what} is not valid Unicode (lone surrogate)") from e
    return value


def _records_json(records: Iterable[IterationRecord | ErrorRecord]) -> str:
    """A JSON array of records, from each record's cached JSON."""
    return "[" + ",".join(r.to_json() for r in records) + "]"


def _feedback_json(entries: Iterable[FeedbackEntry]) -> str:
    # Entries cache their own JSON: an append serialises only the new entry.
    return "[" + ",".join(e.to_json() for e in entries) + "]"


def encode_state(
    state: TaskState,
    *,
    soft_deleted_at: datetime | None = None,
    compress_over: int = COMPRESS_OVER,
    max_bytes: int = MAX_DATA_BYTES,
) -> EncodedObject:
    """The head object's data, labels and annotations for ``state``.

    Always writes :data:`SCHEMA_VERSION`, whatever version ``state`` was read at:
    this is the "migrate on write". ``soft_deleted_at`` marks the object soft-deleted.

    Raises:
        StateTooLarge: the data would exceed ``max_bytes`` (move feedback first).
        InvalidInput: ``extra_data`` uses a known key; text is not valid Unicode.
    """
    clash = sorted(_KNOWN_KEYS.intersection(state.extra_data))
    if clash:
        raise InvalidInput(f"extra_data must not use the keys remstate writes: {clash}")
    last_update = format_timestamp(state.last_update)
    data = {
        "schema_version": str(SCHEMA_VERSION),
        "task_id": _utf8(state.task_id, "task_id"),
        "iteration": str(state.iteration),
        "status": _utf8(str(state.status), "status"),
        "last_update": last_update,
        "iteration_history": compress_json_text(
            _records_json(state.iteration_history), compress_over=compress_over
        ),
        "feedback_history": compress_json_text(
            _feedback_json(state.feedback_history), compress_over=compress_over
        ),
        "error_messages": compress_json_text(
            _records_json(state.error_messages), compress_over=compress_over
        ),
        "metadata": encode_json(state.metadata, compress_over=compress_over),
    }
    if state.history:
        # Unchanged since the last compaction: encoded once, not on every append.
        data[KEY_HISTORY_INDEX] = state.history.encoded(compress_over)
    if state.archived_resolutions:
        # Carried over from write to write: encoded once too.
        data[KEY_FEEDBACK_RESOLUTIONS] = Resolutions.of(state.archived_resolutions).encoded(
            compress_over
        )
    for key, value in state.extra_data.items():
        data[key] = _utf8(value, f"data key {key!r}")
    size = value_bytes(data)
    if size > max_bytes:
        raise StateTooLarge(f"the state of task {state.task_id!r}", size, max_bytes)

    labels = {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_TASK: label_safe(state.task_id),
        LABEL_STATUS: label_safe(str(state.status)),
        LABEL_LIFECYCLE: LIFECYCLE_ACTIVE if soft_deleted_at is None else LIFECYCLE_SOFT_DELETED,
        LABEL_ROLE: ROLE_STATE,
    }
    annotations = {
        ANNOTATION_TASK_ID: state.task_id,
        ANNOTATION_LAST_UPDATE: last_update,
        ANNOTATION_SCHEMA_VERSION: str(SCHEMA_VERSION),
    }
    if soft_deleted_at is not None:
        annotations[ANNOTATION_SOFT_DELETED_AT] = format_timestamp(soft_deleted_at)
    return EncodedObject(data, labels, annotations)


def state_object(
    state: TaskState,
    *,
    resource_version: str = "",
    soft_deleted_at: datetime | None = None,
    compress_over: int = COMPRESS_OVER,
) -> StoredObject:
    """The head object for ``state``, ready for ``Store.create`` or ``Store.replace``.

    Raises:
        StateTooLarge: as :func:`encode_state`.
        InvalidInput: the task ID cannot be named (see ``naming.validate_task_id``).
    """
    encoded = encode_state(state, soft_deleted_at=soft_deleted_at, compress_over=compress_over)
    return StoredObject(
        name=object_name(state.task_id),
        data=encoded.data,
        labels=encoded.labels,
        annotations=encoded.annotations,
        resource_version=resource_version,
    )


def encode_segment(
    task_id: str,
    n: int,
    first_seq: int,
    entries: Sequence[FeedbackEntry],
    *,
    compress_over: int = COMPRESS_OVER,
    max_bytes: int = MAX_DATA_BYTES,
) -> dict[str, str]:
    """A feedback history segment's data. Labels and annotations: :func:`segment_metadata`.

    Raises:
        StateTooLarge: the entries do not fit in one object.
    """
    return encode_records_segment(
        task_id,
        n,
        first_seq,
        KIND_FEEDBACK,
        entries,
        compress_over=compress_over,
        max_bytes=max_bytes,
    )


def encode_records_segment(
    task_id: str,
    n: int,
    first_seq: int,
    kind: str,
    records: Sequence[FeedbackEntry] | Sequence[IterationRecord] | Sequence[ErrorRecord],
    *,
    compress_over: int = COMPRESS_OVER,
    max_bytes: int = MAX_DATA_BYTES,
) -> dict[str, str]:
    """A history segment's data, holding ``records`` of ``kind``.

    Raises:
        InvalidInput: an unknown kind.
        StateTooLarge: the records do not fit in one object.
    """
    if kind not in HISTORY_KEYS:
        raise InvalidInput(f"unknown kind of history {kind!r}")
    body = "[" + ",".join(r.to_json() for r in records) + "]"
    data = {
        "schema_version": str(SCHEMA_VERSION),
        "task_id": _utf8(task_id, "task_id"),
        "segment": str(n),
        "first_seq": str(first_seq),
        "count": str(len(records)),
        HISTORY_KEYS[kind]: compress_json_text(body, compress_over=compress_over),
    }
    size = value_bytes(data)
    if size > max_bytes:
        raise StateTooLarge(f"history segment {n} of task {task_id!r}", size, max_bytes)
    return data


def segment_metadata(task_id: str) -> tuple[dict[str, str], dict[str, str]]:
    """A history segment's labels and annotations.

    No lifecycle or status label: a segment is immutable, and follows its head.
    """
    labels = {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_TASK: label_safe(task_id),
        LABEL_ROLE: ROLE_SEGMENT,
    }
    annotations = {
        ANNOTATION_TASK_ID: task_id,
        ANNOTATION_SCHEMA_VERSION: str(SCHEMA_VERSION),
    }
    return labels, annotations


def owner_reference(head: StoredObject) -> OwnerReference:
    """The reference a segment keeps to its head object, so that GC follows the head."""
    if not head.uid:
        raise InvalidInput(f"{head.name} has no uid yet: create it before its segments")
    return OwnerReference(api_version="v1", kind="ConfigMap", name=head.name, uid=head.uid)


def segment_object(
    state: TaskState,
    moved: Sequence[FeedbackEntry] | Sequence[IterationRecord] | Sequence[ErrorRecord],
    *,
    owner: OwnerReference | None = None,
    n: int | None = None,
    kind: str = KIND_FEEDBACK,
    compress_over: int = COMPRESS_OVER,
) -> StoredObject:
    """The segment object holding ``moved``, the oldest records of ``kind`` in ``state``'s head.

    ``n`` defaults to ``state.next_segment_number``; pass a higher one when
    that name is taken (an orphan from a crashed or lost attempt).

    Raises:
        InvalidInput: ``moved`` is not a prefix of the head's records of
            ``kind``, or ``n`` is not above the last segment's number.
        StateTooLarge: ``moved`` does not fit in one object.
    """
    n = state.next_segment_number if n is None else n
    if n < state.next_segment_number:
        raise InvalidInput(f"segment number {n} is not above the last one of the task")
    head = state.held(kind) if kind in HISTORY_KEYS else ()
    if (
        not moved
        or len(moved) > len(head)
        or any(a != b for a, b in zip(moved, head, strict=False))
    ):
        raise InvalidInput(f"the {kind} to move must be the oldest of the head")
    data = encode_records_segment(
        state.task_id, n, state.first_seq(kind), kind, moved, compress_over=compress_over
    )
    labels, annotations = segment_metadata(state.task_id)
    return StoredObject(
        name=segment_name(state.task_id, n),
        data=data,
        labels=labels,
        annotations=annotations,
        owner_references=() if owner is None else (owner,),
    )


#: The most bytes of filters one filter page holds (margin under 1 MiB):
#: the filters of about 170,000 IDs.
FILTER_PAGE_BYTES = 900_000


def filter_page_object(
    state: TaskState,
    *,
    n: int,
    owner: OwnerReference | None = None,
    max_bytes: int = FILTER_PAGE_BYTES,
) -> StoredObject:
    """The filter page ``n`` holding the oldest movable inline ID filters of the head.

    It takes the filters of ``state.movable_filters()``, oldest first, as many
    as ``max_bytes`` hold (at least one), and covers the segment numbers from
    the end of the last filter page's range to the last segment it takes.
    The head then takes it with ``state.with_filter_page(segment_ref(created))``.

    Raises:
        InvalidInput: there is no inline filter to take, or ``n`` is not
            above the last segment's number.
    """
    if n < state.next_segment_number:
        raise InvalidInput(f"segment number {n} is not above the last one of the task")
    movable = state.movable_filters()
    if not movable:
        raise InvalidInput("no inline ID filter to move into a filter page")
    pages = state.segments_of(KIND_ID_FILTERS)
    first = pages[-1].end_seq if pages else 0
    filters: dict[str, Any] = {}
    size = 0
    for segment in movable:
        assert segment.id_filter is not None
        stored = segment.id_filter.to_dict()
        size += len(stored["bloom"]) + 32
        if filters and size > max_bytes:
            break
        filters[str(segment.n)] = stored
        last = segment.n
    data = {
        "schema_version": str(SCHEMA_VERSION),
        "task_id": _utf8(state.task_id, "task_id"),
        "segment": str(n),
        "first_seq": str(first),
        "count": str(last - first + 1),
        "id_filters": encode_json(filters, compress_over=COMPRESS_OVER),
    }
    size = value_bytes(data)
    if size > MAX_DATA_BYTES:
        raise StateTooLarge(f"filter page {n} of task {state.task_id!r}", size, MAX_DATA_BYTES)
    labels, annotations = segment_metadata(state.task_id)
    return StoredObject(
        name=segment_name(state.task_id, n),
        data=data,
        labels=labels,
        annotations=annotations,
        owner_references=() if owner is None else (owner,),
    )


def decode_filter_page(obj: StoredObject) -> dict[int, IdFilter]:
    """The ID filters a filter page holds, by segment number.

    A filter in a form this version does not know is left out: its segment
    is then read when an ID is looked up (see ``idfilter``).

    Raises:
        CorruptState: the page cannot be read.
        UnsupportedSchemaVersion: written by a newer remstate.
        InvalidInput: ``obj`` came from a metadata-only read.
    """

    def read() -> dict[int, IdFilter]:
        data = obj.data
        reader = _Reader(collect=False)
        if data is None:
            _no_data(obj, reader)
            return {}
        version = _version(data, reader)
        if version is not None:
            _check_version(version, reader)
        value = reader.json(data, "id_filters")
        if not isinstance(value, Mapping):
            raise CorruptState(f"{obj.name} holds no ID filters", field="id_filters")
        out: dict[int, IdFilter] = {}
        for key, stored in value.items():
            if not _DIGITS.fullmatch(key):
                raise CorruptState(f"{obj.name}: {key[:40]!r} is not a segment number")
            found = IdFilter.from_stored(stored)
            if found is not None:
                out[int(key)] = found
        return out

    return _strictly(obj, read)


# -- reading ---------------------------------------------------------------------


class _Reader:
    """Reads fields one by one; raises on the first problem, or collects them all."""

    def __init__(self, *, collect: bool) -> None:
        self.collect = collect
        self.problems: list[Problem] = []
        self.task_id: str | None = None

    def fail(self, m: MalformedError) -> None:
        """A problem that stops a strict read."""
        if not self.collect:
            raise CorruptState(str(m), task_id=self.task_id, field=m.field or None)
        self.problems.append(m.problem())

    def note(self, m: MalformedError) -> None:
        """A problem a strict read tolerates (it has a safe default); only reported."""
        if self.collect:
            self.problems.append(m.problem())

    def attempt(self, read: Callable[[], _T]) -> _T | None:
        try:
            return read()
        except MalformedError as m:
            self.fail(m)
            return None

    def json(self, data: Mapping[str, str], key: str) -> Any:
        """The decoded JSON value of ``key``; ``None`` when it is absent or broken."""
        text = data.get(key)
        if text is None:
            return None
        try:
            return decode_value(text)
        except MalformedError as m:
            self.fail(MalformedError(m.code, key, m.message))
            return None

    def items(self, value: Any, key: str, read: Callable[[Any, str, int], _T]) -> list[_T]:
        """Read each element of a JSON array; a collecting reader skips bad ones."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(MalformedError(ProblemCode.BAD_VALUE, key, "expected a JSON array"))
            return []
        out: list[_T] = []
        for i, item in enumerate(value):
            path = f"{key}[{i}]"
            try:
                out.append(read(item, path, i))
            except MalformedError as m:
                self.fail(m)
            except RecursionError:
                self.fail(MalformedError(ProblemCode.BAD_VALUE, path, "nested too deeply"))
        return out


def _each(read: Callable[[Any, str], _T]) -> Callable[[Any, str, int], _T]:
    """Adapt a record reader that does not need the element's index."""
    return lambda item, path, _index: read(item, path)


def _version(data: Mapping[str, str], reader: _Reader) -> int | None:
    raw = data.get("schema_version")
    if raw is None:
        return 0
    if not _DIGITS.fullmatch(raw.strip()):
        reader.fail(
            MalformedError(ProblemCode.BAD_VALUE, "schema_version", f"not a number: {raw[:40]!r}")
        )
        return None
    return int(raw.strip())


def _check_version(version: int, reader: _Reader) -> bool:
    if version <= SCHEMA_VERSION:
        return True
    if not reader.collect:
        raise UnsupportedSchemaVersion(version, SCHEMA_VERSION)
    reader.problems.append(
        Problem(
            "schema_version",
            ProblemCode.UNSUPPORTED_SCHEMA_VERSION,
            str(UnsupportedSchemaVersion(version, SCHEMA_VERSION)),
        )
    )
    return False


def _v0_id(index: int, raw: Any) -> str:
    """A stable ID for a version 0 entry, which had none: same object, same IDs."""
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    digest = hashlib.sha256(f"{index}:{canonical}".encode()).digest()
    return "v0-" + base64.b32encode(digest).decode("ascii").lower()[:20]


def _int_field(data: Mapping[str, str], key: str, reader: _Reader) -> int | None:
    raw = data.get(key)
    if raw is None:
        return None
    text = raw.strip()
    if not re.fullmatch(r"-?[0-9]{1,18}", text):
        reader.fail(MalformedError(ProblemCode.BAD_VALUE, key, f"not an integer: {raw[:40]!r}"))
        return None
    return int(text)


def _time_field(
    data: Mapping[str, str], key: str, reader: _Reader, *, field: str | None = None
) -> datetime | None:
    raw = data.get(key)
    if raw is None:
        return None
    try:
        return parse_timestamp(raw)
    except InvalidInput as e:
        reader.fail(MalformedError(ProblemCode.BAD_TIMESTAMP, field or key, str(e)))
        return None


def _read_index(value: Any, reader: _Reader) -> HistoryIndex:
    key = KEY_HISTORY_INDEX
    if value is None:
        return HistoryIndex()
    if not isinstance(value, Mapping):
        reader.fail(MalformedError(ProblemCode.BAD_VALUE, key, "expected a JSON object"))
        return HistoryIndex()
    segments = tuple(
        reader.items(value.get("segments", []), f"{key}.segments", _each(SegmentRef._read))
    )
    moved: dict[str, int] = {}
    grouped = value.get("recent_moved", {})
    if not isinstance(grouped, Mapping):
        reader.fail(
            MalformedError(ProblemCode.BAD_VALUE, f"{key}.recent_moved", "expected an object")
        )
        grouped = {}
    for n, ids in grouped.items():
        path = f"{key}.recent_moved.{n[:40]}"
        if not _DIGITS.fullmatch(n) or not isinstance(ids, list):
            reader.fail(MalformedError(ProblemCode.BAD_VALUE, path, "expected an array of IDs"))
            continue
        for entry_id in ids:
            if not isinstance(entry_id, str):
                reader.fail(MalformedError(ProblemCode.BAD_VALUE, path, "expected string IDs"))
                continue
            moved[entry_id] = int(n)
    extra = {k: v for k, v in value.items() if k not in ("segments", "recent_moved")}
    return HistoryIndex(segments, moved, extra)


def _no_data(obj: StoredObject, reader: _Reader) -> None:
    if not reader.collect:
        raise InvalidInput(f"{obj.name} was read metadata-only: it has no data to decode")
    reader.problems.append(Problem("data", ProblemCode.NO_DATA, "object has no data"))


def _missing(reader: _Reader, key: str, *, fatal: bool, detail: str = "missing") -> None:
    problem = MalformedError(ProblemCode.MISSING_KEY, key, detail)
    if fatal:
        reader.fail(problem)
    else:
        reader.note(problem)


def _read_identity(
    obj: StoredObject, data: Mapping[str, str], reader: _Reader
) -> tuple[str | None, str | None, datetime | None]:
    """task_id, status and last_update: the fields without which there is no state."""
    # task_id: the annotation holds it too.
    task_id = data.get("task_id")
    if task_id is None:
        task_id = obj.annotations.get(ANNOTATION_TASK_ID)
        _missing(reader, "task_id", fatal=task_id is None, detail="missing, no annotation either")
    reader.task_id = task_id

    # status: no default is safe (pending or completed decide what cleanup does).
    status = data.get("status")
    if status is None:
        _missing(reader, "status", fatal=True)

    # last_update: the annotation, or at worst the creation time, is a safe stand-in.
    last_update = _time_field(data, "last_update", reader)
    if last_update is None:
        last_update = last_update_of(obj) or obj.creation_timestamp
        if "last_update" not in data:
            _missing(reader, "last_update", fatal=last_update is None)
    return task_id, status, last_update


def _read_metadata(data: Mapping[str, str], reader: _Reader) -> Mapping[str, Any]:
    metadata = reader.json(data, "metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        reader.fail(MalformedError(ProblemCode.BAD_VALUE, "metadata", "expected a JSON object"))
        return {}
    try:  # what the state would refuse: nested too deeply, 1e400...
        normalized: Mapping[str, Any] = normalize_json(metadata, what="metadata")
    except InvalidInput as e:
        reader.fail(MalformedError(ProblemCode.BAD_VALUE, "metadata", str(e)))
        return {}
    return normalized


def _read_resolutions(value: Any, reader: _Reader) -> dict[str, datetime | None]:
    key = KEY_FEEDBACK_RESOLUTIONS
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        reader.fail(MalformedError(ProblemCode.BAD_VALUE, key, "expected a JSON object"))
        return {}
    out: dict[str, datetime | None] = {}
    for entry_id, resolved_at in value.items():
        try:
            read_id, read_at = read_resolution(entry_id, resolved_at, key)
        except MalformedError as m:
            reader.fail(m)
            continue
        out[read_id] = read_at
    return out


def _reuse_prefix(
    text: str | None,
    known: Sequence[IterationRecord | FeedbackEntry | ErrorRecord],
    key: str,
    read: Callable[[Any, str, int], _T],
    reader: _Reader,
) -> list[_T] | None:
    """The records of an array that begins with ``known``'s, reusing those; or None.

    Histories grow at the end, so a newer version of a head mostly repeats
    records already decoded: their canonical JSON is a prefix of the stored
    text. Only the records after it are parsed, so reading a new version costs
    what changed, not the history's length. Anything else (another writer's
    formatting, a changed record, a broken value) reads in full.
    """
    if text is None or not known:
        return None
    try:
        body = decode_text(text)
        prefix = "[" + ",".join(r.to_json() for r in known)
        rest = body[len(prefix) :] if body.startswith(prefix) else ""
        if rest == "]":
            return list(known)  # type: ignore[arg-type]  # the same records, as read before
        tail = json.loads("[" + rest[1:]) if rest.startswith(",") else None
    except (MalformedError, ValueError, RecursionError):
        return None
    if not isinstance(tail, list):
        return None
    added = reader.items(tail, key, lambda item, path, i: read(item, path, i + len(known)))
    return [*known, *added]  # type: ignore[list-item]


def _read_state(
    obj: StoredObject, reader: _Reader, previous: TaskState | None = None
) -> TaskState | None:
    """Read the head object. Strict readers raise; collecting readers return what they can."""
    data = obj.data
    if data is None:
        _no_data(obj, reader)
        return None
    version = _version(data, reader)
    if version is None:
        version = SCHEMA_VERSION  # unreadable: check it as the current version
    elif not _check_version(version, reader):
        return None

    task_id, status, last_update = _read_identity(obj, data, reader)
    iteration = _int_field(data, "iteration", reader)
    if iteration is not None and iteration < 0:
        reader.fail(MalformedError(ProblemCode.BAD_VALUE, "iteration", "must not be negative"))
        iteration = None
    if "iteration" not in data:
        _missing(reader, "iteration", fatal=False, detail="missing, counted from the history")
    for key in ("iteration_history", "feedback_history", "error_messages", "metadata"):
        # Version 0 did not record iterations; every other key it had.
        if key not in data and (version >= 1 or key != "iteration_history"):
            _missing(reader, key, fatal=False)

    def array(key: str, read: Callable[[Any, str, int], _T], known: Sequence[Any]) -> list[_T]:
        reused = _reuse_prefix(data.get(key), known, key, read, reader) if version else None
        if reused is not None:
            return reused
        return reader.items(reader.json(data, key), key, read)

    iterations = array(
        "iteration_history",
        _each(IterationRecord._read),
        previous.iteration_history if previous else (),
    )

    def read_entry(raw: Any, path: str, index: int) -> FeedbackEntry:
        # Version 0 entries had no IDs: derive stable ones, so that re-reading
        # the same object (on every retry, say) gives the same IDs.
        default_id = _v0_id(index, raw) if version == 0 else None
        return FeedbackEntry._read(raw, path, default_id=default_id)

    feedback = array("feedback_history", read_entry, previous.feedback_history if previous else ())
    errors = array(
        "error_messages", _each(ErrorRecord._read), previous.error_messages if previous else ()
    )
    metadata = _read_metadata(data, reader)
    history = _read_index(reader.json(data, KEY_HISTORY_INDEX), reader)
    resolutions = _read_resolutions(reader.json(data, KEY_FEEDBACK_RESOLUTIONS), reader)

    if task_id is None or status is None or last_update is None:
        return None  # only a collecting reader gets here
    if iteration is None:
        iteration = len(iterations)
    if version == 0 and "iteration_history" not in data and iteration <= _MAX_RECONSTRUCTED:
        iterations = [
            IterationRecord(i, last_update, MIGRATED_NOTE) for i in range(1, iteration + 1)
        ]
    extra_data = {k: v for k, v in data.items() if k not in _KNOWN_KEYS}

    def build() -> TaskState:
        try:
            return TaskState(
                task_id=task_id,
                iteration=iteration,
                status=status,
                last_update=last_update,
                iteration_history=tuple(iterations),
                feedback_history=tuple(feedback),
                history=history,
                error_messages=tuple(errors),
                metadata=metadata,
                extra_data=extra_data,
                archived_resolutions=resolutions,
                schema_version=version,
            )
        except InvalidInput as e:
            raise MalformedError(ProblemCode.BAD_VALUE, "", str(e)) from None

    return reader.attempt(build)


def decode_state(
    obj: StoredObject, *, previous: TaskState | None = None, check: bool = True
) -> TaskState:
    """The state held in a head object; version 0 objects are migrated.

    ``previous``: a state of the same task read earlier. Records it already
    decoded are reused where the stored arrays still begin with them.

    Tolerant of what has a safe default: a missing JSON key reads as empty, a
    missing ``iteration`` is counted from the history, a missing
    ``last_update`` comes from its annotation (or the creation time), a
    missing ``task_id`` from its annotation. Keys this version does not know
    go to ``extra_data``.

    Strict about what the next write would spread (see
    :func:`_refuse_inconsistent`): ``iteration`` must count the iteration
    records, feedback IDs must be unique, and ``task_id`` must be the task the
    object is named for and agree with its task-id annotation. ``check=False``
    skips these (for tools that look at what is stored, and for deleting it);
    :func:`validate_object` reports them all without raising.

    Raises:
        CorruptState: a field cannot be read (``.field`` names it);
            ``task_id``, ``status`` or ``last_update`` is missing; or the
            state is inconsistent.
        UnsupportedSchemaVersion: written by a newer remstate.
        InvalidInput: ``obj`` came from a metadata-only read.
    """
    state = _strictly(obj, lambda: _read_state(obj, _Reader(collect=False), previous))
    assert state is not None  # a strict reader raises instead
    if check:
        _refuse_inconsistent(obj, state)
    return state


def _refuse_inconsistent(obj: StoredObject, state: TaskState) -> None:
    """Raise ``CorruptState`` if ``state`` breaks an invariant every write keeps.

    These are the validator's checks whose failure a write would carry
    forward: a counter behind its records lets increments pass the maximum; a
    duplicate ID is returned for the wrong entry; another task's ID is
    copied into labels and annotations. Repair is for recovery, not for a
    reader. The cost is one pass over the head's records, which were just
    decoded (or reused): no segment is read, whatever the history's length.
    """
    problems = list(_check_name(obj, state))
    if ANNOTATION_TASK_ID in obj.annotations:
        # A missing annotation is harmless: the name says which task this is,
        # and the next write puts the annotation back.
        problems.extend(_check_task_annotation(obj, state))
    if obj.data is not None and "iteration" in obj.data:
        problems.extend(_check_iterations(state))
    problems.extend(_check_ids(state))
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CorruptState(
            f"{obj.name} is inconsistent, refused: {first.field}: {first.message}{more}",
            task_id=state.task_id,
            field=first.field,
        )


def _strictly(obj: StoredObject, read: Callable[[], _T]) -> _T:
    """Run a strict read: whatever the stored bytes, only remstate's errors leave it."""
    try:
        return read()
    except RemstateError:
        raise
    except Exception as e:  # the rule: corruption never crashes a reader
        raise CorruptState(f"{obj.name} cannot be read: {_describe(e)}") from e


def _collecting(obj: StoredObject, reader: _Reader, read: Callable[[], _T]) -> _T | None:
    """Run a collecting read: it never raises; a surprise becomes one more problem."""
    try:
        return read()
    except Exception as e:  # noqa: BLE001 -- the validator's promise: results, never a raise
        reader.problems.append(
            Problem("data", ProblemCode.BAD_VALUE, f"{obj.name} cannot be read: {_describe(e)}")
        )
        return None


def _describe(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return "a value is nested too deeply"
    return f"{type(e).__name__}: {str(e)[:200]}"


def salvage_state(obj: StoredObject) -> tuple[TaskState | None, list[Problem]]:
    """What can be read of a head object, and every problem found; never raises.

    Unreadable entries are left out (a repair should keep the original, see
    the snapshot rule). The state is ``None`` when the schema version is
    unsupported, there is no data, or ``task_id``, ``status`` or
    ``last_update`` cannot be found.
    """
    reader = _Reader(collect=True)

    def read() -> TaskState | None:
        state = _read_state(obj, reader)
        if state is not None:
            reader.problems.extend(_cross_check(obj, state))
        return state

    return _collecting(obj, reader, read), reader.problems


def validate_object(obj: StoredObject) -> list[Problem]:
    """Every problem found in a head object, as typed results; never raises.

    Checks: unsupported or unreadable schema version; missing keys; malformed
    JSON; unknown or broken encodings; entries of the wrong shape; bad
    timestamps; ``task_id`` against the object's name; ``iteration`` against
    ``iteration_history``; duplicate feedback IDs; the history index; the
    resolutions of archived feedback; the annotations cleanup relies on.
    """
    return salvage_state(obj)[1]


def _cross_check(obj: StoredObject, state: TaskState) -> list[Problem]:
    problems = list(_check_name(obj, state))
    if obj.data is not None and "iteration" in obj.data:
        problems.extend(_check_iterations(state))
    problems.extend(_check_ids(state))
    problems.extend(_check_index(state))
    problems.extend(_check_resolutions(state))
    if state.schema_version >= 1:  # version 0 had none; migrating writes them
        problems.extend(_check_annotations(obj, state))
    return problems


def _check_iterations(state: TaskState) -> Iterator[Problem]:
    # From the head alone: records that left it are counted by the index.
    total = state.iteration_total
    if state.iteration != total:
        in_segments = total - len(state.iteration_history)
        where = f" (and {in_segments} in segments)" if in_segments else ""
        yield Problem(
            "iteration",
            ProblemCode.ITERATION_MISMATCH,
            f"iteration is {state.iteration} but iteration_history has "
            f"{len(state.iteration_history)} records{where}",
        )


def _check_ids(state: TaskState) -> Iterator[Problem]:
    # From the head alone: IDs in the head, and the feedback IDs it lists as
    # recently moved. (Across segments, uniqueness is the writer's: it looks
    # every new ID up through the segments' filters before appending it.)
    for key, records in (
        ("iteration_history", state.iteration_history),
        ("error_messages", state.error_messages),
    ):
        keys = [k for k in map(record_id, records) if k is not None]
        if len(set(keys)) != len(keys):
            twice = sorted({k for k in keys if keys.count(k) > 1})
            yield Problem(key, ProblemCode.DUPLICATE_ID, f"ID(s) {twice[:5]!r} appear twice")
    seen: set[str] = set()
    for entry in state.feedback_history:
        if entry.id in seen:
            yield Problem(
                "feedback_history", ProblemCode.DUPLICATE_ID, f"ID {entry.id!r} appears twice"
            )
        elif entry.id in state.recent_moved_ids:
            yield Problem(
                "feedback_history",
                ProblemCode.DUPLICATE_ID,
                f"ID {entry.id!r} is in the head and was moved to segment "
                f"{state.recent_moved_ids[entry.id]}",
            )
        seen.add(entry.id)


def _check_index(state: TaskState) -> Iterator[Problem]:
    def problem(message: str) -> Problem:
        return Problem(KEY_HISTORY_INDEX, ProblemCode.INDEX_MISMATCH, message)

    previous: SegmentRef | None = None
    last: dict[str, SegmentRef] = {}
    for seg in state.segments:
        if previous is not None and seg.n <= previous.n:
            yield problem(f"segment {seg.n} follows segment {previous.n}")
        before = last.get(seg.kind)
        expected_seq = before.end_seq if before is not None else 0
        if before is not None and seg.first_seq != expected_seq:
            yield problem(f"segment {seg.n} starts at {seg.first_seq}, not at {expected_seq}")
        last[seg.kind] = seg
        try:
            expected = segment_name(state.task_id, seg.n)
        except InvalidInput:
            expected = seg.name
        if seg.name != expected:
            yield problem(f"segment {seg.n} is named {seg.name!r}, not {expected!r}")
        previous = seg
    if state.recent_moved_ids and not state.segments:
        yield problem("recent_moved lists IDs, but there are no segments")


def _check_resolutions(state: TaskState) -> Iterator[Problem]:
    def problem(message: str) -> Problem:
        return Problem(KEY_FEEDBACK_RESOLUTIONS, ProblemCode.INDEX_MISMATCH, message)

    if not state.archived_resolutions:
        return
    if not state.segments:
        yield problem("lists resolutions of archived entries, but there are no segments")
    in_head = [e.id for e in state.feedback_history if e.id in state.archived_resolutions]
    if in_head:
        yield problem(
            f"{len(in_head)} ID(s) are in the head, whose entries hold their own "
            f"resolution: {in_head[:5]!r}"
        )


def _check_name(obj: StoredObject, state: TaskState) -> Iterator[Problem]:
    """``task_id`` against the object's name: the name says which task this is."""
    try:
        expected = object_name(state.task_id)
    except InvalidInput as e:
        yield Problem("task_id", ProblemCode.BAD_VALUE, str(e))
        return
    if obj.name != expected:
        yield Problem(
            "task_id",
            ProblemCode.TASK_ID_MISMATCH,
            f"is {state.task_id!r}, whose state is {expected}, not {obj.name}",
        )


def _check_task_annotation(obj: StoredObject, state: TaskState) -> Iterator[Problem]:
    ann_task = obj.annotations.get(ANNOTATION_TASK_ID)
    if ann_task != state.task_id:
        yield Problem(
            f"annotations.{ANNOTATION_TASK_ID}",
            ProblemCode.ANNOTATION_MISMATCH,
            f"is {ann_task!r}, data.task_id is {state.task_id!r}",
        )


def _check_annotations(obj: StoredObject, state: TaskState) -> Iterator[Problem]:
    yield from _check_task_annotation(obj, state)
    ann_update = obj.annotations.get(ANNOTATION_LAST_UPDATE)
    if last_update_of(obj) != state.last_update:
        yield Problem(
            f"annotations.{ANNOTATION_LAST_UPDATE}",
            ProblemCode.ANNOTATION_MISMATCH,
            f"is {ann_update!r}, data.last_update is {format_timestamp(state.last_update)}"
            " (cleanup decides on the annotation)",
        )


# -- segments ------------------------------------------------------------------


def _read_segment(obj: StoredObject, reader: _Reader) -> HistorySegment | None:
    data = obj.data
    if data is None:
        _no_data(obj, reader)
        return None
    version = _version(data, reader)
    if version is not None and not _check_version(version, reader):
        return None
    values: dict[str, int | None] = {}
    for key in ("segment", "first_seq", "count"):
        if key not in data:
            reader.fail(MalformedError(ProblemCode.MISSING_KEY, key, "missing"))
        values[key] = _int_field(data, key, reader)
    task_id = data.get("task_id", obj.annotations.get(ANNOTATION_TASK_ID))
    if task_id is None:
        reader.fail(MalformedError(ProblemCode.MISSING_KEY, "task_id", "missing"))
    reader.task_id = task_id
    kind = _segment_kind(data)
    key = HISTORY_KEYS[kind]
    if key not in data:
        reader.fail(MalformedError(ProblemCode.MISSING_KEY, key, "missing"))
    readers: dict[str, Callable[[Any, str], Any]] = {
        KIND_FEEDBACK: FeedbackEntry._read,
        KIND_ITERATIONS: IterationRecord._read,
        KIND_ERRORS: ErrorRecord._read,
    }
    records = reader.items(reader.json(data, key), key, _each(readers[kind]))
    n, first_seq, count = values["segment"], values["first_seq"], values["count"]
    if count is not None and count != len(records) and reader.collect:
        reader.problems.append(
            Problem(
                "count", ProblemCode.INDEX_MISMATCH, f"count is {count}, records {len(records)}"
            )
        )
    if task_id is None or n is None or first_seq is None:
        return None
    if kind == KIND_ITERATIONS:
        return HistorySegment(task_id, n, first_seq, kind=kind, iterations=tuple(records))
    if kind == KIND_ERRORS:
        return HistorySegment(task_id, n, first_seq, kind=kind, errors=tuple(records))
    return HistorySegment(task_id, n, first_seq, tuple(records))


def _segment_kind(data: Mapping[str, str]) -> str:
    """What a segment holds, from its data key (feedback when it has none of them)."""
    for kind, key in HISTORY_KEYS.items():
        if key in data:
            return kind
    return KIND_FEEDBACK


def decode_segment(obj: StoredObject) -> HistorySegment:
    """The records held in a history segment object, with its kind, number and first sequence.

    Raises:
        CorruptState: a field cannot be read, or a key is missing.
        UnsupportedSchemaVersion: written by a newer remstate.
        InvalidInput: ``obj`` came from a metadata-only read.
    """
    segment = _strictly(obj, lambda: _read_segment(obj, _Reader(collect=False)))
    assert segment is not None  # a strict reader raises instead
    return segment


def validate_segment(obj: StoredObject) -> list[Problem]:
    """Every problem found in a history segment object; never raises."""
    reader = _Reader(collect=True)
    _collecting(obj, reader, lambda: _read_segment(obj, reader))
    return reader.problems


def segment_ref(obj: StoredObject) -> SegmentRef:
    """The head's reference to a segment object just created (reads only its counters).

    Raises:
        CorruptState: the object is not a segment this version wrote.
    """
    data = obj.data or {}
    reader = _Reader(collect=False)
    values = {key: _int_field(data, key, reader) for key in ("segment", "first_seq", "count")}
    n, first_seq, count = values["segment"], values["first_seq"], values["count"]
    if n is None or first_seq is None or count is None:
        raise CorruptState(f"{obj.name} is not a history segment", field="segment")
    kind = KIND_ID_FILTERS if "id_filters" in data else _segment_kind(data)
    return SegmentRef(n=n, name=obj.name, first_seq=first_seq, count=count, uid=obj.uid, kind=kind)


# -- metadata-only readers (cleanup scans without data) ----------------------------


def last_update_of(obj: StoredObject) -> datetime | None:
    """The ``last-update`` annotation, or ``None`` when it is missing or unreadable."""
    raw = obj.annotations.get(ANNOTATION_LAST_UPDATE)
    try:
        return None if raw is None else parse_timestamp(raw)
    except InvalidInput:
        return None


def soft_deleted_at(obj: StoredObject) -> datetime | None:
    """When the object was soft-deleted, or ``None`` if it is not (or unreadably) so."""
    if obj.labels.get(LABEL_LIFECYCLE) != LIFECYCLE_SOFT_DELETED:
        return None
    raw = obj.annotations.get(ANNOTATION_SOFT_DELETED_AT)
    try:
        return None if raw is None else parse_timestamp(raw)
    except InvalidInput:
        return None
