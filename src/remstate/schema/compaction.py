"""When feedback moves out of the head into a history segment, and which entries.

The head is rewritten on every update, so its size is the cost of every
write. Two budgets bound it:

- ``feedback_budget`` (plain JSON bytes of the head's feedback): past it, the
  oldest entries move out, down to ``keep_bytes`` of the newest. This bounds
  the cost of an append, however long the history grows;
- ``head_budget`` (bytes of the encoded head): the head never nears the API
  server's 1 MiB, and always has room for one more full-size entry.

The manager's loop, before each write of the head::

    while (moved := plan_compaction(state)) is not None:
        created = store.create(segment_object(state, moved, owner=owner_reference(head)))
        state = apply_compaction(state, segment_ref(created))
    store.replace(state_object(state, resource_version=...))

The segment is written first and the head takes it with a compare-and-swap,
so a crash leaves at worst an orphan segment (see DESIGN.md).

The head also carries the resolutions of archived entries
(``feedback_resolutions``), which count against ``head_budget`` like the rest;
the manager keeps them under :data:`RESOLUTIONS_LIMIT` by folding them into
their segments (``codec.fold_segment``, ``TaskState.with_folded``).

Pure functions, no I/O.
"""

from __future__ import annotations

import bisect
import itertools
import sys
from collections.abc import Sequence

from remstate.errors import InvalidInput
from remstate.schema.codec import encode_segment, encode_state
from remstate.schema.encoding import (
    COMPRESS_OVER,
    MAX_DECODED_BYTES,
    dumps,
    utf8_len,
    value_bytes,
)
from remstate.schema.model import (
    RECENT_MOVED_LIMIT,
    RESOLUTIONS_LIMIT,
    FeedbackEntry,
    Resolutions,
    SegmentRef,
    TaskState,
)

__all__ = [
    "FEEDBACK_BUDGET",
    "HEAD_BUDGET",
    "KEEP_BYTES",
    "RECENT_MOVED_LIMIT",
    "RESOLUTIONS_LIMIT",
    "SEGMENT_BUDGET",
    "apply_compaction",
    "feedback_bytes",
    "plan_compaction",
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


def feedback_bytes(entries: Sequence[FeedbackEntry]) -> int:
    """Plain JSON bytes of ``entries`` as a JSON array (cached per entry: cheap)."""
    return sum(e.json_size() for e in entries) + max(len(entries) - 1, 0) + 2


def _plain_head_bytes(state: TaskState, compress_over: int) -> int:
    """An upper bound on the encoded head's size: everything as plain JSON."""
    others = [
        [r.to_dict() for r in state.iteration_history],
        [r.to_dict() for r in state.error_messages],
        state.metadata,
    ]
    scalars = utf8_len(state.task_id) + utf8_len(str(state.status)) + 64
    extra = sum(utf8_len(v) for v in state.extra_data.values())
    # The index's and the resolutions' encodings are cached, and no larger than
    # their plain JSON.
    index = utf8_len(state.history.encoded(compress_over)) if state.history else 0
    resolutions = (
        utf8_len(Resolutions.of(state.archived_resolutions).encoded(compress_over))
        if state.archived_resolutions
        else 0
    )
    return (
        feedback_bytes(state.feedback_history)
        + sum(utf8_len(dumps(x)) for x in others)
        + scalars
        + extra
        + index
        + resolutions
    )


def _head_over(state: TaskState, head_budget: int, compress_over: int) -> bool:
    if _plain_head_bytes(state, compress_over) <= head_budget:
        return False  # encoding never makes a value larger than its plain JSON
    encoded = encode_state(state, compress_over=compress_over, max_bytes=sys.maxsize)
    return value_bytes(encoded.data) > head_budget


def _fit(
    state: TaskState,
    candidates: Sequence[FeedbackEntry],
    *,
    segment_budget: int,
    compress_over: int,
) -> int:
    """How many of ``candidates`` (oldest first) one segment can hold."""
    n, first = state.next_segment_number, state.head_first_seq

    def size(k: int) -> int:
        data = encode_segment(
            state.task_id,
            n,
            first,
            candidates[:k],
            compress_over=compress_over,
            max_bytes=sys.maxsize,
        )
        return value_bytes(data)

    # Plain sizes give a count that surely fits (encoding never grows a value).
    plain = list(itertools.accumulate((e.json_size() + 1 for e in candidates), initial=0))
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
    kept, kept_bytes = 0, 0
    for entry in reversed(entries):
        kept_bytes += entry.json_size() + 1
        if kept_bytes > keep_bytes:
            break
        kept += 1
    candidates = entries[: len(entries) - kept]
    if not candidates:
        return None
    count = _fit(state, candidates, segment_budget=segment_budget, compress_over=compress_over)
    return list(candidates[:count]) if count else None


def apply_compaction(
    state: TaskState, segment: SegmentRef, *, recent_limit: int = RECENT_MOVED_LIMIT
) -> TaskState:
    """``state`` with its oldest ``segment.count`` entries moved into ``segment``.

    The same as ``state.with_segment(...)``, from the segment's reference.

    Raises:
        InvalidInput: the segment does not continue the history (its first
            sequence number or its number), or holds more than the head has.
    """
    if segment.first_seq != state.head_first_seq:
        raise InvalidInput(
            f"segment {segment.n} starts at {segment.first_seq}, "
            f"but the head starts at {state.head_first_seq}"
        )
    return state.with_segment(
        segment.n, segment.name, segment.uid, segment.count, recent_limit=recent_limit
    )
