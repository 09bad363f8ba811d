"""The embedded store: increments per second through remstate, divided by raw sqlite3.

Both run in this process on the same disk (one temporary directory), with the
settings ``EmbeddedStore`` uses: WAL journal, ``synchronous = NORMAL``, one
``BEGIN IMMEDIATE`` transaction per write.

- baseline: ``UPDATE counter SET value = value + 1 WHERE id = 1`` in its own
  transaction, in a loop: the least a durable increment can cost here;
- remstate: ``StateManager.increment_iteration`` on an ``EmbeddedStore``.
  A task is incremented 100 times and then a fresh one is started (its first
  increment creates it, and is counted): remediation loops stop at tens of
  iterations (10 by default), and every increment adds a record to the
  object, so an endless counter would measure a task no one has.

The sides alternate in short turns (remstate first on odd rounds) and each
side's rate is its increments over its own time, summed over the turns.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench.common import now
from bench.peers import UNREACHABLE_MAX
from remstate import StateManager
from remstate.store.embedded import EmbeddedStore

__all__ = ["EmbeddedResult", "measure_embedded"]

#: Increments per task before the next task: well past a real loop's length.
ITERATIONS_PER_TASK: Final = 100


@dataclass(slots=True)
class EmbeddedResult:
    directory: str
    rounds: int = 0
    raw_ops: int = 0
    raw_seconds: float = 0.0
    remstate_ops: int = 0
    remstate_seconds: float = 0.0

    @property
    def raw_rate(self) -> float:
        return self.raw_ops / self.raw_seconds

    @property
    def remstate_rate(self) -> float:
        return self.remstate_ops / self.remstate_seconds

    @property
    def ratio(self) -> float:
        return self.remstate_rate / self.raw_rate

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "rounds": self.rounds,
            "raw_ops": self.raw_ops,
            "raw_seconds": self.raw_seconds,
            "raw_per_s": self.raw_rate,
            "remstate_ops": self.remstate_ops,
            "remstate_seconds": self.remstate_seconds,
            "remstate_per_s": self.remstate_rate,
            "ratio": self.ratio,
        }


def _raw_connection(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)")
    conn.execute("INSERT INTO counter (id, value) VALUES (1, 0)")
    return conn


def _raw_turn(conn: sqlite3.Connection, *, seconds: float, max_ops: int) -> tuple[int, float]:
    ops = 0
    start = now()
    deadline = start + seconds
    while ops < max_ops:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE counter SET value = value + 1 WHERE id = 1")
        conn.execute("COMMIT")
        ops += 1
        if now() >= deadline:
            break
    return ops, now() - start


class _RemstateSide:
    def __init__(self, path: Path) -> None:
        self.store = EmbeddedStore(path)
        self.manager = StateManager(self.store, max_iterations=UNREACHABLE_MAX)
        self.task = 0
        self.done_on_task = ITERATIONS_PER_TASK  # start on a fresh task

    def turn(self, *, seconds: float, max_ops: int) -> tuple[int, float]:
        ops = 0
        start = now()
        deadline = start + seconds
        while ops < max_ops:
            if self.done_on_task >= ITERATIONS_PER_TASK:
                self.task += 1
                self.done_on_task = 0
            self.manager.increment_iteration(f"bench-{self.task}")
            self.done_on_task += 1
            ops += 1
            if now() >= deadline:
                break
        return ops, now() - start

    def close(self) -> None:
        self.manager.close()
        self.store.close()


def measure_embedded(*, rounds: int, seconds: float, max_ops: int) -> EmbeddedResult:
    """Alternate ``rounds`` turns of each side, each turn within ``seconds`` and ``max_ops``."""
    directory = Path(tempfile.mkdtemp(prefix="remstate-bench-"))
    result = EmbeddedResult(directory=str(directory.parent))
    raw = _raw_connection(directory / "raw.db")
    side = _RemstateSide(directory / "remstate.db")
    try:
        # Warm both: the files exist, the first pages are cached, the code is loaded.
        _raw_turn(raw, seconds=0.05, max_ops=50)
        side.turn(seconds=0.05, max_ops=10)
        for r in range(rounds):
            turns = ("raw", "remstate") if r % 2 == 0 else ("remstate", "raw")
            for which in turns:
                if which == "raw":
                    ops, took = _raw_turn(raw, seconds=seconds, max_ops=max_ops)
                    result.raw_ops += ops
                    result.raw_seconds += took
                else:
                    ops, took = side.turn(seconds=seconds, max_ops=max_ops)
                    result.remstate_ops += ops
                    result.remstate_seconds += took
            result.rounds += 1
        return result
    finally:
        side.close()
        raw.close()
        shutil.rmtree(directory, ignore_errors=True)
