"""The embedded store: the Store contract on one SQLite file, for hosts with no cluster.

Design constraint: it behaves exactly like kube-apiserver (1.37) for ConfigMaps.
Same validation, same errors and Status bodies, same paging and watch
semantics; a difference from the Kubernetes backend is a bug here.

It stores data the way etcd does (MVCC). Every write appends one row to
``revisions``, numbered by a global revision that is also the row's
``resourceVersion``:

- the newest row of a name is the object, unless it is a tombstone (DELETED,
  which keeps a copy of the last state for the watch event);
- the state at any revision S is, for each name, its newest row at or below S:
  that is how continue tokens read a consistent snapshot;
- the rows after a revision are the watch events after it.

Old rows are compacted as etcd compacts: rows superseded at or below the
compaction revision are deleted, keeping a window of history bounded in bytes,
age and revisions (``embedded_compaction``). Watches and continue tokens from
before it get ``Gone``, as from the API server.

Opening never writes to an existing store, so a read-only file can be read,
and never creates a file unless asked (``embedded_file``).

Several processes may share the file: WAL journal, a busy timeout (capped at
the running retry policy's deadline, ``remstate.retry.remaining``), and every
write is one ``BEGIN IMMEDIATE`` transaction. In one process, the store object
may be shared by threads; they take turns on its one connection.

Every ``sqlite3`` error is translated in one place (``embedded_file.translated``)
into our error tree; none escapes.

This module is the store class: transactions, and the order of the server's
checks in each operation. The rest is split by concern:

- ``embedded_sql``: every SQL statement and the row layout;
- ``embedded_rows``: objects as rows and back (the annotate merge included),
  and reads at a revision (list pages, watch events);
- ``embedded_file``: opening the file, its tables, the connection of each
  process (a fork opens its own), sqlite3's errors;
- ``embedded_compaction``: the bounded window of history;
- ports of the API server, without SQL: ``apivalidation`` (what it refuses),
  ``apistatus`` (its error Status bodies and messages), ``selectors`` (label
  selectors) and ``continuetokens`` (paged lists).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Final, Self

from remstate import retry
from remstate.errors import InvalidInput
from remstate.objects import ObjectList, StoredObject, WatchEvent, WatchEventType
from remstate.store import (
    apistatus,
    apivalidation,
    continuetokens,
    embedded_compaction,
    embedded_events,
    embedded_file,
    embedded_rows,
    selectors,
)
from remstate.store import embedded_sql as sql
from remstate.store.base import check_expectations
from remstate.store.embedded_compaction import HistoryBounds
from remstate.store.embedded_file import OpenMode, ProcessConnection, translated
from remstate.store.embedded_rows import (
    Write,
    format_time,
    row_object,
)
from remstate.store.embedded_sql import (
    ADDED,
    ANNOTATIONS,
    CREATED,
    DATA,
    DELETED,
    EVENT,
    LABELS,
    MODIFIED,
    RV,
    UID,
)

__all__ = ["EmbeddedStore"]

#: How long a write waits for another process's write before it is Unavailable
#: (less when the running retry policy's deadline comes first).
_BUSY_TIMEOUT_S: Final = 30.0
#: How often a watch looks for new revisions.
_POLL_INTERVAL_S: Final = 0.05
#: Rows a watch reads at once (each may hold 1 MiB of data).
_WATCH_BATCH: Final = 64


def _utc_now() -> datetime:
    return datetime.now(UTC)


class EmbeddedStore:
    """The Store contract on a SQLite file, behaving as kube-apiserver does for ConfigMaps.

    Args:
        path: the database file. Several processes may open the same file.
            ``":memory:"`` works for one store object only.
        namespace: the namespace this store works in; stores of other namespaces
            may share the file and never see each other's objects.
        clock: the time of creation timestamps and of compaction by age (aware
            UTC; naive is taken as UTC).
        history: about how many revisions at most stay watchable and listable by
            a continue token before compaction makes them ``Gone``.
        history_age: compaction, as the API server's every 5 minutes, to the
            revision of this long ago: a watch window of one to two times this.
        history_bytes: the most bytes of objects the watch window holds.
        mode: ``"rwc"`` creates the file if missing; ``"rw"`` and ``"ro"`` (read
            only) open an existing file only. A file the process may not write
            is read all the same; a write to it raises ``Forbidden``.

    Raises:
        InvalidInput: the namespace is not a DNS-1123 label, or a bound is not positive.
        NotFound: mode "rw" or "ro", and there is no such file (or, "ro", it is empty).
        CorruptStore: the file is not a store, is damaged, or is laid out by a
            newer remstate.
        Unavailable: the file cannot be opened.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        namespace: str = "default",
        *,
        clock: Callable[[], datetime] | None = None,
        history: int = 10_000,
        history_age: timedelta = timedelta(minutes=5),
        history_bytes: int = 32 * 1_048_576,
        mode: OpenMode = "rwc",
    ) -> None:
        problems = apivalidation.is_dns1123_label(namespace)
        if problems:
            raise InvalidInput(f"namespace {namespace!r} is not valid: {'; '.join(problems)}")
        if history < 1:
            raise InvalidInput(f"history must be at least 1, not {history}")
        if history_age <= timedelta(0) or history_bytes < 1:
            raise InvalidInput("history_age and history_bytes must be positive")
        if mode not in embedded_file.OPEN_MODES:
            raise InvalidInput(f"mode must be one of rwc, rw or ro, not {mode!r}")
        self._path = os.fspath(path)
        self._namespace = namespace
        self._clock = clock or _utc_now
        self._bounds = HistoryBounds(history, history_age, history_bytes)
        self._reclaim = False
        self._lock = threading.RLock()
        self._busy_timeout = _BUSY_TIMEOUT_S
        self._busy: tuple[sqlite3.Connection, int] | None = None
        # Closed with the store, or when it is collected unclosed.
        self._connection = ProcessConnection(self._path, mode, busy_timeout=_BUSY_TIMEOUT_S)

    # -- connection ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction: IMMEDIATE for writes, a consistent snapshot for reads."""
        with self._lock, translated(self._path):
            conn = self._connection.get()
            self._wait_at_most(conn, retry.remaining())
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
                conn.execute("COMMIT")
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                    self._reclaim = False
            if self._reclaim:
                self._reclaim = False
                embedded_compaction.reclaim(conn)

    def _wait_at_most(self, conn: sqlite3.Connection, remaining: float | None) -> None:
        """Wait for another process's lock no longer than the running retry's deadline.

        Past it, sqlite3 gives up busy, which leaves as ``Unavailable`` (nothing
        was written: the transaction never began, or never committed).
        """
        seconds = self._busy_timeout if remaining is None else min(self._busy_timeout, remaining)
        millis = max(0, int(seconds * 1000))
        # Set only when it changes (a child of a fork has a connection of its own).
        if self._busy != (conn, millis):
            conn.execute(f"PRAGMA busy_timeout = {millis}")
            self._busy = (conn, millis)

    @property
    def namespace(self) -> str:
        """The namespace the store works in."""
        return self._namespace

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    def close(self) -> None:
        """Close the database. The store is not used afterwards."""
        with self._lock:
            self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reads -----------------------------------------------------------------------------

    def get(self, name: str) -> StoredObject:
        """Return the object.

        Raises:
            NotFound: there is no such object.
        """
        apistatus.check_path_name(name)
        with self._transaction(write=False) as conn:
            row = conn.execute(sql.SELECT_HEAD_WITH_DATA, (self._namespace, name)).fetchone()
            if row is None or row[EVENT] == DELETED:
                raise apistatus.not_found(name)
            return row_object(name, row, data=row[DATA])

    # Long on purpose (55 lines, most of them the docstring): a paged list's checks
    # on the token, in the server's order, in one read transaction.
    def list(
        self,
        *,
        label_selector: str = "",
        limit: int | None = None,
        continue_token: str | None = None,
        metadata_only: bool = False,
    ) -> ObjectList:
        """Return one page of the objects that match the label selector, in name order.

        Every page of a paged list reads the state at the first page's
        resourceVersion. ``remaining_item_count`` is given, as by the server,
        only when there is no selector and more pages follow.

        Raises:
            Gone: the continue token's revision has been compacted.
            InvalidObject: the label selector or the continue token cannot be parsed (400).
        """
        selector = selectors.parse(label_selector)
        start, token_revision = ("", 0)
        if continue_token:
            start, token_revision = continuetokens.decode(continue_token)
        page_size = limit if limit is not None and limit > 0 else 0
        with self._transaction(write=False) as conn:
            current = self._revision(conn)
            snapshot = current
            if token_revision > 0:
                if token_revision < self._compacted(conn):
                    raise apistatus.gone(apistatus.INCONSISTENT_CONTINUE)
                if token_revision > current:
                    raise apistatus.too_large_resource_version(token_revision, current)
                snapshot = token_revision
            items, more = embedded_rows.snapshot(
                conn,
                self._namespace,
                selector,
                snapshot,
                start=start,
                limit=page_size,
                with_data=not metadata_only,
            )
            token = None
            remaining = None
            if more:
                last = items[-1].name
                token = continuetokens.encode(last, snapshot)
                if selector.empty:
                    params = {"ns": self._namespace, "start": last + "\x00", "snap": snapshot}
                    (remaining,) = conn.execute(sql.COUNT_SNAPSHOT, params).fetchone()
        return ObjectList(
            items=items,
            resource_version=str(snapshot),
            continue_token=token,
            remaining_item_count=remaining,
        )

    def _revision(self, conn: sqlite3.Connection) -> int:
        (revision,) = conn.execute(sql.SELECT_REVISION).fetchone()
        return int(revision)

    def _compacted(self, conn: sqlite3.Connection) -> int:
        (compacted,) = conn.execute(sql.SELECT_COMPACTED).fetchone()
        return int(compacted)

    # -- writes ----------------------------------------------------------------------------

    def create(self, obj: StoredObject) -> StoredObject:
        """Create the object and return it as stored, with its new resourceVersion.

        The object's resourceVersion, uid and creation time are ignored.

        Raises:
            AlreadyExists: the name is taken.
            InvalidObject: the name, labels, annotations, keys or size break the API's rules.
            InvalidInput: the object has no data (it came from a metadata-only read).
        """
        embedded_rows.check_request_size(obj, self._namespace, replace=False)
        write = Write.of(obj)
        # The server validates before it looks at storage: InvalidObject wins over AlreadyExists.
        apivalidation.raise_if_invalid(write.name, write.errors(self._namespace, update=False))
        created = format_time(self._now())
        uid = str(uuid.uuid4())
        with self._transaction(write=True) as conn:
            head = conn.execute(sql.SELECT_HEAD, (self._namespace, write.name)).fetchone()
            if head is not None and head[EVENT] != DELETED:
                raise apistatus.already_exists(write.name)
            rv = self._append(conn, write, ADDED, uid, created)
        return write.stored(rv, uid, created)

    def replace(self, obj: StoredObject) -> StoredObject:
        """Replace the object if it is still at ``obj.resource_version``.

        As the API server does for ConfigMaps: an empty (or "0") resourceVersion
        replaces unconditionally; a replace that changes nothing writes nothing
        and keeps the resourceVersion; uid and creation time are the stored ones.

        Raises:
            NotFound: the object is gone.
            Conflict: the object changed since that version.
            InvalidObject: as for ``create``.
            InvalidInput: the object has no data (it came from a metadata-only read).
        """
        apistatus.check_path_name(obj.name)
        embedded_rows.check_request_size(obj, self._namespace, replace=True)
        write = Write.of(obj)
        expected = apistatus.parse_uint(obj.resource_version) if obj.resource_version else 0
        errors = write.errors(self._namespace, update=True)
        with self._transaction(write=True) as conn:
            head = conn.execute(sql.SELECT_HEAD, (self._namespace, write.name)).fetchone()
            # The server's order: existence, the version's syntax, the version, validity.
            if head is None or head[EVENT] == DELETED:
                raise apistatus.not_found(write.name)
            if isinstance(expected, str):
                raise apistatus.internal(expected)
            if expected and expected != head[RV]:
                raise apistatus.conflict(write.name, apistatus.OPTIMISTIC_LOCK)
            apivalidation.raise_if_invalid(write.name, errors)
            if embedded_rows.unchanged(conn, head, write):
                # etcd is not written when the bytes would not change: same version, no event.
                return write.stored(head[RV], head[UID], head[CREATED])
            rv = self._append(conn, write, MODIFIED, head[UID], head[CREATED])
        return write.stored(rv, head[UID], head[CREATED])

    def annotate(
        self,
        name: str,
        annotations: Mapping[str, str | None],
        *,
        expect: Mapping[str, str | None] | None = None,
        labels: Mapping[str, str | None] | None = None,
        resource_version: str | None = None,
    ) -> StoredObject:
        """Merge ``annotations`` and ``labels`` into the object; return it.

        As the API server does a merge patch (or, with ``expect``, a JSON patch
        that tests first): ``None`` removes a key, a ``resource_version`` is a
        precondition as for ``replace``, and a patch that changes nothing
        writes nothing and keeps the resourceVersion.

        Raises:
            NotFound: there is no such object.
            Conflict: the object is no longer at ``resource_version``, or an
                expected annotation has another value; nothing was written.
            InvalidObject: the annotations or labels break the API's rules.
            InvalidInput: a key is removed that ``expect`` does not expect present.
            Unavailable: ``resource_version`` is not a number (the server's 500).
        """
        apistatus.check_path_name(name)
        check_expectations(annotations, expect)
        expected = apistatus.parse_uint(resource_version) if resource_version else 0
        with self._transaction(write=True) as conn:
            row = conn.execute(sql.SELECT_HEAD_WITH_DATA, (self._namespace, name)).fetchone()
            # The server's order: existence, the patch (its tests), the version's
            # syntax, the version, validity, and only then "nothing changed".
            if row is None or row[EVENT] == DELETED:
                raise apistatus.not_found(name)
            current = row_object(name, row, data=row[DATA])
            merged = embedded_rows.merge_metadata(
                current, annotations, labels=labels or {}, expect=expect
            )
            if isinstance(expected, str):
                raise apistatus.internal(expected)
            if expected and expected != row[RV]:
                raise apistatus.conflict(name, apistatus.OPTIMISTIC_LOCK)
            write = Write.of(merged)
            apivalidation.raise_if_invalid(write.name, write.errors(self._namespace, update=True))
            if (write.annotations_json, write.labels_json) == (row[ANNOTATIONS], row[LABELS]):
                return current
            rv = self._append(conn, write, MODIFIED, row[UID], row[CREATED])
        return write.stored(rv, row[UID], row[CREATED])

    def record_event(
        self,
        obj: StoredObject,
        *,
        reason: str,
        message: str,
        type: str = "Normal",  # noqa: A002 - the Event's own field name
        action: str = "",
    ) -> None:
        """Log the Event regarding ``obj`` to ``remstate.events``; never raise."""
        embedded_events.log_event(
            self._namespace, obj, reason=reason, message=message, type=type, action=action
        )

    def delete(
        self, name: str, *, uid: str | None = None, resource_version: str | None = None
    ) -> None:
        """Delete the object, if it still has this uid and resourceVersion (when given).

        Raises:
            NotFound: there is no such object.
            Conflict: a precondition did not hold; nothing was deleted.
        """
        apistatus.check_path_name(name)
        with self._transaction(write=True) as conn:
            head = conn.execute(sql.SELECT_HEAD, (self._namespace, name)).fetchone()
            if head is None or head[EVENT] == DELETED:
                raise apistatus.not_found(name)
            apistatus.check_delete_preconditions(
                name, uid=uid, resource_version=resource_version, found=(head[UID], str(head[RV]))
            )
            rv = self._revision(conn) + 1
            conn.execute(sql.INSERT_TOMBSTONE, (rv, head[RV]))
            (size,) = conn.execute(sql.SELECT_SIZE, (rv,)).fetchone()
            self._after_write(conn, rv, size)

    def _now(self) -> datetime:
        moment = self._clock()
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).replace(microsecond=0)

    def _append(
        self, conn: sqlite3.Connection, write: Write, event: str, uid: str, created: str
    ) -> int:
        rv = self._revision(conn) + 1
        embedded_rows.insert(
            conn, write, rv=rv, namespace=self._namespace, event=event, uid=uid, created=created
        )
        self._after_write(conn, rv, write.size)
        return rv

    def _after_write(self, conn: sqlite3.Connection, rv: int, size: int) -> None:
        if embedded_compaction.after_write(conn, rv, size, now=self._now(), bounds=self._bounds):
            self._reclaim = True

    # -- watch -----------------------------------------------------------------------------

    # Long and grade C on purpose: the initial list, then the polling loop with its
    # compaction check and deadline, read as one generator, as the server's watch is.
    def watch(
        self,
        *,
        label_selector: str = "",
        resource_version: str | None = None,
        timeout_seconds: float | None = None,
    ) -> Iterator[WatchEvent]:
        """Yield changes after ``resource_version`` until the timeout (None: forever).

        As the API server does: without a resourceVersion (or with "0"), an
        ADDED event for each object that exists comes first, in name order,
        then the changes. A label selector turns an object that stops matching
        into a DELETED event and one that starts matching into an ADDED event.
        Nothing happens until the first event is asked for.

        Raises:
            Gone: the resourceVersion is older than the compacted history.
            InvalidObject: the label selector cannot be parsed (400).
            Unavailable: the resourceVersion is not a number (500, as from the server).
        """
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        selector = selectors.parse(label_selector)
        if not resource_version or resource_version == "0":
            with self._transaction(write=False) as conn:
                last = self._revision(conn)
                initial, _ = embedded_rows.snapshot(
                    conn, self._namespace, selector, last, with_data=True
                )
            for obj in initial:
                yield WatchEvent(WatchEventType.ADDED, obj)
        else:
            last = self._watch_start(resource_version)
        while True:
            with self._transaction(write=False) as conn:
                compacted = self._compacted(conn)
                if last < compacted:
                    # The watcher fell behind compaction: events it has not seen are gone.
                    raise apistatus.gone(apistatus.WATCH_EXPIRED)
                rows = conn.execute(
                    sql.SELECT_EVENTS, (last, self._namespace, _WATCH_BATCH)
                ).fetchall()
                events = [
                    e
                    for row in rows
                    if (e := embedded_rows.watch_event(conn, self._namespace, selector, row))
                    is not None
                ]
            if rows:
                last = rows[-1][RV]
            yield from events
            if deadline is not None and time.monotonic() >= deadline:
                return
            if len(rows) < _WATCH_BATCH:
                pause = _POLL_INTERVAL_S
                if deadline is not None:
                    pause = min(pause, max(0.0, deadline - time.monotonic()))
                time.sleep(pause)

    def _watch_start(self, resource_version: str) -> int:
        wanted = apistatus.parse_uint(resource_version)
        if isinstance(wanted, str):
            raise apistatus.internal(
                f"resourceVersion: Invalid value: {apistatus.go_quote(resource_version)}: {wanted}"
            )
        with self._transaction(write=False) as conn:
            if wanted < self._compacted(conn):
                raise apistatus.gone(apistatus.WATCH_EXPIRED)
        # A future revision is waited for, as etcd does: its events come when it does.
        return wanted
