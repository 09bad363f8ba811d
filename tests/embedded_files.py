"""Embedded store files in the states users found them in: damaged, or read-only to them."""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from remstate.store.base import StoredObject
from remstate.store.embedded import EmbeddedStore

NOBODY = 65534


def filled_store(path: str | Path) -> None:
    """A store of several pages, closed (its WAL checkpointed into the file)."""
    with EmbeddedStore(path) as store:
        for i in range(20):
            blob = random.Random(i).randbytes(3000).hex()
            store.create(StoredObject(name=f"obj-{i}", data={"blob": blob}))


@contextlib.contextmanager
def _raw(path: str) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def not_a_database(path: str) -> None:
    Path(path).write_bytes(b"this is not a database" * 100)


def truncated(path: str) -> None:
    with open(path, "r+b") as f:
        f.truncate(3 * 4096)


def malformed(path: str) -> None:
    with open(path, "r+b") as f:
        f.seek(4096)
        f.write(random.Random(9).randbytes(2 * 4096))


def column_dropped(path: str) -> None:
    with _raw(path) as conn:
        conn.execute("ALTER TABLE revisions DROP COLUMN owners")


def column_garbled(path: str) -> None:
    with _raw(path) as conn:
        conn.execute("UPDATE revisions SET created = 'yesterday'")


def foreign(path: str) -> None:
    Path(path).unlink()
    with _raw(path) as conn:
        conn.execute("CREATE TABLE accounts (id INTEGER)")


def newer_layout(path: str) -> None:
    with _raw(path) as conn:
        conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'schema'")


#: Ways to damage a store's file; each is applied to a closed, filled store.
DAMAGES = [
    not_a_database,
    truncated,
    malformed,
    column_dropped,
    column_garbled,
    foreign,
    newer_layout,
]


@contextlib.contextmanager
def reachable_dir() -> Iterator[Path]:
    """A directory outside pytest's private tmp, so that a user who is not root can reach it."""
    made = Path(tempfile.mkdtemp(prefix="remstate-test-"))
    made.chmod(0o777)
    try:
        yield made
    finally:
        made.chmod(0o700)
        shutil.rmtree(made)


def as_nobody(fn: Callable[[], object]) -> tuple[str, object]:
    """Run ``fn`` in a forked child as user nobody, for whom chmod binds (it does not bind root).

    Returns ("ok", what fn returned) or (the error's class name, its message).
    Everything the child uses is imported before the fork: nobody cannot read
    the interpreter's files under /root.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.close(read)
            if os.geteuid() == 0:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            try:
                outcome: tuple[str, object] = ("ok", fn())
            except Exception as e:
                outcome = (type(e).__name__, str(e))
            with os.fdopen(write, "wb") as out:
                out.write(pickle.dumps(outcome))
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as inp:
        data = inp.read()
    os.waitpid(pid, 0)
    result: tuple[str, object] = pickle.loads(data)  # noqa: S301 - our own child's bytes
    return result
