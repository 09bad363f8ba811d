"""Memory: the resident set of a manager that has touched many tasks, in a process of its own.

A manager keeps the last-seen head of each task it writes (``remstate.cache``,
1,024 tasks by default) and the decoded segments and filter pages of the
history it reads (``remstate.history``), both bounded. A long-running
writer or service that touches tens of thousands of tasks must then stay
flat: its resident set after 10,000 tasks ÷ after 1,000.

The process is a fresh interpreter (``python -m bench.memory``), so that
nothing the bench built before weighs in: RSS never goes down, and the bench
process held 10,000 states' worth of lists. The store is the embedded one
(a temporary file): the caches are the manager's, the same on either
backend, and the embedded store needs no server. Each task is touched by one
``increment_iteration`` (which creates it) and one ``get_state``.
Measured: the peak RSS (``VmHWM``) and the current RSS (``VmRSS``, both from ``/proc/self/status``)
before any task, after ``small`` tasks and after ``large``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["MemoryResult", "measure_memory"]


@dataclass(frozen=True, slots=True)
class MemoryResult:
    small: int
    large: int
    #: Bytes at each point: before any task, after ``small``, after ``large``.
    peak: tuple[int, int, int]
    current: tuple[int, int, int]
    seconds: float

    @property
    def ratio(self) -> float:
        return self.peak[2] / self.peak[1]

    @property
    def growth_ratio(self) -> float:
        """What the tasks added to the peak: after ``large`` ÷ after ``small``."""
        return (self.peak[2] - self.peak[0]) / max(1, self.peak[1] - self.peak[0])

    def to_dict(self) -> dict[str, Any]:
        return {
            "small": self.small,
            "large": self.large,
            "peak_rss_bytes": list(self.peak),
            "current_rss_bytes": list(self.current),
            "ratio": self.ratio,
            "growth_ratio": self.growth_ratio,
            "seconds": self.seconds,
        }


def _rss() -> tuple[int, int]:
    """Peak and current RSS in bytes: ``VmHWM`` and ``VmRSS``.

    Not ``ru_maxrss``: Linux carries it across ``execve``, so a child would
    report the bench process's own peak.
    """
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return _kib(fields["VmHWM"]), _kib(fields["VmRSS"])


def _kib(value: str) -> int:
    return int(value.split(maxsplit=1)[0]) * 1024


def _child(small: int, large: int) -> dict[str, Any]:
    import time

    from bench.peers import UNREACHABLE_MAX
    from remstate import StateManager
    from remstate.store.embedded import EmbeddedStore

    with tempfile.TemporaryDirectory(prefix="remstate-bench-mem-") as directory:
        store = EmbeddedStore(Path(directory) / "state.db")
        manager = StateManager(store, max_iterations=UNREACHABLE_MAX)
        manager.increment_iteration("warm")  # the code paths loaded before the baseline
        points = [_rss()]
        began = time.perf_counter()
        for i in range(large):
            task = f"mem-{i:05d}"
            manager.increment_iteration(task)
            manager.get_state(task)
            if i + 1 == small:
                points.append(_rss())
        points.append(_rss())
        seconds = time.perf_counter() - began
        manager.close()
        store.close()
    return {
        "peak": [p[0] for p in points],
        "current": [p[1] for p in points],
        "seconds": seconds,
    }


def measure_memory(*, small: int, large: int) -> MemoryResult:
    """Run the child and read its figures."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.memory", str(small), str(large)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    got = json.loads(out)
    peak, current = got["peak"], got["current"]
    return MemoryResult(
        small,
        large,
        (peak[0], peak[1], peak[2]),
        (current[0], current[1], current[2]),
        got["seconds"],
    )


if __name__ == "__main__":
    print(json.dumps(_child(int(sys.argv[1]), int(sys.argv[2]))))
