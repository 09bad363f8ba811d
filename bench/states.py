"""Many states: ``remstate ls`` a page at a time, and ``remstate export`` of them all.

Both read the namespaces the cleanup scan built (``bench.cleanup``): its
``many`` bare tasks (10,000 in the full run), beside a namespace of ``small``
bare tasks (100) built here.

- **list**: ``StateManager.list_states(limit=100)``, what ``remstate ls``
  and the HTTP list call, page after page with the cursor until the last;
  each full page timed (the request and the summaries built from it). The
  figure is the median full page's time with the many tasks ÷ with the small count: a
  page's cost must not depend on how many tasks there are;
- **export**: what ``remstate export`` does with no ids: the tasks listed a
  page at a time, each ``export_state`` and its JSON line (written nowhere:
  the line is built and its length counted). States per second over an
  untraced pass of every task; then a pass under ``tracemalloc``, whose peak
  is read after the first ``export_small`` states and at the end: the second
  ÷ the first must be flat (1), one task's history in memory at a time.
  What the export holds is the manager's cache of last-seen heads (1,024
  tasks, ``remstate.cache``), still filling at 1,000 states: measured on the
  embedded store, the traced memory is 4.5 MiB at 1,000, 4.7 MiB at 2,000 and
  at 3,000 (300 KiB throughout with ``cache_size=16``).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from bench.common import CountingApiClient, Target, median, now
from remstate import StateManager

__all__ = ["ExportResult", "ListResult", "build_bare", "measure_export", "measure_list"]

PAGE: Final = 100


def build_bare(target: Target, count: int, *, prefix: str = "scan") -> None:
    """``count`` bare tasks in ``target``'s namespace."""
    api = CountingApiClient(target.configuration())
    with StateManager(api_client=api, namespace=target.namespace) as manager:
        for i in range(count):
            manager.get_or_create_state(f"{prefix}-{i:05d}")
    api.close()


@dataclass(slots=True)
class ListSide:
    tasks: int
    pages: list[float] = field(default_factory=list)
    listed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "listed": self.listed,
            "pages": len(self.pages),
            "median_page_s": median(self.pages),
            "max_page_s": max(self.pages, default=float("nan")),
        }


@dataclass(slots=True)
class ListResult:
    small: ListSide
    many: ListSide

    @property
    def ratio(self) -> float:
        return median(self.many.pages) / median(self.small.pages)

    def to_dict(self) -> dict[str, Any]:
        return {
            "page": PAGE,
            "small": self.small.to_dict(),
            "many": self.many.to_dict(),
            "ratio": self.ratio,
        }


def _walk(manager: StateManager, side: ListSide) -> None:
    cursor: str | None = None
    listed = 0
    while True:
        began = now()
        page = manager.list_states(limit=PAGE, cursor=cursor)
        took = now() - began
        if len(page.summaries) == PAGE:  # full pages only: a short last page costs less
            side.pages.append(took)
        listed += len(page.summaries)
        cursor = page.next_cursor
        if cursor is None:
            break
    side.listed = listed


def measure_list(
    small: Target, small_tasks: int, many: Target, many_tasks: int, *, rounds: int
) -> ListResult:
    """Every page of each namespace, ``rounds`` times, alternating (the small one repeated)."""
    result = ListResult(ListSide(small_tasks), ListSide(many_tasks))
    managers = []
    for target in (small, many):
        api = CountingApiClient(target.configuration())
        managers.append((StateManager(api_client=api, namespace=target.namespace), api))
    try:
        _walk(managers[0][0], ListSide(0))  # warm: the connection, the server's first list
        for _ in range(rounds):
            _walk(managers[1][0], result.many)
            # As many small pages as one walk of the many: the medians weigh alike.
            for _ in range(max(1, result.many.listed // max(1, small_tasks))):
                _walk(managers[0][0], result.small)
    finally:
        for manager, api in managers:
            manager.close()
            api.close()
    return result


@dataclass(slots=True)
class ExportResult:
    states: int = 0
    seconds: float = 0.0
    line_bytes: int = 0
    small: int = 0
    peak_small: int = 0
    peak_all: int = 0

    @property
    def rate(self) -> float:
        return self.states / self.seconds if self.seconds else float("nan")

    @property
    def memory_ratio(self) -> float:
        return self.peak_all / self.peak_small if self.peak_small else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "states": self.states,
            "seconds": self.seconds,
            "states_per_s": self.rate,
            "line_bytes": self.line_bytes,
            "small": self.small,
            "peak_bytes_small": self.peak_small,
            "peak_bytes_all": self.peak_all,
            "memory_ratio": self.memory_ratio,
        }


def _exported(manager: StateManager) -> Iterator[int]:
    """The length of each state's export line, as ``remstate export`` writes them."""
    cursor: str | None = None
    while True:
        page = manager.list_states(limit=PAGE, cursor=cursor)
        for summary in page.summaries:
            yield len(manager.export_state(summary.task_id).to_line())
        cursor = page.next_cursor
        if cursor is None:
            return


def measure_export(target: Target, *, small: int) -> ExportResult:
    """States per second exporting every task; peak memory after ``small`` states and at the end."""
    result = ExportResult(small=small)
    api = CountingApiClient(target.configuration())
    try:
        with StateManager(api_client=api, namespace=target.namespace) as manager:
            began = now()
            for length in _exported(manager):
                result.states += 1
                result.line_bytes += length
            result.seconds = now() - began
        with StateManager(api_client=api, namespace=target.namespace) as manager:
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            for i, _ in enumerate(_exported(manager), 1):
                if i == small:
                    result.peak_small = tracemalloc.get_traced_memory()[1] - base
            result.peak_all = tracemalloc.get_traced_memory()[1] - base
            tracemalloc.stop()
    finally:
        api.close()
    return result
