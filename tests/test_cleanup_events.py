"""Each soft delete, restore and purge leaves an Event on the head, with its reason and why.

On the real API server: an ``events.k8s.io/v1`` Event regarding the ConfigMap,
read back through the API as ``kubectl get events`` would. On the embedded
store: a record of the ``remstate.events`` logger with the same fields.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from kubernetes import client, config

from remstate import StateManager
from remstate.store import Store
from tests.backends import StoreSpec

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def events(spec: StoreSpec, caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, str]]:
    """(object, reason, note) of every Event so far, oldest first."""
    if spec.kind == "embedded":
        return [
            (r.object, r.reason, r.note)  # type: ignore[attr-defined]
            for r in caplog.records
            if r.name == "remstate.events"
        ]
    with config.new_client_from_config(config_file=spec.kubeconfig) as api:
        items = client.EventsV1Api(api).list_namespaced_event(spec.namespace).items
    items.sort(key=lambda e: e.event_time)
    return [(e.regarding.name, e.reason, e.note) for e in items]


def test_an_event_after_each_decision(
    store_spec: StoreSpec, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """SoftDeleted, Restored, SoftDeleted, Purged: each on task-old-state, saying why."""
    caplog.set_level(logging.INFO, logger="remstate.events")
    now = [T0]
    manager = StateManager(store, clock=lambda: now[0])
    manager.set_status("old", "completed")
    name = "task-old-state"

    now[0] += timedelta(days=8)
    manager.cleanup_old_states(requests_per_second=None)
    [soft] = events(store_spec, caplog)
    assert soft[:2] == (name, "SoftDeleted")
    assert "expired (last update 2026-11-01T00:00:00Z, ttl 1w)" in soft[2]
    assert "until 2026-11-10T00:00:00Z" in soft[2]

    assert manager.restore_state("old")
    restored = events(store_spec, caplog)[1]
    assert restored[:2] == (name, "Restored")
    assert "soft-deleted at 2026-11-09T00:00:00Z" in restored[2]

    manager.cleanup_old_states(requests_per_second=None)
    now[0] += timedelta(days=2)
    manager.cleanup_old_states(requests_per_second=None)
    reasons = [(obj, reason) for obj, reason, _ in events(store_spec, caplog)]
    assert reasons == [
        (name, "SoftDeleted"),
        (name, "Restored"),
        (name, "SoftDeleted"),
        (name, "Purged"),
    ]
    purged = events(store_spec, caplog)[3][2]
    assert "grace period over (soft-deleted 2026-11-09T00:00:00Z, grace 1d" in purged


def test_a_repair_leaves_an_event_naming_its_snapshot(
    store_spec: StoreSpec, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """recover_state records Repaired on the head, with what it fixed and where the original is."""
    caplog.set_level(logging.INFO, logger="remstate.events")
    manager = StateManager(store, clock=lambda: T0)
    manager.increment_iteration("broken")
    head = store.get("task-broken-state")
    store.replace(replace(head, data={**(head.data or {}), "iteration": "7"}))

    report = manager.recover_state("broken")

    assert report.snapshot
    [(obj, reason, note)] = events(store_spec, caplog)
    assert (obj, reason) == ("task-broken-state", "Repaired")
    assert "iteration_mismatch" in note
    assert report.snapshot in note
    # Nothing to repair: no write, no Event.
    assert manager.recover_state("broken").snapshot is None
    assert len(events(store_spec, caplog)) == 1
