"""Reading states written by older schema versions: the one place that knows them.

Version 0 is the original sketch: no ``schema_version`` key, feedback entries
without IDs, and an iteration counter without ``iteration_history``. A reader
accepts it and migrates it on read; the next write stores version 1. A newer
version than :data:`SCHEMA_VERSION` is refused, never guessed at.

Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from remstate.schema.records import IterationRecord

__all__ = [
    "MIGRATED_NOTE",
    "UNVERSIONED",
    "default_entry_id",
    "expected_keys",
    "migrate_iterations",
    "reuses_decoded_records",
]

#: The version of a head with no ``schema_version`` key: the original sketch.
UNVERSIONED = 0
#: The note of the iteration records made up when migrating a version 0 state,
#: which counted iterations but did not record them.
MIGRATED_NOTE = "reconstructed from a schema version 0 state: start time unknown"
# A corrupt counter must not make us build millions of records.
_MAX_RECONSTRUCTED = 1000
_ARRAY_KEYS = ("iteration_history", "feedback_history", "error_messages", "metadata")


def expected_keys(version: int) -> tuple[str, ...]:
    """The data keys every head of ``version`` has: a missing one is reported."""
    if version == UNVERSIONED:
        # Version 0 did not record iterations; every other key it had.
        return tuple(k for k in _ARRAY_KEYS if k != "iteration_history")
    return _ARRAY_KEYS


def reuses_decoded_records(version: int) -> bool:
    """Whether records decoded from an earlier read may be reused.

    Not for version 0: its entries' IDs are derived on read, so the stored
    text never begins with their JSON.
    """
    return version != UNVERSIONED


def default_entry_id(version: int, index: int, raw: Any) -> str | None:
    """The ID a feedback entry without one gets: only version 0 wrote such entries."""
    # Derived from the entry, so that re-reading the same object (on every
    # retry, say) gives the same IDs.
    return _v0_entry_id(index, raw) if version == UNVERSIONED else None


def migrate_iterations(
    version: int,
    data: Mapping[str, str],
    *,
    iteration: int,
    last_update: datetime,
    read: Sequence[IterationRecord],
) -> list[IterationRecord]:
    """The iteration records of a head: version 0 counted iterations without them.

    Made up (:data:`MIGRATED_NOTE`, at ``last_update``) so that the counter
    agrees with its records; not past a sane count, so that a corrupt counter
    cannot make a reader build millions of records.
    """
    reconstruct = iteration <= _MAX_RECONSTRUCTED
    if version == UNVERSIONED and "iteration_history" not in data and reconstruct:
        return [IterationRecord(i, last_update, MIGRATED_NOTE) for i in range(1, iteration + 1)]
    return list(read)


def _v0_entry_id(index: int, raw: Any) -> str:
    """A stable ID for a version 0 entry, which had none: same object, same IDs."""
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    digest = hashlib.sha256(f"{index}:{canonical}".encode()).digest()
    return "v0-" + base64.b32encode(digest).decode("ascii").lower()[:20]
