"""TTL cleanup on both backends (Kubernetes: the real API server), with a fake clock.

Expiry, soft delete, restore during the grace period, purge after it, the
task's own ttl, loops under way, force, dry runs, limits, and the compare-and-
swap that lets a task touched at any moment survive. Time comes from the
manager's clock; nothing sleeps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from remstate import StateManager, StateNotFound
from remstate.cleanup import Cleaner, CleanupReport
from remstate.errors import InvalidInput
from remstate.metrics import Metrics
from remstate.schema import (
    ANNOTATION_LAST_UPDATE,
    ANNOTATION_SOFT_DELETED_AT,
    LABEL_LIFECYCLE,
    LABEL_MANAGED_BY,
    LABEL_ROLE,
    LABEL_STATUS,
    LABEL_TASK,
    LIFECYCLE_ACTIVE,
    LIFECYCLE_SOFT_DELETED,
    MANAGED_BY,
    ROLE_STATE,
    format_timestamp,
    object_name,
    task_selector,
)
from remstate.store import Store, StoredObject
from tests.helpers import entry

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def manager(store: Store, clock: Clock) -> StateManager:
    return StateManager(store, clock=clock)


def clean(manager: StateManager, **options: Any) -> CleanupReport:
    """One unpaced run (the pacing has tests of its own)."""
    return manager.cleanup_old_states(requests_per_second=None, **options)


def lifecycle(store: Store, task_id: str) -> str:
    return store.get(object_name(task_id)).labels[LABEL_LIFECYCLE]


def task_objects(store: Store, task_id: str) -> list[str]:
    """The names of every object of the task (head, segments, snapshots)."""
    return sorted(o.name for o in store.list(label_selector=task_selector(task_id)).items)


def finished(manager: StateManager, task_id: str, status: str = "completed") -> None:
    """A task with an iteration, a feedback entry and a final status."""
    manager.increment_iteration(task_id)
    manager.append_feedback(task_id, entry(1))
    manager.set_status(task_id, status)


class Interposed:
    """A real store that runs ``hook`` once, just before the first call of ``method``.

    It stands for another writer landing at that moment: between the scan and
    the soft-delete patch, or between the purge's re-read and its delete.
    """

    def __init__(self, inner: Store, method: str, hook: Callable[[], object]) -> None:
        self.inner = inner
        self.method = method
        self.hook: Callable[[], object] | None = hook

    @property
    def namespace(self) -> str:
        return self.inner.namespace

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name != self.method:
            return attr

        def interposed(*args: Any, **kwargs: Any) -> Any:
            if self.hook is not None:
                hook, self.hook = self.hook, None
                hook()
            return attr(*args, **kwargs)

        return interposed


class TestSoftDelete:
    def test_an_expired_state_is_soft_deleted_and_still_readable(
        self, manager: StateManager, store: Store, clock: Clock
    ) -> None:
        """Past the ttl: labelled soft-deleted with the time; readable; the fresh one untouched."""
        finished(manager, "old")
        clock.advance(8 * DAY)
        finished(manager, "fresh")
        fresh_version = store.get(object_name("fresh")).resource_version

        report = clean(manager)

        assert (report.scanned, report.soft_deleted, report.purged) == (2, 1, 0)
        [item] = report.items
        assert (item.name, item.task_id, item.action) == ("task-old-state", "old", "soft-delete")
        assert "ttl 1w" in item.reason
        head = store.get(object_name("old"))
        assert head.labels[LABEL_LIFECYCLE] == LIFECYCLE_SOFT_DELETED
        assert head.annotations[ANNOTATION_SOFT_DELETED_AT] == format_timestamp(clock.now)
        assert manager.get_state("old").iteration == 1
        assert store.get(object_name("fresh")).resource_version == fresh_version

    def test_exactly_the_ttl_is_not_expired(
        self, manager: StateManager, store: Store, clock: Clock
    ) -> None:
        """A state last updated exactly ``ttl`` ago stays; one second more and it goes."""
        finished(manager, "edge")
        clock.advance(7 * DAY)
        assert clean(manager).soft_deleted == 0
        assert lifecycle(store, "edge") == LIFECYCLE_ACTIVE
        clock.advance(timedelta(seconds=1))
        assert clean(manager).soft_deleted == 1

    def test_durations_as_text_or_seconds(self, manager: StateManager, clock: Clock) -> None:
        """ttl and grace accept "36h" and seconds as well as timedeltas."""
        finished(manager, "a")
        clock.advance(2 * DAY)
        assert clean(manager, ttl="36h").soft_deleted == 1
        clock.advance(3 * HOUR)
        assert clean(manager, ttl=36 * 3600, grace=2 * 3600).purged == 1

    @pytest.mark.parametrize(
        "options",
        [
            {"ttl": "7x"},
            {"ttl": 0},
            {"grace": "-1h"},
            {"grace": timedelta(seconds=0.5)},
            {"limit": 0},
            {"limit": "3"},
            {"dry_run": "yes"},
            {"page_size": 0},
            {"requests_per_second": -1},
            {"keep_snapshot": "yes"},
            {"orphans": 1},
        ],
    )
    def test_bad_arguments_raise_and_write_nothing(
        self, manager: StateManager, store: Store, clock: Clock, options: dict[str, Any]
    ) -> None:
        """A bad argument raises InvalidInput before anything is written."""
        finished(manager, "old")
        clock.advance(30 * DAY)
        version = store.get(object_name("old")).resource_version
        with pytest.raises(InvalidInput):
            manager.cleanup_old_states(**{"requests_per_second": None, **options})
        assert store.get(object_name("old")).resource_version == version


class TestRestore:
    def test_restore_during_the_grace_period(
        self, manager: StateManager, store: Store, clock: Clock
    ) -> None:
        """restore_state makes it active again: label active, the time gone, data kept."""
        finished(manager, "old")
        clock.advance(8 * DAY)
        clean(manager)
        clock.advance(HOUR)

        assert manager.restore_state("old") is True

        head = store.get(object_name("old"))
        assert head.labels[LABEL_LIFECYCLE] == LIFECYCLE_ACTIVE
        assert ANNOTATION_SOFT_DELETED_AT not in head.annotations
        assert manager.get_state("old").iteration == 1
        clock.advance(2 * DAY)
        report = clean(manager)
        assert report.purged == 0
        # Still expired: restore undoes the soft delete; the next run starts it again.
        assert report.soft_deleted == 1

    def test_restoring_an_active_state_writes_nothing(
        self, manager: StateManager, store: Store
    ) -> None:
        """restore_state on an active state returns False and leaves it as it is."""
        finished(manager, "live")
        version = store.get(object_name("live")).resource_version
        assert manager.restore_state("live") is False
        assert store.get(object_name("live")).resource_version == version

    def test_restoring_a_missing_state_raises(self, manager: StateManager) -> None:
        """restore_state on a task with no state raises StateNotFound."""
        with pytest.raises(StateNotFound):
            manager.restore_state("nothing")

    def test_restore_retries_after_a_write_lands_first(
        self, manager: StateManager, store: Store, clock: Clock
    ) -> None:
        """A write between the restore's read and its patch: the patch conflicts, reads, retries."""
        finished(manager, "old")
        clock.advance(8 * DAY)
        clean(manager)
        other = StateManager(store, clock=clock)

        def hand_edit() -> None:
            # A kubectl label: it changes the resourceVersion, not the lifecycle.
            obj = store.get(object_name("old"))
            store.replace(StoredObject(**{**_fields(obj), "labels": {**obj.labels, "x": "y"}}))

        racing = StateManager(Interposed(store, "annotate", hand_edit), clock=clock)
        assert racing.restore_state("old") is True
        head = store.get(object_name("old"))
        assert head.labels[LABEL_LIFECYCLE] == LIFECYCLE_ACTIVE
        assert head.labels["x"] == "y"
        assert other.get_state("old").iteration == 1

    def test_a_run_restores_a_state_no_longer_expired(
        self, manager: StateManager, store: Store, clock: Clock
    ) -> None:
        """Soft-deleted under a 1-day ttl, then a run with 7 days: restored, not purged."""
        finished(manager, "old")
        clock.advance(2 * DAY)
        assert clean(manager, ttl="1d").soft_deleted == 1
        clock.advance(2 * DAY)
        report = clean(manager, ttl="7d")
        assert (report.restored, report.purged) == (1, 0)
        assert lifecycle(store, "old") == LIFECYCLE_ACTIVE


def _fields(obj: StoredObject) -> dict[str, Any]:
    return {
        "name": obj.name,
        "data": obj.data,
        "labels": obj.labels,
        "annotations": obj.annotations,
        "resource_version": obj.resource_version,
        "owner_references": obj.owner_references,
    }


#: Every kind of write through the manager, each of which must restore a soft-deleted task.
WRITES: dict[str, Callable[[StateManager], object]] = {
    "increment": lambda m: m.increment_iteration("old"),
    "status": lambda m: m.set_status("old", "in_progress"),
    "feedback": lambda m: m.append_feedback("old", entry(2)),
    "resolve": lambda m: m.resolve_feedback("old", entry(1).id),
    "error": lambda m: m.record_error("old", "boom"),
    "metadata": lambda m: m.update_metadata("old", {"k": "v"}),
    "update": lambda m: m.update_state("old", lambda s: dataclasses.replace(s, metadata={"n": 1})),
    "policy": lambda m: m.set_policy("old", ttl="30d"),
}


class TestTouchedDuringGrace:
    @pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
    def test_any_write_makes_it_active_and_it_survives(
        self,
        manager: StateManager,
        store: Store,
        clock: Clock,
        write: Callable[[StateManager], object],
    ) -> None:
        """A write during the grace period drops the soft-delete marks; the purge spares it."""
        finished(manager, "old")
        clock.advance(8 * DAY)
        clean(manager)
        clock.advance(HOUR)
        # A manager that never saw the soft delete: it writes from a fresh read.
        write(StateManager(store, clock=clock))

        head = store.get(object_name("old"))
        assert head.labels[LABEL_LIFECYCLE] == LIFECYCLE_ACTIVE
        assert ANNOTATION_SOFT_DELETED_AT not in head.annotations
        clock.advance(2 * DAY)
        report = clean(manager)
        assert report.purged == 0
        assert manager.get_state("old").iteration >= 1

    def test_a_write_after_the_scan_fails_the_soft_delete(
        self, manager: StateManager, store: Store, clock: Clock
    ) -> None:
        """A write between the scan and the soft-delete patch: skipped as touched, still active."""
        finished(manager, "old")
        clock.advance(8 * DAY)
        writer = StateManager(store, clock=clock)
        racing = StateManager(
            Interposed(store, "annotate", lambda: writer.increment_iteration("old")), clock=clock
        )
        report = clean(racing)
        assert (report.soft_deleted, report.skipped_touched) == (0, 1)
        assert report.items[0].action == "skip-touched"
        assert lifecycle(store, "old") == LIFECYCLE_ACTIVE
        assert manager.get_state("old").iteration == 2

    def test_a_write_before_the_purges_read_spares_it(
        self, manager: StateManager, store: Store, clock: Clock
    ) -> None:
        """A write between the scan and the purge's re-read: not purged, active again."""
        finished(manager, "old")
        clock.advance(8 * DAY)
        clean(manager)
        clock.advance(2 * DAY)
        writer = StateManager(store, clock=clock)
        racing = StateManager(
            Interposed(store, "get", lambda: writer.increment_iteration("old")), clock=clock
        )
        report = clean(racing)
        assert (report.purged, report.skipped_touched) == (0, 1)
        assert "active again" in report.items[0].reason
        assert manager.get_state("old").iteration == 2

    def test_a_write_between_the_purges_read_and_its_delete_spares_it(
        self, manager: StateManager, store: Store, clock: Clock
    ) -> None:
        """The delete carries the re-read's uid and resourceVersion: a later write makes it fail."""
        finished(manager, "old")
        clock.advance(8 * DAY)
        clean(manager)
        clock.advance(2 * DAY)
        writer = StateManager(store, clock=clock)
        racing = StateManager(
            Interposed(store, "delete", lambda: writer.increment_iteration("old")), clock=clock
        )
        report = clean(racing)
        assert (report.purged, report.skipped_touched) == (0, 1)
        assert "precondition" in report.items[0].reason
        assert manager.get_state("old").iteration == 2
        assert lifecycle(store, "old") == LIFECYCLE_ACTIVE


class TestPurge:
    def test_purged_after_the_grace_period_with_its_segments(
        self, manager: StateManager, store: Store, clock: Clock
    ) -> None:
        """Within grace: waits. After: the head and its history segments are gone."""
        manager.append_feedback_many("big", [entry(i, description="x" * 400) for i in range(300)])
        manager.set_status("big", "completed")
        assert len(task_objects(store, "big")) > 1  # the history outgrew the head
        finished(manager, "other")
        clock.advance(8 * DAY)
        assert clean(manager).soft_deleted == 2
        clock.advance(23 * HOUR)
        report = clean(manager)
        assert (report.in_grace, report.purged) == (2, 0)
        assert manager.get_state("big").feedback_total == 300

        clock.advance(HOUR)
        report = clean(manager)

        assert report.purged == 2
        assert {i.task_id for i in report.items if i.action == "purge"} == {"big", "other"}
        with pytest.raises(StateNotFound):
            manager.get_state("big")
        assert task_objects(store, "big") == []
        assert task_objects(store, "other") == []

    def test_a_new_head_of_the_same_task_keeps_its_objects(
        self, manager: StateManager, store: Store, clock: Clock
    ) -> None:
        """Segments are deleted by owner uid: a task created again after the scan keeps its own."""
        finished(manager, "t")
        clock.advance(8 * DAY)
        clean(manager)
        clock.advance(2 * DAY)
        report = clean(manager)
        assert report.purged == 1
        manager.append_feedback_many("t", [entry(i, description="y" * 400) for i in range(300)])
        assert len(task_objects(store, "t")) > 1
        assert manager.get_state("t").feedback_total == 300


class TestPolicy:
    def test_the_tasks_own_ttl_overrides_the_default(
        self, manager: StateManager, store: Store, clock: Clock
    ) -> None:
        """A task with ttl 30d outlives the 7-day default; one with 1h goes sooner."""
        finished(manager, "long")
        manager.set_policy("long", ttl="30d")
        finished(manager, "short")
        manager.set_policy("short", ttl="1h")
        finished(manager, "default")
        clock.advance(2 * HOUR)
        report = clean(manager)
        assert [i.task_id for i in report.items] == ["short"]
        clock.advance(8 * DAY)
        report = clean(manager)
        assert {i.task_id for i in report.items} == {"short", "default"}
        assert lifecycle(store, "long") == LIFECYCLE_ACTIVE

    def test_loops_under_way_are_skipped_unless_forced(
        self, manager: StateManager, store: Store, clock: Clock
    ) -> None:
        """in_progress and awaiting_review are skipped; with force they are soft-deleted."""
        finished(manager, "working", "in_progress")
        finished(manager, "reviewing", "awaiting_review")
        finished(manager, "waiting", "pending")
        clock.advance(8 * DAY)
        report = clean(manager)
        assert (report.skipped_active, report.soft_deleted) == (2, 1)
        assert lifecycle(store, "working") == LIFECYCLE_ACTIVE
        assert lifecycle(store, "reviewing") == LIFECYCLE_ACTIVE

        report = clean(manager, force=True)
        assert report.soft_deleted == 2
        clock.advance(2 * DAY)
        assert clean(manager).skipped_active == 2  # not purged without force either
        assert clean(manager, force=True).purged == 2


class TestDryRunAndLimit:
    def test_a_dry_run_writes_nothing_and_says_what_it_would_do(
        self, manager: StateManager, store: Store, clock: Clock
    ) -> None:
        """Counts and names as a real run, and every object at the same resourceVersion."""
        finished(manager, "purgeable")
        clock.advance(8 * DAY)
        clean(manager)
        finished(manager, "expiring")
        clock.advance(8 * DAY)
        before = {o.name: o.resource_version for o in store.list().items}

        report = clean(manager, dry_run=True)

        assert report.dry_run
        assert (report.soft_deleted, report.purged) == (1, 1)
        assert {(i.task_id, i.action) for i in report.items} == {
            ("expiring", "soft-delete"),
            ("purgeable", "purge"),
        }
        assert {o.name: o.resource_version for o in store.list().items} == before

    def test_limit_bounds_the_actions_of_a_run(
        self, manager: StateManager, store: Store, clock: Clock
    ) -> None:
        """limit=2 of 5: two soft deletes, the report says it stopped; the next run goes on."""
        for i in range(5):
            finished(manager, f"t{i}")
        clock.advance(8 * DAY)
        first = clean(manager, limit=2)
        assert (first.soft_deleted, first.limited) == (2, True)
        second = clean(manager, limit=10)
        assert (second.soft_deleted, second.limited) == (3, False)


class TestUnreadable:
    def test_an_unreadable_last_update_is_an_error_and_never_deleted(
        self, manager: StateManager, store: Store, clock: Clock
    ) -> None:
        """An unreadable last update is counted as an error, and the head kept, forced or not."""
        store.create(
            StoredObject(
                name="task-odd-state",
                data={"status": "completed"},
                labels={
                    LABEL_MANAGED_BY: MANAGED_BY,
                    LABEL_ROLE: ROLE_STATE,
                    LABEL_TASK: "odd",
                    LABEL_STATUS: "completed",
                    LABEL_LIFECYCLE: LIFECYCLE_SOFT_DELETED,
                },
                annotations={
                    ANNOTATION_LAST_UPDATE: "last tuesday",
                    ANNOTATION_SOFT_DELETED_AT: "2020-01-01T00:00:00Z",
                },
            )
        )
        clock.advance(3650 * DAY)
        report = clean(manager, force=True)
        assert (report.errors, report.purged, report.soft_deleted) == (1, 0, 0)
        assert "last tuesday" in report.items[0].reason
        assert store.get("task-odd-state").data == {"status": "completed"}


class TestMetricsAndPacing:
    def test_the_counters_match_the_report(self, store: Store, clock: Clock) -> None:
        """Scanned, soft-deleted, purged and errors in the registry equal the report's counts."""
        manager = StateManager(store, clock=clock)
        for i in range(3):
            finished(manager, f"t{i}")
        clock.advance(8 * DAY)
        metrics = Metrics()
        cleaner = Cleaner(store, clock=clock, metrics=metrics, rate=None)
        first = cleaner.run()
        clock.advance(2 * DAY)
        second = cleaner.run()

        def sample(name: str) -> float | None:
            return metrics.registry.get_sample_value(name)

        assert sample("remstate_cleanup_states_scanned_total") == first.scanned + second.scanned
        assert sample("remstate_cleanup_states_soft_deleted_total") == first.soft_deleted == 3
        assert sample("remstate_cleanup_states_purged_total") == second.purged == 3
        assert sample("remstate_cleanup_scan_duration_seconds_count") == 2

    def test_every_write_waits_for_a_token(self, store: Store, clock: Clock) -> None:
        """At 10 requests a second, 30 soft deletes (plus a page and Events) wait their turn."""
        manager = StateManager(store, clock=clock)
        for i in range(30):
            manager.set_status(f"t{i}", "completed")
        clock.advance(8 * DAY)
        waits: list[float] = []
        now = [0.0]

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            now[0] += seconds

        cleaner = Cleaner(store, clock=clock, rate=10, monotonic=lambda: now[0], sleep=sleep)
        report = cleaner.run()
        assert report.soft_deleted == 30
        # One page, 30 patches and 30 Events: 61 tokens, 10 of them in the first burst.
        assert sum(waits) == pytest.approx((61 - 10) / 10)


class Failing(Interposed):
    """A real store whose first call of ``method`` raises ``error`` instead."""

    def __init__(self, inner: Store, method: str, error: Exception, *, skip: int = 0) -> None:
        def fail() -> None:
            raise error

        super().__init__(inner, method, fail)
        self.skip = skip

    def __getattr__(self, name: str) -> Any:
        if name == self.method and self.skip > 0:
            self.skip -= 1
            return getattr(self.inner, name)
        return super().__getattr__(name)


class TestResilience:
    def test_a_failure_on_one_state_is_counted_and_the_run_goes_on(
        self, store: Store, clock: Clock
    ) -> None:
        """A refused patch is an error of its kind; the other states are still handled."""
        from remstate.errors import Forbidden

        manager = StateManager(store, clock=clock)
        for i in range(3):
            finished(manager, f"t{i}")
        clock.advance(8 * DAY)
        metrics = Metrics()
        failing = Failing(store, "annotate", Forbidden("no patch for you"))
        report = Cleaner(failing, clock=clock, metrics=metrics, rate=None).run()  # type: ignore[arg-type]
        assert (report.errors, report.soft_deleted) == (1, 2)
        [error] = [i for i in report.items if i.action == "error"]
        assert "no patch for you" in error.reason
        assert (
            metrics.registry.get_sample_value(
                "remstate_cleanup_errors_total", {"kind": "Forbidden"}
            )
            == 1
        )

    def test_an_expired_continue_token_restarts_the_scan_without_repeats(
        self, store: Store, clock: Clock
    ) -> None:
        """410 Gone on a later page: the scan lists again and handles each state once."""
        from remstate.errors import Gone

        manager = StateManager(store, clock=clock)
        for i in range(5):
            finished(manager, f"t{i}")
        clock.advance(8 * DAY)
        failing = Failing(store, "list", Gone("continue token expired"), skip=1)
        cleaner = Cleaner(failing, clock=clock, page_size=2, rate=None)  # type: ignore[arg-type]
        report = cleaner.run()
        assert (report.scanned, report.soft_deleted) == (5, 5)
        assert sorted(i.task_id for i in report.items) == [f"t{i}" for i in range(5)]

    def test_every_decision_is_logged_with_task_reason_and_version(
        self, manager: StateManager, clock: Clock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Each decision is a remstate.cleanup record with task, reason and resourceVersion."""
        import logging

        caplog.set_level(logging.INFO, logger="remstate.cleanup")
        finished(manager, "old")
        finished(manager, "busy", "in_progress")
        clock.advance(8 * DAY)
        clean(manager)
        decisions = {
            r.task: (r.action, r.reason, r.resource_version)  # type: ignore[attr-defined]
            for r in caplog.records
            if hasattr(r, "task")
        }
        assert decisions["old"][0] == "soft-delete"
        assert decisions["busy"][0] == "skip-active"
        assert all(reason and version for _, reason, version in decisions.values())


class TestOrphans:
    def test_segments_of_a_head_deleted_without_them_go_after_the_grace_period(
        self, store: Store
    ) -> None:
        """A head deleted raw leaves segments: kept while young, removed and counted after."""
        from remstate.schema import utc_now

        writer = StateManager(store)
        writer.append_feedback_many("lost", [entry(i, description="z" * 400) for i in range(300)])
        parts = [n for n in task_objects(store, "lost") if n != object_name("lost")]
        assert parts
        head = store.get(object_name("lost"))
        store.delete(head.name, uid=head.uid)

        # Ages are creation times, set by the server's clock: measure from the real time.
        young = Cleaner(store, clock=utc_now, rate=None).run()
        assert young.orphans_removed == 0
        assert task_objects(store, "lost") == parts

        later = lambda: utc_now() + 2 * DAY  # noqa: E731
        skipped = Cleaner(store, clock=later, rate=None).run(orphans=False)
        assert skipped.orphans_removed == 0
        assert task_objects(store, "lost") == parts

        metrics = Metrics()
        report = Cleaner(store, clock=later, metrics=metrics, rate=None).run()
        assert report.orphans_removed == len(parts)
        assert {i.name for i in report.items if i.action == "remove-orphan"} == set(parts)
        assert task_objects(store, "lost") == []
        assert metrics.registry.get_sample_value(
            "remstate_cleanup_orphans_removed_total", {"kind": "segment"}
        ) == len(parts)


class TestKeepSnapshot:
    def test_the_snapshot_hook_copies_the_head_read_and_the_purge_keeps_it(
        self, manager: StateManager, store: Store, clock: Clock
    ) -> None:
        """keep_snapshot calls the snapshotter on the re-read head, before the delete; it stays."""
        from remstate.schema import ROLE_SNAPSHOT, owner_reference

        finished(manager, "old")
        clock.advance(8 * DAY)
        clean(manager)
        clock.advance(2 * DAY)
        copied: list[StoredObject] = []

        def snapshot(head: StoredObject, n: int = 1) -> str:
            copied.append(head)
            labels = {**head.labels, LABEL_ROLE: ROLE_SNAPSHOT}
            copy = StoredObject(
                name=f"{head.name}-s{n}",
                data=head.data,
                labels=labels,
                owner_references=(owner_reference(head),),
            )
            return store.create(copy).name

        snapshot(store.get(object_name("old")), 0)
        copied.clear()
        # A snapshot does not change the head: the scan's version still holds.

        cleaner = Cleaner(store, clock=clock, rate=None, snapshot=snapshot)
        report = cleaner.run(keep_snapshot=True)

        assert report.purged == 1
        assert "snapshot task-old-state-s1 kept" in report.items[0].reason
        [head] = copied
        assert head.data is not None
        assert head.data["status"] == "completed"
        # The earlier snapshot went with the head; the one kept for the purge stays.
        assert task_objects(store, "old") == ["task-old-state-s1"]


class TestKeptSnapshots:
    def test_the_purged_state_stays_in_a_kept_snapshot_and_can_come_back(
        self, manager: StateManager, store: Store, clock: Clock
    ) -> None:
        """keep_snapshot: the head is purged, its copy stays (no orphan), restore brings it back."""
        finished(manager, "old")
        before = store.get(object_name("old"))
        manager.recover_state("old")  # nothing to repair: no snapshot yet
        clock.advance(8 * DAY)
        clean(manager)
        clock.advance(2 * DAY)

        report = clean(manager, keep_snapshot=True)

        assert report.purged == 1
        with pytest.raises(StateNotFound):
            manager.get_state("old")
        [kept] = manager.list_snapshots("old")
        assert kept.kept
        assert kept.reason == "purge"
        assert store.get(kept.name).data == before.data
        # Long past the grace period, the kept snapshot is no orphan.
        clock.advance(30 * DAY)
        assert clean(manager).orphans_removed == 0
        assert [s.name for s in manager.list_snapshots("old")] == [kept.name]

        manager.restore_snapshot("old", kept.name)
        assert manager.get_state("old").iteration == 1
        # delete_state takes the kept snapshot with it.
        assert manager.delete_state("old") is True
        assert manager.list_snapshots("old") == []

    def test_a_kept_snapshot_is_not_pushed_out_by_newer_ones(
        self, manager: StateManager, store: Store, clock: Clock
    ) -> None:
        """The bound on snapshots per task counts only the head's own snapshots."""
        finished(manager, "old")
        clock.advance(8 * DAY)
        clean(manager)
        clock.advance(2 * DAY)
        clean(manager, keep_snapshot=True)
        [kept] = manager.list_snapshots("old")
        manager.restore_snapshot("old", kept.name)
        head = store.get(object_name("old"))
        for _ in range(manager.snapshots_kept + 2):
            head = store.get(object_name("old"))
            store.replace(dataclasses.replace(head, data={**(head.data or {}), "metadata": "{"}))
            manager.recover_state("old")
        names = [s.name for s in manager.list_snapshots("old")]
        assert kept.name in names
        assert len(names) == manager.snapshots_kept + 1


class TestKeptSnapshotsWithHistory:
    def test_a_restored_purge_comes_back_whole_and_active(
        self, manager: StateManager, store: Store, clock: Clock
    ) -> None:
        """The segments a kept snapshot refers to outlive the purge; the restore reads whole."""
        manager.append_feedback_many("big", [entry(i, description="z" * 400) for i in range(600)])
        manager.set_status("big", "completed")
        assert manager.get_state("big").segments
        clock.advance(8 * DAY)
        clean(manager)
        clock.advance(2 * DAY)
        assert clean(manager, keep_snapshot=True).purged == 1
        [kept] = manager.list_snapshots("big")

        # Long past the grace period, orphan removal leaves the kept snapshot's segments.
        from remstate.schema import utc_now

        later = Cleaner(store, clock=lambda: utc_now() + 30 * DAY, rate=None).run()
        assert later.orphans_removed == 0

        manager.restore_snapshot("big", kept.name)
        assert lifecycle(store, "big") == LIFECYCLE_ACTIVE
        page = manager.get_feedback_history("big", limit=1000)
        assert [e.id for e in page.entries] == [entry(i).id for i in range(600)]
        assert manager.validate_state("big").ok
        # Active, and its last update is the snapshot's: the next run soft-deletes, never purges.
        report = clean(manager)
        assert report.purged == 0
        assert manager.get_state("big").feedback_total == 600

    def test_a_purge_that_loses_its_race_keeps_no_snapshot(
        self, manager: StateManager, store: Store, clock: Clock
    ) -> None:
        """Touched between the snapshot and the delete: the task lives, the snapshot goes."""
        finished(manager, "old")
        clock.advance(8 * DAY)
        clean(manager)
        clock.advance(2 * DAY)

        def snapshot_then_touch(head: StoredObject) -> str:
            name = manager._keep_purged(head)
            StateManager(store, clock=clock).update_metadata("old", {"touched": True})
            return name

        report = Cleaner(store, clock=clock, rate=None, snapshot=snapshot_then_touch).run(
            keep_snapshot=True
        )
        assert report.purged == 0
        assert report.skipped_touched == 1
        assert manager.get_state("old").metadata["touched"] is True
        assert manager.list_snapshots("old") == []

    def test_deleting_a_purged_task_deletes_its_kept_snapshot_and_says_so(
        self, manager: StateManager, store: Store, clock: Clock
    ) -> None:
        """No head, a kept snapshot: delete_state removes it and answers True; then False."""
        finished(manager, "old")
        clock.advance(8 * DAY)
        clean(manager)
        clock.advance(2 * DAY)
        clean(manager, keep_snapshot=True)
        assert manager.list_snapshots("old")
        assert manager.delete_state("old") is True
        assert manager.list_snapshots("old") == []
        assert manager.delete_state("old") is False


def test_a_run_stops_before_its_next_write_once_told_not_to_go_on(
    manager: StateManager, store: Store, clock: Clock
) -> None:
    """keep_going (a leader's is_leader) is asked before each write: no write after a no."""
    for task in ("a", "b", "c"):
        finished(manager, task)
    clock.advance(8 * DAY)
    answers = iter([True, False])

    report = clean(manager, keep_going=lambda: next(answers, False))

    assert report.soft_deleted == 1
    assert report.limited
    assert sorted(lifecycle(store, t) for t in ("a", "b", "c")) == [
        LIFECYCLE_ACTIVE,
        LIFECYCLE_ACTIVE,
        LIFECYCLE_SOFT_DELETED,
    ]
