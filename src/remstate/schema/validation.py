"""Validation as a report: every problem of a stored object, as data; never raises.

Pure functions, no I/O.
"""

from __future__ import annotations

from remstate.objects import StoredObject
from remstate.schema.checks import cross_check
from remstate.schema.decoding import read_segment, read_state
from remstate.schema.problems import Problem
from remstate.schema.reader import Reader, collecting
from remstate.schema.state import (
    TaskState,
)


def salvage_state(obj: StoredObject) -> tuple[TaskState | None, list[Problem]]:
    """What can be read of a head object, and every problem found; never raises.

    Unreadable entries are left out (a repair should keep the original, see
    the snapshot rule). The state is ``None`` when the schema version is
    unsupported, there is no data, or ``task_id``, ``status`` or
    ``last_update`` cannot be found.
    """
    reader = Reader(collect=True)

    def read() -> TaskState | None:
        state = read_state(obj, reader)
        if state is not None:
            reader.problems.extend(cross_check(obj, state))
        return state

    return collecting(obj, reader, read), reader.problems


def find_problems(obj: StoredObject) -> list[Problem]:
    """Every problem found in a head object, as typed results; never raises.

    Checks: unsupported or unreadable schema version; missing keys; malformed
    JSON; unknown or broken encodings; entries of the wrong shape; bad
    timestamps; ``task_id`` against the object's name; ``iteration`` against
    ``iteration_history``; duplicate feedback IDs; the history index; the
    resolutions of archived feedback; the annotations cleanup relies on.
    """
    return salvage_state(obj)[1]


def find_segment_problems(obj: StoredObject) -> list[Problem]:
    """Every problem found in a history segment object; never raises."""
    reader = Reader(collect=True)
    collecting(obj, reader, lambda: read_segment(obj, reader))
    return reader.problems
