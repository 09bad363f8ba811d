"""How much history the embedded store keeps, and how it gives space back.

Design constraint: the file holds the live objects plus a bounded window of
history, as etcd does once the API server compacts it. Every write stores a
whole copy of its object, so the window must be bounded in bytes, not only in
revisions: 12,000 appends to 2.4 MB of feedback once made a 420 MB file.
After each write, the window is cut by whichever bound it passes first:

- bytes: more than ``max_bytes`` stored after the compaction revision cuts it,
  oldest first, to 3/4 of that (so that it is not cut on every write);
- age: every ``age``, the store compacts to the revision of the previous
  tick, as the API server's compactor does every 5 minutes: the watch window
  is ``age`` to twice ``age`` long;
- count: about ``revisions`` revisions (checked every ``COMPACT_EVERY`` writes).

A watch or continue token from before the compaction revision is ``Gone``.
Compaction deletes the superseded rows; once a quarter of the file is free
pages, an incremental vacuum returns them to the file system.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from remstate.store import embedded_sql as sql

__all__ = ["COMPACT_EVERY", "HistoryBounds", "after_write", "reclaim"]

MiB: Final = 1_048_576
#: Compaction by count is looked at once every so many revisions.
COMPACT_EVERY: Final = 128
_INCREMENTAL: Final = 2
_CHECKPOINT_WAIT_MS: Final = 100


@dataclass(frozen=True, slots=True)
class HistoryBounds:
    """The bounds of the watch window; the first one passed cuts it."""

    revisions: int = 10_000
    age: timedelta = timedelta(minutes=5)
    max_bytes: int = 32 * MiB


def after_write(
    conn: sqlite3.Connection, rv: int, size: int, *, now: datetime, bounds: HistoryBounds
) -> bool:
    """Count the row just written at ``rv`` (``size`` bytes) and compact past any bound.

    Runs in the write's transaction. Returns whether free pages should be
    given back once it commits.
    """
    meta: dict[str, int] = dict(conn.execute(sql.SELECT_META).fetchall())
    compacted = meta["compacted"]
    window = meta.get("window_bytes")
    if window is None:
        # A file from before the byte bound: its window is counted once.
        window = _sizes(conn, compacted, rv - 1)
    window += size
    target = compacted
    if rv % COMPACT_EVERY == 0:
        target = max(target, rv - bounds.revisions)
    target = max(target, _tick(conn, meta, rv, now, bounds.age))
    # Never up to the write just made: were it a delete, compaction would remove
    # its tombstone, the newest row, and the revision (the newest row's) would go
    # back; and a watcher one revision behind keeps the event it waits for.
    target = max(compacted, min(target, rv - 1))
    if target > compacted:
        window -= _sizes(conn, compacted, target)
    if window > bounds.max_bytes:
        target, window = _cut(conn, target, rv, window, bounds.max_bytes * 3 // 4)
    conn.execute(sql.SET_META, ("window_bytes", window))
    if target <= compacted:
        return False
    params = {"old": compacted, "new": target}
    conn.execute(sql.COMPACT_SUPERSEDED, params)
    conn.execute(sql.COMPACT_TOMBSTONES, params)
    conn.execute(sql.SET_META, ("compacted", target))
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    (free,) = conn.execute("PRAGMA freelist_count").fetchone()
    return bool(free * 4 > pages)


def _sizes(conn: sqlite3.Connection, after: int, upto: int) -> int:
    (total,) = conn.execute(sql.SUM_SIZES, (after, upto)).fetchone()
    return int(total)


def _tick(
    conn: sqlite3.Connection, meta: Mapping[str, int], rv: int, now: datetime, age: timedelta
) -> int:
    """The API server's compactor: at each tick, the revision of the previous tick.

    Returns that revision, or 0 between ticks. A clock that went back starts
    the period again, compacting nothing.
    """
    seconds = int(now.timestamp())
    mark_time = meta.get("mark_time")
    if mark_time is not None and 0 <= seconds - mark_time < age.total_seconds():
        return 0
    previous = meta.get("mark_rv", 0) if mark_time is not None and seconds >= mark_time else 0
    conn.execute(sql.SET_META, ("mark_rv", rv))
    conn.execute(sql.SET_META, ("mark_time", seconds))
    return previous


def _cut(
    conn: sqlite3.Connection, start: int, newest: int, window: int, goal: int
) -> tuple[int, int]:
    """The revision to compact to, oldest first, for the window to hold ``goal`` bytes.

    It stays below ``newest``: the window may hold more than ``goal`` when the
    newest row alone does.
    """
    for rv, size in conn.execute(sql.SIZES_BETWEEN, (start, newest)):
        if window <= goal:
            break
        window -= size
        start = rv
    return start, window


def reclaim(conn: sqlite3.Connection) -> None:
    """Give the file's free pages back to the file system.

    Called after the write committed: the pragmas run outside a transaction,
    and a failure here (another writer holds the lock) must not fail a write
    that is done; the next compaction tries again.
    """
    with contextlib.suppress(sqlite3.Error):
        (mode,) = conn.execute("PRAGMA auto_vacuum").fetchone()
        if mode == _INCREMENTAL:
            conn.executescript("PRAGMA incremental_vacuum")
        else:
            # A file made before incremental vacuum: rebuilt once, incremental since.
            conn.executescript(f"PRAGMA auto_vacuum = {_INCREMENTAL}; VACUUM")
        # The pages moved went through the write-ahead log: empty it now, if no
        # reader holds it, rather than at the next writer's checkpoint. A short
        # wait only: a reader that holds it is no reason to delay this write.
        (timeout,) = conn.execute("PRAGMA busy_timeout").fetchone()
        conn.execute(f"PRAGMA busy_timeout = {_CHECKPOINT_WAIT_MS}")
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout)}")
