"""Many tasks: 8 writer processes spread over 100 tasks, as an installation's loops are.

Each writer is a spawned process with its own client and ``StateManager``
(as a loop's pod would be). A phase is bounded by a count of operations
among all writers (a shared count) and, as a guard, by time:

- **write**: each operation is, on a task drawn at random of the 100, an
  ``increment_iteration`` or an ``append_feedback`` of one entry (a coin
  toss). Goodput is the successful writes per second of the phase; the
  latency of each increment and each append is kept;
- **read**: ``get_state`` of a random task (one GET, decoded), timed.

Before the phases, every writer reads every task once, as a long-running
writer's cache would hold them. After the write phase the parent checks
that nothing was lost: the tasks' iteration counters and feedback counts
rise by exactly what the writers were told succeeded.

The figures divide by the raw PUT limit of the same run (``bench.limit``):
goodput ÷ its rate, and each p50 and p99 latency ÷ the raw PUT's p50 and p99.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from bench.common import Target, now
from bench.peers import UNREACHABLE_MAX
from remstate import StateManager

__all__ = ["ManyTasksResult", "measure_many_tasks", "percentile"]

#: Tasks the writers spread over.
TASKS: Final = 100
_LEAD: Final = 0.3
_POLL: Final = 5.0
_KEEP_ERRORS: Final = 3


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank), or NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass(slots=True)
class _Report:
    increments: list[float] = field(default_factory=list)
    appends: list[float] = field(default_factory=list)
    reads: list[float] = field(default_factory=list)
    errors: int = 0
    requests: int = 0
    ended: float = 0.0
    samples: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ManyTasksResult:
    writers: int
    tasks: int
    write_seconds: float = 0.0
    read_seconds: float = 0.0
    increments: list[float] = field(default_factory=list)
    appends: list[float] = field(default_factory=list)
    reads: list[float] = field(default_factory=list)
    errors: int = 0
    requests: int = 0
    lost_increments: int = 0
    lost_appends: int = 0
    #: CPU seconds kube-apiserver and etcd spent in the write phase (0: not measured).
    server_cpu_seconds: float = 0.0
    error_samples: list[str] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return len(self.increments) + len(self.appends)

    @property
    def goodput(self) -> float:
        return self.writes / self.write_seconds if self.write_seconds else float("nan")

    @property
    def requests_per_write(self) -> float:
        return self.requests / self.writes if self.writes else float("nan")

    def to_dict(self) -> dict[str, Any]:
        def stats(xs: list[float]) -> dict[str, Any]:
            return {"count": len(xs), "p50_s": percentile(xs, 50), "p99_s": percentile(xs, 99)}

        return {
            "writers": self.writers,
            "tasks": self.tasks,
            "writes": self.writes,
            "write_seconds": self.write_seconds,
            "goodput_per_s": self.goodput,
            "requests": self.requests,
            "requests_per_write": self.requests_per_write,
            "errors": self.errors,
            "server_cpu_seconds": self.server_cpu_seconds,
            "server_cpu_per_request_s": self.server_cpu_seconds / self.requests
            if self.requests
            else None,
            "lost_increments": self.lost_increments,
            "lost_appends": self.lost_appends,
            "increment": stats(self.increments),
            "append": stats(self.appends),
            "get_state": stats(self.reads),
            "read_seconds": self.read_seconds,
            "error_samples": self.error_samples,
        }


def _task(i: int) -> str:
    return f"many-{i:03d}"


def _next(commands: Any, parent: int) -> Any:
    while True:
        try:
            return commands.get(timeout=_POLL)
        except queue.Empty:
            if os.getppid() != parent:
                return None


def _one(manager: StateManager, rng: random.Random, kind: str, report: _Report) -> None:
    task = _task(rng.randrange(TASKS))
    if kind == "read":
        began = now()
        manager.get_state(task)
        report.reads.append(now() - began)
    elif rng.random() < 0.5:
        began = now()
        manager.increment_iteration(task)
        report.increments.append(now() - began)
    else:
        began = now()
        manager.append_feedback(
            task, author="bench", severity="low", issue_type="bug", description="x" * 200
        )
        report.appends.append(now() - began)


def _worker(index: int, target: Target, commands: Any, results: Any, done: Any) -> None:
    """A writer: warms its cache on every task, then runs phases until told to stop."""
    parent = os.getppid()
    api = target.api_client()
    manager = StateManager(
        api_client=api, namespace=target.namespace, max_iterations=UNREACHABLE_MAX
    )
    rng = random.Random(index)  # noqa: S311 - a spread of tasks, not cryptography
    for i in range(TASKS):
        manager.get_state(_task(i))
    results.put((index, "ready", None))
    while True:
        command = _next(commands, parent)
        if command is None:
            manager.close()
            api.close()
            return
        kind, start, end, count = command
        report = _Report()
        api.requests = 0
        time.sleep(max(0.0, start - now()))
        while done.value < count and now() < end:
            try:
                _one(manager, rng, kind, report)
                with done.get_lock():
                    done.value += 1
            # BLE001: a writer reports what went wrong; it must not die mid-phase.
            except Exception as e:  # noqa: BLE001
                report.errors += 1
                if len(report.samples) < _KEEP_ERRORS:
                    report.samples.append(f"{type(e).__name__}: {str(e)[:200]}")
        report.ended = now()
        report.requests = api.requests
        results.put((index, "done", report))


def _totals(manager: StateManager) -> tuple[int, int]:
    iterations = feedback = 0
    for i in range(TASKS):
        state = manager.get_state(_task(i))
        iterations += state.iteration
        feedback += state.feedback_total
    return iterations, feedback


def measure_many_tasks(  # noqa: PLR0915 - the pool's life, start to stop, reads best whole
    target: Target,
    *,
    writers: int,
    writes: int,
    reads: int,
    seconds: float,
    server_cpu: Callable[[], float] | None = None,
) -> ManyTasksResult:
    """Both phases on ``TASKS`` fresh tasks in ``target``'s namespace (its own, preferably)."""
    api = target.api_client()
    manager = StateManager(
        api_client=api, namespace=target.namespace, max_iterations=UNREACHABLE_MAX
    )
    for i in range(TASKS):
        manager.get_or_create_state(_task(i))
    ctx = multiprocessing.get_context("spawn")
    results: Any = ctx.Queue()
    commands = [ctx.Queue() for _ in range(writers)]
    done: Any = ctx.Value("q", 0)
    processes = [
        ctx.Process(
            target=_worker,
            args=(i, target, commands[i], results, done),
            name=f"bench-many-{i}",
            daemon=True,
        )
        for i in range(writers)
    ]
    result = ManyTasksResult(writers=writers, tasks=TASKS)

    def collect(kind: str, timeout: float) -> list[Any]:
        got: list[Any] = []
        deadline = now() + timeout
        while len(got) < writers:
            try:
                index, what, payload = results.get(timeout=max(0.1, deadline - now()))
            except queue.Empty:
                raise RuntimeError(f"many-tasks writers did not report {kind!r}") from None
            if what != kind:
                raise RuntimeError(f"writer {index} said {what!r}, expected {kind!r}")
            got.append(payload)
        return got

    def phase(kind: str, count: int) -> tuple[list[_Report], float]:
        with done.get_lock():
            done.value = 0
        start = now() + _LEAD
        for c in commands:
            c.put((kind, start, start + seconds, count))
        reports: list[_Report] = collect("done", seconds + 120)
        return reports, max(r.ended for r in reports) - start

    try:
        for p in processes:
            p.start()
        collect("ready", 180)
        before = _totals(manager)
        cpu = server_cpu() if server_cpu else 0.0
        reports, result.write_seconds = phase("write", writes)
        result.server_cpu_seconds = server_cpu() - cpu if server_cpu else 0.0
        after = _totals(manager)
        for r in reports:
            result.increments += r.increments
            result.appends += r.appends
            result.errors += r.errors
            result.requests += r.requests
            result.error_samples += r.samples[: _KEEP_ERRORS - len(result.error_samples)]
        result.lost_increments = len(result.increments) - (after[0] - before[0])
        result.lost_appends = len(result.appends) - (after[1] - before[1])
        reports, result.read_seconds = phase("read", reads)
        for r in reports:
            result.reads += r.reads
            result.errors += r.errors
        return result
    finally:
        for c in commands:
            with contextlib.suppress(Exception):
                c.put(None)
        for p in processes:
            if p.pid is None:
                continue  # never started
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        manager.close()
        api.close()
