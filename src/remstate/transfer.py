"""Export and import of whole states, history included (``remstate export`` / ``import``).

The format is ``remstate.schema.export``. The constraints this module lives under:

- **One task's history in memory, no more.** An export reads one head, then
  pages through each kind of its history with the history reader (each page
  reads only the one or two segments it covers). A listing of every task is
  the caller's, page by page (``StateManager.list_states``).
- **An import is idempotent.** A state already there and equal to the line
  (compared as exported: every record, resolution, timestamp, the policy,
  metadata and lifecycle) is skipped: nothing is written. A different one is
  left as it is, unless ``overwrite``: then a snapshot of its head is taken
  first (``remstate.snapshots``), and the imported state replaces it.
- **No lost update.** The write is the writer's compare-and-swap, and its
  change applies only to the head the import compared (or to a task that is
  still new and empty). If another writer got in between, the import reads
  again and decides again; the other write is never overwritten unseen.
- **Identical, not re-stamped.** The writer writes the imported state
  verbatim (its ``last_update`` and policy too), with every record in the
  head; it moves them into history segments as it does for any write. An
  overwritten state's old segments stay: its snapshot refers to them, and
  cleanup removes them once nothing does.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any, Protocol

from remstate.cache import LastSeen
from remstate.errors import Conflict, NotFound, RemstateError, RetriesExhausted, StateNotFound
from remstate.history import MAX_PAGE, HistoryReader
from remstate.objects import StoredObject
from remstate.retry import RetryPolicy
from remstate.schema import (
    ANNOTATION_SOFT_DELETED_AT,
    KIND_ERRORS,
    KIND_FEEDBACK,
    KIND_ITERATIONS,
    LABEL_LIFECYCLE,
    LIFECYCLE_SOFT_DELETED,
    Clock,
    Status,
    TaskState,
    format_timestamp,
    plan_moves,
    soft_deleted_at,
)
from remstate.schema.export import ExportedState
from remstate.store import Store
from remstate.writer import Writer

__all__ = ["ImportOutcome", "Transfer"]

log = logging.getLogger("remstate.transfer")

#: How many times an import decides again after another writer got in first.
MAX_DECISIONS = 5


class ImportOutcome(enum.StrEnum):
    """What an import did with one state."""

    CREATED = "created"
    SKIPPED = "skipped"  # there already, and equal: nothing written
    OVERWRITTEN = "overwritten"  # there and different; replaced after a snapshot
    DIFFERS = "differs"  # there and different; left as it is (no overwrite)


class Settings(Protocol):
    """What the transfer reads from its manager."""

    store: Store
    retry: RetryPolicy
    clock: Clock


class _Changed(Exception):
    """Internal: the head is not the one the import compared; decide again.

    Not one of our errors: it never reaches a caller, and the writer lets it
    through at once (the import reads afresh when it decides again).
    """


#: Takes a snapshot of a head before it is overwritten: (task id, head as read).
Snapshotter = Callable[[str, StoredObject], Any]


class Transfer:
    """Exports and imports whole states through the manager's reader and writer."""

    def __init__(
        self,
        settings: Settings,
        *,
        seen: LastSeen,
        history: HistoryReader,
        writer: Writer,
        snapshot: Snapshotter,
    ) -> None:
        self._settings = settings
        self._seen = seen
        self._history = history
        self._writer = writer
        self._snapshot = snapshot

    # -- export ---------------------------------------------------------------------

    def export_state(self, task_id: str) -> ExportedState:
        """The task's whole state, its history read page by page from its segments.

        Raises:
            StateNotFound: the task has no state.
            CorruptState: the head or a segment cannot be read.
        """
        obj = self._seen.read(task_id)
        if obj is None:
            raise StateNotFound(task_id)
        return self._export(task_id, obj)

    def _export(self, task_id: str, obj: StoredObject) -> ExportedState:
        head = self._seen.decode(task_id, obj)
        return ExportedState.of(
            head,
            iterations=self._all(head, KIND_ITERATIONS),
            feedback=self._all(head, KIND_FEEDBACK),
            errors=self._all(head, KIND_ERRORS),
            soft_deleted_at=soft_deleted_at(obj),
        )

    def _all(self, head: TaskState, kind: str) -> list[Any]:
        """Every record of ``kind``, oldest first, a page (one or two objects) at a time."""
        records: list[Any] = []
        cursor: str | None = None
        while True:
            page, cursor, _ = self._history.page(
                head, kind, limit=MAX_PAGE, cursor=cursor, newest_first=False
            )
            records.extend(page)
            if cursor is None:
                return records

    # -- import ---------------------------------------------------------------------

    def import_state(self, exported: ExportedState, *, overwrite: bool = False) -> ImportOutcome:
        """Write ``exported`` into the store, unless the same state is there.

        Raises:
            StateTooLarge: what cannot move into segments does not fit in the head
                (metadata, or one record larger than a segment); nothing is written.
            RetriesExhausted: other writers kept changing the task meanwhile.
        """
        task_id = exported.task_id
        wanted = exported.to_dict()
        for _ in range(MAX_DECISIONS):
            obj = self._seen.read(task_id)
            base: TaskState | None = None
            if obj is not None:
                if self._export(task_id, obj).to_dict() == wanted:
                    return ImportOutcome.SKIPPED
                if not overwrite:
                    return ImportOutcome.DIFFERS
                base = self._seen.decode(task_id, obj)
                self._snapshot(task_id, obj)
            try:
                self._write(exported, base)
            except _Changed:
                log.info("task %r changed while it was imported; deciding again", task_id)
                continue
            return ImportOutcome.CREATED if base is None else ImportOutcome.OVERWRITTEN
        raise RetriesExhausted(
            f"task {task_id!r} kept changing while it was imported ({MAX_DECISIONS} times)",
            attempts=MAX_DECISIONS,
        )

    def _write(self, exported: ExportedState, base: TaskState | None) -> None:
        """One compare-and-swap write of the exported state over ``base`` (None: a new task)."""
        task_id = exported.task_id
        target = exported.state
        created_bare = False
        if base is None and plan_moves(target) is not None:
            # Segments are owned by the head: it must exist (empty) before them.
            self._writer.mutate(task_id, lambda state: (None, None), create={})
            created_bare = True

        def apply(state: TaskState) -> tuple[TaskState | None, None]:
            if not (_pristine(state) if base is None else state == base):
                raise _Changed(f"task {task_id!r} changed since the import compared it")
            return target, None

        try:
            self._writer.mutate(task_id, apply, create={}, verbatim=True)
        except BaseException:
            if created_bare:
                self._remove_if_pristine(task_id)
            raise
        if exported.soft_deleted_at is not None:
            self._mark_soft_deleted(task_id, exported)

    def _mark_soft_deleted(self, task_id: str, exported: ExportedState) -> None:
        """Mark the head just written soft-deleted, as it was exported; a write since wins."""
        written, _ = self._seen.last_seen(task_id)
        assert written is not None
        assert exported.soft_deleted_at is not None
        when = format_timestamp(exported.soft_deleted_at)
        try:
            self._settings.retry.call(
                lambda: self._settings.store.annotate(
                    written.name,
                    {ANNOTATION_SOFT_DELETED_AT: when},
                    labels={LABEL_LIFECYCLE: LIFECYCLE_SOFT_DELETED},
                    resource_version=written.resource_version,
                )
            )
        except (Conflict, NotFound):
            pass  # written to (so in use, and active) or deleted since: leave it
        finally:
            self._seen.forget(task_id)

    def _remove_if_pristine(self, task_id: str) -> None:
        """Best effort: delete the empty head this import created, if it is still empty."""
        try:
            obj = self._seen.read(task_id)
            if obj is not None and _pristine(self._seen.decode(task_id, obj)):
                self._settings.store.delete(
                    obj.name, uid=obj.uid, resource_version=obj.resource_version
                )
        except RemstateError:
            pass  # an empty task is left: harmless, and the next import fills it
        finally:
            self._seen.forget(task_id)


def _pristine(state: TaskState) -> bool:
    """A task just created and never written to: what an import may fill."""
    return (
        state.iteration == 0
        and state.status == Status.PENDING
        and not state.segments
        and not state.iteration_history
        and not state.feedback_history
        and not state.error_messages
        and not state.metadata
        and not state.extra_data
        and not state.archived_resolutions
    )
