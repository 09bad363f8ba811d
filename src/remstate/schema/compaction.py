"""When history moves out of the head into a history segment, and which records.

The head is rewritten on every update, so its size is the cost of every
write. Budgets bound it:

- ``feedback_budget`` (plain JSON bytes of the head's feedback): past it, the
  oldest entries move out, down to ``keep_bytes`` of the newest. This bounds
  the cost of an append, however long the history grows. Iteration records
  and error records have budgets of their own (:data:`RECORD_BUDGETS`), so
  that neither list grows with the number of increments or errors either;
- ``head_budget`` (bytes of the encoded head): the head never nears the API
  server's 1 MiB, and always has room for one more full-size entry.

Each kind of record moves to segments of its own kind. Each segment's ID
filter (see ``idfilter``) is kept in the head's index until the inline
filters pass ``filter_budget``; then they move together into a filter page,
so the head does not grow with the number of IDs either. The manager's loop,
before each write of the head::

    while (plan := plan_moves(state)) is not None:
        kind, moved = plan
        created = store.create(segment_object(state, moved, kind=kind, owner=...))
        state = apply_compaction(state, segment_ref(created))
    while needs_filter_page(state):
        created = store.create(filter_page_object(state, n=..., owner=...))
        state = state.with_filter_page(segment_ref(created))
    store.replace(state_object(state, resource_version=...))

The segment is written first and the head takes it with a compare-and-swap,
so a crash leaves at worst an orphan segment (see DESIGN.md).

The head also carries the resolutions of archived entries
(``feedback_resolutions``), which count against ``head_budget`` like the rest;
the manager refuses a resolution past :data:`RESOLUTIONS_LIMIT`.

Pure functions, no I/O.
"""

from __future__ import annotations

import bisect
import itertools
import sys
from collections.abc import Sequence

from remstate.errors import InvalidInput
from remstate.schema.datavalue import (
    COMPRESS_OVER,
    MAX_DECODED_BYTES,
    dumps,
    utf8_len,
    value_bytes,
)
from remstate.schema.encoding import (
    encode_records_segment,
    encode_state,
)
from remstate.schema.index import (
    Resolutions,
    SegmentRef,
)
from remstate.schema.records import (
    ErrorRecord,
    FeedbackEntry,
    IterationRecord,
    Records,
)
from remstate.schema.state import (
    TaskState,
)
from remstate.schema.values import (
    KIND_ERRORS,
    KIND_FEEDBACK,
    KIND_ITERATIONS,
    RECENT_MOVED_LIMIT,
    RESOLUTIONS_LIMIT,
)

__all__ = [
    "FEEDBACK_BUDGET",
    "FILTER_BUDGET",
    "HEAD_BUDGET",
    "KEEP_BYTES",
    "RECENT_MOVED_LIMIT",
    "RECORD_BUDGETS",
    "RESOLUTIONS_LIMIT",
    "SEGMENT_BUDGET",
    "apply_compaction",
    "feedback_bytes",
    "needs_filter_page",
    "plan_compaction",
    "plan_moves",
]

#: The most bytes of data the encoded head may hold: 768 KiB leaves 256 KiB
#: under the API server's 1 MiB for one more append of the largest entry.
HEAD_BUDGET = 768 * 1024
#: Plain JSON bytes of feedback in the head past which the oldest move out.
#: Small on purpose: the head is re-encoded on every write. Measured on the
#: 2-core dev box, encoding an append costs 0.36 ms with 100 entries and
#: 0.68 ms with 20,000 (128 KiB here: 1.4 ms); a segment is written about
#: every 190 appends of 250-byte entries.
FEEDBACK_BUDGET = 64 * 1024
#: Plain JSON bytes of the newest feedback a compaction leaves in the head.
KEEP_BYTES = 16 * 1024
#: The most bytes of data one segment holds (margin under 1 MiB).
SEGMENT_BUDGET = 1_000_000
#: Bytes of ID filters (base64) the head's index holds inline; past it, they
#: move into a filter page. 48 KiB hold the filters of about 9,000 IDs.
FILTER_BUDGET = 48 * 1024
#: (budget, keep) in plain JSON bytes, for iteration records and error records:
#: past the budget, the oldest move out, down to ``keep`` bytes of the newest.
#: An iteration record with its key is about 100 bytes: about 160 stay in the head.
RECORD_BUDGETS = {
    KIND_ITERATIONS: (16 * 1024, 4 * 1024),
    KIND_ERRORS: (32 * 1024, 8 * 1024),
}


def _size(record: FeedbackEntry | IterationRecord | ErrorRecord) -> int:
    return record.json_size() if isinstance(record, FeedbackEntry) else utf8_len(record.to_json())


def _records_bytes(records: Records) -> int:
    # The JSON array's bytes: the records' (cached) JSON joined by commas, in
    # brackets. Measured at once: ``_size`` per record costs more than the text.
    each: Sequence[FeedbackEntry | IterationRecord | ErrorRecord] = records
    return utf8_len(",".join([r.to_json() for r in each])) + 2


def feedback_bytes(entries: Sequence[FeedbackEntry]) -> int:
    """Plain JSON bytes of ``entries`` as a JSON array (cached per entry: cheap)."""
    return sum(e.json_size() for e in entries) + max(len(entries) - 1, 0) + 2


def _plain_head_bytes(
    state: TaskState, compress_over: int, *, iterations_bytes: int | None = None
) -> int:
    """An upper bound on the encoded head's size: everything as plain JSON.

    ``iterations_bytes``: ``_records_bytes`` of the iteration records, if known.
    """
    if iterations_bytes is None:
        iterations_bytes = _records_bytes(state.iteration_history)
    others = [state.metadata]
    scalars = utf8_len(state.task_id) + utf8_len(str(state.status)) + 64
    extra = sum(utf8_len(v) for v in state.extra_data.values())
    # The index's and the resolutions' encodings are cached, and no larger than
    # their plain JSON.
    index = utf8_len(state.history_index.encoded(compress_over)) if state.history_index else 0
    resolutions = (
        utf8_len(Resolutions.of(state.archived_resolutions).encoded(compress_over))
        if state.archived_resolutions
        else 0
    )
    return (
        feedback_bytes(state.feedback_history)
        + iterations_bytes
        + _records_bytes(state.error_messages)
        + sum(utf8_len(dumps(x)) for x in others)
        + scalars
        + extra
        + index
        + resolutions
    )


def _head_over(
    state: TaskState, head_budget: int, compress_over: int, *, iterations_bytes: int | None = None
) -> bool:
    if _plain_head_bytes(state, compress_over, iterations_bytes=iterations_bytes) <= head_budget:
        return False  # encoding never makes a value larger than its plain JSON
    encoded = encode_state(state, compress_over=compress_over, max_bytes=sys.maxsize)
    return value_bytes(encoded.data) > head_budget


def _fit(
    state: TaskState,
    candidates: Records,
    *,
    segment_budget: int,
    compress_over: int,
    kind: str = KIND_FEEDBACK,
) -> int:
    """How many of ``candidates`` (oldest first) one segment can hold."""
    n, first = state.next_segment_number, state.first_seq(kind)

    def size(k: int) -> int:
        data = encode_records_segment(
            state.task_id,
            n,
            first,
            kind,
            candidates[:k],
            compress_over=compress_over,
            max_bytes=sys.maxsize,
        )
        return value_bytes(data)

    # Plain sizes give a count that surely fits (encoding never grows a value).
    plain = list(itertools.accumulate((_size(e) + 1 for e in candidates), initial=0))
    # Well compressed, 1 MB holds more JSON than a reader inflates: stop there.
    # (plain[k] + 1 is the size of the JSON array of k entries.)
    total = bisect.bisect_right(plain, MAX_DECODED_BYTES - 1) - 1
    overhead = size(0)
    sure = min(bisect.bisect_right(plain, segment_budget - overhead) - 1, total)
    if sure >= total:
        return total
    whole = size(total)
    if whole <= segment_budget:
        return total
    # Compressed, more fit: guess from the compression ratio, then shrink until it fits.
    ratio = whole / (overhead + plain[total])
    k = min(bisect.bisect_right(plain, int(0.95 * segment_budget / ratio)) - 1, total)
    while k > sure:
        if size(k) <= segment_budget:
            return k
        k = max(sure, min(k - 1, int(k * 0.9)))
    return sure


def plan_compaction(
    state: TaskState,
    *,
    head_budget: int = HEAD_BUDGET,
    feedback_budget: int = FEEDBACK_BUDGET,
    keep_bytes: int = KEEP_BYTES,
    segment_budget: int = SEGMENT_BUDGET,
    compress_over: int = COMPRESS_OVER,
) -> list[FeedbackEntry] | None:
    """The oldest head entries to move into one new segment, or ``None`` if none need to.

    Entries move when the head's feedback exceeds ``feedback_budget`` (plain
    JSON bytes) or the encoded head exceeds ``head_budget``. The newest
    entries, up to ``keep_bytes``, stay; of the others, the oldest go, as many
    as one segment of ``segment_budget`` bytes holds. Call again after
    :func:`apply_compaction`: more may need to move. ``None`` also when
    nothing can move (only what must stay is left, or the oldest entry alone
    is larger than a segment).
    """
    entries = state.feedback_history
    if not entries:
        return None
    if feedback_bytes(entries) <= feedback_budget and not _head_over(
        state, head_budget, compress_over
    ):
        return None
    moved = _oldest(
        state,
        KIND_FEEDBACK,
        keep_bytes=keep_bytes,
        segment_budget=segment_budget,
        compress_over=compress_over,
    )
    return [e for e in moved if isinstance(e, FeedbackEntry)] if moved else None


def _oldest(
    state: TaskState, kind: str, *, keep_bytes: int, segment_budget: int, compress_over: int
) -> Records:
    """The oldest records of ``kind`` to move: all but the newest ``keep_bytes``, as
    many as one segment holds (none if none can move)."""
    records = state.held(kind)
    each: Sequence[FeedbackEntry | IterationRecord | ErrorRecord] = records
    kept, kept_bytes = 0, 0
    for record in reversed(each):
        kept_bytes += _size(record) + 1
        if kept_bytes > keep_bytes:
            break
        kept += 1
    candidates = records[: len(records) - kept]
    if not candidates:
        return ()
    count = _fit(
        state, candidates, segment_budget=segment_budget, compress_over=compress_over, kind=kind
    )
    return candidates[:count]


def plan_moves(
    state: TaskState,
    *,
    head_budget: int = HEAD_BUDGET,
    segment_budget: int = SEGMENT_BUDGET,
    compress_over: int = COMPRESS_OVER,
) -> tuple[str, Records] | None:
    """The kind and the oldest records to move into one new segment, or ``None``.

    Feedback first (as :func:`plan_compaction`), then iteration records and
    error records past their budgets (:data:`RECORD_BUDGETS`), or whichever
    can move while the encoded head is over ``head_budget``. Call again after
    :func:`apply_compaction`: more may need to move.
    """
    feedback = plan_compaction(
        state, head_budget=head_budget, segment_budget=segment_budget, compress_over=compress_over
    )
    if feedback is not None:
        return KIND_FEEDBACK, tuple(feedback)
    over: bool | None = None  # computed once, only if needed
    for kind, (budget, keep) in RECORD_BUDGETS.items():
        records = state.held(kind)
        if not records:
            continue
        size = _records_bytes(records)
        if size <= budget:
            if over is None:
                # The iteration records' size is known by now when there are any
                # (they come first): not measured twice on every increment.
                known = size if kind == KIND_ITERATIONS else None
                over = _head_over(state, head_budget, compress_over, iterations_bytes=known)
            if not over:
                continue
        moved = _oldest(
            state, kind, keep_bytes=keep, segment_budget=segment_budget, compress_over=compress_over
        )
        if moved:
            return kind, moved
    return None


def apply_compaction(
    state: TaskState, segment: SegmentRef, *, recent_limit: int = RECENT_MOVED_LIMIT
) -> TaskState:
    """``state`` with its oldest ``segment.count`` records of ``segment.kind`` moved into it.

    The same as ``state.with_segment(...)``, from the segment's reference.

    Raises:
        InvalidInput: the segment does not continue the history (its first
            sequence number or its number), or holds more than the head has.
    """
    if segment.first_seq != state.first_seq(segment.kind):
        raise InvalidInput(
            f"segment {segment.n} starts at {segment.first_seq}, "
            f"but the head's {segment.kind} start at {state.first_seq(segment.kind)}"
        )
    return state.with_segment(
        segment.n,
        segment.name,
        segment.uid,
        segment.count,
        kind=segment.kind,
        recent_limit=recent_limit,
    )


def needs_filter_page(state: TaskState, *, filter_budget: int = FILTER_BUDGET) -> bool:
    """Whether the head's movable inline ID filters are past ``filter_budget`` bytes."""
    size = 0
    for segment in state.movable_filters():
        assert segment.id_filter is not None
        size += len(segment.id_filter.to_dict()["bloom"])
    return size > filter_budget
