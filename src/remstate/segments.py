"""Writing history segments: compaction before a head write, and its undoing.

Why apart from the reader (``remstate.history``): this is the only code that
creates or deletes segment objects, and it runs only inside the writer's
attempt. Each segment is created before the head refers to it, so a crash
leaves at worst an orphan segment, which cleanup removes; segments never
change once written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

from remstate.errors import AlreadyExists, RemstateError
from remstate.history import HistoryReader
from remstate.objects import StoredObject
from remstate.schema import (
    TaskState,
    apply_compaction,
    decode_state,
    filter_page_object,
    needs_filter_page,
    owner_reference,
    plan_moves,
    segment_object,
    segment_ref,
)
from remstate.store import Store

__all__ = ["compact", "discard_unreferenced"]


def compact(
    store: Store,
    history: HistoryReader,
    head: StoredObject,
    state: TaskState,
    created: list[StoredObject],
) -> TaskState:
    """Move the oldest history to new segments while the head would be too large,
    and the inline ID filters to a filter page once they fill one.

    Each segment is created before the head refers to it, and appended to
    ``created``. A name that is taken belongs to an orphan or to a racing
    writer's segment: it is skipped, never touched.
    """
    owner = owner_reference(head)

    def create(build: Callable[[int], StoredObject]) -> StoredObject:
        n = state.next_segment_number
        while True:
            try:
                segment = store.create(build(n))
            except AlreadyExists:
                n += 1
                continue
            created.append(segment)
            return segment

    while (plan := plan_moves(state)) is not None:
        kind, moved = plan
        segment = create(
            lambda n: segment_object(state, moved, owner=owner, n=n, kind=kind)  # noqa: B023
        )
        # No window of recently moved ids: the segments' ID filters find
        # every id, so the head no longer carries (up to 4,096 of) them.
        state = apply_compaction(state, segment_ref(segment), recent_limit=0)
    while needs_filter_page(state):
        page = segment_ref(
            create(lambda n: filter_page_object(state, n=n, owner=owner))  # noqa: B023
        )
        history.remember_page(page, state)  # what it holds: no need to read it
        state = state.with_filter_page(page)
    return state


def discard_unreferenced(
    store: Store,
    read_head: Callable[[], StoredObject | None],
    segments: Sequence[StoredObject],
) -> None:
    """Delete the segments we created that the head, read afresh, does not refer to.

    A Conflict alone does not prove our head write failed: the client may
    have re-sent a PUT whose first copy committed. So ask the head.
    """
    try:
        head = read_head()
        referenced = (
            set() if head is None else {s.uid for s in decode_state(head, check=False).segments}
        )
    except RemstateError:
        return  # cannot tell: leave them as orphans for cleanup
    for segment in segments:
        if segment.uid not in referenced:
            with contextlib.suppress(RemstateError):
                store.delete(segment.name, uid=segment.uid)
