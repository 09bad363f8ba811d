"""Writing a task's state as ConfigMaps: the head, history segments and filter pages.

The layout is described in :mod:`remstate.schema.layout`; one value's JSON
(plain or compressed) in :mod:`remstate.schema.datavalue`. Every function
checks the 1 MiB limit before anything is sent (:class:`StateTooLarge`).

Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from remstate.errors import InvalidInput
from remstate.objects import OwnerReference, StoredObject
from remstate.schema.datavalue import (
    COMPRESS_OVER,
    MAX_DATA_BYTES,
    compress_json_text,
    encode_json,
    value_bytes,
)
from remstate.schema.index import (
    Resolutions,
)
from remstate.schema.layout import (
    HISTORY_KEYS,
    KEY_FEEDBACK_RESOLUTIONS,
    KEY_HISTORY_INDEX,
    KEY_POLICY,
    KNOWN_KEYS,
    EncodedObject,
    StateTooLarge,
)
from remstate.schema.naming import (
    ANNOTATION_ITERATION,
    ANNOTATION_LAST_UPDATE,
    ANNOTATION_MAX_ITERATIONS,
    ANNOTATION_SCHEMA_VERSION,
    ANNOTATION_SEGMENTS,
    ANNOTATION_SOFT_DELETED_AT,
    ANNOTATION_TASK_ID,
    ANNOTATION_TTL,
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
    format_ranges,
    label_safe,
    object_name,
    segment_name,
)
from remstate.schema.records import (
    ErrorRecord,
    FeedbackEntry,
    IterationRecord,
)
from remstate.schema.state import (
    TaskState,
)
from remstate.schema.values import (
    KIND_FEEDBACK,
    KIND_ID_FILTERS,
    SCHEMA_VERSION,
    format_timestamp,
)

_T = TypeVar("_T")

# -- writing -------------------------------------------------------------------


def _utf8(value: str, what: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidInput(f"{what} is not valid Unicode (lone surrogate)") from e
    return value


def _records_json(records: Iterable[IterationRecord | ErrorRecord]) -> str:
    """A JSON array of records, from each record's cached JSON."""
    return "[" + ",".join([r.to_json() for r in records]) + "]"


def _feedback_json(entries: Iterable[FeedbackEntry]) -> str:
    # Entries cache their own JSON: an append serialises only the new entry.
    return "[" + ",".join([e.to_json() for e in entries]) + "]"


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
    clash = sorted(KNOWN_KEYS.intersection(state.extra_data))
    if clash:
        raise InvalidInput(f"extra_data must not use the keys remstate writes: {clash}")
    last_update = format_timestamp(state.last_update)
    data = _state_data(state, last_update, compress_over=compress_over)
    size = value_bytes(data)
    if size > max_bytes:
        raise StateTooLarge(f"the state of task {state.task_id!r}", size, max_bytes)
    labels, annotations = _state_metadata(state, last_update, soft_deleted_at)
    return EncodedObject(data, labels, annotations)


def _state_data(state: TaskState, last_update: str, *, compress_over: int) -> dict[str, str]:
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
    if state.history_index:
        # Unchanged since the last compaction: encoded once, not on every append.
        data[KEY_HISTORY_INDEX] = state.history_index.encoded(compress_over)
    if state.archived_resolutions:
        # Carried over from write to write: encoded once too.
        data[KEY_FEEDBACK_RESOLUTIONS] = Resolutions.of(state.archived_resolutions).encoded(
            compress_over
        )
    if state.policy:
        # An empty policy (a state written before policies) is not written: the
        # object stays as its writers' defaults left it until one stores them.
        data[KEY_POLICY] = encode_json(state.policy.to_stored(), compress_over=compress_over)
    for key, value in state.extra_data.items():
        data[key] = _utf8(value, f"data key {key!r}")
    return data


def _state_metadata(
    state: TaskState, last_update: str, soft_deleted_at: datetime | None
) -> tuple[dict[str, str], dict[str, str]]:
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
        # Listings (``ls``) summarise a task from metadata alone: no data transferred.
        ANNOTATION_ITERATION: str(state.iteration),
    }
    if state.segments:
        # Cleanup tells an orphan segment from the head's metadata alone.
        annotations[ANNOTATION_SEGMENTS] = format_ranges(s.n for s in state.segments)
    # Cleanup and `ls` read the policy without data; absent when not stored.
    if state.policy.ttl_seconds is not None:
        annotations[ANNOTATION_TTL] = str(state.policy.ttl_seconds)
    if state.policy.max_iterations is not None:
        annotations[ANNOTATION_MAX_ITERATIONS] = str(state.policy.max_iterations)
    if soft_deleted_at is not None:
        annotations[ANNOTATION_SOFT_DELETED_AT] = format_timestamp(soft_deleted_at)
    return labels, annotations


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
