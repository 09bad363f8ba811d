"""Leadership on the embedded store: whoever holds an exclusive file lock beside the database.

The constraints this module lives under: the embedded store is for one host,
so its replicas are processes on that host, and the kernel is the arbiter.
A replica leads while it holds ``fcntl.flock(LOCK_EX)`` on ``<database>.leader``;
the others try again (without blocking) every retry period. The kernel drops
the lock when its holder dies, however it dies, so a killed leader's place is
taken at the next try; a clean stop unlocks at once. The holder writes its
identity into the file, so the others can say who leads. POSIX only (fcntl).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Final

from remstate.errors import InvalidInput
from remstate.service.checks import ReadinessCheck
from remstate.service.leadership import default_identity

__all__ = ["RETRY_PERIOD", "FileLockElection", "lock_path_for"]

log = logging.getLogger(__name__)

#: Seconds between tries, as the Lease's retry period.
RETRY_PERIOD: Final = 2.0

Callback = Callable[[], object]


def lock_path_for(database: str | os.PathLike[str]) -> Path:
    """The lock file beside a database: ``state.db`` -> ``state.db.leader``."""
    path = Path(database)
    return path.with_name(path.name + ".leader")


class FileLockElection:
    """One process's part in electing a leader with a file lock (the ``Leadership`` protocol).

    Args:
        path: the lock file (see ``lock_path_for``); created if missing.
        identity: written into the file while held; ``POD_NAME``, else host and pid.
        retry_period: seconds between tries to take the lock.
        on_started_leading: called (in the election's thread) on taking the lock.
        on_stopped_leading: called on letting it go.

    Raises:
        InvalidInput: a retry period that is not a positive number.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        identity: str | None = None,
        retry_period: float = RETRY_PERIOD,
        on_started_leading: Callback | None = None,
        on_stopped_leading: Callback | None = None,
    ) -> None:
        if isinstance(retry_period, bool) or not isinstance(retry_period, int | float):
            raise InvalidInput(f"retry_period must be a number of seconds, not {retry_period!r}")
        if not retry_period > 0:
            raise InvalidInput(f"retry_period must be positive, not {retry_period!r}")
        self.path = Path(path)
        self.identity = identity or default_identity()
        self.retry_period = float(retry_period)
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._lock = threading.RLock()
        self._file: IO[str] | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Take part in a daemon thread: a first try at once, then every retry period."""
        with self._lock:
            if self._thread is not None:
                return
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="file-lock", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop taking part; the lock is let go (a lock cannot outlive its holder's interest)."""
        self.release()

    def release(self) -> None:
        """Stop taking part and unlock, so another process takes over at its next try."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stopping.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._lock:
            held, self._file = self._file, None
            if held is None:
                return
            # Unlock before closing, so the file never says who led after the lock is free.
            with contextlib.suppress(OSError):
                held.truncate(0)
                held.flush()
            fcntl.flock(held, fcntl.LOCK_UN)
            held.close()
            log.info("file lock %s: %s stopped leading", self.path, self.identity)
            self._notify(self._on_stopped)

    def is_leader(self) -> bool:
        """Whether this process holds the lock."""
        with self._lock:
            return self._file is not None

    def holder(self) -> str | None:
        """Who holds the lock, as its file says; None if no one does."""
        if self.is_leader():
            return self.identity
        try:
            with self.path.open(encoding="utf-8") as handle:
                try:
                    # Free, if a shared lock is granted: a killed holder's name is stale.
                    fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    return handle.read().strip() or None
                fcntl.flock(handle, fcntl.LOCK_UN)
                return None
        except OSError:
            return None

    def readiness_checks(self) -> Sequence[ReadinessCheck]:
        """None: the store's own check covers the database's directory."""
        return ()

    def try_acquire(self) -> bool:
        """One try, without blocking; returns whether this process holds the lock afterwards."""
        with self._lock:
            if self._file is not None:
                return True
            handle = self.path.open("a+", encoding="utf-8")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                return False
            except BaseException:
                handle.close()
                raise
            handle.truncate(0)
            handle.write(self.identity + "\n")
            handle.flush()
            self._file = handle
            log.info("file lock %s: %s started leading", self.path, self.identity)
            self._notify(self._on_started)
            return True

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                if self.try_acquire():
                    # Held until release(): nothing to renew; the kernel keeps it.
                    return
            except OSError as e:
                log.warning("file lock %s: %s", self.path, e)
            self._stopping.wait(self.retry_period)

    def _notify(self, callback: Callback | None) -> None:
        if callback is None:
            return
        try:
            callback()
        except Exception:
            log.exception("file lock %s: a leadership callback failed", self.path)
