"""Which replica leads: the ``Leadership`` protocol, and ``Always`` for a single process.

Design constraint: only the leader runs the periodic cleanup and accepts a
manual one; a replica that loses leadership stops its cleanup at once. The
service asks ``is_leader()`` before each cleanup and watches it while the
loop runs; it calls ``start()`` when it starts and ``release()`` when it
stops cleanly, so that another replica takes over at once rather than after
the lease runs out. The Kubernetes Lease and the embedded store's file lock
live in modules of their own.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Protocol

from remstate.service.checks import ReadinessCheck

__all__ = ["Always", "Leadership", "default_identity"]


def default_identity() -> str:
    """This replica's name: the pod's (``POD_NAME``), else host and process id."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


class Leadership(Protocol):
    """Whether this replica leads, and who does."""

    def start(self) -> None:
        """Begin taking part in the election (in a thread of its own, if it needs one)."""
        ...

    def stop(self) -> None:
        """Stop taking part, without giving the lease back (it runs out)."""
        ...

    def release(self) -> None:
        """Give leadership back at once, and stop taking part."""
        ...

    def is_leader(self) -> bool:
        """Whether this replica leads now."""
        ...

    def holder(self) -> str | None:
        """The identity of the replica that leads, None if none does."""
        ...

    def readiness_checks(self) -> Sequence[ReadinessCheck]:
        """Checks ``/readyz`` runs for the election (reaching the Lease, say)."""
        ...


class Always:
    """A single process: it always leads, until released."""

    def __init__(self, identity: str | None = None) -> None:
        self.identity = identity or default_identity()
        self._leading = True

    def start(self) -> None:
        self._leading = True

    def stop(self) -> None:
        self._leading = False

    def release(self) -> None:
        self._leading = False

    def is_leader(self) -> bool:
        return self._leading

    def holder(self) -> str | None:
        return self.identity if self._leading else None

    def readiness_checks(self) -> Sequence[ReadinessCheck]:
        return ()
