"""The dashboard's loops page: its server time with 10,000 tasks divided by 100 tasks.

On the embedded store (for the seeding's speed: 10,000 heads are inserted in
seconds there; the page reads the store the same way on both backends: one
metadata-only list of a page of heads, then one read of each of those
heads). Each side is its own SQLite file, with the same kind of task (three
feedback entries of different severities, an error); the page shows 50.

The time is the request's, in process (Starlette's test client calls the
ASGI app directly, no socket): the route, the store's list and reads, the
template. The sides alternate, after a warm-up of each; the figure is the
ratio of the medians. Flat (about 1) means a page costs the same whatever
the total.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from bench.common import now
from remstate import StateManager
from remstate.schema import ErrorRecord, FeedbackEntry, TaskState
from remstate.schema.encoding import state_object
from remstate.service import create_app
from remstate.service.auth import OpenLocal
from remstate.service.leadership import Always
from remstate.store.embedded import EmbeddedStore

__all__ = ["DashboardResult", "measure_dashboard"]


@dataclass(slots=True)
class DashboardResult:
    small: int
    large: int
    seed_seconds: float = 0.0
    small_times: list[float] = field(default_factory=list)
    large_times: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return median(self.large_times) / median(self.small_times)

    def to_dict(self) -> dict[str, Any]:
        return {
            "small_tasks": self.small,
            "large_tasks": self.large,
            "seed_seconds": self.seed_seconds,
            "small_median_s": median(self.small_times),
            "large_median_s": median(self.large_times),
            "ratio": self.ratio,
            "rounds": len(self.small_times),
        }


def _seed(store: EmbeddedStore, count: int) -> None:
    """``count`` heads as the writer leaves them, inserted directly (no read-modify-write)."""
    at = datetime.now(UTC)
    feedback = tuple(
        FeedbackEntry.new(author="reviewer", severity=s, issue_type="bug", description="d" * 200)
        for s in ("critical", "high", "low")
    )
    errors = (ErrorRecord.new("tests failed"),)
    for n in range(count):
        state = TaskState(
            task_id=f"task-{n:05}",
            iteration=0,
            status="in_progress",
            last_update=at,
            feedback_history=feedback,
            error_messages=errors,
        )
        store.create(state_object(state))


def _client(store: EmbeddedStore) -> TestClient:
    app = create_app(
        StateManager(store),
        authorizer=OpenLocal(),
        leadership=Always("bench"),
        registry=CollectorRegistry(),
    )
    return TestClient(app, base_url="http://127.0.0.1")  # a loopback Host, as a browser here sends


def _time(client: TestClient) -> float:
    began = now()
    response = client.get("/")
    took = now() - began
    assert response.status_code == 200, response.text
    assert response.text.count("<tr data-task=") == 50
    return took


def measure_dashboard(*, small: int = 100, large: int = 10_000, rounds: int = 5) -> DashboardResult:
    """The loops page's time with ``large`` tasks and with ``small``, alternating ``rounds``."""
    result = DashboardResult(small, large)
    directory = Path(tempfile.mkdtemp(prefix="remstate-bench-dashboard-"))
    stores = [EmbeddedStore(str(directory / f"{n}.db")) for n in (small, large)]
    try:
        began = now()
        for store, count in zip(stores, (small, large), strict=True):
            _seed(store, count)
        result.seed_seconds = now() - began
        clients = [_client(s) for s in stores]
        for c in clients:
            _time(c)  # warm-up: templates compiled, caches filled
        for r in range(rounds):
            order = [0, 1] if r % 2 == 0 else [1, 0]
            for side in order:
                took = _time(clients[side])
                (result.small_times if side == 0 else result.large_times).append(took)
    finally:
        for s in stores:
            s.close()
        shutil.rmtree(directory, ignore_errors=True)
    return result
