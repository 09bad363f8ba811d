"""What many test modules build the same way: a fixed instant, feedback entries, ConfigMaps.

Plain functions, not fixtures: tests call them with arguments, and table-driven
cases use them at import time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from remstate import FeedbackEntry
from remstate.store import StoredObject

__all__ = ["T0", "cm", "entry"]

#: The instant tests start from: whole seconds, UTC, so rendered times are exact.
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def entry(i: int = 0, **fields: Any) -> FeedbackEntry:
    """Feedback entry number ``i``, made as a caller makes one (validated by ``new``).

    Its id ``fb-{i:06d}`` sorts as it counts, and its time is ``T0`` plus ``i``
    seconds. Any field may be overridden; ``id=None`` generates a ULID.
    """
    values: dict[str, Any] = {
        "author": f"reviewer-{i % 3}",
        "severity": "medium",
        "issue_type": "bug",
        "description": f"finding {i}",
        "id": f"fb-{i:06d}",
        "timestamp": T0 + timedelta(seconds=i),
    }
    values.update(fields)
    return FeedbackEntry.new(**values)


def cm(name: str, data: dict[str, str] | None = None, **labels: str) -> StoredObject:
    """A ConfigMap to store: ``data`` (``{"k": "v"}`` by default) and the given labels."""
    return StoredObject(name=name, data=data if data is not None else {"k": "v"}, labels=labels)
