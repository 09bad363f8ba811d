"""The cleanup run: scan heads' metadata page by page, decide, act, and account for it.

DESIGN.md rule 4. The constraints it lives under:

- **Metadata only.** Heads are listed by label (``role=state``), one page of
  ``page_size`` at a time, with ``metadata_only``: no data crosses the wire and
  no history is loaded. ``decisions.decide`` needs nothing more.
- **Every write is conditional** on the version it decided on (see
  ``writes``): a head touched meanwhile is left as it is (``skip-touched``),
  and one written after the purge read it survives.
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
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from remstate.cleanup import writes
from remstate.cleanup.decisions import Action, Decision, decide
from remstate.cleanup.pacing import DEFAULT_RATE, TokenBucket
from remstate.cleanup.report import ACTION_REMOVE_ORPHAN, CleanupItem, CleanupReport, Tally
from remstate.cleanup.writes import Outcome, Requests, Snapshotter
from remstate.errors import Gone, InvalidInput, RemstateError
from remstate.metrics import Metrics
from remstate.objects import StoredObject
from remstate.orphans import KIND_SEGMENT, KIND_SNAPSHOT, remove_orphans
from remstate.retry import RetryPolicy
from remstate.schema import (
    ANNOTATION_SOFT_DELETED_AT,
    ANNOTATION_TASK_ID,
    LABEL_TASK,
    ROLE_STATE,
    Clock,
    format_timestamp,
    managed_selector,
    utc_now,
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

#: Heads listed per request by default.
DEFAULT_PAGE_SIZE = 100
#: The largest page the API server is asked for.
MAX_PAGE_SIZE = 10_000

#: Called after each page: heads scanned so far, and the estimated total (None: unknown).
Progress = Callable[[int, int | None], None]

#: The Event reasons, one per kind of decision that writes.
REASON_SOFT_DELETED = "SoftDeleted"
REASON_RESTORED = "Restored"
REASON_PURGED = "Purged"
#: For each action that writes: the Event's reason and action, and the metric it counts in.
_EVENTS = {
    Action.SOFT_DELETE.value: (REASON_SOFT_DELETED, "SoftDelete", "states_soft_deleted"),
    Action.RESTORE.value: (REASON_RESTORED, "Restore", "states_restored"),
    Action.PURGE.value: (REASON_PURGED, "Purge", "states_purged"),
}
#: The decisions that write, and count against ``limit``.
_WRITES = frozenset({Action.SOFT_DELETE, Action.RESTORE, Action.PURGE})


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
        self.requests = Requests(store, retry=self.retry, pace=self.pace)
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
        orphans: bool = True,
        progress: Progress | None = None,
        keep_going: Callable[[], bool] | None = None,
    ) -> CleanupReport:
        """Soft-delete expired heads, purge those past their grace period, remove orphans.

        ``keep_going`` is asked before each write (a service passes its
        leadership's ``is_leader``): once it says no, the run stops there, as at
        its limit (``limited``), and skips the orphan pass.

        ``orphans=False`` skips the orphan pass: it lists the metadata of every
        segment and snapshot (about 1.5 KB each on the wire), so its cost grows
        with the number of segments, where the scan of heads does not. A loop
        may run it less often than the scan.

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
            (orphans, "orphans"),
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
            if decision.action in _WRITES and keep_going is not None and not keep_going():
                tally.limited = True
                log.warning("cleanup: stopped: told not to go on (leadership lost)")
                break
            self._handle(obj, decision, tally, now=now, grace=grace, keep_snapshot=keep_snapshot)
        if orphans and not tally.limited:
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
        The scan then starts again after the last name it saw: both backends
        list in name order, so memory stays flat however many heads there are
        (a set of the names seen would grow with them).
        """
        selector = managed_selector(role=ROLE_STATE)
        last = ""
        token: str | None = None
        while True:
            try:
                page = self.requests.page(selector, token, self.page_size)
            except Gone:
                if token is None:
                    raise
                log.info("cleanup: the scan's continue token expired; listing again")
                token = None
                continue
            tally.add("pages")
            items, token, remaining = page.items, page.continue_token, page.remaining_item_count
            del page
            for obj in items:
                if obj.name <= last:
                    continue  # seen before the scan started again
                last = obj.name
                tally.add("scanned")
                yield obj
            # Let go of this page before the next one arrives: one page in memory, not two.
            del items
            if progress is not None:
                scanned = tally.counts.get("scanned", 0)
                progress(scanned, None if remaining is None else scanned + remaining)
            if token is None:
                return

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
                outcome = writes.soft_delete(self.requests, obj, now=now)
            elif action is Action.RESTORE:
                outcome = writes.lift_soft_delete(self.requests, obj)
            else:
                snapshot = self._snapshot if keep_snapshot else None
                outcome = writes.purge(
                    self.requests, obj, page_size=self.page_size, snapshot=snapshot
                )
        except RemstateError as e:
            self._error(tally, obj, type(e).__name__, f"{action} failed: {e}")
            return
        self._account(tally, decision, outcome, until=now + grace)

    def _account(
        self, tally: Tally, decision: Decision, outcome: Outcome, *, until: datetime
    ) -> None:
        """Count, log, and (for a write that happened) record the Event and the metric."""
        if outcome.action != decision.action:  # touched, or gone: the note says why
            self._record(tally, outcome.obj, outcome.action, outcome.note)
            return
        reason = decision.reason + outcome.note
        self._record(tally, outcome.obj, outcome.action, reason)
        event, event_action, counter = _EVENTS[outcome.action]
        if self.metrics is not None:
            getattr(self.metrics, counter).inc()
        if outcome.action == Action.SOFT_DELETE:
            message = (
                f"Soft-deleted by remstate cleanup: {reason}. Readable, and restored by any "
                f"write or by `remstate restore`, until {format_timestamp(until)}; "
                "purged after that."
            )
        elif outcome.action == Action.RESTORE:
            message = f"Restored by remstate cleanup: {reason}."
        else:
            message = f"Purged by remstate cleanup: {reason}."
        self._event(outcome.obj, event, event_action, message)

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
            tally.name(CleanupItem(orphan.name, "", ACTION_REMOVE_ORPHAN, reason))
        for failed in found.errors:
            tally.add("errors")
            tally.name(CleanupItem(failed.name, "", Action.ERROR, failed.reason))
            if self.metrics is not None:
                self.metrics.cleanup_errors.labels(kind="OrphanRemoval").inc()
        if self.metrics is not None and not tally.dry_run:
            for kind in (KIND_SEGMENT, KIND_SNAPSHOT):
                if count := found.count(kind):
                    self.metrics.orphans_removed.labels(kind=kind).inc(count)

    # -- restore by hand ----------------------------------------------------------

    def restore(self, task_id: str) -> bool:
        """Make a soft-deleted task active again; False if it was not soft-deleted.

        A compare-and-swap, retried on a fresh read after a Conflict.

        Raises:
            StateNotFound: the task has no state (a purge took it, say).
            InvalidInput: a bad task ID.
        """
        before, restored = writes.restore_task(self.store, task_id, retry=self.retry)
        if restored is None:
            log.info("cleanup: %s not restored: it is not soft-deleted", before.name)
            return False
        since = before.annotations.get(ANNOTATION_SOFT_DELETED_AT, "an unknown time")
        reason = f"restored by request; it was soft-deleted at {since}"
        _log_decision(restored, Action.RESTORE, reason)
        if self.metrics is not None:
            self.metrics.states_restored.inc()
        self._event(restored, REASON_RESTORED, "Restore", f"Restored: {reason}.")
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
            extra=_fields(obj, Action.ERROR, reason),
        )
        if self.metrics is not None:
            self.metrics.cleanup_errors.labels(kind=kind).inc()

    def _event(self, obj: StoredObject, reason: str, action: str, message: str) -> None:
        """An Event on the head (on the embedded store, a log record); never fails the action."""
        self.pace()
        self.store.record_event(obj, reason=reason, message=message, action=action)


def _task_id(obj: StoredObject) -> str:
    return obj.annotations.get(ANNOTATION_TASK_ID) or obj.labels.get(LABEL_TASK) or obj.name


def _fields(obj: StoredObject, action: str, reason: str) -> dict[str, str]:
    """The structured fields of a decision's log record (``extra``)."""
    return {
        "task": _task_id(obj),
        "object": obj.name,
        "action": str(action),
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
