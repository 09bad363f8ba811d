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
    policy             only when not empty: JSON object {max_iterations?, ttl_seconds?},
                       the limit every writer enforces and the task's own retention
                       (see ``policy``); absent in a state written before policies
                       existed, whose writers use their own default limit, and
                       whose next write stores it

There is no stored total: the number of entries is the last segment's
``first_seq + count`` plus the head's entries. A stored total would change on
every append and force the whole index (up to 4096 IDs) to be re-encoded and
re-compressed on every write; without one, the index changes only when a
segment is added, and is encoded once.

The head's annotations repeat what cleanup and ``ls`` decide on, so that they
scan metadata only, and every write keeps them current: ``remstate.io/last-update``,
``remstate.io/ttl`` (the policy's ttl in whole seconds, only when it has one),
``remstate.io/max-iterations`` (only when the policy stores one) and
``remstate.io/segments``. Read them with :func:`last_update_of`, :func:`ttl_of`.

``policy`` is an added key of schema version 1, not a new version: a reader
that does not know it keeps it in ``extra_data`` and writes it back unchanged
(as it does any key a newer remstate wrote), so an older writer never drops a
policy; it only does not enforce it. A new version would make every older
reader refuse the state outright.

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
(``find_problems``) reports every problem as data and never raises. Whatever
the stored bytes (JSON nested too deeply to decode, numbers too long to
convert...), decoding raises only remstate's errors.

Pure functions, no I/O.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from remstate.errors import InvalidInput
from remstate.objects import StoredObject
from remstate.schema.durations import MAX_DURATION
from remstate.schema.naming import (
    ANNOTATION_LAST_UPDATE,
    ANNOTATION_SOFT_DELETED_AT,
    ANNOTATION_TTL,
    LABEL_LIFECYCLE,
    LIFECYCLE_SOFT_DELETED,
)
from remstate.schema.values import (
    KIND_ERRORS,
    KIND_FEEDBACK,
    KIND_ITERATIONS,
    parse_timestamp,
)

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
#: Present only when the task's policy is not empty (see ``policy``).
KEY_POLICY = "policy"
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


#: Every data key of a head this version knows; others are kept as they are.
KNOWN_KEYS = frozenset((*DATA_KEYS, KEY_HISTORY_INDEX, KEY_FEEDBACK_RESOLUTIONS, KEY_POLICY))


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


# -- metadata-only readers (cleanup scans without data) ----------------------------


def last_update_of(obj: StoredObject) -> datetime | None:
    """The ``last-update`` annotation, or ``None`` when it is missing or unreadable."""
    raw = obj.annotations.get(ANNOTATION_LAST_UPDATE)
    try:
        return None if raw is None else parse_timestamp(raw)
    except InvalidInput:
        return None


def ttl_of(obj: StoredObject) -> timedelta | None:
    """The task's own ttl (the ``ttl`` annotation), or ``None`` when it is missing or unreadable.

    ``None`` means the cleanup's default applies; an unreadable annotation is
    no reason to keep, or to delete, a state sooner than the default says.
    """
    raw = obj.annotations.get(ANNOTATION_TTL)
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        return None
    ttl = timedelta(seconds=int(raw))
    return ttl if timedelta(0) < ttl <= MAX_DURATION else None


def soft_deleted_at(obj: StoredObject) -> datetime | None:
    """When the object was soft-deleted, or ``None`` if it is not (or unreadably) so."""
    if obj.labels.get(LABEL_LIFECYCLE) != LIFECYCLE_SOFT_DELETED:
        return None
    raw = obj.annotations.get(ANNOTATION_SOFT_DELETED_AT)
    try:
        return None if raw is None else parse_timestamp(raw)
    except InvalidInput:
        return None
