"""What a cleanup run did (or, in a dry run, would do): counts, and each head it touched.

A frozen ``CleanupReport`` for callers (the CLI prints it, the service will
return it as JSON), built by a ``Tally`` that the run fills in as it goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from remstate.cleanup.decisions import Action
from remstate.schema import format_timestamp
from remstate.schema.durations import format_duration

__all__ = [
    "ACTION_REMOVE_ORPHAN",
    "GONE",
    "SKIPPED_TOUCHED",
    "CleanupItem",
    "CleanupReport",
    "Tally",
]

#: Touched since the scan (or since the purge's re-read): left as it is.
SKIPPED_TOUCHED = "skip-touched"
#: Gone before cleanup got to it (deleted by someone else): nothing to do.
GONE = "gone"
#: A segment or snapshot no living head keeps, removed (see ``remstate.orphans``).
ACTION_REMOVE_ORPHAN = "remove-orphan"

#: The count each action adds to; WAIT is counted, not named; GONE named only.
_COUNTED = {
    Action.SOFT_DELETE.value: "soft_deleted",
    Action.RESTORE.value: "restored",
    Action.PURGE.value: "purged",
    Action.SKIP_ACTIVE.value: "skipped_active",
    Action.ERROR.value: "errors",
    Action.WAIT.value: "in_grace",
    SKIPPED_TOUCHED: "skipped_touched",
}


#: The most heads one report names (the counts cover every head).
MAX_ITEMS = 1_000


@dataclass(frozen=True, slots=True)
class CleanupItem:
    """One head cleanup acted on, or would have, or had to leave alone."""

    name: str
    task_id: str
    action: str
    reason: str
    resource_version: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "task_id": self.task_id,
            "action": self.action,
            "reason": self.reason,
            "resource_version": self.resource_version,
        }


@dataclass(frozen=True, slots=True)
class CleanupReport:
    """The counts of one run and the heads it named.

    In a dry run the counts say what the run would have done; nothing was written.
    ``limited`` says the run stopped early (at its ``limit`` of actions, or
    told not to go on), so heads were left for the next run. ``items`` names
    at most :data:`MAX_ITEMS` heads, so that a report stays small however many
    heads a run touches; ``items_left_out`` counts the others (the counts
    cover them all).
    """

    started_at: datetime
    ttl: timedelta
    grace: timedelta
    dry_run: bool = False
    force: bool = False
    scanned: int = 0
    soft_deleted: int = 0
    restored: int = 0
    purged: int = 0
    skipped_active: int = 0
    skipped_touched: int = 0
    in_grace: int = 0
    orphans_removed: int = 0
    errors: int = 0
    pages: int = 0
    limited: bool = False
    items: tuple[CleanupItem, ...] = ()
    items_left_out: int = 0

    @property
    def actions(self) -> int:
        """Soft deletes, restores and purges (done, or in a dry run, planned)."""
        return self.soft_deleted + self.restored + self.purged

    def to_dict(self) -> dict[str, Any]:
        return {
            "started_at": format_timestamp(self.started_at),
            "ttl": format_duration(self.ttl),
            "ttl_seconds": int(self.ttl.total_seconds()),
            "grace": format_duration(self.grace),
            "grace_seconds": int(self.grace.total_seconds()),
            "dry_run": self.dry_run,
            "force": self.force,
            "scanned": self.scanned,
            "soft_deleted": self.soft_deleted,
            "restored": self.restored,
            "purged": self.purged,
            "skipped_active": self.skipped_active,
            "skipped_touched": self.skipped_touched,
            "in_grace": self.in_grace,
            "orphans_removed": self.orphans_removed,
            "errors": self.errors,
            "pages": self.pages,
            "limited": self.limited,
            "items": [item.to_dict() for item in self.items],
            "items_left_out": self.items_left_out,
        }


@dataclass
class Tally:
    """The running counts of a run; ``report()`` freezes them."""

    started_at: datetime
    ttl: timedelta
    grace: timedelta
    dry_run: bool
    force: bool
    counts: dict[str, int] = field(default_factory=dict)
    items: list[CleanupItem] = field(default_factory=list)
    limited: bool = False

    def add(self, count: str, n: int = 1) -> None:
        self.counts[count] = self.counts.get(count, 0) + n

    def record(self, action: str, obj_name: str, task_id: str, reason: str, rv: str) -> None:
        """Count ``action`` and name the head (WAIT is counted only)."""
        counted = _COUNTED.get(str(action))
        if counted is not None:
            self.add(counted)
        if action != Action.WAIT:
            self.name(CleanupItem(obj_name, task_id, action, reason, rv))

    def name(self, item: CleanupItem) -> None:
        """Name ``item`` in the report, or count it left out past :data:`MAX_ITEMS`."""
        if len(self.items) < MAX_ITEMS:
            self.items.append(item)
        else:
            self.add("items_left_out")

    @property
    def actions(self) -> int:
        return sum(self.counts.get(k, 0) for k in ("soft_deleted", "restored", "purged"))

    def report(self) -> CleanupReport:
        return CleanupReport(
            started_at=self.started_at,
            ttl=self.ttl,
            grace=self.grace,
            dry_run=self.dry_run,
            force=self.force,
            limited=self.limited,
            items=tuple(self.items),
            **self.counts,
        )
