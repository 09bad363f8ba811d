"""The embedded store's SQLite file: opening it, its tables, its connection, sqlite3's errors.

Design constraint: opening never writes to a file that is a store already, so
a read-only file, or a file in a read-only directory, can still be read. Only a
new file gets its tables, and a file is created only in mode ``"rwc"``: a
read never leaves a database behind. Every error names the file, and every
``sqlite3`` error leaves as one of ours, translated here, in one place.

A store holds one connection per process (``ProcessConnection``): a
connection must not cross a fork, so a child opens its own.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Final, Literal

from remstate.errors import (
    ApiStatus,
    CorruptStore,
    Forbidden,
    NotFound,
    RemstateError,
    StoreError,
    Unavailable,
)
from remstate.store import embedded_sql as sql

__all__ = ["SCHEMA_VERSION", "OpenMode", "ProcessConnection", "open_file", "shown", "translated"]

#: SQLite's own URI modes: read-write and create the file if missing; read-write
#: on an existing file; read-only.
OpenMode = Literal["rwc", "rw", "ro"]
OPEN_MODES: Final = ("ro", "rw", "rwc")

#: The version of the table layout below (not of the state it holds).
SCHEMA_VERSION: Final = 1

_TABLES: Final = frozenset({"meta", "revisions"})

#: The write-ahead log is cut back to this after a checkpoint (SQLite's own
#: checkpoint starts at 1000 pages, about this much).
WAL_LIMIT_BYTES: Final = 4 * 1_048_576

# SQLite's primary result codes (the low byte of an extended code), by what
# they mean to a caller.
_BUSY: Final = frozenset({5, 6})  # BUSY, LOCKED: another process holds the lock
_REFUSED: Final = frozenset({3, 8, 23})  # PERM, READONLY, AUTH
# ERROR (our fixed statements meet tables they do not fit), CORRUPT,
# CONSTRAINT, MISMATCH, FORMAT, RANGE, NOTADB: the file is damaged or not ours.
_DAMAGED: Final = frozenset({1, 11, 19, 20, 24, 25, 26})
_CANTOPEN: Final = 14
_READONLY_DIRECTORY: Final = 8 | (6 << 8)


def shown(path: str) -> str:
    """The file as messages name it: absolute, so a workflow's log is unambiguous."""
    return path if path == ":memory:" else os.path.abspath(path)


def _unavailable(message: str) -> Unavailable:
    return Unavailable(message, status=ApiStatus(503, "ServiceUnavailable", message))


def _corrupt(message: str) -> CorruptStore:
    return CorruptStore(message, status=ApiStatus(500, "InternalError", message))


def _missing(path: str, what: str) -> NotFound:
    message = f"the database file {shown(path)} {what}: nothing has been stored there yet"
    details = {"name": shown(path), "kind": "database"}
    return NotFound(message, status=ApiStatus(404, "NotFound", message, details))


def _translate(e: sqlite3.Error, path: str) -> StoreError:
    code = getattr(e, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    where = shown(path)
    if primary in _DAMAGED:
        return _corrupt(f"the embedded store {where} is damaged or is not a remstate store: {e}")
    if primary in _REFUSED:
        message = f"cannot write the embedded store {where}: it is read-only here ({e})"
        return Forbidden(message, status=ApiStatus(403, "Forbidden", message))
    if primary == _CANTOPEN:
        return _unavailable(f"cannot open the embedded store {where}: {e}")
    if primary is not None:
        # Busy past the timeout, I/O errors, a full disk: transient, or at least not ours.
        return _unavailable(f"the embedded store {where} is unavailable: {e}")
    # sqlite3 itself refused a call (a closed connection, say): a bug of ours.
    message = f"Internal error occurred: embedded store {where}: {type(e).__name__}: {e}"
    return StoreError(message, status=ApiStatus(500, "InternalError", message))


@contextlib.contextmanager
def translated(path: str) -> Iterator[None]:
    """Run SQLite work; whatever sqlite3 (or a damaged row) raises leaves as our error."""
    try:
        yield
    except RemstateError:
        raise
    except sqlite3.Error as e:
        raise _translate(e, path) from e
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        # Only rows we wrote are read; one we cannot decode is damaged.
        raise _corrupt(f"the embedded store {shown(path)} has a damaged row: {e!r}") from e


def open_file(path: str, mode: OpenMode, *, busy_timeout: float) -> sqlite3.Connection:
    """Open the store's file, check its tables (create them in a new file) and return it.

    Raises:
        NotFound: no file (mode "rw" or "ro"), or an empty one (mode "ro").
        CorruptStore: not a database, damaged, not a store, or a newer layout.
        Unavailable: the file cannot be opened (its message says why).
    """
    with translated(path):
        conn = _connect(path, mode, busy_timeout)
        try:
            _prepare(conn, path, mode)
        except BaseException:
            conn.close()
            raise
    return conn


def _close_quietly(connections: list[sqlite3.Connection]) -> None:
    for conn in connections:
        with contextlib.suppress(sqlite3.Error):
            conn.close()
    connections.clear()


# Connections inherited across a fork. They are never closed in the child: closing
# one there could checkpoint and remove the WAL under the parent's feet.
_INHERITED: list[sqlite3.Connection] = []


class ProcessConnection:
    """A store's connection to its file, one per process: a child of a fork opens its own.

    Closed by ``close``, or when it is collected unclosed. It takes no lock: its
    store's threads take turns on it under the store's own lock.

    Raises:
        as ``open_file``.
    """

    def __init__(self, path: str, mode: OpenMode, *, busy_timeout: float) -> None:
        self._path = path
        self._mode: OpenMode = mode
        self._busy_timeout = busy_timeout
        self._closed = False
        self._connections: list[sqlite3.Connection] = []
        self._finalizer = weakref.finalize(self, _close_quietly, self._connections)
        self._pid = os.getpid()
        self._conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        conn = open_file(self._path, self._mode, busy_timeout=self._busy_timeout)
        self._connections.append(conn)
        return conn

    def get(self) -> sqlite3.Connection:
        """This process's connection, opened now if the process is a child of a fork.

        Raises:
            StoreError: (500) the connection is closed.
        """
        if self._closed:
            message = "Internal error occurred: the embedded store is closed"
            raise StoreError(message, status=ApiStatus(500, "InternalError", message))
        if os.getpid() != self._pid:
            # A connection must not cross a fork: the child opens its own.
            _INHERITED.extend(self._connections)
            self._connections.clear()
            self._pid = os.getpid()
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        """Close every connection this process opened; ``get`` refuses from now on."""
        self._closed = True
        self._finalizer()


def _sqlite(target: str, busy_timeout: float, *, uri: bool = True) -> sqlite3.Connection:
    conn = sqlite3.connect(
        target, timeout=busy_timeout, isolation_level=None, check_same_thread=False, uri=uri
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        # Durable against a crash of the process; the last commits may be lost only
        # if the machine itself stops.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
        # The first read sets up the shared-memory file beside the database.
        conn.execute(sql.SELECT_TABLES).fetchall()
    except BaseException:
        conn.close()
        raise
    return conn


def _connect(path: str, mode: OpenMode, busy_timeout: float) -> sqlite3.Connection:
    if path == ":memory:":
        return _sqlite(path, busy_timeout, uri=False)
    try:
        if os.path.isdir(path):
            raise _unavailable(f"cannot open the embedded store {shown(path)}: it is a directory")
        os.stat(path)
    except FileNotFoundError:
        if mode != "rwc":
            raise _missing(path, "does not exist") from None
    except OSError as e:
        raise _unavailable(f"cannot open the embedded store {shown(path)}: {e.strerror}") from e
    uri = Path(path).absolute().as_uri()
    try:
        return _sqlite(f"{uri}?mode={mode}", busy_timeout)
    except sqlite3.OperationalError as e:
        if e.sqlite_errorcode != _READONLY_DIRECTORY:
            raise
    return _open_immutable(path, uri, busy_timeout)


def _open_immutable(path: str, uri: str, busy_timeout: float) -> sqlite3.Connection:
    """Open a file whose directory refuses the ``-shm`` file that WAL reads need.

    With no write-ahead log beside it, the file alone holds the whole store and
    SQLite may read it as immutable. No one without write access to the
    directory can write it meanwhile: a writer needs that ``-shm`` file too.
    """
    wal = f"{path}-wal"
    if os.path.exists(wal) and os.path.getsize(wal) > 0:
        raise _unavailable(
            f"cannot read the embedded store {shown(path)}: its directory is read-only "
            f"and its write-ahead log {shown(wal)} holds changes not yet in the file"
        )
    return _sqlite(f"{uri}?mode=ro&immutable=1", busy_timeout)


def _prepare(conn: sqlite3.Connection, path: str, mode: OpenMode) -> None:
    """Check the file's tables, or create them in a new file; write nothing otherwise."""
    tables = {name for (name,) in conn.execute(sql.SELECT_TABLES)}
    if not tables:
        if mode == "ro":
            raise _missing(path, "is empty")
        _create(conn)
    elif not tables >= _TABLES:
        raise _corrupt(
            f"the embedded store {shown(path)} is not a remstate store "
            f"(it has the tables {', '.join(sorted(tables))})"
        )
    row = conn.execute(sql.SELECT_SCHEMA).fetchone()
    if row is None or not isinstance(row[0], int):
        raise _corrupt(f"the embedded store {shown(path)} is damaged: it has no layout version")
    if row[0] > SCHEMA_VERSION:
        raise _corrupt(
            f"the embedded store {shown(path)} was laid out by a newer remstate (store "
            f"schema {row[0]}; this one reads up to {SCHEMA_VERSION}); upgrade remstate"
        )
    (journal,) = conn.execute("PRAGMA journal_mode").fetchone()
    if journal != "wal" and mode != "ro":
        # A file we may not write keeps its journal; reads do not need WAL.
        with contextlib.suppress(sqlite3.OperationalError):
            conn.execute("PRAGMA journal_mode = WAL")


def _create(conn: sqlite3.Connection) -> None:
    # auto_vacuum is set before the first table: afterwards only a VACUUM changes it.
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        # IF NOT EXISTS: another process may have made them since we looked.
        for statement in sql.CREATE_TABLES:
            conn.execute(statement)
        conn.execute("COMMIT")
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
