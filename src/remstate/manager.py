"""The state manager: every operation of a remediation loop, on any Store.

Written once against the Store contract; it never asks which backend it has.

The write path is optimistic concurrency (DESIGN.md, rules 1-3):

- every operation is a pure function of the state, applied to the last object
  seen and sent with that object's resourceVersion: uncontended, a write is
  one API request;
- on a Conflict the object is read again and the function applied again, with
  bounded, exponential, jittered backoff (``RetryPolicy``);
- under sustained contention writers take turns (``remstate.turns``): the
  writer that has just won holds the freshest object and would otherwise keep
  winning, and losers would run out of attempts;
- a write whose outcome is unknown (a timeout, a lost response) is retried the
  same way, and the retry recognises its own earlier success in the object it
  reads back: by the write id the attempt left on it, or, if another write
  landed since, by the ids the operation stores: feedback by entry id, an
  increment by its key (``op_id``), an error record by its id. Those ids are
  looked up across the whole history, however old (see ``history``), so a
  caller's own retry with the same id is a no-op too, at any time.

History that outgrows one object (feedback, iteration records, error records)
moves to immutable segment objects: the segment is written first, then the
head takes it with its compare-and-swap, so a crash leaves at worst an orphan
segment that no head refers to. Resolutions of entries in segments are an
overlay in the head; the segments never change.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ulid import ULID

from remstate.errors import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    MaxIterationsReached,
    NotFound,
    OutcomeUnknown,
    RemstateError,
    RetriesExhausted,
    StateNotFound,
    Unavailable,
)
from remstate.history import HistoryReader, check_page
from remstate.retry import RetryPolicy, remaining
from remstate.schema import (
    KIND_ERRORS,
    KIND_FEEDBACK,
    KIND_ITERATIONS,
    LABEL_MANAGED_BY,
    RESOLUTIONS_LIMIT,
    SCHEMA_VERSION,
    Clock,
    ErrorRecord,
    FeedbackEntry,
    IterationRecord,
    Severity,
    Status,
    TaskState,
    apply_compaction,
    decode_state,
    encode_state,
    filter_page_object,
    needs_filter_page,
    object_name,
    owner_reference,
    parse_status,
    plan_compaction,
    plan_moves,
    segment_object,
    segment_ref,
    utc_now,
    validate_record_id,
    validate_task_id,
)
from remstate.schema.datavalue import normalize_json
from remstate.store import Store, StoredObject, open_store
from remstate.turns import ANNOTATION_TURN, FREE_WRITES, TURN_TTL, Turns

if TYPE_CHECKING:
    from remstate.store.opener import ApiClient

__all__ = ["ErrorPage", "FeedbackPage", "IterationPage", "StateManager"]

_R = TypeVar("_R")

#: Set on every write to the id of the operation that made it, so that an
#: operation whose response was lost recognises its own committed write.
ANNOTATION_WRITE_ID = "remstate.io/write-id"
#: The most entries one write appends: about 500 KB of typical entries, so
#: that one write, and the segments it fills, stay well under 1 MiB each.
MAX_BATCH = 2048

#: Seconds of the retry deadline kept for the write after a wait for a turn.
_WRITE_MARGIN = 0.5
#: How many tasks' last-seen objects a manager remembers.
DEFAULT_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class FeedbackPage:
    """One page of a task's feedback history, oldest first.

    ``next_cursor`` is ``None`` when the page reaches the newest entry; pass it
    back as ``cursor`` to read on.
    """

    entries: list[FeedbackEntry]
    next_cursor: str | None
    total: int


@dataclass(frozen=True, slots=True)
class IterationPage:
    """One page of a task's iteration records, oldest first (or newest first).

    ``next_cursor`` is ``None`` when the page reaches the end; pass it back as
    ``cursor`` to read on. ``total`` is the number of records, the iteration counter.
    """

    records: list[IterationRecord]
    next_cursor: str | None
    total: int


@dataclass(frozen=True, slots=True)
class ErrorPage:
    """One page of a task's error records, oldest first (or newest first).

    ``next_cursor`` is ``None`` when the page reaches the end; pass it back as
    ``cursor`` to read on.
    """

    records: list[ErrorRecord]
    next_cursor: str | None
    total: int


class _Stale(Conflict):
    """Internal: what we read is out of date (or gone, or taken); read again and re-apply.

    A Conflict, so the retry policy bounds and spaces these like any other.
    """


class StateManager:
    """Reads and writes the state of remediation loops.

    Args:
        store: the Store to keep state in. Or give ``api_client`` (the caller's
            ``kubernetes.client.ApiClient``) and ``namespace`` for ConfigMaps.
        max_iterations: the most iterations a task may have (10 by default).
        retry: how long to retry conflicts and transient errors.
        clock: a callable returning an aware datetime; every timestamp uses it.
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        api_client: ApiClient | None = None,
        namespace: str | None = None,
        max_iterations: int = 10,
        retry: RetryPolicy | None = None,
        clock: Clock = utc_now,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        if store is None:
            if api_client is None:
                raise InvalidInput("give a store, or an api_client and a namespace")
            store = open_store("kubernetes://", namespace=namespace, api_client=api_client)
            self._owns_store = True
        else:
            if api_client is not None:
                raise InvalidInput("give either a store or an api_client, not both")
            self._owns_store = False
        _check_settings(
            max_iterations=max_iterations, retry=retry, clock=clock, cache_size=cache_size
        )
        self.store: Store = store
        self.max_iterations = max_iterations
        self.retry = retry or RetryPolicy()
        self.clock = clock
        self._cache_size = cache_size
        # The last object seen of each task, and its decoded state once known:
        # an uncontended write then costs one request and no decoding.
        self._seen: OrderedDict[str, tuple[StoredObject, TaskState | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._history = HistoryReader(self._get)
        #: Tasks this manager took a contended turn on: writes left before it steps aside.
        self._free_writes: dict[str, int] = {}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> StateManager:
        """Build a manager from a URL.

        - ``sqlite:///path/to/state.db`` (or ``sqlite://relative.db``): the embedded store;
          ``?mode=ro`` opens it read-only, ``?mode=rw`` only if the file exists;
        - ``kubernetes://NAMESPACE``: ConfigMaps, with the kubeconfig (or in-cluster
          config) taken from the environment. ``kubernetes://`` alone uses ``default``.

        The option ``mode`` ("rwc", "rw" or "ro") opens the embedded store so, or
        more strictly if the URL asks; the Kubernetes store ignores it. Other
        keyword options go to the constructor.

        The URL is opened by ``remstate.store.open_store``.

        Raises:
            InvalidInput: the URL's scheme is not one of these, or it has no path.
            NotFound: the embedded store's file does not exist, and the mode may not create it.
            CorruptStore, Unavailable: the embedded store's file cannot be used.
            Unavailable: no Kubernetes configuration (kubeconfig or in-cluster) can be loaded.
        """
        if not isinstance(url, str):
            raise InvalidInput(f"a store URL is a string, not {type(url).__name__}")
        unknown = set(options) - _OPTIONS
        if unknown:
            raise InvalidInput(f"unknown StateManager options: {', '.join(sorted(unknown))}")
        mode = options.pop("mode", "rwc")
        namespace = options.pop("namespace", None)
        # Before the store is opened: a bad option must not leave a database behind.
        _check_settings(**options)
        manager = cls(open_store(url, namespace=namespace, mode=mode), **options)
        manager._owns_store = True
        return manager

    def close(self) -> None:
        """Close the store if this manager opened it."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> StateManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads ----------------------------------------------------------------

    def get_state(self, task_id: str) -> TaskState:
        """Read the task's state from the store.

        Raises:
            StateNotFound: the task has no state.
            CorruptState: the state cannot be decoded.
            UnsupportedSchemaVersion: a newer remstate wrote it.
        """
        obj = self._read(task_id)
        if obj is None:
            raise StateNotFound(task_id)
        return self._decode(task_id, obj)

    def get_current_iteration(self, task_id: str) -> int:
        """The task's iteration counter (0 before the first increment).

        Raises:
            StateNotFound: the task has no state.
        """
        return self.get_state(task_id).iteration

    def get_feedback_history(
        self,
        task_id: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
        newest_first: bool = False,
    ) -> FeedbackPage:
        """One page of feedback, oldest first (or newest first), reading only what it needs.

        Entries that moved to history segments are read from the one or two
        segments the page covers, never from all of them. A cursor keeps the
        direction it was made for.

        Raises:
            StateNotFound: the task has no state.
            InvalidInput: a bad limit or cursor.
            CorruptState: the history index promises entries that are not there.
        """
        _int_argument(limit, "limit", low=1, high=10_000)
        _bool_argument(newest_first, "newest_first")
        check_page(KIND_FEEDBACK, limit, cursor)
        state = self.get_state(task_id)
        entries, next_cursor, total = self._history.page(
            state, KIND_FEEDBACK, limit=limit, cursor=cursor, newest_first=newest_first
        )
        return FeedbackPage(entries=entries, next_cursor=next_cursor, total=total)

    def get_iteration_history(
        self,
        task_id: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
        newest_first: bool = False,
    ) -> IterationPage:
        """One page of iteration records, oldest first (or newest first), as feedback pages.

        Records that moved to history segments are read from the one or two
        segments the page covers.

        Raises:
            StateNotFound: the task has no state.
            InvalidInput: a bad limit or cursor.
            CorruptState: the history index promises records that are not there.
        """
        _int_argument(limit, "limit", low=1, high=10_000)
        _bool_argument(newest_first, "newest_first")
        check_page(KIND_ITERATIONS, limit, cursor)
        state = self.get_state(task_id)
        records, next_cursor, total = self._history.page(
            state, KIND_ITERATIONS, limit=limit, cursor=cursor, newest_first=newest_first
        )
        return IterationPage(records=records, next_cursor=next_cursor, total=total)

    def get_errors(
        self,
        task_id: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
        newest_first: bool = False,
    ) -> ErrorPage:
        """One page of error records, oldest first (or newest first), as feedback pages.

        Raises:
            StateNotFound: the task has no state.
            InvalidInput: a bad limit or cursor.
            CorruptState: the history index promises records that are not there.
        """
        _int_argument(limit, "limit", low=1, high=10_000)
        _bool_argument(newest_first, "newest_first")
        check_page(KIND_ERRORS, limit, cursor)
        state = self.get_state(task_id)
        records, next_cursor, total = self._history.page(
            state, KIND_ERRORS, limit=limit, cursor=cursor, newest_first=newest_first
        )
        return ErrorPage(records=records, next_cursor=next_cursor, total=total)

    # -- writes ---------------------------------------------------------------

    def get_or_create_state(
        self,
        task_id: str,
        *,
        status: Status | str = Status.PENDING,
        metadata: Mapping[str, Any] | None = None,
    ) -> TaskState:
        """The task's state, created (iteration 0, the given status) if it has none.

        Raises:
            InvalidInput: a bad task ID, status or metadata; nothing is written.
        """
        validate_task_id(task_id)
        parse_status(status, strict=True)
        _metadata(metadata)

        def keep(state: TaskState) -> tuple[TaskState | None, None]:
            return None, None  # an existing state is read, never written

        return self._mutate(task_id, keep, create={"status": status, "metadata": metadata})[0]

    def update_state(self, task_id: str, fn: Callable[[TaskState], TaskState]) -> TaskState:
        """Apply ``fn`` to the state and write the result, retrying on conflicts.

        ``fn`` must be a pure function of the state: on a conflict it is applied
        again to the state read back. After a write whose outcome was unknown,
        the write id it left on the object tells that it committed, as long as
        no other write landed after it; otherwise ``fn`` is applied again, so
        make it idempotent where that matters. Return the state unchanged to
        write nothing.

        Raises:
            StateNotFound: the task has no state.
            InvalidInput: ``fn`` returned something that is not a valid state.
        """

        if not callable(fn):
            raise InvalidInput("update_state needs a function of the state")

        def apply(state: TaskState) -> tuple[TaskState | None, None]:
            new = fn(state)
            _check_update(state, new)
            return (None if new == state else new), None

        return self._mutate(task_id, apply)[0]

    def delete_state(self, task_id: str) -> bool:
        """Delete the task's state and its history segments. False if there was none.

        The head is deleted with preconditions on its uid and resourceVersion,
        so a write that lands meanwhile makes the delete retry on fresh state.
        """
        validate_task_id(task_id)
        segments: list[tuple[str, str]] = []
        unknown: str | None = None  # the uid of a delete that may have gone through

        def attempt() -> bool:
            nonlocal segments, unknown
            obj = self._read(task_id)
            if obj is None:
                return unknown is not None
            if unknown is not None and obj.uid != unknown:
                # Ours went through, and the task was created again since: keep that one.
                return True
            try:
                # An inconsistent state is still deleted, with its segments.
                segments = [(s.name, s.uid) for s in decode_state(obj, check=False).segments]
            except RemstateError:
                segments = []  # unreadable: cleanup (or, in a cluster, GC) removes them
            self._forget(task_id)
            try:
                self.store.delete(obj.name, uid=obj.uid, resource_version=obj.resource_version)
            except NotFound:
                return unknown is not None
            except Unavailable as e:
                unknown = obj.uid
                maybe_applied.append(e.maybe_applied)
                raise
            return True

        maybe_applied: list[bool] = []
        try:
            deleted = self.retry.call(attempt)
        except (Unavailable, RetriesExhausted) as e:
            if not any(maybe_applied) or isinstance(e, OutcomeUnknown):
                raise
            raise OutcomeUnknown(
                f"the delete of task {task_id!r} may have gone through: its answer never "
                f"came before retries ran out ({e})",
                task_id=task_id,
            ) from e
        # Best effort: a segment left behind is an orphan, which cleanup removes.
        for name, uid in segments if deleted else ():
            with contextlib.suppress(RemstateError):
                self.store.delete(name, uid=uid or None)
        return deleted

    def increment_iteration(self, task_id: str, *, note: str = "", op_id: str | None = None) -> int:
        """Add one iteration and return its number, creating the state if needed.

        At the maximum it raises and writes nothing. Each increment adds an
        ``IterationRecord`` stamped by the clock, carrying ``op_id`` (a ULID
        when none is given).

        ``op_id`` is an idempotency key: if an increment with this key has
        committed, however long ago, this returns the iteration it got and
        writes nothing (even at the maximum). A workflow step that retries
        with the same key (its step id, say) increments once.

        Raises:
            MaxIterationsReached: the counter is at ``max_iterations``.
            InvalidInput: a bad note or key (1 to 128 printable characters).
        """
        if not isinstance(note, str):
            raise InvalidInput("note must be a string")
        op_id = str(ULID()) if op_id is None else validate_record_id(op_id, "increment key")
        max_iterations = self.max_iterations

        def increment(state: TaskState) -> tuple[TaskState | None, int]:
            # Committed before (a retry, ours or the caller's): its record is there.
            found, built = self._history.find(state, KIND_ITERATIONS, [op_id])
            record = found.get(op_id)
            if isinstance(record, IterationRecord):
                return None, record.iteration
            if state.iteration >= max_iterations:
                raise MaxIterationsReached(state.task_id, state.iteration, max_iterations)
            number = state.iteration + 1
            record = IterationRecord(number, self.clock(), note, {"op": op_id})
            record.validate()
            new = dataclasses.replace(
                state.with_filters(built),
                iteration=number,
                iteration_history=(*state.iteration_history, record),
            )
            return new, number

        return self._mutate(task_id, increment, create={})[1]

    def append_feedback(
        self,
        task_id: str,
        entry: FeedbackEntry | None = None,
        *,
        author: str | None = None,
        severity: Severity | str | None = None,
        issue_type: str | None = None,
        description: str | None = None,
        id: str | None = None,  # noqa: A002 - the entry's own field name
    ) -> FeedbackEntry:
        """Append one feedback entry; idempotent by entry id.

        Give an entry, or its fields (a ULID id is generated when none is given).
        Appending an id that is already there writes nothing and returns the
        stored entry, so a retry after a timeout cannot double an entry.

        Raises:
            InvalidInput: a bad field; nothing is written.
        """
        if entry is None:
            if author is None or severity is None or issue_type is None or description is None:
                raise InvalidInput("give an entry, or author, severity, issue_type and description")
            entry = FeedbackEntry.new(
                author=author,
                severity=severity,
                issue_type=issue_type,
                description=description,
                id=id,
                clock=self.clock,
            )
        elif not isinstance(entry, FeedbackEntry):
            raise InvalidInput(f"entry must be a FeedbackEntry, not {type(entry).__name__}")
        else:
            entry.validate()
        return self.append_feedback_many(task_id, [entry])[0]

    def append_feedback_many(
        self, task_id: str, entries: Iterable[FeedbackEntry]
    ) -> list[FeedbackEntry]:
        """Append many entries, in one write per ``MAX_BATCH`` (2048) entries.

        Entries whose id is already there, or repeated in ``entries``, are not
        appended again; the stored entry is returned in their place. Each write
        is idempotent, so if a call fails part-way, calling it again with the
        same entries completes it without doubling any.

        Raises:
            InvalidInput: a bad entry; nothing is written.
        """
        if isinstance(entries, str | bytes | Mapping) or not isinstance(entries, Iterable):
            raise InvalidInput("entries must be a list of FeedbackEntry")
        batch = list(entries)
        for entry in batch:
            if not isinstance(entry, FeedbackEntry):
                raise InvalidInput(f"entries must be FeedbackEntry, not {type(entry).__name__}")
            entry.validate()
        stored: list[FeedbackEntry] = []
        for start in range(0, len(batch), MAX_BATCH):
            stored.extend(self._append_batch(task_id, batch[start : start + MAX_BATCH]))
        if not batch:
            self.get_or_create_state(task_id)
        return stored

    def _append_batch(self, task_id: str, batch: list[FeedbackEntry]) -> list[FeedbackEntry]:
        # An id is looked up across the whole history (the head, then each
        # segment whose ID filter may hold it). A retry also looks at every
        # entry appended since its first attempt looked (by anyone), so that an
        # earlier attempt of ours that committed unseen is found without filters.
        floor: list[int] = []  # the history's length when the first attempt looked

        def append(state: TaskState) -> tuple[TaskState | None, list[FeedbackEntry]]:
            if not floor:
                floor.append(state.feedback_total)
            since = self._history.records_since(state, KIND_FEEDBACK, floor[0])
            unseen = {e.id for e in batch if e.id not in since}
            found, built = self._history.find(state, KIND_FEEDBACK, unseen)
            stored: list[FeedbackEntry] = []
            new: list[FeedbackEntry] = []
            pending: dict[str, FeedbackEntry] = {}
            for entry in batch:
                hit = pending.get(entry.id) or found.get(entry.id) or since.get(entry.id)
                if isinstance(hit, FeedbackEntry):
                    stored.append(hit)
                    continue
                pending[entry.id] = entry
                new.append(entry)
                stored.append(entry)
            if not new:
                return None, stored
            return (
                dataclasses.replace(
                    state.with_filters(built),
                    feedback_history=(*state.feedback_history, *new),
                ),
                stored,
            )

        return self._mutate(task_id, append, create={})[1]

    def resolve_feedback(
        self, task_id: str, entry_id: str, *, resolved: bool = True
    ) -> FeedbackEntry:
        """Mark a feedback entry resolved (or not) and return it.

        An entry that moved to a history segment is resolved in the head's
        overlay of resolutions, laid over the segment's entries when read: the
        segments themselves never change. The overlay holds at most
        ``RESOLUTIONS_LIMIT`` (1024) entries.

        Raises:
            StateNotFound: the task has no state.
            InvalidInput: the task has no feedback with that id, or the overlay is full.
        """

        _bool_argument(resolved, "resolved")

        def resolve(state: TaskState) -> tuple[TaskState | None, FeedbackEntry]:
            history = list(state.feedback_history)
            for i, entry in enumerate(history):
                if entry.id != entry_id:
                    continue
                if entry.resolved == resolved:
                    return None, entry
                updated = dataclasses.replace(
                    entry, resolved=resolved, resolved_at=self.clock() if resolved else None
                )
                history[i] = updated
                return dataclasses.replace(state, feedback_history=tuple(history)), updated
            hit = self._history.find(state, KIND_FEEDBACK, [entry_id])[0].get(entry_id)
            archived = hit if isinstance(hit, FeedbackEntry) else None
            if archived is None:
                raise InvalidInput(f"task {state.task_id!r} has no feedback with id {entry_id!r}")
            if archived.resolved == resolved:
                return None, archived
            if (
                entry_id not in state.archived_resolutions
                and len(state.archived_resolutions) >= RESOLUTIONS_LIMIT
            ):
                raise InvalidInput(
                    f"task {state.task_id!r} already holds {RESOLUTIONS_LIMIT} resolutions of "
                    "archived feedback, the most its head object keeps"
                )
            at = self.clock() if resolved else None
            resolutions = {**state.archived_resolutions, entry_id: at}
            return (
                dataclasses.replace(state, archived_resolutions=resolutions),
                dataclasses.replace(archived, resolved=resolved, resolved_at=at),
            )

        return self._mutate(task_id, resolve)[1]

    def set_status(self, task_id: str, status: Status | str) -> TaskState:
        """Set the task's status, creating the state if needed.

        Raises:
            InvalidInput: an unknown status; nothing is written.
        """
        value = parse_status(status, strict=True)

        def apply(state: TaskState) -> tuple[TaskState | None, None]:
            if state.status == value:
                return None, None
            return dataclasses.replace(state, status=value), None

        return self._mutate(task_id, apply, create={})[0]

    def record_error(
        self,
        task_id: str,
        message: str,
        *,
        id: str | None = None,  # noqa: A002 - the record's own field name
    ) -> ErrorRecord:
        """Append an error message, stamped by the clock; idempotent by ``id``.

        ``id`` (a ULID when none is given) is kept on the record. If a record
        with this id has committed, however long ago, this returns it and
        writes nothing, so a retry cannot double an error record.

        Raises:
            InvalidInput: an empty or oversized message, or a bad id (1 to 128
                printable characters); nothing is written.
        """
        if not isinstance(message, str) or not message.strip():
            raise InvalidInput("an error message must be a non-empty string")
        record_key = str(ULID()) if id is None else validate_record_id(id, "error id")
        record = ErrorRecord.new(message, clock=self.clock)
        record = dataclasses.replace(record, extra={"id": record_key})
        record.validate()

        def apply(state: TaskState) -> tuple[TaskState | None, ErrorRecord]:
            found, built = self._history.find(state, KIND_ERRORS, [record_key])
            existing = found.get(record_key)
            if isinstance(existing, ErrorRecord):
                return None, existing
            return dataclasses.replace(
                state.with_filters(built), error_messages=(*state.error_messages, record)
            ), record

        return self._mutate(task_id, apply, create={})[1]

    def update_metadata(
        self,
        task_id: str,
        updates: Mapping[str, Any] | None = None,
        *,
        remove: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Merge ``updates`` into the task's metadata and drop the ``remove`` keys.

        Raises:
            InvalidInput: values that are not JSON; nothing is written.
        """
        updates = _metadata(updates)
        if (
            isinstance(remove, str)
            or not isinstance(remove, Sequence)
            or not all(isinstance(k, str) for k in remove)
        ):
            raise InvalidInput("remove must be a list of metadata keys")

        def apply(state: TaskState) -> tuple[TaskState | None, dict[str, Any]]:
            merged = dict(state.metadata)
            merged.update(updates)
            for key in remove:
                merged.pop(key, None)
            if merged == dict(state.metadata):
                return None, merged
            return dataclasses.replace(state, metadata=merged), merged

        return self._mutate(task_id, apply, create={})[1]

    # -- the write path -------------------------------------------------------

    def _mutate(
        self,
        task_id: str,
        mutation: Callable[[TaskState], tuple[TaskState | None, _R]],
        *,
        create: Mapping[str, Any] | None = None,
    ) -> tuple[TaskState, _R]:
        """Apply ``mutation`` with optimistic concurrency; return the state and result.

        ``create``: if given, a missing state is created with these options to
        ``TaskState.new``; if None, a missing state raises StateNotFound.
        """
        validate_task_id(task_id)
        op: _Operation[_R] = _Operation(str(ULID()))
        try:
            return self.retry.call(lambda: self._attempt(task_id, mutation, create, op))
        except (Unavailable, RetriesExhausted) as e:
            if not op.maybe_applied or isinstance(e, OutcomeUnknown):
                raise
            # A write of ours went unanswered and no later read found it: say so,
            # so that a caller does not repeat a step that may have been done.
            unknown = OutcomeUnknown(
                f"a write to task {task_id!r} may have committed: its answer never came "
                f"before retries ran out ({e})",
                task_id=task_id,
            )
            unknown.attempts = e.attempts
            raise unknown from e
        finally:
            if op.turns.holding:
                self._give_back_turn(task_id, op.turns)

    def _attempt(
        self,
        task_id: str,
        mutation: Callable[[TaskState], tuple[TaskState | None, _R]],
        create: Mapping[str, Any] | None,
        op: _Operation[_R],
    ) -> tuple[TaskState, _R]:
        obj, from_cache = self._last_seen(task_id)
        if op.attempts == 0 and not op.turns.stepped_aside and self._free_writes_spent(task_id):
            op.turns.step_aside()
        if obj is not None:
            waited = self._await_turn(task_id, obj, op.turns, fresh=not from_cache)
            from_cache = from_cache and waited is obj
            obj = waited
        if obj is not None and op.unknown:
            committed = op.unknown.get(obj.annotations.get(ANNOTATION_WRITE_ID, ""))
            if committed is not None:
                return committed  # an earlier attempt committed; its response was lost
        state, new, result = self._decide(task_id, obj, from_cache, mutation, create)
        if new is None:
            return state, result
        new = dataclasses.replace(new, last_update=self.clock())
        write_id = op.next_write_id()
        if obj is None and plan_compaction(new) is not None:
            # Segments need the head's uid: create the bare head first.
            self._write(task_id, None, state, write_id)
            raise _Stale("created the head; now the history")
        created: list[StoredObject] = []
        try:
            if obj is not None:
                new = self._compact(obj, new, created)
            self._write(task_id, obj, new, write_id)
        except Unavailable as e:
            # The write may yet commit (and refer to our segments): keep both.
            # If it did not, the segments are orphans, which cleanup removes.
            op.unknown[write_id] = (new, result)
            op.maybe_applied = op.maybe_applied or e.maybe_applied
            raise
        except RemstateError as e:
            if isinstance(e, Conflict):
                op.turns.lost()
            # Refused for certain. The head, read afresh, says which segments it took.
            if created:
                self._discard_unreferenced(task_id, created)
            raise
        op.turns.holding = False  # our write dropped the turn annotation
        if op.turns.took and op.turns.contended:
            with self._lock:
                self._free_writes[task_id] = FREE_WRITES
        return new, result

    def _await_turn(
        self, task_id: str, obj: StoredObject, turns: Turns, *, fresh: bool
    ) -> StoredObject | None:
        """The object to write from: ``obj``, or, under sustained contention, ours by turn.

        An operation that queues (see ``remstate.turns``) first sleeps out its
        patience, with no reads. Then it takes the turn with a patch that
        applies only if the turn is free, and returns the object in place of a
        read. While another writer holds it, the patch is refused (a small
        answer, where a read would carry the whole object) and tried again
        after short pauses; now and then a read tells who holds it, so that a
        turn that stays in sight for ``TURN_TTL`` is taken over. All within
        the retry deadline.
        """
        if not turns.queued(obj.annotations):
            return obj
        rest = min(turns.patience_left(), self._time_left(turns))
        if rest > 0:
            time.sleep(rest)
        elif fresh and obj.annotations.get(ANNOTATION_TURN) == turns.token:
            return obj  # we took it before, and a write of ours lost to an older turn
        name = object_name(task_id)
        expected: str | None = None  # free; or a turn that has expired in our sight
        last_read = time.monotonic() if fresh and rest <= 0 else None
        while self._time_left(turns) > 0:
            try:
                taken = self.store.annotate(
                    name, {ANNOTATION_TURN: turns.token}, expect={ANNOTATION_TURN: expected}
                )
            except Conflict:
                expected = None
                now = time.monotonic()
                if last_read is None or now - last_read >= TURN_TTL / 2:
                    current, last_read = self._read(task_id), now
                    if current is None:
                        return None
                    holder = current.annotations.get(ANNOTATION_TURN)
                    if holder == turns.token:
                        return current
                    if holder is None or not turns.must_wait(current.annotations):
                        expected = holder
                        continue
                time.sleep(turns.pause())
                continue
            except NotFound:
                self._forget(task_id)
                raise _Stale("deleted meanwhile") from None
            turns.holding = turns.took = True
            self._remember(task_id, taken)
            return taken
        return obj  # the deadline holds: try, and let the retry policy stop

    def _free_writes_spent(self, task_id: str) -> bool:
        """Count one write made after a contended turn of ours; True when none is left."""
        with self._lock:
            left = self._free_writes.get(task_id)
            if left is None:
                return False
            if left <= 0:
                del self._free_writes[task_id]
                return True
            self._free_writes[task_id] = left - 1
            return False

    def _time_left(self, turns: Turns) -> float:
        """Seconds left to wait for a turn: to the retry deadline, less time for the write."""
        left = remaining()
        if left is None:
            left = turns.started + self.retry.deadline - time.monotonic()
        return left - _WRITE_MARGIN

    def _give_back_turn(self, task_id: str, turns: Turns) -> None:
        """Best effort: drop our turn after an operation that did not write.

        Only if it is still ours; if this fails, the turn expires.
        """
        with contextlib.suppress(RemstateError):
            self._remember(
                task_id,
                self.store.annotate(
                    object_name(task_id),
                    {ANNOTATION_TURN: None},
                    expect={ANNOTATION_TURN: turns.token},
                ),
            )

    def _decide(
        self,
        task_id: str,
        obj: StoredObject | None,
        from_cache: bool,
        mutation: Callable[[TaskState], tuple[TaskState | None, _R]],
        create: Mapping[str, Any] | None,
    ) -> tuple[TaskState, TaskState | None, _R]:
        """Apply the mutation to what we have: (state, new state or None for no write, result).

        A refusal or a "nothing to do" decided on a remembered object is
        confirmed on a fresh read first: another writer may have changed it.
        """
        if obj is None:
            if create is None:
                raise StateNotFound(task_id)
            state = TaskState.new(task_id, clock=self.clock, **create)
        else:
            state = self._decode(task_id, obj)
        try:
            new, result = mutation(state)
        except RemstateError:
            if from_cache:
                self._forget(task_id)
                raise _Stale("re-reading before refusing") from None
            raise
        if new is None:
            if obj is None:
                return state, state, result  # create it, though nothing else changed
            if from_cache:
                self._forget(task_id)
                raise _Stale("re-reading before a no-op")
        return state, new, result

    def _write(
        self, task_id: str, old: StoredObject | None, state: TaskState, op_id: str
    ) -> StoredObject:
        """One create or compare-and-swap replace; remembers what was written.

        Labels and annotations that are not remstate's (added with kubectl, say)
        are carried over. Any write makes a soft-deleted task active again: it
        is in use.
        """
        data, labels, annotations = encode_state(state)
        annotations[ANNOTATION_WRITE_ID] = op_id
        name = object_name(task_id)
        try:
            if old is None:
                written = self.store.create(
                    StoredObject(name=name, data=data, labels=labels, annotations=annotations)
                )
            else:
                written = self.store.replace(
                    StoredObject(
                        name=name,
                        data=data,
                        labels={**_foreign(old.labels), **labels},
                        annotations={**_foreign(old.annotations), **annotations},
                        resource_version=old.resource_version,
                        owner_references=old.owner_references,
                    )
                )
        except AlreadyExists:
            self._forget(task_id)
            raise _Stale("created by another writer first") from None
        except NotFound:
            self._forget(task_id)
            if old is None:
                raise  # a create found no namespace: retrying cannot help
            raise _Stale("deleted meanwhile") from None
        except (Conflict, Unavailable):
            self._forget(task_id)
            raise
        # What we wrote is the current schema, whatever version it was read at.
        self._remember(task_id, written, dataclasses.replace(state, schema_version=SCHEMA_VERSION))
        return written

    def _compact(
        self, head: StoredObject, state: TaskState, created: list[StoredObject]
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
                    segment = self.store.create(build(n))
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
            self._history.remember_page(page, state)  # what it holds: no need to read it
            state = state.with_filter_page(page)
        return state

    def _discard_unreferenced(self, task_id: str, segments: Sequence[StoredObject]) -> None:
        """Delete the segments we created that the head, read afresh, does not refer to.

        A Conflict alone does not prove our head write failed: the client may
        have re-sent a PUT whose first copy committed. So ask the head.
        """
        try:
            head = self._read(task_id)
            referenced = (
                set() if head is None else {s.uid for s in decode_state(head, check=False).segments}
            )
        except RemstateError:
            return  # cannot tell: leave them as orphans for cleanup
        for segment in segments:
            if segment.uid not in referenced:
                with contextlib.suppress(RemstateError):
                    self.store.delete(segment.name, uid=segment.uid)

    # -- the cache of last-seen objects ----------------------------------------

    def _read(self, task_id: str) -> StoredObject | None:
        name = object_name(task_id)
        try:
            obj = self._get(name)
        except NotFound:
            self._forget(task_id)
            return None
        self._remember(task_id, obj)
        return obj

    def _get(self, name: str) -> StoredObject:
        """A read, retried on transient errors by the policy."""
        return self.retry.call(lambda: self.store.get(name))

    def _last_seen(self, task_id: str) -> tuple[StoredObject | None, bool]:
        with self._lock:
            seen = self._seen.get(task_id)
            if seen is not None:
                self._seen.move_to_end(task_id)
                return seen[0], True
        return self._read(task_id), False

    def _decode(self, task_id: str, obj: StoredObject) -> TaskState:
        """The state of ``obj``, decoded once per resourceVersion."""
        with self._lock:
            seen = self._seen.get(task_id)
        previous = seen[1] if seen is not None else None
        if previous is not None and seen is not None and _same_version(seen[0], obj):
            return previous
        # A newer version mostly repeats what we decoded before: reuse those records.
        state = decode_state(obj, previous=previous)
        with self._lock:
            seen = self._seen.get(task_id)
            if seen is not None and _same_version(seen[0], obj):
                self._seen[task_id] = (obj, state)
        return state

    def _remember(self, task_id: str, obj: StoredObject, state: TaskState | None = None) -> None:
        with self._lock:
            prev = self._seen.get(task_id)
            if state is None and prev is not None and _same_version(prev[0], obj):
                state = prev[1]  # a re-read of the version we know: keep its decoding
            self._seen[task_id] = (obj, state)
            self._seen.move_to_end(task_id)
            while len(self._seen) > self._cache_size:
                self._seen.popitem(last=False)

    def _forget(self, task_id: str) -> None:
        with self._lock:
            self._seen.pop(task_id, None)


_OPTIONS = frozenset({"namespace", "max_iterations", "retry", "clock", "cache_size", "mode"})


def _check_update(old: TaskState, new: object) -> None:
    """Refuse what an update function may not do: the rules the manager keeps.

    The counter and its records change only through ``increment_iteration``
    (so the maximum holds), and the history index only through compaction (so
    no segment is lost). New feedback entries are validated like appended ones.
    """
    if not isinstance(new, TaskState):
        raise InvalidInput(f"update function returned {type(new).__name__}, not TaskState")
    if new.task_id != old.task_id:
        raise InvalidInput("an update function must not change task_id")
    if new.iteration != old.iteration or new.iteration_history != old.iteration_history:
        raise InvalidInput("use increment_iteration to change the iteration counter")
    if (
        new.history_index != old.history_index
        or new.archived_resolutions != old.archived_resolutions
    ):
        raise InvalidInput("an update function must not change the history index")
    known = {e.id for e in old.feedback_history}
    ids = [e.id for e in new.feedback_history]
    if len(set(ids)) != len(ids):
        raise InvalidInput("feedback ids must be unique")
    for entry in new.feedback_history:
        if entry.id not in known:
            entry.validate()


class _Operation(Generic[_R]):
    """One call across its attempts: the writes whose outcome is unknown, by write id.

    Each attempt writes with an id of its own. A write that failed for certain
    is forgotten; one that timed out is kept, so that if it (or a late copy of
    it) committed, a later attempt that reads it back returns its result.
    """

    def __init__(self, op_id: str) -> None:
        self.id = op_id
        self.attempts = 0
        self.unknown: dict[str, tuple[TaskState, _R]] = {}
        #: A write was sent and its answer lost: until one attempt succeeds, it may have committed.
        self.maybe_applied = False
        self.turns = Turns(op_id)

    def next_write_id(self) -> str:
        self.attempts += 1
        return f"{self.id}.{self.attempts}"


def _metadata(value: object) -> dict[str, Any]:
    """Metadata given by a caller, checked: a mapping of JSON values, or nothing."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput(f"metadata must be a mapping, not {type(value).__name__}")
    normalized: dict[str, Any] = normalize_json(dict(value), what="metadata")
    return normalized


def _check_settings(
    *,
    max_iterations: object = 10,
    retry: object = None,
    clock: object = utc_now,
    cache_size: object = DEFAULT_CACHE_SIZE,
) -> None:
    """The constructor's settings, checked (``from_url`` checks them before opening a store)."""
    _int_argument(max_iterations, "max_iterations", low=1)
    _int_argument(cache_size, "cache_size", low=0)
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise InvalidInput(f"retry must be a RetryPolicy, not {type(retry).__name__}")
    if not callable(clock):
        raise InvalidInput("clock must be a function returning an aware datetime")


def _int_argument(value: object, what: str, *, low: int, high: int | None = None) -> None:
    """Refuse what is not an int in ``low..high``; a bool is an int to Python, not to us."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be an integer, not {type(value).__name__} {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidInput(f"{what} must be {bounds}, not {value!r}")


def _bool_argument(value: object, what: str) -> None:
    """Refuse what is not a bool: ``"no"`` or ``0`` must not silently mean anything."""
    if not isinstance(value, bool):
        raise InvalidInput(f"{what} must be True or False, not {type(value).__name__} {value!r}")


def _same_version(a: StoredObject, b: StoredObject) -> bool:
    return a.uid == b.uid and a.resource_version == b.resource_version


def _foreign(meta: Mapping[str, str]) -> dict[str, str]:
    """The labels or annotations that remstate does not own."""
    return {
        k: v for k, v in meta.items() if not k.startswith("remstate.io/") and k != LABEL_MANAGED_BY
    }
