"""The cleanup scan: what it costs per task when every state has a 1 MiB history, ÷ empty states.

The scan reads metadata only (DESIGN.md, "Cleanup decides from metadata
alone"): a label-selected, paged list of the heads, as a
``PartialObjectMetadataList``. A task's history (its segments, and the bulk
of its head's data) must then cost the scan nothing on the wire, and the
scan's memory must not grow with the number of states or their size.

Three namespaces of the same server:

- ``empty``: ``count`` tasks, each a bare state (one head, no history);
- ``big``: ``count`` tasks, each with a history of at least 1 MiB of stored
  data (feedback entries of random text, which gzip does not shrink, written
  with ``append_feedback_many``: most of it moves to immutable segments);
- ``many``: ``many`` bare tasks (10,000 in the full run), for peak memory at scale.

Figures:

- bytes per task: response bytes of the scan (bodies, as read from urllib3)
  over tasks scanned, ``big`` ÷ ``empty``;
- time per task: the median of ``rounds`` scans of each (alternating, so the
  machine's drift weighs on both) over tasks scanned, ``big`` ÷ ``empty``;
- peak memory: ``tracemalloc``'s peak of Python allocations during one scan
  (in a pass of its own: tracing slows the scan), for ``empty``, ``big`` and
  ``many``. RSS would not do: it never goes down, and the bench process
  built the histories before.

The scan is :data:`SCAN`: ``StateManager.cleanup_old_states(dry_run=True,
orphans=False)``, unpaced: the scan of heads and the decisions. Beside it, the
same dry run with the orphan pass (``cleanup_with_orphans``), which lists the
metadata of every segment and snapshot: its cost grows with the number of
segments, by design, and is shown apart. ``list_heads`` is the bare list loop
of heads, for comparison; switching :data:`SCAN` is one line.
"""

from __future__ import annotations

import secrets
import threading
import tracemalloc
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

from bench.common import CountingApiClient, Target, median, now
from remstate import FeedbackEntry, StateManager
from remstate.schema import ROLE_STATE, managed_selector, value_bytes

__all__ = ["SCAN", "ScanResult", "measure_scan"]

#: The page size the scan asks for (cleanup's default).
PAGE: Final = 100
#: Stored bytes of history each ``big`` task has at least.
HISTORY_BYTES: Final = 1 << 20
#: Entries per ``append_feedback_many`` call (the manager's MAX_BATCH is 2,048).
_BATCH: Final = 2_000
#: Threads building the tasks: the server, not the client, is the bottleneck.
_BUILDERS: Final = 4


def list_heads(manager: StateManager) -> int:
    """The scan as cleanup does it: metadata-only, label-selected pages of heads. Tasks seen."""
    selector = managed_selector(role=ROLE_STATE)
    token: str | None = None
    seen = 0
    while True:
        page = manager.store.list(
            label_selector=selector, limit=PAGE, continue_token=token, metadata_only=True
        )
        seen += len(page.items)
        token = page.continue_token
        if token is None:
            return seen


def cleanup_dry_run(manager: StateManager) -> int:
    """The scan through the cleanup itself, deciding nothing (every task here is fresh).

    Unpaced (``requests_per_second=None``): the figure is the scan's cost, not
    the pace a cleanup keeps to spare the API server. Without the orphan pass.
    """
    report = manager.cleanup_old_states(
        dry_run=True, page_size=PAGE, requests_per_second=None, orphans=False
    )
    return report.scanned


def cleanup_with_orphans(manager: StateManager) -> int:
    """The same dry run with the orphan pass: metadata-only lists of segments and snapshots."""
    report = manager.cleanup_old_states(dry_run=True, page_size=PAGE, requests_per_second=None)
    return report.scanned


#: The scan measured: ``cleanup_dry_run``, or ``list_heads`` for the bare list of heads.
SCAN: Callable[[StateManager], int] = cleanup_dry_run


class MeteredApiClient(CountingApiClient):
    """The official client, counting requests and the response bytes read from them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.response_bytes = 0
        self._lock = threading.Lock()

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        return _Metered(super().call_api(*args, **kwargs), self)

    def count(self, n: int) -> None:
        with self._lock:
            self.response_bytes += n


class _Metered:
    """A response whose ``read()`` adds its body's length to the client's count."""

    def __init__(self, response: Any, client: MeteredApiClient) -> None:
        self._response = response
        self._client = client

    def read(self) -> bytes:
        body: bytes = self._response.read()
        self._client.count(len(body or b""))
        return body

    def __getattr__(self, name: str) -> Any:
        return getattr(self._response, name)


@dataclass(slots=True)
class Side:
    """One namespace's tasks and what scanning them cost."""

    tasks: int
    stored_bytes: int = 0  # data of every object of the namespace's tasks
    build_seconds: float = 0.0
    scanned: int = 0
    requests: int = 0
    response_bytes: int = 0
    seconds: list[float] = field(default_factory=list)
    peak_bytes: int = 0

    @property
    def bytes_per_task(self) -> float:
        return self.response_bytes / self.scanned if self.scanned else float("nan")

    @property
    def seconds_per_task(self) -> float:
        return median(self.seconds) / self.scanned if self.scanned else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "stored_bytes": self.stored_bytes,
            "build_seconds": self.build_seconds,
            "scanned": self.scanned,
            "requests": self.requests,
            "response_bytes": self.response_bytes,
            "bytes_per_task": self.bytes_per_task,
            "scan_seconds": self.seconds,
            "seconds_per_task": self.seconds_per_task,
            "peak_bytes": self.peak_bytes,
        }


@dataclass(slots=True)
class ScanResult:
    scan: str
    page: int
    empty: Side
    big: Side
    many: Side
    #: The same namespaces with the orphan pass too (``cleanup_with_orphans``).
    with_orphans: ScanResult | None = None

    @property
    def bytes_ratio(self) -> float:
        return self.big.bytes_per_task / self.empty.bytes_per_task

    @property
    def time_ratio(self) -> float:
        return self.big.seconds_per_task / self.empty.seconds_per_task

    @property
    def memory_ratio(self) -> float:
        """Peak memory scanning the big tasks ÷ the same count of empty ones."""
        return self.big.peak_bytes / self.empty.peak_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "scan": self.scan,
            "page": self.page,
            "empty": self.empty.to_dict(),
            "big": self.big.to_dict(),
            "many": self.many.to_dict(),
            "bytes_ratio": self.bytes_ratio,
            "time_ratio": self.time_ratio,
            "memory_ratio": self.memory_ratio,
            "with_orphans": self.with_orphans.to_dict() if self.with_orphans else None,
        }


def _history(tag: str) -> list[FeedbackEntry]:
    """Entries of random text whose stored form (gzip, base64) is at least HISTORY_BYTES."""
    # About 200 random characters each: gzip saves what base64 then costs, so
    # the stored bytes track the text's, and an entry's JSON stores in about
    # 230 bytes; 225 leaves a margin (``_build`` checks the outcome).
    per_entry = 200
    count = HISTORY_BYTES // 225
    return [
        FeedbackEntry.new(
            author=f"reviewer-{i % 7}",
            severity="low",
            issue_type="bug",
            description=f"{tag} {i}: {secrets.token_urlsafe(per_entry * 3 // 4)}",
        )
        for i in range(count)
    ]


def _stored(manager: StateManager) -> int:
    """Value bytes of every remstate object in the manager's namespace (paged, with data)."""
    total, token = 0, None
    while True:
        page = manager.store.list(label_selector=managed_selector(), limit=50, continue_token=token)
        total += sum(value_bytes(o.data or {}) for o in page.items)
        token = page.continue_token
        if token is None:
            return total


def _build(target: Target, namespace: str, count: int, *, history: bool) -> Side:
    """Create ``count`` tasks (bare, or each with a 1 MiB history) in ``namespace``."""
    side = Side(tasks=count)
    entries = _history("bench") if history else []
    api = CountingApiClient(target.configuration())
    manager = StateManager(api_client=api, namespace=namespace)
    began = now()

    def make(i: int) -> None:
        task = f"scan-{i:05d}"
        if not history:
            manager.get_or_create_state(task)
            return
        for first in range(0, len(entries), _BATCH):
            manager.append_feedback_many(task, entries[first : first + _BATCH])

    try:
        with ThreadPoolExecutor(_BUILDERS) as pool:
            list(pool.map(make, range(count)))
        side.build_seconds = now() - began
        side.stored_bytes = _stored(manager)
    finally:
        manager.close()
        api.close()
    if history and side.stored_bytes < count * HISTORY_BYTES:
        raise RuntimeError(
            f"the big tasks hold {side.stored_bytes:,} bytes, under {count} x {HISTORY_BYTES:,}"
        )
    return side


def _scan(
    target: Target,
    namespace: str,
    side: Side,
    scan: Callable[[StateManager], int],
    *,
    traced: bool = False,
) -> None:
    """One scan of the namespace with a fresh client, into ``side``: its time, or peak memory."""
    api = MeteredApiClient(target.configuration())
    manager = StateManager(api_client=api, namespace=namespace)
    try:
        if traced:
            tracemalloc.start()
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            scan(manager)
            peak = tracemalloc.get_traced_memory()[1] - base
            tracemalloc.stop()
            side.peak_bytes = max(side.peak_bytes, peak)
            return
        started = now()
        scanned = scan(manager)
        elapsed = now() - started
        if side.scanned and scanned != side.scanned:
            raise RuntimeError(f"scanned {scanned} tasks, then {side.scanned}")
        side.scanned, side.requests, side.response_bytes = scanned, api.requests, api.response_bytes
        side.seconds.append(elapsed)
    finally:
        manager.close()
        api.close()


def _measure(
    target: Target,
    namespaces: Sequence[str],
    built: Sequence[Side],
    scan: Callable[[StateManager], int],
    rounds: int,
) -> ScanResult:
    """``scan`` of each namespace: ``rounds`` timed (empty and big alternating), one traced."""
    empty, big, lots = (
        Side(s.tasks, stored_bytes=s.stored_bytes, build_seconds=s.build_seconds) for s in built
    )
    result = ScanResult(scan.__name__, PAGE, empty, big, lots)
    empty_ns, big_ns, many_ns = namespaces
    _scan(target, empty_ns, empty, scan)  # a warm-up: connections, the server's first list
    empty.seconds.clear()
    for i in range(rounds):
        order = ((empty_ns, empty), (big_ns, big))
        for namespace, side in order if i % 2 == 0 else order[::-1]:
            _scan(target, namespace, side, scan)
    _scan(target, many_ns, lots, scan)
    for namespace, side in ((empty_ns, empty), (big_ns, big), (many_ns, lots)):
        _scan(target, namespace, side, scan, traced=True)
    return result


def measure_scan(
    target: Target,
    namespaces: Sequence[str],
    *,
    count: int,
    many: int,
    rounds: int,
    say: Callable[[str], None] = lambda _: None,
) -> ScanResult:
    """Build the three namespaces' tasks, then measure :data:`SCAN` (and with orphans)."""
    empty_ns, big_ns, many_ns = namespaces
    empty = _build(target, empty_ns, count, history=False)
    say(f"scan: {count:,} empty tasks built in {empty.build_seconds:.0f}s")
    big = _build(target, big_ns, count, history=True)
    say(
        f"scan: {count:,} tasks with {big.stored_bytes / count / (1 << 20):.2f} MiB each "
        f"built in {big.build_seconds:.0f}s"
    )
    lots = _build(target, many_ns, many, history=False)
    say(f"scan: {many:,} empty tasks built in {lots.build_seconds:.0f}s")
    built = (empty, big, lots)
    result = _measure(target, namespaces, built, SCAN, rounds)
    if SCAN is not cleanup_with_orphans:
        result.with_orphans = _measure(target, namespaces, built, cleanup_with_orphans, rounds)
    for r in (result, result.with_orphans):
        if r is not None:
            say(
                f"scan {r.scan}: {r.empty.bytes_per_task:,.0f} vs {r.big.bytes_per_task:,.0f} "
                f"bytes per task; ratios bytes {r.bytes_ratio:.2f}, time {r.time_ratio:.2f}; "
                f"peak {r.empty.peak_bytes / 1024:,.0f} / {r.big.peak_bytes / 1024:,.0f} / "
                f"{r.many.peak_bytes / 1024:,.0f} KiB"
            )
    return result
