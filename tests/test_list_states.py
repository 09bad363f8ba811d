"""``StateManager.list_states``: label-selected pages of heads, summarised from metadata alone.

On both backends (Kubernetes: the real API server). Heads written before the
iteration annotation existed are written raw through the store, as an older
remstate left them.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from remstate import InvalidInput, StateManager
from remstate.schema import (
    ANNOTATION_ITERATION,
    ANNOTATION_MAX_ITERATIONS,
    ANNOTATION_SOFT_DELETED_AT,
    LABEL_LIFECYCLE,
    LIFECYCLE_SOFT_DELETED,
    format_timestamp,
    object_name,
)
from remstate.store import Store, StoredObject
from tests.backends import CountingStore
from tests.helpers import entry

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def counted(store: Store) -> CountingStore:
    return CountingStore(store)


@pytest.fixture
def manager(counted: CountingStore, clock: Clock) -> StateManager:
    return StateManager(counted, max_iterations=7, clock=clock)  # type: ignore[arg-type]


def _rewrite(store: Store, task_id: str, **changes: object) -> StoredObject:
    """Replace the head with ``changes`` to its metadata (as kubectl or an older remstate)."""
    head = store.get(object_name(task_id))
    return store.replace(dataclasses.replace(head, **changes))  # type: ignore[arg-type]


def _all(manager: StateManager, **options: object) -> list[str]:
    """Every task id a listing pages through, in order."""
    ids: list[str] = []
    cursor = None
    while True:
        page = manager.list_states(cursor=cursor, **options)  # type: ignore[arg-type]
        ids.extend(s.task_id for s in page.summaries)
        cursor = page.next_cursor
        if cursor is None:
            return ids


class TestSummary:
    def test_fields_from_metadata_alone(
        self, manager: StateManager, counted: CountingStore, clock: Clock
    ) -> None:
        """Each field of a summary, from one metadata-only list and no other request."""
        manager.get_or_create_state("Org/Repo#5", max_iterations=4, ttl="14d")
        clock.now = T0 + timedelta(minutes=5)
        manager.increment_iteration("Org/Repo#5")
        manager.set_status("Org/Repo#5", "in_progress")
        head = counted.get(object_name("Org/Repo#5"))
        counted.calls.clear()

        page = manager.list_states()

        assert counted.calls == ["list"]
        (summary,) = page.summaries
        assert page.next_cursor is None
        assert summary.to_dict() == {
            "task_id": "Org/Repo#5",
            "name": object_name("Org/Repo#5"),
            "status": "in_progress",
            "iteration": 1,
            "max_iterations": 4,
            "max_iterations_stored": True,
            "last_update": format_timestamp(T0 + timedelta(minutes=5)),
            "lifecycle": "active",
            "soft_deleted_at": None,
            "ttl_seconds": 14 * 86400,
            "resource_version": head.resource_version,
        }

    def test_iteration_annotation_is_current(self, manager: StateManager, store: Store) -> None:
        """Every write keeps the iteration annotation equal to the counter."""
        for expected in (1, 2, 3):
            manager.increment_iteration("7")
            assert store.get(object_name("7")).annotations[ANNOTATION_ITERATION] == str(expected)
        assert [s.iteration for s in manager.list_states().summaries] == [3]

    def test_a_head_from_before_the_annotation_is_read_once(
        self, manager: StateManager, counted: CountingStore, store: Store
    ) -> None:
        """A head without the iteration annotation is read with its data, once."""
        manager.increment_iteration("old")
        manager.increment_iteration("old")
        manager.get_or_create_state("new")
        head = store.get(object_name("old"))
        annotations = {k: v for k, v in head.annotations.items() if k != ANNOTATION_ITERATION}
        _rewrite(store, "old", annotations=annotations)
        counted.calls.clear()

        summaries = {s.task_id: s for s in manager.list_states().summaries}

        assert counted.calls == ["list", "get"]
        assert summaries["old"].iteration == 2
        assert summaries["new"].iteration == 0

    def test_a_stale_annotation_is_reported_and_repaired(
        self, manager: StateManager, store: Store
    ) -> None:
        """An iteration annotation that disagrees with the data: validate names it, recover
        rewrites it, and the listing shows the counter again."""
        manager.increment_iteration("42")
        head = store.get(object_name("42"))
        _rewrite(store, "42", annotations={**head.annotations, ANNOTATION_ITERATION: "9"})
        assert manager.list_states().summaries[0].iteration == 9  # what ls would show
        report = manager.validate_state("42")
        assert [p.key for p in report.problems] == [f"annotations.{ANNOTATION_ITERATION}"]
        assert report.repairable
        manager.recover_state("42")
        assert manager.validate_state("42").ok
        assert manager.list_states().summaries[0].iteration == 1

    def test_unknown_status_is_read_from_the_data(
        self, manager: StateManager, store: Store
    ) -> None:
        """A status this remstate does not know (a newer one's) is shown as stored."""
        manager.get_or_create_state("42")
        head = store.get(object_name("42"))
        data = {**(head.data or {}), "status": "Waiting on CI!"}
        _rewrite(store, "42", data=data, labels={**head.labels, "remstate.io/status": "x--y"})
        (summary,) = manager.list_states().summaries
        assert summary.status == "Waiting on CI!"

    def test_default_limit_when_none_is_stored(self, manager: StateManager, store: Store) -> None:
        """A head that stores no limit shows the lister's default, and says so."""
        manager.get_or_create_state("42")
        head = store.get(object_name("42"))
        annotations = {k: v for k, v in head.annotations.items() if k != ANNOTATION_MAX_ITERATIONS}
        _rewrite(store, "42", annotations=annotations)
        (summary,) = manager.list_states().summaries
        assert (summary.max_iterations, summary.max_iterations_stored) == (7, False)

    def test_soft_deleted(self, manager: StateManager, store: Store) -> None:
        """The lifecycle and the soft-delete time come from the label and annotation."""
        manager.get_or_create_state("42")
        head = store.get(object_name("42"))
        _rewrite(
            store,
            "42",
            labels={**head.labels, LABEL_LIFECYCLE: LIFECYCLE_SOFT_DELETED},
            annotations={**head.annotations, ANNOTATION_SOFT_DELETED_AT: "2026-12-02T00:00:00Z"},
        )
        (summary,) = manager.list_states().summaries
        assert summary.lifecycle == "soft-deleted"
        assert summary.soft_deleted_at == datetime(2026, 12, 2, tzinfo=UTC)


class TestSelection:
    def test_pages_through_250_tasks(self, manager: StateManager, counted: CountingStore) -> None:
        """250 tasks in pages of 100: three pages, every task once, only heads."""
        for i in range(250):
            manager.get_or_create_state(f"t{i:03d}")
        # History segments are not heads: a long history must not show in the listing.
        manager.append_feedback_many("t000", [entry(i, description="x" * 200) for i in range(400)])
        assert manager.get_state("t000").segments
        counted.calls.clear()

        first = manager.list_states(limit=100)
        assert len(first.summaries) == 100
        assert first.next_cursor is not None
        second = manager.list_states(limit=100, cursor=first.next_cursor)
        third = manager.list_states(limit=100, cursor=second.next_cursor)
        assert (len(second.summaries), len(third.summaries)) == (100, 50)
        assert third.next_cursor is None
        assert counted.calls == ["list"] * 3
        ids = [s.task_id for p in (first, second, third) for s in p.summaries]
        assert sorted(ids) == [f"t{i:03d}" for i in range(250)]

    def test_status_filter(self, manager: StateManager) -> None:
        """Only tasks with the status asked for, across pages."""
        for i in range(12):
            manager.set_status(f"t{i}", "completed" if i % 3 == 0 else "in_progress")
        assert sorted(_all(manager, status="completed", limit=2)) == ["t0", "t3", "t6", "t9"]
        assert len(_all(manager, status="in_progress", limit=5)) == 8
        assert _all(manager, status="failed") == []

    def test_label_selector(self, manager: StateManager, store: Store) -> None:
        """The caller's selector is ANDed with remstate's own; its labels survive writes."""
        for task in ("a", "b", "c"):
            manager.get_or_create_state(task)
        for task, team in (("a", "red"), ("b", "blue")):
            head = store.get(object_name(task))
            _rewrite(store, task, labels={**head.labels, "team": team})
        manager.increment_iteration("a")  # a write keeps labels that are not remstate's
        assert _all(manager, label_selector="team=red") == ["a"]
        assert sorted(_all(manager, label_selector="team in (red,blue)")) == ["a", "b"]
        assert _all(manager, label_selector="!team") == ["c"]
        assert _all(manager, label_selector="team=red", status="completed") == []

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"label_selector": "team in (a"}, "bad label selector"),
            ({"label_selector": "a b"}, "bad label selector"),
            ({"label_selector": "-x=1"}, "bad label selector"),
            ({"status": "nope"}, "status"),
            ({"limit": 0}, "limit"),
            ({"limit": 10_001}, "limit"),
            ({"limit": True}, "limit"),
            ({"cursor": ""}, "cursor"),
            ({"label_selector": 3}, "label_selector"),
        ],
    )
    def test_bad_input_sends_nothing(
        self,
        manager: StateManager,
        counted: CountingStore,
        options: dict[str, object],
        message: str,
    ) -> None:
        """A bad selector, status, limit or cursor: InvalidInput, and no request sent."""
        with pytest.raises(InvalidInput, match=message):
            manager.list_states(**options)  # type: ignore[arg-type]
        assert counted.calls == []

    def test_bad_cursor(self, manager: StateManager) -> None:
        """A cursor that is not the store's continue token is InvalidInput."""
        manager.get_or_create_state("42")
        with pytest.raises(InvalidInput, match="cursor"):
            manager.list_states(cursor="not-a-token")
