"""Concurrency, request counts and large histories, on both backends.

The concurrency claims are about processes, so they are tested with real
processes (spawned, each with its own store connection and manager) writing
one task at the same time, against the real API server and a shared SQLite file.
"""

from __future__ import annotations

import multiprocessing
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from remstate import FeedbackEntry, MaxIterationsReached, NotFound, StateManager
from remstate.store import Store
from remstate.store.kubernetes import KubernetesStore
from remstate.testing.controlplane import ControlPlane
from tests.backends import RecordingApiClient, StoreSpec, new_namespace

WORKERS = 8


def _run(spec: StoreSpec, options: dict[str, Any], job: str, worker: int, count: int) -> Any:
    """In a child process: one worker's share of a concurrent job."""
    with spec.open() as store, StateManager(store, **options) as manager:
        if job == "increment":
            return [manager.increment_iteration("shared") for _ in range(count)]
        if job == "increment-until-max":
            ok, refused = 0, 0
            for _ in range(count):
                try:
                    manager.increment_iteration("shared")
                    ok += 1
                except MaxIterationsReached:
                    refused += 1
            return ok, refused
        if job == "append":
            for i in range(count):
                manager.append_feedback(
                    "shared",
                    author=f"worker-{worker}",
                    severity="low",
                    issue_type="style",
                    description=f"entry {i} of worker {worker}",
                    id=f"w{worker}-{i:03d}",
                )
            return count
    raise ValueError(job)


def run_workers(spec: StoreSpec, options: dict[str, Any], job: str, count: int) -> list[Any]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WORKERS) as pool:
        return pool.starmap(_run, [(spec, options, job, w, count) for w in range(WORKERS)])


def all_feedback(manager: StateManager, task_id: str) -> list[FeedbackEntry]:
    entries: list[FeedbackEntry] = []
    cursor = None
    while True:
        page = manager.get_feedback_history(task_id, limit=1000, cursor=cursor)
        entries.extend(page.entries)
        cursor = page.next_cursor
        if cursor is None:
            return entries


class TestConcurrentProcesses:
    def test_eight_processes_make_exactly_two_hundred_increments(
        self, store_spec: StoreSpec, store: Store
    ) -> None:
        """8 processes x 25 increments: the counter is exactly 200, with 200 distinct records."""
        results = run_workers(store_spec, {"max_iterations": 1000}, "increment", 25)
        numbers = sorted(n for worker in results for n in worker)
        assert numbers == list(range(1, 201))  # every increment got its own number
        state = StateManager(store).get_state("shared")
        assert state.iteration == 200
        # Past 16 KiB the oldest records move to segments (issue 6, defect 16): page them.
        records = StateManager(store).get_iteration_history("shared", limit=1000).records
        assert [r.iteration for r in records] == list(range(1, 201))
        assert len({r.extra["op"] for r in records}) == 200

    def test_exactly_ten_increments_succeed_at_the_limit(
        self, store_spec: StoreSpec, store: Store
    ) -> None:
        """8 processes race for 10 iterations: exactly 10 succeed, all others are refused."""
        results = run_workers(store_spec, {"max_iterations": 10}, "increment-until-max", 5)
        assert sum(ok for ok, _ in results) == 10
        assert sum(refused for _, refused in results) == WORKERS * 5 - 10
        state = StateManager(store).get_state("shared")
        assert state.iteration == 10
        assert len(state.iteration_history) == 10

    def test_concurrent_appends_keep_every_entry_once(
        self, store_spec: StoreSpec, store: Store
    ) -> None:
        """8 processes x 50 appends: all 400 are there; appending them again changes nothing."""
        run_workers(store_spec, {}, "append", 50)
        manager = StateManager(store)
        ids = [e.id for e in all_feedback(manager, "shared")]
        expected = {f"w{w}-{i:03d}" for w in range(WORKERS) for i in range(50)}
        assert len(ids) == 400
        assert set(ids) == expected
        version = store.get("task-shared-state").resource_version

        run_workers(store_spec, {}, "append", 50)
        assert [e.id for e in all_feedback(manager, "shared")] == ids
        assert store.get("task-shared-state").resource_version == version


@pytest.fixture
def counting_client(controlplane: ControlPlane) -> Iterator[RecordingApiClient]:
    api = RecordingApiClient.like(controlplane)
    try:
        yield api
    finally:
        api.close()


class TestHttpRequests:
    def test_an_uncontended_increment_is_one_http_request(
        self, counting_client: RecordingApiClient, controlplane: ControlPlane
    ) -> None:
        """Against the real API server, an uncontended increment sends exactly one PUT."""
        namespace = new_namespace(controlplane)
        manager = StateManager(api_client=counting_client, namespace=namespace, max_iterations=50)
        manager.increment_iteration("42")
        assert [m for m, _ in counting_client.requests] == ["GET", "POST"]
        counting_client.requests.clear()

        for _ in range(20):
            manager.increment_iteration("42")
        assert [m for m, _ in counting_client.requests] == ["PUT"] * 20
        assert manager.get_current_iteration("42") == 21

    def test_a_fresh_manager_reads_once_then_writes(
        self, counting_client: RecordingApiClient, controlplane: ControlPlane
    ) -> None:
        """A manager that has not seen the task yet costs one GET, then one PUT per write."""
        namespace = new_namespace(controlplane)
        with KubernetesStore(namespace, api_client=counting_client) as store:
            StateManager(store).increment_iteration("7")
            counting_client.requests.clear()
            fresh = StateManager(store)
            fresh.increment_iteration("7")
            fresh.increment_iteration("7")
        assert [m for m, _ in counting_client.requests] == ["GET", "PUT", "PUT"]

    def test_a_missing_namespace_fails_at_once(self, counting_client: RecordingApiClient) -> None:
        """A write into a namespace that does not exist raises NotFound after one try."""
        manager = StateManager(api_client=counting_client, namespace="no-such-namespace")
        with pytest.raises(NotFound) as caught:
            manager.increment_iteration("42")
        assert "no-such-namespace" in caught.value.status.message
        assert [m for m, _ in counting_client.requests] == ["GET", "POST"]


class TestLargeHistory:
    def test_a_hundred_thousand_entries_append_and_page(self, store: Store) -> None:
        """A 100,000-entry history (built in bulk) takes appends and pages through in full."""
        rng = random.Random(7)
        words = [
            "retry",
            "loop",
            "counter",
            "leak",
            "race",
            "null",
            "index",
            "cache",
            "timeout",
            "lock",
            "json",
        ]
        start = datetime(2026, 1, 1, tzinfo=UTC)
        manager = StateManager(store)
        total = 100_000
        chunk = 10_000
        for c in range(total // chunk):
            manager.append_feedback_many(
                "big",
                [
                    FeedbackEntry.new(
                        author=f"reviewer-{i % 5}",
                        severity="medium",
                        issue_type="bug",
                        description=" ".join(rng.choice(words) for _ in range(80))[:480],
                        id=f"e{i:06d}",
                        timestamp=start + timedelta(seconds=i),
                    )
                    for i in range(c * chunk, (c + 1) * chunk)
                ],
            )
        state = manager.get_state("big")
        assert state.feedback_total == total
        assert len(state.segments) > 1  # the history really outgrew one object

        appended = manager.append_feedback(
            "big", author="late", severity="high", issue_type="bug", description="one more"
        )
        assert manager.append_feedback("big", appended) == appended  # still idempotent
        # An id that moved to a segment is still recognised, through the
        # segments' id filters, at the cost of one segment read.
        recent = f"e{total - 2000:06d}"
        assert state.find_feedback(recent) is None
        retry = FeedbackEntry.new(
            author="x", severity="low", issue_type="bug", description="d", id=recent
        )
        assert manager.append_feedback("big", retry).author == f"reviewer-{(total - 2000) % 5}"

        seen = 0
        last = -1
        cursor = None
        while True:
            page = manager.get_feedback_history("big", limit=5000, cursor=cursor)
            for e in page.entries:
                if e.id.startswith("e"):
                    n = int(e.id[1:])
                    assert n == last + 1
                    last = n
                seen += 1
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == total + 1
        assert last == total - 1
