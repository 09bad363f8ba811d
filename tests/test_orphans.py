"""Orphan removal: segments and snapshots that no living head keeps, decided from metadata.

On both backends (Kubernetes: the real API server). Ages are given by ``now``:
an object is "old" when ``now`` is past its creation time plus the grace
period, so nothing sleeps.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from remstate import StateManager
from remstate.errors import InvalidInput, NotFound
from remstate.objects import StoredObject
from remstate.orphans import (
    KIND_SEGMENT,
    KIND_SNAPSHOT,
    REASON_HEAD_GONE,
    REASON_HEAD_REPLACED,
    REASON_UNREFERENCED,
    OrphanReport,
    remove_orphans,
)
from remstate.schema import (
    ANNOTATION_SEGMENTS,
    KIND_FEEDBACK,
    LABEL_MANAGED_BY,
    LABEL_ROLE,
    LABEL_TASK,
    MANAGED_BY,
    ROLE_SNAPSHOT,
    apply_compaction,
    decode_state,
    label_value,
    object_name,
    owner_reference,
    segment_name,
    segment_object,
    segment_ref,
    snapshot_name,
    state_object,
)
from remstate.store import Store
from remstate.store.kubernetes import KubernetesStore
from remstate.testing.controlplane import ControlPlane
from tests.backends import RecordingApiClient
from tests.helpers import entry

GRACE = timedelta(hours=24)


def later() -> datetime:
    """A moment past the grace period of everything created so far."""
    return datetime.now(UTC) + GRACE + timedelta(minutes=5)


def clean(store: Store, *, now: datetime | None = None, **options: object) -> OrphanReport:
    settings: dict[str, object] = {"grace": GRACE, "dry_run": False, "page_size": 2}
    settings.update(options)
    return remove_orphans(store, now=now or later(), **settings)  # type: ignore[arg-type]


def task_with_segments(
    store: Store, task_id: str, segments: int = 2, *, marker: str = ""
) -> StoredObject:
    """A head whose oldest feedback went to ``segments`` segments (1, 2, ...) it refers to."""
    manager = StateManager(store)
    for i in range(segments + 2):
        manager.append_feedback(task_id, entry(i, description=f"{marker} finding {i}"))
    head = store.get(object_name(task_id))
    state = decode_state(head)
    for _ in range(segments):
        moved = state.held(KIND_FEEDBACK)[:1]
        created = store.create(
            segment_object(state, moved, kind=KIND_FEEDBACK, owner=owner_reference(head))
        )
        state = apply_compaction(state, segment_ref(created))
    return store.replace(state_object(state, resource_version=head.resource_version))


def crash_segment(store: Store, head: StoredObject) -> StoredObject:
    """A segment written as a writer does, whose writer died before the head took it."""
    state = decode_state(head)
    moved = state.held(KIND_FEEDBACK)[:1]
    return store.create(
        segment_object(state, moved, kind=KIND_FEEDBACK, owner=owner_reference(head))
    )


def snapshot(store: Store, head: StoredObject, n: int, refers: str | None) -> StoredObject:
    """A snapshot of ``head`` as the snapshots module takes one, listing ``refers``."""
    task_id = decode_state(head).task_id
    annotations = {} if refers is None else {ANNOTATION_SEGMENTS: refers}
    return store.create(
        StoredObject(
            name=snapshot_name(task_id, n),
            data=dict(head.data or {}),
            labels={
                LABEL_MANAGED_BY: MANAGED_BY,
                LABEL_TASK: label_value(task_id),
                LABEL_ROLE: ROLE_SNAPSHOT,
            },
            annotations=annotations,
            owner_references=(owner_reference(head),),
        )
    )


def exists(store: Store, name: str) -> bool:
    try:
        store.get(name)
    except NotFound:
        return False
    return True


def removed(report: OrphanReport) -> dict[str, str]:
    return {orphan.name: orphan.reason for orphan in report.removed}


class TestOrphans:
    def test_parts_of_a_deleted_head_are_removed(self, store: Store) -> None:
        """Its segments and snapshots go (``head-gone``); another task's stay."""
        head = task_with_segments(store, "gone")
        snapshot(store, head, 0, "1-2")
        kept = task_with_segments(store, "kept")
        store.delete(head.name)

        report = clean(store)

        assert removed(report) == {
            segment_name("gone", 1): REASON_HEAD_GONE,
            segment_name("gone", 2): REASON_HEAD_GONE,
            snapshot_name("gone", 0): REASON_HEAD_GONE,
        }
        assert (report.count(KIND_SEGMENT), report.count(KIND_SNAPSHOT)) == (2, 1)
        assert report.scanned == 5
        assert not any(exists(store, name) for name in removed(report))
        assert exists(store, segment_name("kept", 1))
        assert exists(store, segment_name("kept", 2))
        assert decode_state(store.get(kept.name)).task_id == "kept"

    def test_parts_of_a_head_made_again_are_removed(self, store: Store) -> None:
        """A head deleted and created again has a new uid: the old parts are not its own."""
        head = task_with_segments(store, "again", segments=1)
        snapshot(store, head, 0, "1")
        store.delete(head.name)
        StateManager(store).append_feedback("again", entry(0))

        report = clean(store)

        assert removed(report) == {
            segment_name("again", 1): REASON_HEAD_REPLACED,
            snapshot_name("again", 0): REASON_HEAD_REPLACED,
        }
        assert exists(store, object_name("again"))

    def test_a_segment_the_head_never_took_is_removed(self, store: Store) -> None:
        """A crash between writing a segment and the head's compare-and-swap: ``unreferenced``."""
        head = task_with_segments(store, "crash", segments=1)
        orphan = crash_segment(store, head)
        assert orphan.name == segment_name("crash", 2)

        report = clean(store)

        assert removed(report) == {orphan.name: REASON_UNREFERENCED}
        assert not exists(store, orphan.name)
        assert exists(store, segment_name("crash", 1))  # the head refers to it
        assert store.get(head.name) == head

    def test_a_young_orphan_is_kept(self, store: Store) -> None:
        """Within the grace period nothing is removed: a live writer may be about to take it."""
        head = task_with_segments(store, "young", segments=1)
        orphan = crash_segment(store, head)

        report = clean(store, now=datetime.now(UTC))

        assert report.removed == ()
        assert (report.scanned, report.young) == (2, 2)
        assert exists(store, orphan.name)

    def test_a_segment_a_snapshot_refers_to_is_kept_while_it_lives(self, store: Store) -> None:
        """Unreferenced by the head but listed by its snapshot: kept, until the snapshot goes."""
        head = task_with_segments(store, "snap", segments=1)
        orphan = crash_segment(store, head)
        taken = snapshot(store, head, 0, "1-2")

        assert clean(store).removed == ()
        assert exists(store, orphan.name)

        store.delete(taken.name)
        assert removed(clean(store)) == {orphan.name: REASON_UNREFERENCED}

    def test_a_snapshot_that_does_not_list_segments_keeps_them_all(self, store: Store) -> None:
        """A snapshot with no segments annotation may refer to any: nothing is removed."""
        head = task_with_segments(store, "unsaid", segments=1)
        orphan = crash_segment(store, head)
        snapshot(store, head, 0, None)

        assert clean(store).removed == ()
        assert exists(store, orphan.name)

    def test_a_head_without_the_annotation_is_read_for_its_index(self, store: Store) -> None:
        """A head an older remstate wrote: its index says which segments it keeps."""
        head = task_with_segments(store, "older", segments=2)
        head = store.annotate(head.name, {ANNOTATION_SEGMENTS: None})
        assert ANNOTATION_SEGMENTS not in head.annotations
        orphan = crash_segment(store, head)

        report = clean(store)

        assert removed(report) == {orphan.name: REASON_UNREFERENCED}
        assert exists(store, segment_name("older", 1))
        assert exists(store, segment_name("older", 2))

    def test_a_dry_run_removes_nothing(self, store: Store) -> None:
        """It reports what it would remove, and deletes nothing."""
        head = task_with_segments(store, "dry", segments=1)
        orphan = crash_segment(store, head)
        calls: list[str] = []

        report = clean(store, dry_run=True, pace=lambda: calls.append("pace"))

        assert report.dry_run
        assert removed(report) == {orphan.name: REASON_UNREFERENCED}
        assert exists(store, orphan.name)
        assert calls == []

    def test_pace_is_called_before_each_delete(self, store: Store) -> None:
        """The rate limiter runs once per delete, before it."""
        head = task_with_segments(store, "paced", segments=2)
        store.delete(head.name)
        seen: list[bool] = []

        def pace() -> None:
            seen.append(exists(store, segment_name("paced", len(seen) + 1)))

        clean(store, pace=pace)
        assert seen == [True, True]

    def test_the_head_is_read_again_before_each_delete(self, store: Store) -> None:
        """A head that took a segment since the scan read it keeps it."""
        head = task_with_segments(store, "recheck", segments=1)
        first = crash_segment(store, head)
        second = store.create(
            dataclasses.replace(first, name=segment_name("recheck", 3), resource_version="", uid="")
        )

        def adopt() -> None:  # before the first delete, the head takes the second segment
            store.annotate(head.name, {ANNOTATION_SEGMENTS: "1,3"})

        report = clean(store, pace=adopt, page_size=10)

        assert removed(report) == {first.name: REASON_UNREFERENCED}
        assert [s.name for s in report.skipped] == [second.name]
        assert exists(store, second.name)

    def test_a_segment_made_again_under_its_name_is_not_deleted(self, store: Store) -> None:
        """The delete carries the uid seen: an object made again meanwhile survives."""
        head = task_with_segments(store, "uid", segments=1)
        orphan = crash_segment(store, head)

        def remake() -> None:
            store.delete(orphan.name)
            store.create(dataclasses.replace(orphan, resource_version="", uid=""))

        report = clean(store, pace=remake)

        assert report.removed == ()
        assert [s.name for s in report.skipped] == [orphan.name]
        assert exists(store, orphan.name)

    @pytest.mark.parametrize(
        "options",
        [
            {"page_size": 0},
            {"grace": timedelta(seconds=-1)},
            {"now": datetime(2030, 1, 1)},  # naive
        ],
    )
    def test_bad_options_are_refused(self, store: Store, options: dict[str, object]) -> None:
        """A page size below 1, a negative grace or a naive ``now`` raise InvalidInput."""
        with pytest.raises(InvalidInput):
            clean(store, **options)


@pytest.mark.kubernetes
class TestMetadataOnly:
    def test_no_segment_data_crosses_the_wire(
        self, controlplane: ControlPlane, controlplane_namespace: str
    ) -> None:
        """The scan lists metadata only; a segment's data is never sent, kept or removed."""
        marker = "SEGMENT-DATA-MARKER"
        with (
            RecordingApiClient.like(controlplane) as api,
            KubernetesStore(controlplane_namespace, api_client=api) as store,
        ):
            for i in range(3):
                task_with_segments(store, f"kept-{i}", segments=2, marker=marker)
            gone = task_with_segments(store, "gone", segments=2, marker=marker)
            store.delete(gone.name)
            api.requests.clear()
            api.responses.clear()

            report = clean(store, page_size=3)

        assert report.scanned == 8
        assert removed(report) == {
            segment_name("gone", 1): REASON_HEAD_GONE,
            segment_name("gone", 2): REASON_HEAD_GONE,
        }
        bodies = [response.data for response in api.responses]
        assert all(marker.encode() not in body for body in bodies)
        gets = [url for method, url in api.requests if method == "GET" and "?" not in url]
        # Only the re-checks read a head (here: gone, 404); no segment is ever read.
        assert len(gets) == 2
        assert all(url.endswith(f"/configmaps/{gone.name}") for url in gets)
        lists = [url for method, url in api.requests if method == "GET" and "?" in url]
        assert all("labelSelector=" in url for url in lists)
        deletes = [url for method, url in api.requests if method == "DELETE"]
        assert len(deletes) == 2

    def test_an_expired_continue_token_resumes_after_the_last_name(
        self, controlplane: ControlPlane, controlplane_namespace: str
    ) -> None:
        """etcd compacted mid-scan: the scan lists again from where it was, counting each once."""
        with (
            controlplane.api_client() as api,
            KubernetesStore(controlplane_namespace, api_client=api) as store,
        ):
            for task in ("a", "b", "c"):
                store.delete(task_with_segments(store, task, segments=2).name)
            compactions: list[int] = []

            report = clean(
                store, page_size=2, pace=lambda: compactions.append(controlplane.compact())
            )

            assert len(compactions) == 6
            assert report.scanned == 6
            assert len(removed(report)) == 6
            assert store.list(label_selector=f"{LABEL_ROLE}").items == []
