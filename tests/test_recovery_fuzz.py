"""Random damage to raw data keys: validate_state never crashes, recover_state mends it.

Embedded backend (the repair is the same code on both; this is about the
bytes). Each example damages one task's head in one to three ways, written
through the raw store, then checks the promises of DESIGN.md rule 5.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remstate import StateManager
from remstate.errors import UnsupportedSchemaVersion
from remstate.schema import DATA_KEYS, object_name
from remstate.store import Store
from remstate.store.embedded import EmbeddedStore
from tests.helpers import entry

KEYS = [*DATA_KEYS, "history_index", "feedback_resolutions", "unknown_key"]
_tasks = itertools.count()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _gzip(text: str) -> str:
    return "gzip+base64:" + base64.b64encode(gzip.compress(text.encode())).decode()


@st.composite
def damage(draw: st.DrawFn) -> tuple[str, str, str | None]:
    """(how, key, argument): one change to one data key."""
    key = draw(st.sampled_from(KEYS))
    how = draw(
        st.sampled_from(
            ["delete", "text", "json", "truncate", "flip", "gzip", "marker", "entry", "timestamp"]
        )
    )
    argument: str | None = None
    if how == "text":
        argument = draw(st.text(max_size=30))
    elif how in {"json", "entry"}:
        argument = json.dumps(draw(json_values))
    elif how == "marker":
        argument = draw(st.sampled_from(["gzip+base64:", "zstd+base64:", "gzip+base64:H4sI"]))
    elif how in {"truncate", "flip"}:
        argument = str(draw(st.integers(min_value=0, max_value=400)))
    return how, key, argument


def apply(data: dict[str, str], how: str, key: str, argument: str | None) -> None:
    old = data.get(key, "")
    if how == "delete":
        data.pop(key, None)
    elif how in {"text", "json"}:
        data[key] = argument or ""
    elif how == "truncate":
        data[key] = old[: int(argument or 0) % (len(old) + 1)]
    elif how == "flip" and old:
        i = int(argument or 0) % len(old)
        data[key] = old[:i] + chr((ord(old[i]) + 1) % 0x7F or 1) + old[i + 1 :]
    elif how == "gzip":
        data[key] = _gzip(old)
    elif how == "marker":
        data[key] = (argument or "") + old
    elif how in {"entry", "timestamp"}:
        try:
            items = json.loads(old)
        except ValueError:
            return
        if isinstance(items, list) and items:
            if how == "entry":
                items[0] = json.loads(argument or "null")
            elif isinstance(items[0], dict):
                items[0] = {**items[0], "timestamp": "not a time", "started_at": 12}
            data[key] = json.dumps(items)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    path = Path(tmp_path_factory.mktemp("fuzz")) / "state.db"
    opened = EmbeddedStore(str(path))
    yield opened
    opened.close()


def clock() -> datetime:
    return datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def healthy(manager: StateManager, task_id: str) -> None:
    manager.set_status(task_id, "in_progress")
    for _ in range(3):
        manager.increment_iteration(task_id)
    manager.append_feedback_many(
        task_id, [entry(i, timestamp=clock() + timedelta(seconds=i)) for i in range(3)]
    )
    manager.record_error(task_id, "boom")
    manager.update_metadata(task_id, {"team": "payments", "n": [1, 2]})


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(changes=st.lists(damage(), min_size=1, max_size=3))
def test_random_damage_never_crashes_and_is_always_repaired(
    store: Store, changes: list[tuple[str, str, str | None]]
) -> None:
    """validate_state never raises; after recover_state, get_state reads (unless unsupported)."""
    task_id = f"fuzz-{next(_tasks)}"
    manager = StateManager(store, clock=clock)
    healthy(manager, task_id)
    head = store.get(object_name(task_id))
    data = dict(head.data or {})
    for how, key, argument in changes:
        apply(data, how, key, argument)
    store.replace(dataclasses.replace(head, data=data))

    report = manager.validate_state(task_id)
    recovered = manager.recover_state(task_id)
    if not report.supported:
        assert not recovered.written
        with pytest.raises(UnsupportedSchemaVersion):
            StateManager(store).get_state(task_id)
        return
    assert recovered.remaining == (), recovered
    state = StateManager(store).get_state(task_id)
    assert state.task_id == task_id
    assert state.iteration == state.iteration_total
    assert manager.validate_state(task_id).ok
    if recovered.written:
        assert recovered.snapshot is not None
        assert store.get(recovered.snapshot).data == data  # the damaged original, verbatim
