"""The cleanup run: scan heads' metadata page by page, decide, act, and account for it.

DESIGN.md rule 4. The constraints it lives under:

- **Metadata only.** Heads are listed by label (``role=state``), one page of
  ``page_size`` at a time, with ``metadata_only``: no data crosses the wire and
  no history is loaded. ``decisions.decide`` needs nothing more.
- **Every write is conditional.** A soft delete or a restore is a patch with
  the resourceVersion the scan saw; a Conflict means the head was touched since
  the scan, and it is left as it is (``skip-touched``). A purge reads the head
  again, checks it is the one the scan saw, and deletes it with preconditions
  on uid and resourceVersion: a write that lands after that read makes the
  delete fail, and the head survives, active again (the writer relabels it).
- **Gentle.** Every request (a page, a patch, a re-read, a delete, an Event)
  first takes a token of the ``TokenBucket``; transient failures are retried
  by the ``RetryPolicy``, a Conflict never is.
- **Accounted for.** Each decision is logged (task, reason, resourceVersion),
  each soft delete, restore and purge records an Event on the head, and the
  counters of ``remstate.metrics`` follow the report. A failure on one head is
  counted as an error and the run goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import TypeVar

from remstate.cleanup.decisions import Action, Decision, decide
from remstate.cleanup.pacing import DEFAULT_RATE, TokenBucket
from remstate.cleanup.report import (
    ACTION_REMOVE_ORPHAN,
    GONE,
    SKIPPED_TOUCHED,
    CleanupItem,
    CleanupReport,
    Tally,
)
from remstate.errors import (
    Conflict,
    Gone,
    InvalidInput,
    NotFound,
    RemstateError,
    StateNotFound,
)
from remstate.metrics import Metrics
from remstate.objects import ObjectList, StoredObject
from remstate.orphans import KIND_SEGMENT, KIND_SNAPSHOT, remove_orphans
from remstate.retry import RetryPolicy
from remstate.schema import (
    ANNOTATION_SOFT_DELETED_AT,
    ANNOTATION_TASK_ID,
    LABEL_LIFECYCLE,
    LABEL_MANAGED_BY,
    LABEL_ROLE,
    LABEL_TASK,
    LIFECYCLE_ACTIVE,
    LIFECYCLE_SOFT_DELETED,
    MANAGED_BY,
    ROLE_SEGMENT,
    ROLE_SNAPSHOT,
    ROLE_STATE,
    Clock,
    format_timestamp,
    managed_selector,
    object_name,
    utc_now,
    validate_task_id,
)
from remstate.schema.durations import duration_argument, format_duration
from remstate.store import Store

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "REASON_PURGED",
    "REASON_RESTORED",
    "REASON_SOFT_DELETED",
    "Cleaner",
    "Progress",
    "Snapshotter",
]

log = logging.getLogger("remstate.cleanup")

_T = TypeVar("_T")

#: Heads listed per request by default.
DEFAULT_PAGE_SIZE = 100
#: The largest page the API server is asked for.
MAX_PAGE_SIZE = 10_000

#: Called after each page: heads scanned so far, and the estimated total (None: unknown).
Progress = Callable[[int, int | None], None]
#: Takes a snapshot of a head about to be purged and returns the snapshot's name.
Snapshotter = Callable[[StoredObject], str]

#: The Event reasons, one per kind of decision that writes.
REASON_SOFT_DELETED = "SoftDeleted"
REASON_RESTORED = "Restored"
REASON_PURGED = "Purged"
#: The Event's action for each reason.
_ACTIONS = {REASON_SOFT_DELETED: "SoftDelete", REASON_RESTORED: "Restore", REASON_PURGED: "Purge"}


class _Refused(Exception):
    """Carries a Conflict through the retry policy, which must not retry it."""

    def __init__(self, conflict: Conflict) -> None:
        super().__init__(str(conflict))
        self.conflict = conflict


class Cleaner:
    """Runs cleanup over one store; one instance per run or reused, never shared by threads.

    Args:
        store: the store to clean.
        clock: the time decisions are made at (soft-delete times are stamped with it).
        retry: how long to retry transient failures of each request.
        metrics: counters to update, if any.
        page_size: heads listed per request.
        rate: requests per second (``None``: unpaced).
        monotonic, sleep: the rate limiter's clock and wait, for tests.
        snapshot: takes the snapshot ``keep_snapshot`` asks for.
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock = utc_now,
        retry: RetryPolicy | None = None,
        metrics: Metrics | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        rate: float | None = DEFAULT_RATE,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        snapshot: Snapshotter | None = None,
    ) -> None:
        if isinstance(page_size, bool) or not isinstance(page_size, int):
            raise InvalidInput(f"page_size must be an integer, not {page_size!r}")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidInput(f"page_size must be in 1..{MAX_PAGE_SIZE}, not {page_size}")
        self.store = store
        self.clock = clock
        self.retry = retry or RetryPolicy()
        self.metrics = metrics
        self.page_size = page_size
        self.pace = TokenBucket(rate, monotonic=monotonic, sleep=sleep)
        self._monotonic = monotonic
        self._snapshot = snapshot

    # -- the run ----------------------------------------------------------------

    def run(
        self,
        *,
        ttl: timedelta | str | float = timedelta(days=7),
        grace: timedelta | str | float = timedelta(hours=24),
        dry_run: bool = False,
        force: bool = False,
        limit: int | None = None,
        keep_snapshot: bool = False,
        progress: Progress | None = None,
    ) -> CleanupReport:
        """Soft-delete expired heads, purge those past their grace period, remove orphans.

        Raises:
            InvalidInput: a bad argument; nothing is written.
            Unavailable, Forbidden: the scan itself failed (a failure on one head
                is counted in the report instead).
        """
        ttl = duration_argument(ttl, "ttl")
        grace = duration_argument(grace, "grace")
        for value, what in (
            (dry_run, "dry_run"),
            (force, "force"),
            (keep_snapshot, "keep_snapshot"),
        ):
            if not isinstance(value, bool):
                raise InvalidInput(f"{what} must be True or False, not {value!r}")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise InvalidInput(f"limit must be a positive integer or None, not {limit!r}")
        if keep_snapshot and self._snapshot is None:
            raise InvalidInput("keep_snapshot needs snapshots, which this cleaner cannot take")
        now = self.clock()
        tally = Tally(now, ttl, grace, dry_run, force)
        started = self._monotonic()
        log.info(
            "cleanup: run starts (ttl %s, grace %s%s%s)",
            format_duration(ttl),
            format_duration(grace),
            ", dry run" if dry_run else "",
            ", force" if force else "",
        )
        for obj in self._heads(tally, progress):
            decision = decide(obj, now=now, ttl=ttl, grace=grace, force=force)
            if decision.action in _WRITES and limit is not None and tally.actions >= limit:
                tally.limited = True
                log.info("cleanup: stopped at the limit of %d actions", limit)
                break
            self._handle(obj, decision, tally, now=now, grace=grace, keep_snapshot=keep_snapshot)
        if not tally.limited:
            self._remove_orphans(tally, now=now, grace=grace)
        report = tally.report()
        if self.metrics is not None:
            self.metrics.states_scanned.inc(report.scanned)
            self.metrics.scan_duration.observe(self._monotonic() - started)
        log.info(
            "cleanup: run ends: %d scanned, %d soft-deleted, %d restored, %d purged, "
            "%d skipped (active), %d skipped (touched), %d errors%s",
            report.scanned,
            report.soft_deleted,
            report.restored,
            report.purged,
            report.skipped_active,
            report.skipped_touched,
            report.errors,
            " (dry run: nothing written)" if dry_run else "",
        )
        return report

    def _heads(self, tally: Tally, progress: Progress | None) -> Iterator[StoredObject]:
        """Every head, page by page, metadata only; each once, even if the scan restarts.

        A continue token expires (410 Gone) when etcd compacts past the list's
        revision, every few minutes: a paced run over many heads outlives it.
        The scan then starts again, and heads already seen are passed over.
        """
        selector = managed_selector(role=ROLE_STATE)
        seen: set[str] = set()
        token: str | None = None
        while True:
            try:
                page = self._list(selector, token)
            except Gone:
                if token is None:
                    raise
                log.info("cleanup: the scan's continue token expired; listing again")
                token = None
                continue
            tally.add("pages")
            for obj in page.items:
                if obj.name in seen:
                    continue
                seen.add(obj.name)
                tally.add("scanned")
                yield obj
            if progress is not None:
                remaining = page.remaining_item_count
                scanned = tally.counts.get("scanned", 0)
                progress(scanned, None if remaining is None else scanned + remaining)
            token = page.continue_token
            if token is None:
                return

    def _list(self, selector: str, token: str | None) -> ObjectList:
        return self._call(
            lambda: self.store.list(
                label_selector=selector,
                limit=self.page_size,
                continue_token=token,
                metadata_only=True,
            )
        )

    def _handle(
        self,
        obj: StoredObject,
        decision: Decision,
        tally: Tally,
        *,
        now: datetime,
        grace: timedelta,
        keep_snapshot: bool,
    ) -> None:
        """Carry out one decision; a failure is counted, never raised."""
        action = decision.action
        if action is Action.KEEP:
            log.debug("cleanup: %s kept: %s", obj.name, decision.reason)
            return
        if action is Action.ERROR:
            self._error(tally, obj, "UnreadableMetadata", decision.reason)
            return
        if action in (Action.WAIT, Action.SKIP_ACTIVE) or tally.dry_run:
            self._record(tally, obj, action, decision.reason)
            return
        try:
            if action is Action.SOFT_DELETE:
                self._soft_delete(obj, decision, tally, now, grace)
            elif action is Action.RESTORE:
                self._restore(obj, decision, tally)
            else:
                self._purge(obj, decision, tally, keep_snapshot)
        except RemstateError as e:
            self._error(tally, obj, type(e).__name__, f"{action} failed: {e}")

    def _remove_orphans(self, tally: Tally, *, now: datetime, grace: timedelta) -> None:
        """Segments and snapshots no living head keeps, created more than ``grace`` ago.

        Skipped when the run stopped at its limit: the next run takes them. A
        failed scan is one error of the run, not its end: the states' report stands.
        """
        try:
            found = remove_orphans(
                self.store,
                now=now,
                grace=grace,
                dry_run=tally.dry_run,
                pace=self.pace,
                page_size=self.page_size,
            )
        except RemstateError as e:
            tally.add("errors")
            log.warning("cleanup: orphan removal failed: %s", e)
            if self.metrics is not None:
                self.metrics.cleanup_errors.labels(kind=type(e).__name__).inc()
            return
        tally.add("orphans_removed", len(found.removed))
        for orphan in found.removed:
            reason = f"orphan {orphan.kind} ({orphan.reason}, head {orphan.head})"
            tally.items.append(CleanupItem(orphan.name, "", ACTION_REMOVE_ORPHAN, reason))
        for failed in found.errors:
            tally.add("errors")
            tally.items.append(CleanupItem(failed.name, "", Action.ERROR, failed.reason))
            if self.metrics is not None:
                self.metrics.cleanup_errors.labels(kind="OrphanRemoval").inc()
        if self.metrics is not None and not tally.dry_run:
            for kind in (KIND_SEGMENT, KIND_SNAPSHOT):
                if count := found.count(kind):
                    self.metrics.orphans_removed.labels(kind=kind).inc(count)

    # -- the actions --------------------------------------------------------------

    def _soft_delete(
        self, obj: StoredObject, decision: Decision, tally: Tally, now: datetime, grace: timedelta
    ) -> None:
        marks = {ANNOTATION_SOFT_DELETED_AT: format_timestamp(now)}
        marked = self._mark(obj, marks, LIFECYCLE_SOFT_DELETED, tally)
        if marked is None:
            return
        self._record(tally, marked, Action.SOFT_DELETE, decision.reason)
        if self.metrics is not None:
            self.metrics.states_soft_deleted.inc()
        until = format_timestamp(now + grace)
        self._event(
            marked,
            REASON_SOFT_DELETED,
            f"Soft-deleted by remstate cleanup: {decision.reason}. Readable, and restored by "
            f"any write or by `remstate restore`, until {until}; purged after that.",
        )

    def _restore(self, obj: StoredObject, decision: Decision, tally: Tally) -> None:
        restored = self._mark(obj, {ANNOTATION_SOFT_DELETED_AT: None}, LIFECYCLE_ACTIVE, tally)
        if restored is None:
            return
        self._record(tally, restored, Action.RESTORE, decision.reason)
        if self.metrics is not None:
            self.metrics.states_restored.inc()
        self._event(restored, REASON_RESTORED, f"Restored by remstate cleanup: {decision.reason}.")

    def _mark(
        self,
        obj: StoredObject,
        annotations: Mapping[str, str | None],
        lifecycle: str,
        tally: Tally,
    ) -> StoredObject | None:
        """Patch the lifecycle if the head is still as the scan saw it; None if it is not.

        A write whose answer was lost and that is retried conflicts with
        itself and is reported as touched: the next run sees what it did.
        """
        try:
            return self._call(
                lambda: self.store.annotate(
                    obj.name,
                    annotations,
                    labels={LABEL_LIFECYCLE: lifecycle},
                    resource_version=obj.resource_version,
                )
            )
        except Conflict:
            self._record(tally, obj, SKIPPED_TOUCHED, "changed since the scan: left as it is")
        except NotFound:
            self._record(tally, obj, GONE, "deleted by someone else since the scan")
        return None

    def _purge(
        self, obj: StoredObject, decision: Decision, tally: Tally, keep_snapshot: bool
    ) -> None:
        """Re-read, check it is the head the scan saw, delete it conditionally, then its objects."""
        try:
            fresh = self._call(lambda: self.store.get(obj.name))
        except NotFound:
            self._record(tally, obj, GONE, "deleted by someone else since the scan")
            return
        if (fresh.uid, fresh.resource_version) != (obj.uid, obj.resource_version):
            now_active = fresh.labels.get(LABEL_LIFECYCLE) != LIFECYCLE_SOFT_DELETED
            self._record(
                tally,
                fresh,
                SKIPPED_TOUCHED,
                f"changed since the scan (resourceVersion {obj.resource_version} -> "
                f"{fresh.resource_version}{', active again' if now_active else ''}): it survives",
            )
            return
        kept = self._snapshot(fresh) if keep_snapshot and self._snapshot is not None else None
        try:
            self._call(
                lambda: self.store.delete(
                    fresh.name, uid=fresh.uid, resource_version=fresh.resource_version
                )
            )
        except Conflict:
            self._record(
                tally,
                fresh,
                SKIPPED_TOUCHED,
                "written after the purge read it: the delete's precondition failed; it survives",
            )
            return
        except NotFound:
            self._record(tally, fresh, GONE, "deleted by someone else since the purge read it")
            return
        reason = decision.reason if kept is None else f"{decision.reason}; snapshot {kept} kept"
        self._record(tally, fresh, Action.PURGE, reason)
        if self.metrics is not None:
            self.metrics.states_purged.inc()
        self._event(fresh, REASON_PURGED, f"Purged by remstate cleanup: {reason}.")
        self._remove_task_objects(fresh, keep=kept)

    def _remove_task_objects(self, head: StoredObject, *, keep: str | None) -> None:
        """Delete the purged head's segments and snapshots: those it owns (by uid).

        A new head of the same task, created since, owns its own objects, which
        stay. Best effort: what is left is an orphan, which orphan removal takes.
        """
        task_label = head.labels.get(LABEL_TASK)
        if not task_label:
            return
        selector = f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_TASK}={task_label}"
        token: str | None = None
        try:
            while True:
                page = self._list(selector, token)
                for obj in page.items:
                    if (
                        obj.labels.get(LABEL_ROLE) in (ROLE_SEGMENT, ROLE_SNAPSHOT)
                        and obj.name != keep
                        and any(ref.uid == head.uid for ref in obj.owner_references)
                    ):
                        self._delete_owned(obj)
                token = page.continue_token
                if token is None:
                    return
        except RemstateError as e:
            log.warning(
                "cleanup: %s's segments and snapshots not all removed (%s); "
                "orphan removal will take them",
                head.name,
                e,
            )

    def _delete_owned(self, obj: StoredObject) -> None:
        try:
            self._call(lambda: self.store.delete(obj.name, uid=obj.uid))
        except (NotFound, Conflict):
            return  # gone already, or a new object of that name: not ours
        log.info("cleanup: %s deleted with its head", obj.name)

    # -- restore by hand ----------------------------------------------------------

    def restore(self, task_id: str) -> bool:
        """Make a soft-deleted task active again; False if it was not soft-deleted.

        A compare-and-swap: the patch carries the resourceVersion just read, and
        is retried on a fresh read after a Conflict.

        Raises:
            StateNotFound: the task has no state (a purge took it, say).
            InvalidInput: a bad task ID.
        """
        validate_task_id(task_id)
        name = object_name(task_id)

        def attempt() -> tuple[StoredObject, StoredObject | None]:
            try:
                obj = self.store.get(name)
            except NotFound:
                raise StateNotFound(task_id) from None
            if (
                obj.labels.get(LABEL_LIFECYCLE) != LIFECYCLE_SOFT_DELETED
                and ANNOTATION_SOFT_DELETED_AT not in obj.annotations
            ):
                return obj, None
            restored = self.store.annotate(
                name,
                {ANNOTATION_SOFT_DELETED_AT: None},
                labels={LABEL_LIFECYCLE: LIFECYCLE_ACTIVE},
                resource_version=obj.resource_version,
            )
            return obj, restored

        before, restored = self.retry.call(attempt)
        if restored is None:
            log.info("cleanup: %s not restored: it is not soft-deleted", name)
            return False
        since = before.annotations.get(ANNOTATION_SOFT_DELETED_AT, "an unknown time")
        reason = f"restored by request; it was soft-deleted at {since}"
        _log_decision(restored, "restore", reason)
        if self.metrics is not None:
            self.metrics.states_restored.inc()
        self._event(restored, REASON_RESTORED, f"Restored: {reason}.")
        return True

    # -- accounting ---------------------------------------------------------------

    def _record(self, tally: Tally, obj: StoredObject, action: str, reason: str) -> None:
        tally.record(action, obj.name, _task_id(obj), reason, obj.resource_version)
        _log_decision(obj, action, reason, dry_run=tally.dry_run)

    def _error(self, tally: Tally, obj: StoredObject, kind: str, reason: str) -> None:
        tally.record(Action.ERROR, obj.name, _task_id(obj), reason, obj.resource_version)
        log.warning(
            "cleanup: %s (task %s, resourceVersion %s) error %s: %s",
            obj.name,
            _task_id(obj),
            obj.resource_version,
            kind,
            reason,
            extra=_fields(obj, "error", reason),
        )
        if self.metrics is not None:
            self.metrics.cleanup_errors.labels(kind=kind).inc()

    def _event(self, obj: StoredObject, reason: str, message: str) -> None:
        """An Event on the head (on the embedded store, a log record); never fails the action."""
        self.pace()
        self.store.record_event(obj, reason=reason, message=message, action=_ACTIONS[reason])

    def _call(self, fn: Callable[[], _T]) -> _T:
        """One paced request, retried on transient failures; a Conflict is raised at once."""

        def attempt() -> _T:
            self.pace()
            try:
                return fn()
            except Conflict as e:
                raise _Refused(e) from e

        try:
            return self.retry.call(attempt)
        except _Refused as e:
            raise e.conflict from None


#: The decisions that write, and count against ``limit``.
_WRITES = frozenset({Action.SOFT_DELETE, Action.RESTORE, Action.PURGE})


def _task_id(obj: StoredObject) -> str:
    return obj.annotations.get(ANNOTATION_TASK_ID) or obj.labels.get(LABEL_TASK) or obj.name


def _fields(obj: StoredObject, action: str, reason: str) -> dict[str, str]:
    """The structured fields of a decision's log record (``extra``)."""
    return {
        "task": _task_id(obj),
        "object": obj.name,
        "action": action,
        "reason": reason,
        "resource_version": obj.resource_version,
    }


def _log_decision(obj: StoredObject, action: str, reason: str, *, dry_run: bool = False) -> None:
    log.info(
        "cleanup: %s %s%s (task %s, resourceVersion %s): %s",
        obj.name,
        action,
        " (dry run)" if dry_run else "",
        _task_id(obj),
        obj.resource_version,
        reason,
        extra=_fields(obj, action, reason),
    )
