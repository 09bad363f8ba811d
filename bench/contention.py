"""Goodput, lost updates and failures of each peer, with 1 and with 8 writer processes.

Writers are real processes (multiprocessing, spawn), each with its own
client and connection, as the pods of a real deployment would be. They are
spawned once and reused for every phase: spawning 8 interpreters that import
the Kubernetes client costs seconds of CPU on 2 cores, and would land in the
middle of the measurements otherwise.

A phase, for one peer and ``n`` writers on one fresh counter:

1. ``arm``: the first ``n`` workers make a read of the counter (warming their
   connection, and remstate's cache, as a long-running writer's would be) and
   answer;
2. ``go``: the parent names a start a moment ahead on the shared clock; the
   workers increment until ``target`` increments have succeeded among them
   all (a shared count) or ``seconds`` have passed, finish the operation they
   are in, and report;
3. the parent reads the counter: lost updates are the increments reported
   as done minus the counter's rise.

Phases are bounded by a count of successes first, and by time only as a
guard, so that 1 and 8 writers do the same work on the same object: each
remstate increment adds an iteration record, and an increment costs more as
the record list grows; a time-bounded phase would let the faster side grow
it further and pay for that.

Goodput is successful increments per second of the phase (start to the last
worker's end). Phases run 1, 8, 8, 1 writers per round so that a drift of the
machine's load weighs on both sides alike.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from bench.common import Target, now
from bench.peers import PEERS, Failed, make_peer

__all__ = [
    "PhaseResult",
    "Uncontended",
    "WorkerPool",
    "measure_uncontended",
    "run_phase",
]

#: Seconds between the parent's "go" and the start it names.
_LEAD: Final = 0.2
#: Seconds a worker waits for a command before it checks that its parent lives.
_POLL: Final = 5.0
#: Error messages a worker keeps, per phase, of failures that are not the peer giving up.
_KEEP_ERRORS: Final = 3


@dataclass(slots=True)
class WorkerReport:
    ok: int = 0
    failed: int = 0
    errors: int = 0
    requests: int = 0
    started: float = 0.0
    ended: float = 0.0
    error_samples: list[str] = field(default_factory=list)


@dataclass(slots=True)
class PhaseResult:
    """One peer, one number of writers, summed over the rounds."""

    peer: str
    writers: int
    ok: int = 0
    failed: int = 0
    errors: int = 0
    requests: int = 0
    lost: int = 0
    seconds: float = 0.0
    phases: int = 0
    #: Phases that the time guard ended before the count of successes was reached.
    time_capped: int = 0
    error_samples: list[str] = field(default_factory=list)

    @property
    def goodput(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else float("nan")

    @property
    def attempted(self) -> int:
        return self.ok + self.failed + self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "peer": self.peer,
            "writers": self.writers,
            "ok": self.ok,
            "failed": self.failed,
            "errors": self.errors,
            "requests": self.requests,
            "lost": self.lost,
            "seconds": self.seconds,
            "phases": self.phases,
            "time_capped": self.time_capped,
            "goodput_per_s": self.goodput,
            "error_samples": self.error_samples,
        }


def _next(commands: Any, parent: int) -> Any:
    """The next command; None (stop) when the parent has died without saying so."""
    while True:
        try:
            return commands.get(timeout=_POLL)
        except queue.Empty:
            if os.getppid() != parent:
                return None


def _worker(index: int, target: Target, commands: Any, results: Any, done: Any) -> None:
    """A writer process: runs phases until told to stop (None) or orphaned."""
    parent = os.getppid()
    api = target.api_client()
    peers = {name: make_peer(name, api, target.namespace) for name in PEERS}
    results.put((index, "ready", None))
    while True:
        command = _next(commands, parent)
        if command is None:
            api.close()
            return
        _, peer_name, key = command
        peer = peers[peer_name]
        peer.counter(key)  # warm: the connection, and remstate's last-seen object
        results.put((index, "armed", None))
        go = _next(commands, parent)
        if go is None:
            api.close()
            return
        _, start, end, target_ok = go
        report = WorkerReport(started=start)
        api.requests = 0
        time.sleep(max(0.0, start - now()))
        while done.value < target_ok and now() < end:
            try:
                peer.increment(key)
                report.ok += 1
                with done.get_lock():
                    done.value += 1
            except Failed:
                report.failed += 1
            # BLE001: a writer reports what went wrong; it must not die mid-phase.
            except Exception as e:  # noqa: BLE001
                report.errors += 1
                if len(report.error_samples) < _KEEP_ERRORS:
                    report.error_samples.append(f"{type(e).__name__}: {str(e)[:200]}")
        report.ended = now()
        report.requests = api.requests
        results.put((index, "done", report))


class WorkerPool:
    """``size`` spawned writer processes, each with its own client; the parent's to stop."""

    def __init__(self, target: Target, size: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._results: Any = ctx.Queue()
        self._commands: list[Any] = [ctx.Queue() for _ in range(size)]
        #: Successful increments so far in the running phase, among all its writers.
        self._done: Any = ctx.Value("q", 0)
        self._processes = [
            ctx.Process(
                target=_worker,
                args=(i, target, self._commands[i], self._results, self._done),
                name=f"bench-writer-{i}",
                daemon=True,
            )
            for i in range(size)
        ]
        self.size = size
        for process in self._processes:
            process.start()
        self._collect("ready", size, timeout=120)

    def _collect(self, kind: str, count: int, *, timeout: float) -> list[Any]:
        got: list[Any] = []
        deadline = now() + timeout
        while len(got) < count:
            try:
                index, what, payload = self._results.get(timeout=max(0.1, deadline - now()))
            except queue.Empty:
                dead = [p.name for p in self._processes if not p.is_alive()]
                raise RuntimeError(
                    f"writers did not report {kind!r} in {timeout:.0f}s (dead: {dead})"
                ) from None
            if what != kind:
                raise RuntimeError(f"writer {index} said {what!r}, expected {kind!r}")
            got.append(payload)
        return got

    def run(
        self, peer: str, key: str, writers: int, *, target: int, seconds: float
    ) -> tuple[list[WorkerReport], float, float]:
        """One phase on ``writers`` of the workers; their reports, its start and its end."""
        for commands in self._commands[:writers]:
            commands.put(("arm", peer, key))
        self._collect("armed", writers, timeout=60)
        with self._done.get_lock():
            self._done.value = 0
        start = now() + _LEAD
        for commands in self._commands[:writers]:
            commands.put(("go", start, start + seconds, target))
        # An operation in flight at the end may take the retry policy's whole deadline.
        reports: list[WorkerReport] = self._collect("done", writers, timeout=seconds + 120)
        end = max(r.ended for r in reports)
        return reports, start, end

    def close(self) -> None:
        """Tell every worker to stop; terminate (by handle) any that does not."""
        for commands in self._commands:
            with contextlib.suppress(Exception):
                commands.put(None)
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_serial = 0


def _fresh_key(peer: str, writers: int) -> str:
    global _serial  # noqa: PLW0603 - a run-wide counter of object names, nothing more
    _serial += 1
    short = "".join(ch for ch in peer.lower() if ch.isalnum())[:20]
    return f"bench-{short}-{writers}w-{_serial}"


def run_phase(
    pool: WorkerPool,
    target: Target,
    peer_name: str,
    writers: int,
    *,
    target_ok: int,
    seconds: float,
    into: PhaseResult,
) -> None:
    """Run one phase on a fresh counter and add its figures to ``into``.

    The phase ends at ``target_ok`` successful increments among all writers,
    or after ``seconds``, whichever comes first.
    """
    api = target.api_client()
    try:
        peer = make_peer(peer_name, api, target.namespace)
        key = _fresh_key(peer_name, writers)
        peer.prepare(key)
        reports, start, end = pool.run(peer_name, key, writers, target=target_ok, seconds=seconds)
        done = sum(r.ok for r in reports)
        into.ok += done
        into.failed += sum(r.failed for r in reports)
        into.errors += sum(r.errors for r in reports)
        into.requests += sum(r.requests for r in reports)
        into.lost += done - peer.counter(key)
        into.seconds += end - start
        into.phases += 1
        if done < target_ok:
            into.time_capped += 1
        for r in reports:
            into.error_samples.extend(r.error_samples[: _KEEP_ERRORS - len(into.error_samples)])
        peer.remove(key)
    finally:
        api.close()


def writer_order(rounds: int, contended: int) -> Iterator[int]:
    """1, n, n, 1 per round (ABBA), so that drift weighs on both sides; one round is 1, n."""
    if rounds == 1:
        yield from (1, contended)
        return
    for r in range(rounds):
        yield from ((1, contended) if r % 2 == 0 else (contended, 1))


@dataclass(slots=True)
class Uncontended:
    """Requests per increment with one writer and nobody else, after one warm-up increment."""

    peer: str
    increments: int
    requests: int
    first_requests: int

    @property
    def per_increment(self) -> float:
        return self.requests / self.increments if self.increments else float("nan")


def measure_uncontended(target: Target, peer_name: str, *, increments: int) -> Uncontended:
    """Count the API requests of ``increments`` increments by one writer, alone.

    The first increment after ``prepare`` is counted apart: for remstate it
    is a fresh manager's, which reads before it writes; the steady state is
    what a long-running writer pays.
    """
    preparer = target.api_client()
    api = target.api_client()
    try:
        key = _fresh_key(peer_name, 0)
        make_peer(peer_name, preparer, target.namespace).prepare(key)
        peer = make_peer(peer_name, api, target.namespace)
        peer.increment(key)
        first = api.requests
        api.requests = 0
        for _ in range(increments):
            peer.increment(key)
        result = Uncontended(peer_name, increments, api.requests, first)
        if peer.counter(key) != increments + 1:
            raise RuntimeError(f"{peer_name}: the counter is wrong with one writer")
        peer.remove(key)
        return result
    finally:
        api.close()
        preparer.close()
