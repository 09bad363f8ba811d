"""The state manager: every operation of a remediation loop, on any Store.

Written once against the Store contract; it never asks which backend it has.

A facade: each operation checks its arguments, reads what it needs from the
history (``remstate.history``), and hands a pure state change
(``remstate.mutations``) to the compare-and-swap writer (``remstate.writer``),
which applies it to the last object seen, writes it with one request when
uncontended, and re-applies it after a conflict. The last-seen objects are
cached in ``remstate.cache``; compaction into history segments is
``remstate.segments``.

Idempotency: feedback by entry id, an increment by its key (``op_id``), an
error record by its id. Those ids are looked up across the whole history,
however old, before each application of the change, so a retry (the writer's,
after a lost answer, or the caller's with the same id) writes nothing twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ulid import ULID

from remstate import mutations, recovery, snapshots
from remstate.arguments import (
    OPTIONS,
    bool_argument,
    check_settings,
    feedback_argument,
    int_argument,
    keys_argument,
    metadata_argument,
    policy_argument,
)
from remstate.cache import DEFAULT_CACHE_SIZE, LastSeen
from remstate.cleanup import DEFAULT_PAGE_SIZE, DEFAULT_RATE, Cleaner, CleanupReport, Progress
from remstate.errors import InvalidInput, InvalidObject, NotFound, RemstateError, StateNotFound
from remstate.history import ErrorPage, FeedbackPage, HistoryReader, IterationPage, check_page
from remstate.metrics import Metrics
from remstate.mutations import Found
from remstate.recovery import RecoveryReport, RestoreReport, ValidationReport
from remstate.retry import RetryPolicy
from remstate.schema import (
    ANNOTATION_TASK_ID,
    KIND_ERRORS,
    KIND_FEEDBACK,
    KIND_ITERATIONS,
    RESOLUTIONS_LIMIT,
    ROLE_STATE,
    Clock,
    ErrorRecord,
    FeedbackEntry,
    Policy,
    Severity,
    StatePage,
    StateSummary,
    Status,
    TaskState,
    managed_selector,
    parse_status,
    summarize,
    summarize_head,
    utc_now,
    validate_record_id,
    validate_task_id,
)
from remstate.schema.export import ExportedState
from remstate.snapshots import DEFAULT_SNAPSHOTS_KEPT, Snapshot
from remstate.store import Store, StoredObject, open_store
from remstate.store.selectors import parse as parse_selector
from remstate.transfer import ImportOutcome, Transfer
from remstate.writer import CLEANUP_DEADLINE, Writer

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from remstate.store.opener import ApiClient

__all__ = [
    "CLEANUP_DEADLINE",
    "ErrorPage",
    "ExportedState",
    "FeedbackPage",
    "ImportOutcome",
    "IterationPage",
    "StateManager",
    "StatePage",
    "StateSummary",
]

#: The most entries one write appends: about 500 KB of typical entries, so
#: that one write, and the segments it fills, stay well under 1 MiB each.
MAX_BATCH = 2048


class StateManager:
    """Reads and writes the state of remediation loops.

    Args:
        store: the Store to keep state in. Or give ``api_client`` (the caller's
            ``kubernetes.client.ApiClient``) and ``namespace`` for ConfigMaps.
        max_iterations: the iteration limit a task gets when it is created
            here (10 by default; 1 to ``MAX_ITERATIONS_LIMIT``). It is stored
            with the task, and every writer enforces the stored limit; this one
            only for a task that stores none (written before policies).
        ttl: the retention a task gets when it is created here (a timedelta,
            ``"14d"`` or seconds); None: the cleanup's default applies.
        retry: how long to retry conflicts and transient errors.
        clock: a callable returning an aware datetime; every timestamp uses it.
        metrics: the Prometheus collectors to count in (``remstate.metrics.Metrics``),
            shared by the managers that share a registry.
        registry: a ``prometheus_client.CollectorRegistry`` to register new
            collectors in; with neither, the manager keeps a registry of its own
            (never the global default, so that two managers do not collide).
            Read them at ``manager.metrics``.
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        api_client: ApiClient | None = None,
        namespace: str | None = None,
        max_iterations: int = 10,
        ttl: timedelta | str | int | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock = utc_now,
        cache_size: int = DEFAULT_CACHE_SIZE,
        snapshots_kept: int = DEFAULT_SNAPSHOTS_KEPT,
        metrics: Metrics | None = None,
        registry: CollectorRegistry | None = None,
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
        check_settings(
            max_iterations=max_iterations,
            ttl=ttl,
            retry=retry,
            clock=clock,
            cache_size=cache_size,
            snapshots_kept=snapshots_kept,
            metrics=metrics,
            registry=registry,
        )
        self.store: Store = store
        self.max_iterations = max_iterations
        self.ttl = policy_argument(ttl=ttl).ttl
        self.retry = retry or RetryPolicy()
        self.clock = clock
        #: How many snapshots of each task are kept (the newest).
        self.snapshots_kept = snapshots_kept
        self.metrics = metrics if metrics is not None else Metrics(registry)
        # The last object seen of each task, and its decoded state once known:
        # an uncontended write then costs one request and no decoding.
        self._seen = LastSeen(self._get, cache_size)
        self._history = HistoryReader(self._get)
        self._writer = Writer(self, seen=self._seen, history=self._history, cache_size=cache_size)

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
        unknown = set(options) - OPTIONS
        if unknown:
            raise InvalidInput(f"unknown StateManager options: {', '.join(sorted(unknown))}")
        mode = options.pop("mode", "rwc")
        namespace = options.pop("namespace", None)
        # Before the store is opened: a bad option must not leave a database behind.
        check_settings(**options)
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
        obj = self._seen.read(task_id)
        if obj is None:
            raise StateNotFound(task_id)
        return self._seen.decode(task_id, obj)

    def get_versioned_state(self, task_id: str) -> tuple[TaskState, str]:
        """The task's state read afresh, and the resourceVersion it was read at.

        The version is what ``delete_state(resource_version=...)`` takes (an
        HTTP ``ETag``).

        Raises:
            StateNotFound, CorruptState, UnsupportedSchemaVersion: as :meth:`get_state`.
        """
        obj = self._seen.read(task_id)
        if obj is None:
            raise StateNotFound(task_id)
        return self._seen.decode(task_id, obj), obj.resource_version

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
        entries, next_cursor, total = self._page(
            task_id, KIND_FEEDBACK, limit, cursor, newest_first
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
        records, next_cursor, total = self._page(
            task_id, KIND_ITERATIONS, limit, cursor, newest_first
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
        records, next_cursor, total = self._page(task_id, KIND_ERRORS, limit, cursor, newest_first)
        return ErrorPage(records=records, next_cursor=next_cursor, total=total)

    # -- writes ---------------------------------------------------------------

    def get_or_create_state(
        self,
        task_id: str,
        *,
        status: Status | str = Status.PENDING,
        metadata: Mapping[str, Any] | None = None,
        max_iterations: int | None = None,
        ttl: timedelta | str | int | None = None,
    ) -> TaskState:
        """The task's state, created (iteration 0, the given status) if it has none.

        A task created here stores its policy: ``max_iterations`` and ``ttl``
        where given, else this manager's defaults. An existing task keeps the
        policy it has (change it with :meth:`set_policy`).

        Raises:
            InvalidInput: a bad task ID, status, metadata, limit or ttl; nothing is written.
        """
        validate_task_id(task_id)
        parse_status(status, strict=True)
        metadata_argument(metadata)
        policy = policy_argument(max_iterations=max_iterations, ttl=ttl)

        def keep(state: TaskState) -> tuple[TaskState | None, None]:
            return None, None  # an existing state is read, never written

        create = {"status": status, "metadata": metadata, "policy": policy}
        return self._writer.mutate(task_id, keep, create=create)[0]

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
            InvalidInput: ``fn`` returned something that is not a valid state,
                or added a feedback entry or error record whose id is in the
                history already (in the head or in a segment).
        """

        if not callable(fn):
            raise InvalidInput("update_state needs a function of the state")

        def apply(state: TaskState) -> tuple[TaskState | None, None]:
            new = mutations.check_update(state, fn(state))
            added = mutations.added_ids(state, new)
            found = {kind: self._find(state, kind, keys) for kind, keys in added.items()}
            return mutations.update(state, new, found=found)

        return self._writer.mutate(task_id, apply)[0]

    def delete_state(self, task_id: str, *, resource_version: str | None = None) -> bool:
        """Delete the task's state, its history segments and snapshots. False if there was none
        (no state and no snapshot: a task purged with ``keep_snapshot`` still has one).

        The head is deleted with preconditions on its uid and resourceVersion,
        so a write that lands meanwhile makes the delete retry on fresh state.
        Segments and snapshots go after it, best effort: one left behind is an
        orphan, which cleanup removes. Snapshots are deleted even when the head
        is gone, with a snapshot kept at a purge (``keep_snapshot``).

        Args:
            resource_version: delete only this version of the state (from
                :meth:`get_versioned_state`; an HTTP ``If-Match``).

        Raises:
            PreconditionFailed: ``resource_version`` was given and the state is
                at another one, or has none; nothing was deleted.
        """
        deleted = self._writer.delete(task_id, resource_version=resource_version)
        # Also when the head is gone: a snapshot kept at its purge goes only this way.
        once = RetryPolicy(max_attempts=1, deadline=CLEANUP_DEADLINE, retry_transient=False)
        removed = 0
        with contextlib.suppress(RemstateError):
            removed = once.call(lambda: snapshots.delete_snapshots(self.store, task_id))
        return deleted or removed > 0

    def increment_iteration(self, task_id: str, *, note: str = "", op_id: str | None = None) -> int:
        """Add one iteration and return its number, creating the state if needed.

        At the maximum it raises and writes nothing. Each increment adds an
        ``IterationRecord`` stamped by the clock, carrying ``op_id`` (a ULID
        when none is given).

        ``op_id`` is an idempotency key: if an increment with this key has
        committed, however long ago, this returns the iteration it got and
        writes nothing (even at the maximum). A workflow step that retries
        with the same key (its step id, say) increments once.

        The limit is the one the task stores (its policy), whatever this
        manager was configured with; this manager's ``max_iterations`` only for
        a task that stores none (written before policies), whose write then
        stores it.

        Raises:
            MaxIterationsReached: the counter is at the task's limit.
            InvalidInput: a bad note or key (1 to 128 printable characters).
        """
        if not isinstance(note, str):
            raise InvalidInput("note must be a string")
        op_id = str(ULID()) if op_id is None else validate_record_id(op_id, "increment key")
        max_iterations = self.max_iterations
        counted = False  # this call's increment, not a replay of a committed one

        def increment(state: TaskState) -> tuple[TaskState | None, int]:
            nonlocal counted
            # Committed before (a retry, ours or the caller's): its record is there.
            found = self._find(state, KIND_ITERATIONS, [op_id])
            new, number = mutations.increment(
                state,
                op_id=op_id,
                note=note,
                now=self.clock(),
                max_iterations=max_iterations,
                found=found,
            )
            counted = new is not None
            return new, number

        number = self._writer.mutate(task_id, increment, create={})[1]
        if counted:
            self.metrics.iterations.observe(number)
        return number

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
        batch = feedback_argument(entries)
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
            # Disjoint: an id seen since the first attempt is not looked up again.
            known = Found({**since, **found}, built)
            return mutations.append_batch(state, batch, found=known)

        return self._writer.mutate(task_id, append, create={})[1]

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
        bool_argument(resolved, "resolved")

        def resolve(state: TaskState) -> tuple[TaskState | None, FeedbackEntry]:
            # The head is searched first, without I/O; segments only if it is not there.
            hit = self._find(state, KIND_FEEDBACK, [entry_id]).records.get(entry_id)
            return mutations.resolve(
                state,
                entry_id,
                resolved=resolved,
                now=self.clock(),
                archived=hit if isinstance(hit, FeedbackEntry) else None,
                # Read at call time: tests lower the limit on this module.
                resolutions_limit=RESOLUTIONS_LIMIT,
            )

        return self._writer.mutate(task_id, resolve)[1]

    def set_status(self, task_id: str, status: Status | str) -> TaskState:
        """Set the task's status, creating the state if needed.

        Raises:
            InvalidInput: an unknown status; nothing is written.
        """
        value = parse_status(status, strict=True)
        return self._writer.mutate(
            task_id, lambda state: mutations.set_status(state, value), create={}
        )[0]

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
            found = self._find(state, KIND_ERRORS, [record_key])
            return mutations.record_error(state, record, key=record_key, found=found)

        return self._writer.mutate(task_id, apply, create={})[1]

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
        checked = metadata_argument(updates)
        keys_argument(remove, "remove", what="metadata keys")
        return self._writer.mutate(
            task_id,
            lambda state: mutations.update_metadata(state, checked, remove),
            create={},
        )[1]

    # -- per-task policy ---------------------------------------------------------

    @property
    def default_policy(self) -> Policy:
        """The policy a task gets when this manager creates it (or first writes one without)."""
        return Policy(max_iterations=self.max_iterations, ttl=self.ttl)

    def set_policy(
        self,
        task_id: str,
        *,
        max_iterations: int | None = None,
        ttl: timedelta | str | int | None = None,
        clear_ttl: bool = False,
    ) -> Policy:
        """Change the task's stored policy and return it; every writer enforces it at once.

        ``max_iterations``: the new limit (1 to ``MAX_ITERATIONS_LIMIT``); it
        may be below the counter, and then the next increment is refused.
        ``ttl``: the task's own retention (a timedelta, ``"14d"`` or seconds);
        ``clear_ttl``: back to the cleanup's default. What is not given stays
        as stored; a task that stores no policy (written before policies)
        takes this manager's defaults for it. The state is created if needed.
        A compare-and-swap write like any other.

        Raises:
            InvalidInput: nothing to change, a limit out of range, a bad ttl,
                or both ``ttl`` and ``clear_ttl``; nothing is written.
        """
        bool_argument(clear_ttl, "clear_ttl")
        given = policy_argument(max_iterations=max_iterations, ttl=ttl)
        if clear_ttl and given.ttl is not None:
            raise InvalidInput("give ttl or clear_ttl, not both")
        if given.max_iterations is None and given.ttl is None and not clear_ttl:
            raise InvalidInput("give max_iterations, ttl or clear_ttl")
        defaults = self.default_policy

        def apply(state: TaskState) -> tuple[TaskState | None, Policy]:
            return mutations.set_policy(
                state,
                max_iterations=given.max_iterations,
                ttl=given.ttl,
                clear_ttl=clear_ttl,
                defaults=defaults,
            )

        return self._writer.mutate(task_id, apply, create={})[1]

    # -- export and import (remstate export / import; remstate.transfer) ---------

    def export_state(self, task_id: str) -> ExportedState:
        """The task's whole state, its history included, in the export format.

        The history is read page by page from its segments (one task's
        history in memory, no more); see ``remstate.schema.export``.

        Raises:
            StateNotFound: the task has no state.
            CorruptState: the head or a segment cannot be read.
        """
        validate_task_id(task_id)
        return self._transfer().export_state(task_id)

    def import_state(self, exported: ExportedState, *, overwrite: bool = False) -> ImportOutcome:
        """Write an exported state into this store; idempotent.

        The same state already there: ``SKIPPED``, nothing written. A
        different one: ``DIFFERS`` and left as it is, unless ``overwrite``:
        then a snapshot of it is taken first and it is replaced
        (``OVERWRITTEN``). None: ``CREATED``. The write is a compare-and-swap
        on the head the import compared, so a write landing meanwhile is never
        lost (the import decides again). The state is written as exported:
        ids, timestamps, resolutions, records, errors, metadata, policy,
        status, lifecycle.

        Raises:
            InvalidInput: not an ``ExportedState``; what must stay in the head
                does not fit (``StateTooLarge``); nothing is written.
            RetriesExhausted: other writers kept changing the task meanwhile.
        """
        if not isinstance(exported, ExportedState):
            kind = type(exported).__name__
            raise InvalidInput(f"import_state takes an ExportedState, not {kind}")
        bool_argument(overwrite, "overwrite")
        try:
            return self._transfer().import_state(exported, overwrite=overwrite)
        finally:
            self._seen.forget(exported.task_id)

    def _transfer(self) -> Transfer:
        return Transfer(
            self,
            seen=self._seen,
            history=self._history,
            writer=self._writer,
            snapshot=self._snapshot_before_import,
        )

    def _snapshot_before_import(self, task_id: str, head: StoredObject) -> None:
        snapshots.take_snapshot(
            self.store,
            task_id,
            head,
            reason="import --overwrite",
            now=self.clock(),
            keep=self.snapshots_kept,
        )

    # -- TTL cleanup (remstate.cleanup) -------------------------------------------

    def cleanup_old_states(
        self,
        *,
        ttl: timedelta | str | float = timedelta(days=7),
        grace: timedelta | str | float = timedelta(hours=24),
        dry_run: bool = False,
        force: bool = False,
        limit: int | None = None,
        keep_snapshot: bool = False,
        orphans: bool = True,
        keep_going: Callable[[], bool] | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        requests_per_second: float | None = DEFAULT_RATE,
        progress: Progress | None = None,
    ) -> CleanupReport:
        """Soft-delete states not updated for ``ttl``; purge them ``grace`` later.

        Scans heads' metadata only, ``page_size`` at a time. A task's own ttl
        overrides ``ttl``; tasks ``in_progress`` or ``awaiting_review`` are
        skipped unless ``force``. Every write is conditional on the version the
        scan (or the purge's re-read) saw, so a task touched meanwhile survives.
        At most ``limit`` soft deletes, restores and purges per run; requests
        are paced at ``requests_per_second``. Durations are timedeltas, seconds
        or text such as ``"7d"``. ``progress(scanned, total or None)`` is called
        after each page. Then orphan segments and snapshots older than
        ``grace`` are removed, unless ``orphans=False``: that pass lists every
        segment's and snapshot's metadata, a cost that grows with history.
        ``keep_going`` (a leader's ``is_leader``) is asked before each write;
        once it says no, the run stops (``limited``).

        Raises:
            InvalidInput: a bad argument; nothing is written.
            Unavailable, Forbidden: the scan failed (a failure on one state is
                counted in the report instead).
        """
        cleaner = self._cleaner(page_size=page_size, rate=requests_per_second)
        return cleaner.run(
            ttl=ttl,
            grace=grace,
            dry_run=dry_run,
            force=force,
            limit=limit,
            keep_snapshot=keep_snapshot,
            orphans=orphans,
            progress=progress,
            keep_going=keep_going,
        )

    def restore_state(self, task_id: str) -> bool:
        """Undo a soft delete: the task is active again. False if it was not soft-deleted.

        Any write to the task restores it too. A restore changes no data, so
        the state is as old as before: unless it is written to or given a
        longer ttl (``set_policy``), the next cleanup soft-deletes it again.

        Raises:
            StateNotFound: the task has no state (purged, say).
        """
        try:
            return self._cleaner().restore(task_id)
        finally:
            self._seen.forget(task_id)

    def _cleaner(self, **options: Any) -> Cleaner:
        return Cleaner(
            self.store,
            clock=self.clock,
            retry=self.retry,
            metrics=self.metrics,
            snapshot=self._keep_purged,
            **options,
        )

    # -- listing (remstate ls, the HTTP list) ------------------------------------

    def list_states(
        self,
        *,
        status: Status | str | None = None,
        label_selector: str = "",
        limit: int = 100,
        cursor: str | None = None,
    ) -> StatePage:
        """One page of the tasks' summaries (heads only), selected by labels.

        Built from the heads' metadata alone: a metadata-only list, one
        request a page, no data and no segment read (the iteration counter,
        the limit and the rest are annotations kept current on every write;
        see ``remstate.schema.summary``). A head written before those
        annotations existed is read once with its data, and only its plain
        ``iteration``, ``status`` and ``last_update`` keys are decoded.

        Args:
            status: only tasks with this status.
            label_selector: the caller's label selector (``team=a,env!=prod``),
                ANDed with remstate's own (its heads, and ``status``).
            limit: the most summaries a page holds (1 to 10,000).
            cursor: ``next_cursor`` of the previous page (the store's continue
                token, opaque); the same ``status`` and selector go with it.

        Raises:
            InvalidInput: an unknown status, a selector that does not parse, a
                bad limit or cursor; nothing is sent.
            Gone: the cursor has expired; list again from the first page.
        """
        wanted = None if status is None else str(parse_status(status, strict=True))
        int_argument(limit, "limit", low=1, high=10_000)
        if not isinstance(label_selector, str):
            kind = type(label_selector).__name__
            raise InvalidInput(f"label_selector must be a string, not {kind}")
        if cursor is not None and (not isinstance(cursor, str) or not cursor):
            raise InvalidInput("cursor must be a non-empty string from an earlier page")
        try:
            # The API server's own parser (ported for the embedded store): a
            # selector is refused here, alike on both backends, before anything is sent.
            parse_selector(label_selector)
        except InvalidObject as e:
            raise InvalidInput(f"bad label selector {label_selector!r}: {e}") from None
        selector = managed_selector(role=ROLE_STATE, status=wanted)
        if label_selector.strip():
            selector = f"{selector},{label_selector}"
        try:
            page = self.retry.call(
                lambda: self.store.list(
                    label_selector=selector,
                    limit=limit,
                    continue_token=cursor,
                    metadata_only=True,
                )
            )
        except InvalidObject as e:
            # The selector parsed above: what the store refused is the cursor.
            raise InvalidInput(f"not a cursor from an earlier page: {e}") from None
        summaries = [self._summary(obj) for obj in page.items]
        return StatePage([s for s in summaries if s is not None], page.continue_token)

    def _summary(self, obj: StoredObject) -> StateSummary | None:
        """A head's summary from its metadata; else from its data, read once (None: gone)."""
        summary = summarize(obj, default_max_iterations=self.max_iterations)
        if summary is not None:
            return summary
        try:
            head = self._get(obj.name)
        except NotFound:
            return None  # deleted since the page was listed
        return summarize_head(head, default_max_iterations=self.max_iterations)

    def _keep_purged(self, head: StoredObject) -> str:
        """The snapshot ``keep_snapshot`` asks for: kept after the purge, restorable."""
        task_id = head.annotations.get(ANNOTATION_TASK_ID) or (head.data or {}).get("task_id")
        if not task_id:
            raise InvalidInput(f"{head.name} does not say its task id: no snapshot to keep")
        return snapshots.take_snapshot(
            self.store,
            task_id,
            head,
            reason="purge",
            now=self.clock(),
            keep=self.snapshots_kept,
            kept=True,
        ).name

    # -- recovery and snapshots (DESIGN.md rule 5; remstate.recovery) ------------

    def validate_state(self, task_id: str) -> ValidationReport:
        """Every problem of the task's stored state and its segments, as a report; writes nothing.

        Raises:
            StateNotFound: the task has no state (never on its data).
        """
        validate_task_id(task_id)
        return recovery.validate_state(self, task_id)

    def recover_state(self, task_id: str) -> RecoveryReport:
        """Snapshot, then repair the task's state (a compare-and-swap); the report.

        A repair keeps every piece of data it can; what it cannot keep is
        named in the report and stays in the snapshot. A state written by a
        newer remstate is left alone (``validation.supported`` is False).

        Raises:
            StateNotFound: the task has no state.
        """
        validate_task_id(task_id)
        try:
            return recovery.recover_state(self, task_id, metrics=self.metrics)
        finally:
            self._seen.forget(task_id)

    def list_snapshots(self, task_id: str) -> list[Snapshot]:
        """The task's snapshots, newest first (metadata only)."""
        validate_task_id(task_id)
        return self.retry.call(lambda: snapshots.list_snapshots(self.store, task_id))

    def restore_snapshot(self, task_id: str, name: str) -> RestoreReport:
        """Put a snapshot back as the task's state: a snapshot of the state first, then a CAS.

        Raises:
            NotFound: there is no such snapshot.
            InvalidInput: ``name`` is not a snapshot of this task.
        """
        validate_task_id(task_id)
        if not isinstance(name, str) or not name:
            raise InvalidInput("a snapshot name is a non-empty string")
        try:
            return recovery.restore_snapshot(self, task_id, name)
        finally:
            self._seen.forget(task_id)

    def _page(
        self, task_id: str, kind: str, limit: int, cursor: str | None, newest_first: bool
    ) -> tuple[list[Any], str | None, int]:
        """One page of ``kind``'s records of the task, its arguments checked first."""
        int_argument(limit, "limit", low=1, high=10_000)
        bool_argument(newest_first, "newest_first")
        check_page(kind, limit, cursor)
        state = self.get_state(task_id)
        return self._history.page(
            state, kind, limit=limit, cursor=cursor, newest_first=newest_first
        )

    # -- what the operations read -------------------------------------------------

    def _find(self, state: TaskState, kind: str, keys: Iterable[str]) -> Found:
        """The records of ``kind`` with these ids, wherever they are, for a mutation."""
        records, filters = self._history.find(state, kind, keys)
        return Found(records, filters)

    def _get(self, name: str) -> StoredObject:
        """A read, retried on transient errors by the policy."""
        return self.retry.call(lambda: self.store.get(name))
