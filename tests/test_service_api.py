"""The state API over HTTP, on both backends: each route's success and its errors.

Every refusal is problem+json with its type, and writes nothing: the test
reads the state's resourceVersion before and after.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from remstate import StateManager
from remstate.schema import object_name
from remstate.store import Store
from tests.service import Clock, Follower, build, problem

API = "/api/v1"
FEEDBACK = {"author": "rev", "severity": "high", "issue_type": "bug", "description": "off by one"}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(store: Store, clock: Clock) -> Iterator[tuple[TestClient, StateManager]]:
    client, manager = build(store, clock, max_iterations=3)
    with client:
        yield client, manager


@pytest.fixture
def client(app: tuple[TestClient, StateManager]) -> TestClient:
    return app[0]


def version(store: Store, task_id: str) -> str:
    return store.get(object_name(task_id)).resource_version


def increment(client: TestClient, task_id: str, **body: Any) -> Any:
    return client.post(f"{API}/tasks/{task_id}/iterations", json=body)


class TestReadState:
    def test_the_state_with_its_etag(self, client: TestClient, store: Store) -> None:
        """GET answers the state, and its ETag is the head's resourceVersion, quoted."""
        increment(client, "t1", note="first")
        response = client.get(f"{API}/tasks/t1")
        assert response.status_code == 200
        body = response.json()
        assert (body["task_id"], body["iteration"]) == ("t1", 1)
        assert body["iteration_history"][0]["note"] == "first"
        assert response.headers["etag"] == f'"{version(store, "t1")}"'
        assert body["resource_version"] == version(store, "t1")

    def test_no_state_is_404(self, client: TestClient) -> None:
        """A task with no state is 404 not-found, naming the task."""
        body = problem(client.get(f"{API}/tasks/nobody"), 404, "not-found")
        assert "nobody" in body["detail"]
        assert body["instance"] == f"{API}/tasks/nobody"

    @pytest.mark.parametrize("task_id", ["x" * 1100, "a%09b"])
    def test_a_task_id_that_is_not_valid_is_400(self, client: TestClient, task_id: str) -> None:
        """An id the library refuses (too long, a control character) is 400 invalid-input."""
        problem(client.get(f"{API}/tasks/{task_id}"), 400, "invalid-input")
        problem(increment(client, task_id), 400, "invalid-input")

    def test_odd_ids_round_trip(self, client: TestClient) -> None:
        """Upper case, spaces and non-ASCII, percent-encoded in the path, name the same task."""
        assert increment(client, "Task%20%C3%9C%2B1").status_code == 200
        assert client.get(f"{API}/tasks/Task%20%C3%9C%2B1").json()["task_id"] == "Task Ü+1"


class TestIncrement:
    def test_increments_and_op_id_is_idempotent(self, client: TestClient) -> None:
        """Each POST adds one; the same op_id again returns its iteration and adds none."""
        assert increment(client, "t1", op_id="step-1").json()["iteration"] == 1
        assert increment(client, "t1", op_id="step-2").json()["iteration"] == 2
        again = increment(client, "t1", op_id="step-1")
        assert again.status_code == 200
        assert again.json() == {"task_id": "t1", "iteration": 1, "op_id": "step-1"}
        assert client.get(f"{API}/tasks/t1").json()["iteration"] == 2

    def test_max_iterations_is_409_and_writes_nothing(
        self, client: TestClient, store: Store
    ) -> None:
        """At the limit: 409 max-iterations-reached with the numbers, and the state unchanged."""
        for _ in range(3):
            increment(client, "t1")
        before = version(store, "t1")
        body = problem(increment(client, "t1"), 409, "max-iterations-reached")
        assert (body["iteration"], body["max_iterations"]) == (3, 3)
        assert version(store, "t1") == before

    @pytest.mark.parametrize(
        ("body", "slug", "status"),
        [
            ({"note": 5}, "validation", 422),
            ({"nope": 1}, "validation", 422),
            ({"op_id": ""}, "invalid-input", 400),
            ({"op_id": "x" * 200}, "invalid-input", 400),
        ],
    )
    def test_bad_bodies_write_nothing(
        self, client: TestClient, store: Store, body: dict[str, Any], slug: str, status: int
    ) -> None:
        """A wrong type, an unknown field or a bad key is refused; the state unchanged."""
        increment(client, "t1")
        before = version(store, "t1")
        problem(increment(client, "t1", **body), status, slug)
        assert version(store, "t1") == before

    def test_malformed_json_is_422(self, client: TestClient) -> None:
        """A body that is not JSON is 422 validation, and nothing is created."""
        response = client.post(
            f"{API}/tasks/t1/iterations",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        problem(response, 422, "validation")
        problem(client.get(f"{API}/tasks/t1"), 404, "not-found")


class TestFeedback:
    def test_append_is_201_then_200_with_the_stored_entry(self, client: TestClient) -> None:
        """A new id is 201; the same id again is 200 with the entry first stored, not the new."""
        first = client.post(f"{API}/tasks/t1/feedback", json={**FEEDBACK, "id": "fb-1"})
        assert first.status_code == 201
        again = client.post(
            f"{API}/tasks/t1/feedback", json={**FEEDBACK, "id": "fb-1", "description": "changed"}
        )
        assert again.status_code == 200
        assert again.json() == first.json()
        page = client.get(f"{API}/tasks/t1/feedback").json()
        assert page["total"] == 1
        assert page["entries"][0]["description"] == "off by one"

    def test_an_entry_without_id_gets_one(self, client: TestClient) -> None:
        """No id: a ULID is generated, and each such POST is a new entry."""
        a = client.post(f"{API}/tasks/t1/feedback", json=FEEDBACK)
        b = client.post(f"{API}/tasks/t1/feedback", json=FEEDBACK)
        assert (a.status_code, b.status_code) == (201, 201)
        assert len(a.json()["id"]) == 26
        assert a.json()["id"] != b.json()["id"]

    def test_pages_both_ways_with_a_cursor(self, client: TestClient) -> None:
        """Oldest first and newest first, page by page, each entry once."""
        for i in range(5):
            client.post(f"{API}/tasks/t1/feedback", json={**FEEDBACK, "id": f"fb-{i}"})

        def walk(newest_first: bool) -> list[str]:
            seen: list[str] = []
            cursor = None
            while True:
                params: dict[str, Any] = {"limit": 2, "newest_first": newest_first}
                if cursor:
                    params["cursor"] = cursor
                page = client.get(f"{API}/tasks/t1/feedback", params=params).json()
                assert page["total"] == 5
                seen += [e["id"] for e in page["entries"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    return seen

        assert walk(False) == [f"fb-{i}" for i in range(5)]
        assert walk(True) == [f"fb-{i}" for i in reversed(range(5))]

    def test_page_errors(self, client: TestClient) -> None:
        """A bad cursor is 400, a bad limit 422, an unknown task 404."""
        client.post(f"{API}/tasks/t1/feedback", json=FEEDBACK)
        url = f"{API}/tasks/t1/feedback"
        problem(client.get(url, params={"cursor": "garbage"}), 400, "invalid-input")
        problem(client.get(url, params={"limit": 0}), 422, "validation")
        problem(client.get(url, params={"limit": "many"}), 422, "validation")
        problem(client.get(f"{API}/tasks/none/feedback"), 404, "not-found")

    @pytest.mark.parametrize(
        "body",
        [
            {**FEEDBACK, "severity": "apocalyptic"},
            {**FEEDBACK, "extra": 1},
            {k: v for k, v in FEEDBACK.items() if k != "author"},
            {**FEEDBACK, "description": 7},
        ],
    )
    def test_bad_entries_are_422_and_create_nothing(
        self, client: TestClient, body: dict[str, Any]
    ) -> None:
        """An unknown severity, an unknown field, a missing one, a wrong type: 422."""
        problem(client.post(f"{API}/tasks/t1/feedback", json=body), 422, "validation")
        problem(client.get(f"{API}/tasks/t1"), 404, "not-found")

    def test_a_description_over_its_limit_is_400(self, client: TestClient) -> None:
        """The library's own limit (64 KiB) gives 400 invalid-input."""
        body = {**FEEDBACK, "description": "x" * (65 * 1024)}
        problem(client.post(f"{API}/tasks/t1/feedback", json=body), 400, "invalid-input")

    def test_resolve(self, client: TestClient, store: Store) -> None:
        """PATCH resolves (and unresolves) an entry; an unknown entry is 400, writing nothing."""
        client.post(f"{API}/tasks/t1/feedback", json={**FEEDBACK, "id": "fb-1"})
        resolved = client.patch(f"{API}/tasks/t1/feedback/fb-1", json={"resolved": True})
        assert resolved.status_code == 200
        assert resolved.json()["resolved"] is True
        assert resolved.json()["resolved_at"]
        before = version(store, "t1")
        problem(
            client.patch(f"{API}/tasks/t1/feedback/fb-9", json={"resolved": True}),
            400,
            "invalid-input",
        )
        problem(
            client.patch(f"{API}/tasks/t1/feedback/fb-1", json={"resolved": "yes"}),
            422,
            "validation",
        )
        assert version(store, "t1") == before
        problem(client.patch(f"{API}/tasks/t2/feedback/fb-1", json={}), 404, "not-found")


class TestUpdates:
    def test_status(self, client: TestClient, store: Store) -> None:
        """PUT status sets it; an unknown status is 422 and writes nothing."""
        response = client.put(f"{API}/tasks/t1/status", json={"status": "in_progress"})
        assert response.status_code == 200
        assert response.json()["status"] == "in_progress"
        before = version(store, "t1")
        problem(client.put(f"{API}/tasks/t1/status", json={"status": "bored"}), 422, "validation")
        assert version(store, "t1") == before

    def test_errors_recorded_idempotently_and_paged(self, client: TestClient) -> None:
        """POST errors records one; the same id again returns it; GET pages them."""
        first = client.post(f"{API}/tasks/t1/errors", json={"message": "boom", "id": "e-1"})
        assert first.status_code == 200
        again = client.post(f"{API}/tasks/t1/errors", json={"message": "other", "id": "e-1"})
        assert again.json() == first.json()
        page = client.get(f"{API}/tasks/t1/errors").json()
        assert [r["message"] for r in page["records"]] == ["boom"]
        problem(client.post(f"{API}/tasks/t1/errors", json={"message": " "}), 400, "invalid-input")

    def test_metadata(self, client: TestClient) -> None:
        """PATCH metadata merges ``set`` and drops ``remove``."""
        url = f"{API}/tasks/t1/metadata"
        assert client.patch(url, json={"set": {"a": 1, "b": [2]}}).json()["metadata"] == {
            "a": 1,
            "b": [2],
        }
        assert client.patch(url, json={"remove": ["a"]}).json()["metadata"] == {"b": [2]}
        problem(client.patch(url, json={"remove": "a"}), 422, "validation")

    def test_policy(self, client: TestClient, store: Store) -> None:
        """PATCH policy stores a limit and a ttl; a bad ttl or nothing to change is 400."""
        response = client.patch(f"{API}/tasks/t1/policy", json={"max_iterations": 1, "ttl": "2d"})
        assert response.status_code == 200
        assert response.json()["ttl"] == "2d"
        increment(client, "t1")
        problem(increment(client, "t1"), 409, "max-iterations-reached")
        before = version(store, "t1")
        problem(client.patch(f"{API}/tasks/t1/policy", json={"ttl": "soon"}), 400, "invalid-input")
        problem(client.patch(f"{API}/tasks/t1/policy", json={}), 400, "invalid-input")
        assert version(store, "t1") == before


class TestDelete:
    def test_if_match_stale_is_412_and_deletes_nothing(
        self, client: TestClient, store: Store
    ) -> None:
        """An ETag from before the last write is 412 precondition-failed; the state stays."""
        increment(client, "t1")
        etag = client.get(f"{API}/tasks/t1").headers["etag"]
        increment(client, "t1")
        current = version(store, "t1")
        body = problem(
            client.delete(f"{API}/tasks/t1", headers={"If-Match": etag}),
            412,
            "precondition-failed",
        )
        assert body["resource_version"] == current
        assert version(store, "t1") == current
        assert client.get(f"{API}/tasks/t1").json()["iteration"] == 2

    def test_if_match_current_deletes(self, client: TestClient) -> None:
        """The current ETag deletes: 204, then 404."""
        increment(client, "t1")
        etag = client.get(f"{API}/tasks/t1").headers["etag"]
        assert client.delete(f"{API}/tasks/t1", headers={"If-Match": etag}).status_code == 204
        problem(client.get(f"{API}/tasks/t1"), 404, "not-found")

    def test_without_if_match_and_with_a_star(self, client: TestClient) -> None:
        """No If-Match deletes whatever is there; a second delete is 404, ``*`` on none 412."""
        increment(client, "t1")
        assert client.delete(f"{API}/tasks/t1").status_code == 204
        problem(client.delete(f"{API}/tasks/t1"), 404, "not-found")
        problem(
            client.delete(f"{API}/tasks/t1", headers={"If-Match": "*"}),
            412,
            "precondition-failed",
        )
        increment(client, "t2")
        assert client.delete(f"{API}/tasks/t2", headers={"If-Match": "*"}).status_code == 204

    @pytest.mark.parametrize("header", ['W/"1"', "1", '"1", "2"'])
    def test_a_malformed_if_match_is_400(
        self, client: TestClient, store: Store, header: str
    ) -> None:
        """A weak tag, an unquoted one, or a list: 400, and the state stays."""
        increment(client, "t1")
        problem(
            client.delete(f"{API}/tasks/t1", headers={"If-Match": header}), 400, "invalid-input"
        )
        assert client.get(f"{API}/tasks/t1").status_code == 200

    def test_the_manager_honours_the_version(self, store: Store) -> None:
        """delete_state(resource_version=) deletes that version only; PreconditionFailed else."""
        from remstate import PreconditionFailed

        manager = StateManager(store)
        manager.increment_iteration("t1")
        _, old = manager.get_versioned_state("t1")
        manager.increment_iteration("t1")
        with pytest.raises(PreconditionFailed) as raised:
            manager.delete_state("t1", resource_version=old)
        assert raised.value.expected == old
        assert manager.get_current_iteration("t1") == 2
        _, current = manager.get_versioned_state("t1")
        assert manager.delete_state("t1", resource_version=current) is True
        with pytest.raises(PreconditionFailed):
            manager.delete_state("t1", resource_version=current)


class TestList:
    def test_by_status_and_selector_page_by_page(self, client: TestClient) -> None:
        """GET /tasks filters by status and labels and pages with a cursor, each task once."""
        for i in range(5):
            client.put(
                f"{API}/tasks/t{i}/status", json={"status": "failed" if i % 2 else "pending"}
            )
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2, "status": "pending"}
            if cursor:
                params["cursor"] = cursor
            page = client.get(f"{API}/tasks", params=params).json()
            assert len(page["tasks"]) <= 2
            seen += [t["task_id"] for t in page["tasks"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == ["t0", "t2", "t4"]
        selected = client.get(f"{API}/tasks", params={"selector": "remstate.io/task=t3"}).json()
        assert [t["task_id"] for t in selected["tasks"]] == ["t3"]

    def test_errors(self, client: TestClient) -> None:
        """A selector that does not parse or an unknown status is 400; a bad limit 422."""
        problem(client.get(f"{API}/tasks", params={"selector": "a in ("}), 400, "invalid-input")
        problem(client.get(f"{API}/tasks", params={"status": "bored"}), 400, "invalid-input")
        problem(client.get(f"{API}/tasks", params={"limit": 0}), 422, "validation")


class TestCleanupAndRestore:
    def test_cleanup_soft_deletes_and_restore_undoes_it(
        self, client: TestClient, clock: Clock
    ) -> None:
        """POST /cleanup reports its decisions; POST restore brings the task back."""
        increment(client, "old")
        clock.advance(timedelta(days=8))
        dry = client.post(f"{API}/cleanup", json={"dry_run": True})
        assert dry.status_code == 200
        assert dry.json()["soft_deleted"] == 1
        assert client.get(f"{API}/tasks/old").status_code == 200
        report = client.post(f"{API}/cleanup", json={"ttl": "7d", "grace": "1d"}).json()
        assert (report["scanned"], report["soft_deleted"]) == (1, 1)
        restored = client.post(f"{API}/tasks/old/restore")
        assert restored.json() == {"task_id": "old", "restored": True}
        assert client.post(f"{API}/tasks/old/restore").json()["restored"] is False
        problem(client.post(f"{API}/tasks/none/restore"), 404, "not-found")

    def test_cleanup_bad_input(self, client: TestClient) -> None:
        """A ttl that is not a duration is 400; a wrong type 422."""
        problem(client.post(f"{API}/cleanup", json={"ttl": "forever"}), 400, "invalid-input")
        problem(client.post(f"{API}/cleanup", json={"force": "yes"}), 422, "validation")

    def test_not_the_leader_is_409_naming_it(self, store: Store, clock: Clock) -> None:
        """A replica that does not lead refuses cleanup with 409 not-leader, naming the leader."""
        client, manager = build(store, clock, leadership=Follower("replica-b"))
        manager.increment_iteration("old")
        clock.advance(timedelta(days=8))
        body = problem(client.post(f"{API}/cleanup", json={}), 409, "not-leader")
        assert body["leader"] == "replica-b"
        assert "replica-b" in body["detail"]
        assert client.get(f"{API}/tasks/old").status_code == 200
        assert manager.list_states().summaries[0].task_id == "old"


class TestValidation:
    def test_a_sound_state_validates(self, client: TestClient) -> None:
        """GET validation of a sound state reports no problem; of none, 404."""
        increment(client, "t1")
        response = client.get(f"{API}/tasks/t1/validation")
        assert response.status_code == 200
        assert response.json()["ok"] is True
        problem(client.get(f"{API}/tasks/none/validation"), 404, "not-found")

    def test_validate_recover_snapshots_restore(self, client: TestClient, store: Store) -> None:
        """A damaged counter: validation names it, recover repairs it after a snapshot,
        the snapshot is listed, and restoring it puts the damaged state back."""
        increment(client, "t1")
        head = store.get(object_name("t1"))
        store.replace(dataclasses.replace(head, data={**head.data, "iteration": "5"}))
        found = client.get(f"{API}/tasks/t1/validation").json()
        assert (found["ok"], found["problems"][0]["kind"]) == (False, "iteration_mismatch")
        recovered = client.post(f"{API}/tasks/t1/recover")
        assert recovered.status_code == 200
        assert recovered.json()["written"] is True
        assert client.get(f"{API}/tasks/t1/validation").json()["ok"] is True
        listed = client.get(f"{API}/tasks/t1/snapshots").json()["snapshots"]
        assert [s["reason"] for s in listed] == ["recover"]
        assert listed[0]["name"] == recovered.json()["snapshot"]
        restored = client.post(f"{API}/tasks/t1/snapshots/{listed[0]['name']}/restore")
        assert restored.status_code == 200
        assert restored.json()["restored"] == listed[0]["name"]
        assert client.get(f"{API}/tasks/t1/validation").json()["ok"] is False

    def test_recovery_errors(self, client: TestClient, store: Store) -> None:
        """No task: 404; no such snapshot: 404, and the state is not touched."""
        problem(client.post(f"{API}/tasks/none/recover"), 404, "not-found")
        increment(client, "t1")
        before = version(store, "t1")
        problem(client.post(f"{API}/tasks/t1/snapshots/task-t1-state-s9/restore"), 404, "not-found")
        assert version(store, "t1") == before
        assert client.get(f"{API}/tasks/t1/snapshots").json()["snapshots"] == []


class TestIfMatchOnWrites:
    """If-Match makes any write conditional: the current ETag writes, another writes nothing."""

    def test_the_current_etag_writes_and_a_stale_one_is_412(self, client: TestClient) -> None:
        assert client.post(f"{API}/tasks/t1/iterations", json={}).status_code == 200
        current = client.get(f"{API}/tasks/t1").headers["ETag"]
        written = client.put(
            f"{API}/tasks/t1/status", json={"status": "failed"}, headers={"If-Match": current}
        )
        assert written.status_code == 200
        after = client.get(f"{API}/tasks/t1").headers["ETag"]
        assert after != current
        for method, path, body in [
            ("PUT", "/tasks/t1/status", {"status": "completed"}),
            ("PATCH", "/tasks/t1/metadata", {"set": {"a": 1}}),
            ("POST", "/tasks/t1/iterations", {}),
            ("POST", "/tasks/t1/errors", {"message": "m"}),
        ]:
            stale = client.request(method, f"{API}{path}", json=body, headers={"If-Match": current})
            problem(stale, 412, "precondition-failed")
        state = client.get(f"{API}/tasks/t1")
        assert state.headers["ETag"] == after  # nothing written by any of them
        assert state.json()["status"] == "failed"

    def test_star_requires_a_state_and_creates_none(self, client: TestClient) -> None:
        """If-Match: * on a task that has no state: 412, and no task is created."""
        refused = client.post(f"{API}/tasks/new/iterations", json={}, headers={"If-Match": "*"})
        problem(refused, 412, "precondition-failed")
        problem(client.get(f"{API}/tasks/new"), 404, "not-found")


def test_expecting_is_a_compare_and_swap_against_a_racing_writer(store: Store) -> None:
    """A write that lands between the read and the conditional write makes it fail, not win."""
    from remstate import PreconditionFailed

    manager = StateManager(store)
    manager.increment_iteration("t")
    _, version = manager.get_versioned_state("t")
    StateManager(store).update_metadata("t", {"other": "writer"})  # lands first
    with manager.expecting(version), pytest.raises(PreconditionFailed):
        manager.update_metadata("t", {"mine": True})
    assert manager.get_state("t").metadata == {"other": "writer"}
    with manager.expecting(None):  # no condition: the usual retry on conflict
        manager.update_metadata("t", {"mine": True})
    assert manager.get_state("t").metadata == {"other": "writer", "mine": True}
