"""Append latency with a long feedback history, divided by a short one.

Two tasks on the same server and the same manager: one with ``small``
entries (100), one with ``large`` (100,000), built in bulk with
``append_feedback_many`` in chunks of 10,000 (most of them move to immutable
segments as the head outgrows its budget). Then ``append_feedback`` of one
entry, alternating between the tasks (small first on even samples, large
first on odd ones) so that the machine's drift weighs on both; the figure
is the ratio of the medians. The manager's cache is warm, as a long-running
writer's is, so each append is the write a caller pays for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.common import Target, median, now
from bench.peers import UNREACHABLE_MAX
from remstate import FeedbackEntry, StateManager
from remstate.schema import object_name

__all__ = ["AppendResult", "measure_append"]

#: About 250 bytes of JSON per entry, as the compaction budgets assume.
_FILLER = "the retry loop re-reads the object but keeps the stale resourceVersion; " * 2


def _entry(i: int, tag: str) -> FeedbackEntry:
    return FeedbackEntry.new(
        author=f"reviewer-{i % 7}",
        severity=("low", "medium", "high")[i % 3],
        issue_type="bug",
        description=f"{tag} {i}: {_FILLER}",
    )


def _head_bytes(manager: StateManager, task: str) -> int:
    """Bytes of data in the task's head object: what every write of it sends."""
    data = manager.store.get(object_name(task)).data or {}
    return sum(len(k.encode()) + len(v.encode()) for k, v in data.items())


@dataclass(slots=True)
class AppendResult:
    small: int
    large: int
    build_seconds: float
    small_latencies: list[float] = field(default_factory=list)
    large_latencies: list[float] = field(default_factory=list)
    small_requests: int = 0
    large_requests: int = 0
    small_head_bytes: int = 0
    large_head_bytes: int = 0

    @property
    def ratio(self) -> float:
        return median(self.large_latencies) / median(self.small_latencies)

    def to_dict(self) -> dict[str, Any]:
        return {
            "small_entries": self.small,
            "large_entries": self.large,
            "build_seconds": self.build_seconds,
            "samples": len(self.small_latencies),
            "small_median_s": median(self.small_latencies),
            "large_median_s": median(self.large_latencies),
            "small_requests": self.small_requests,
            "large_requests": self.large_requests,
            "small_head_bytes": self.small_head_bytes,
            "large_head_bytes": self.large_head_bytes,
            "ratio": self.ratio,
        }


def measure_append(
    target: Target,
    *,
    small: int = 100,
    large: int = 100_000,
    chunk: int = 10_000,
    samples: int,
    seconds: float,
) -> AppendResult:
    """Median append latency on each task, within ``samples`` pairs and ``seconds``."""
    api = target.api_client()
    manager = StateManager(
        api_client=api, namespace=target.namespace, max_iterations=UNREACHABLE_MAX
    )
    tasks = {"small": "bench-append-small", "large": "bench-append-large"}
    try:
        for task in tasks.values():
            manager.delete_state(task)
        began = now()
        manager.append_feedback_many(tasks["small"], [_entry(i, "small") for i in range(small)])
        for first in range(0, large, chunk):
            entries = [_entry(i, "large") for i in range(first, min(first + chunk, large))]
            manager.append_feedback_many(tasks["large"], entries)
        result = AppendResult(small, large, build_seconds=now() - began)
        for task, size in ((tasks["small"], small), (tasks["large"], large)):
            total = manager.get_feedback_history(task, limit=1).total
            if total != size:
                raise RuntimeError(f"{task} holds {total} entries, not {size}")

        deadline = now() + seconds
        for i in range(samples):
            order = ("small", "large") if i % 2 == 0 else ("large", "small")
            for which in order:
                entry = _entry(i, f"sample-{which}")
                api.requests = 0
                started = now()
                manager.append_feedback(tasks[which], entry)
                elapsed = now() - started
                if which == "small":
                    result.small_latencies.append(elapsed)
                    result.small_requests += api.requests
                else:
                    result.large_latencies.append(elapsed)
                    result.large_requests += api.requests
            if now() >= deadline:
                break
        result.small_head_bytes = _head_bytes(manager, tasks["small"])
        result.large_head_bytes = _head_bytes(manager, tasks["large"])
        for task in tasks.values():
            manager.delete_state(task)
        return result
    finally:
        manager.close()
        api.close()
