"""TTL cleanup: soft delete after the retention, purge after the grace period, orphans.

DESIGN.md rule 4. The modules, each one concern:

- ``decisions``: what to do with one head, from its metadata alone (pure);
- ``cleaner``: the run (scan pages, act with conditional writes, Events, logs,
  metrics) and the restore of a soft-deleted task;
- ``pacing``: the token bucket every request of a run goes through;
- ``report``: the run's frozen report.

The manager's ``cleanup_old_states`` and ``restore_state`` delegate here.
"""

from __future__ import annotations

from remstate.cleanup.cleaner import (
    DEFAULT_PAGE_SIZE,
    REASON_PURGED,
    REASON_RESTORED,
    REASON_SOFT_DELETED,
    Cleaner,
    Progress,
    Snapshotter,
)
from remstate.cleanup.decisions import ACTIVE_STATUSES, Action, Decision, decide
from remstate.cleanup.pacing import DEFAULT_RATE, TokenBucket
from remstate.cleanup.report import CleanupItem, CleanupReport

__all__ = [
    "ACTIVE_STATUSES",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_RATE",
    "REASON_PURGED",
    "REASON_RESTORED",
    "REASON_SOFT_DELETED",
    "Action",
    "Cleaner",
    "CleanupItem",
    "CleanupReport",
    "Decision",
    "Progress",
    "Snapshotter",
    "TokenBucket",
    "decide",
]
