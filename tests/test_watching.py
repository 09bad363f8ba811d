"""The Follower: every change of the heads once, in order, across a watch's end and 410 Gone.

On both backends, against the real API server. Compaction makes the
follower's resourceVersion Gone: etcd's own (``ControlPlane.compact``) on
Kubernetes; on the embedded store, a writer whose history window holds one
byte, so that each of its writes compacts everything before it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest

from remstate import StateManager
from remstate.objects import WatchEventType
from remstate.store import Store
from remstate.store.embedded import EmbeddedStore
from remstate.testing.controlplane import ControlPlane
from remstate.watching import Change, Follower
from tests.backends import StoreSpec

ADDED, MODIFIED, DELETED = WatchEventType.ADDED, WatchEventType.MODIFIED, WatchEventType.DELETED


def take(changes: Iterator[Change], n: int) -> list[Change]:
    return [next(changes) for _ in range(n)]


def seen(changes: list[Change]) -> list[tuple[str, str]]:
    return [(str(c.type), c.summary.task_id) for c in changes]


class TestFollower:
    def test_sees_added_modified_deleted_with_summaries(self, store: Store) -> None:
        """A create, an increment and a delete: ADDED, MODIFIED, DELETED, each summarised."""
        manager = StateManager(store)
        manager.increment_iteration("old")
        follower = Follower(store, window=5)
        listed = follower.start()
        assert [s.task_id for s in listed] == ["old"]
        manager.set_status("t", "in_progress")
        manager.increment_iteration("t")
        manager.delete_state("t")
        with contextlib.closing(follower.changes()) as stream:
            changes = take(stream, 3)
        assert seen(changes) == [("ADDED", "t"), ("MODIFIED", "t"), ("DELETED", "t")]
        assert changes[0].summary.status == "in_progress"
        assert changes[1].summary.iteration == 1
        assert [c.previous_status for c in changes] == [None, "in_progress", "in_progress"]
        assert changes[1].summary.max_iterations == 10
        versions = [int(c.resource_version) for c in changes]
        assert versions == sorted(versions)
        assert changes[1].resource_version == changes[1].summary.resource_version
        assert not any(c.relisted for c in changes)
        assert set(follower.known) == {"task-old-state"}

    def test_resumes_after_the_watch_window_ends(self, store: Store) -> None:
        """A watch that ends (its window) is opened again from the last version: nothing lost."""
        manager = StateManager(store)
        opened: list[int] = []
        follower = Follower(store, window=1, on_watch=lambda: opened.append(1))
        follower.start()
        with contextlib.closing(follower.changes()) as changes:
            manager.increment_iteration("a")
            first = next(changes)
            # The window runs out with nothing to report; the next write still comes.
            threading.Timer(2.5, lambda: manager.increment_iteration("a")).start()
            second = next(changes)
        assert seen([first, second]) == [("ADDED", "a"), ("MODIFIED", "a")]
        assert second.summary.iteration == 2
        assert len(opened) >= 2

    def test_relists_after_gone_and_reports_the_difference(
        self, store_spec: StoreSpec, store: Store, request: pytest.FixtureRequest
    ) -> None:
        """After 410 Gone: ADDED, MODIFIED, DELETED for what changed meanwhile, then the watch."""
        manager = StateManager(store)
        for task in ("same", "changed", "gone"):
            manager.increment_iteration(task)
        follower = Follower(store, window=5)
        follower.start()
        with compacting(store_spec, store, request) as writer:
            w = StateManager(writer)
            w.increment_iteration("changed")
            w.delete_state("gone")
            w.increment_iteration("new")
        with contextlib.closing(follower.changes()) as changes:
            relisted = take(changes, 3)
            manager.increment_iteration("same")
            after = next(changes)
        assert sorted(seen(relisted)) == [
            ("ADDED", "new"),
            ("DELETED", "gone"),
            ("MODIFIED", "changed"),
        ]
        assert all(c.relisted for c in relisted)
        assert len({c.resource_version for c in relisted}) == 1
        assert seen([after]) == [("MODIFIED", "same")]
        assert not after.relisted
        assert after.summary.iteration == 2

    def test_resume_from_a_version_sees_what_followed_it(self, store: Store) -> None:
        """``resume_from`` an earlier change's version: the later changes, and no earlier one."""
        manager = StateManager(store)
        follower = Follower(store, window=5)
        follower.start()
        manager.increment_iteration("a")
        with contextlib.closing(follower.changes()) as changes:
            first = next(changes)
        manager.increment_iteration("a")
        manager.increment_iteration("b")
        again = Follower(store, window=5)
        again.resume_from(first.resource_version)
        with contextlib.closing(again.changes()) as changes:
            assert seen(take(changes, 2)) == [("MODIFIED", "a"), ("ADDED", "b")]


class compacting:  # noqa: N801 - used as a context manager, read as a phrase
    """A writer on the same store whose writes leave every older version Gone."""

    def __init__(self, spec: StoreSpec, store: Store, request: pytest.FixtureRequest) -> None:
        self.spec, self.store, self.request = spec, store, request
        self.opened: EmbeddedStore | None = None

    def __enter__(self) -> Store:
        if self.spec.kind == "embedded":
            assert self.spec.path is not None
            self.opened = EmbeddedStore(self.spec.path, self.spec.namespace, history_bytes=1)
            return self.opened
        return self.store

    def __exit__(self, *exc: object) -> None:
        if self.opened is not None:
            self.opened.close()
            return
        plane: ControlPlane = self.request.getfixturevalue("controlplane")
        plane.compact()
