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
from typing import Any

#: The note of the iteration records made up when migrating a version 0 state,
#: which counted iterations but did not record them.
MIGRATED_NOTE = "reconstructed from a schema version 0 state: start time unknown"
# A corrupt counter must not make us build millions of records.
MAX_RECONSTRUCTED = 1000


def v0_entry_id(index: int, raw: Any) -> str:
    """A stable ID for a version 0 entry, which had none: same object, same IDs."""
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    digest = hashlib.sha256(f"{index}:{canonical}".encode()).digest()
    return "v0-" + base64.b32encode(digest).decode("ascii").lower()[:20]
