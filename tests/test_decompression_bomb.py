"""A stored decompression bomb costs a reader the bound, not gigabytes (both backends).

The issue's value: 174 KB of ``gzip+base64:`` that inflates to 128 MiB made
``remstate get`` use 3.35 GB for 12.8 s before exiting 8. It is stored here
through the raw store (it fits the 1 MiB object limit), in each JSON key of
the head and in a history segment.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import sys

import pytest

from remstate import CorruptState, FeedbackEntry, StateManager
from remstate.cli import Exit
from remstate.schema import MAX_DATA_BYTES, object_name
from remstate.store import Store, StoredObject
from tests.backends import StoreSpec
from tests.unit.test_decoded_bound import bomb

TASK = "42"
#: The issue's bomb: [{},{},...] of 128 MiB (under the old bound), 174 KB stored.
INFLATED = 2**27 - 1
#: Peak memory allowed to ``remstate get`` on the bomb. Generous: about 40 MB
#: (embedded) to 80 MB (Kubernetes client) is measured; 3.35 GB before the fix.
RSS_CEILING = 512 * 2**20


@functools.cache
def the_bomb() -> str:
    value = bomb(INFLATED)
    assert len(value) < MAX_DATA_BYTES
    return value


def plant(store: Store, key: str) -> StoredObject:
    """A task, then the bomb in one of its head's keys, through the raw store."""
    manager = StateManager(store)
    manager.increment_iteration(TASK)
    obj = store.get(object_name(TASK))
    assert obj.data is not None
    return store.replace(dataclasses.replace(obj, data={**obj.data, key: the_bomb()}))


@pytest.mark.parametrize(
    "key",
    ["feedback_history", "iteration_history", "error_messages", "metadata", "history_index"],
)
def test_a_bomb_in_the_head_raises_corrupt_state_and_writes_nothing(store: Store, key: str) -> None:
    """Reads and writes raise CorruptState naming the key; the object is left as it was."""
    planted = plant(store, key)
    manager = StateManager(store)
    for operation in (
        lambda: manager.get_state(TASK),
        lambda: manager.increment_iteration(TASK),
        lambda: manager.append_feedback(
            TASK, author="a", severity="low", issue_type="bug", description="d"
        ),
    ):
        with pytest.raises(CorruptState, match="expands to more than 16777216 bytes") as caught:
            operation()
        assert caught.value.field == key
    assert store.get(object_name(TASK)).resource_version == planted.resource_version


def test_a_bomb_in_a_segment_raises_corrupt_state(store: Store) -> None:
    """A segment is read with the same bound when a page reaches it."""
    manager = StateManager(store)
    entries = [
        FeedbackEntry.new(
            author="a", severity="low", issue_type="bug", description="x" * 2000, id=f"e{i}"
        )
        for i in range(60)
    ]
    manager.append_feedback_many(TASK, entries)
    segment_ref = manager.get_state(TASK).segments[0]
    segment = store.get(segment_ref.name)
    assert segment.data is not None
    store.replace(
        dataclasses.replace(segment, data={**segment.data, "feedback_history": the_bomb()})
    )
    with pytest.raises(CorruptState, match="expands to more than 16777216 bytes"):
        StateManager(store).get_feedback_history(TASK, limit=10)


_MEASURE = """
import resource, sys
from remstate.cli import main
code = main(sys.argv[1:])
print(code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, file=sys.stderr)
"""


def test_remstate_get_exits_8_within_a_memory_ceiling(store: Store, store_spec: StoreSpec) -> None:
    """``remstate get`` in a child process: exit 8, one line, peak memory under the ceiling."""
    plant(store, "feedback_history")
    env = dict(os.environ)
    if store_spec.kind == "embedded":
        url = f"sqlite://{store_spec.path}"
    else:
        env["KUBECONFIG"] = str(store_spec.kubeconfig)
        url = f"kubernetes://{store_spec.namespace}"
    child = subprocess.run(
        [sys.executable, "-c", _MEASURE, "--store", url, "get", TASK],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    *lines, measured = child.stderr.splitlines()
    code, peak = (int(x) for x in measured.split())
    assert code == Exit.CORRUPT == 8
    assert peak < RSS_CEILING, f"remstate get peaked at {peak / 2**20:.0f} MiB"
    assert lines == [
        "remstate: feedback_history: expands to more than 16777216 bytes, the most remstate reads"
    ]
    assert child.stdout == ""
