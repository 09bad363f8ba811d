"""``python -m bench [--quick] [--json out.json]``: run every figure, print the tables.

Starts its own kube-apiserver and etcd on 127.0.0.1 (``remstate.testing.controlplane``)
and stops them, with the writer processes, however the run ends. Progress
goes to stderr; the markdown tables go to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.cleanup import ScanResult, measure_scan
from bench.common import Target, check_clock, now
from bench.contention import (
    PhaseResult,
    WorkerPool,
    measure_uncontended,
    run_phase,
    writer_order,
)
from bench.dashboard import measure_dashboard
from bench.embedded import measure_embedded
from bench.history import measure_append
from bench.limit import measure_burst
from bench.peers import PEERS
from bench.report import Results
from remstate.testing.controlplane import ControlPlane

WRITERS = 8


@dataclass(frozen=True, slots=True)
class Settings:
    """Every bound of a run: counts first, and times as guards."""

    limit_bursts: int
    limit_seconds: float
    limit_max_puts: int
    uncontended_increments: int
    rounds: int
    successes_per_phase: int
    phase_seconds: float
    append_samples: int
    append_seconds: float
    embedded_rounds: int
    embedded_seconds: float
    embedded_max_ops: int
    scan_tasks: int
    scan_many: int
    scan_rounds: int
    dashboard_rounds: int


FULL = Settings(
    limit_bursts=3,
    limit_seconds=3.0,
    limit_max_puts=5_000,
    uncontended_increments=20,
    rounds=4,
    successes_per_phase=400,
    phase_seconds=15.0,
    append_samples=60,
    append_seconds=30.0,
    embedded_rounds=4,
    embedded_seconds=2.0,
    embedded_max_ops=50_000,
    scan_tasks=500,
    scan_many=10_000,
    scan_rounds=5,
    dashboard_rounds=15,
)
QUICK = Settings(
    limit_bursts=3,
    limit_seconds=1.0,
    limit_max_puts=2_000,
    uncontended_increments=10,
    rounds=1,
    successes_per_phase=150,
    phase_seconds=6.0,
    append_samples=20,
    append_seconds=10.0,
    embedded_rounds=2,
    embedded_seconds=0.5,
    embedded_max_ops=20_000,
    scan_tasks=100,
    scan_many=2_000,
    scan_rounds=3,
    dashboard_rounds=5,
)


def _say(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def scan(plane: ControlPlane, settings: Settings) -> ScanResult:
    """The cleanup scan's figures on ``plane``, in three namespaces of their own."""
    namespaces = [plane.create_namespace(p) for p in ("scan-empty", "scan-big", "scan-many")]
    return measure_scan(
        Target.of(plane),
        namespaces,
        count=settings.scan_tasks,
        many=settings.scan_many,
        rounds=settings.scan_rounds,
        say=_say,
    )


def run(settings: Settings, *, mode: str) -> Results:
    began = now()
    machine: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "load_start": _load(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    results = Results(mode=mode, machine=machine, writers=WRITERS)
    results.target_ok = settings.successes_per_phase
    results.rounds = settings.rounds

    def limit_burst() -> None:
        burst = measure_burst(
            target, seconds=settings.limit_seconds, max_puts=settings.limit_max_puts
        )
        results.limit.append(burst)
        _say(f"limit burst {len(results.limit)}: {burst.rate:,.0f} PUT/s")

    with ControlPlane.start() as plane:
        # The cache directory is named for the versions it holds.
        machine["controlplane"] = plane.bin_dir.parent.name
        _say(f"control plane ready in {plane.startup_seconds:.1f}s at {plane.server}")
        target = Target.of(plane)
        limit_burst()

        for peer in PEERS:
            u = measure_uncontended(target, peer, increments=settings.uncontended_increments)
            results.uncontended[peer] = u
            _say(f"{peer}: {u.per_increment:.2f} requests per uncontended increment")

        _say(f"spawning {WRITERS} writer processes")
        with WorkerPool(target, WRITERS) as pool:
            for i, peer in enumerate(PEERS):
                if settings.limit_bursts > 2 and i == len(PEERS) // 2:
                    limit_burst()  # a baseline in the middle of the peers, too
                results.one[peer] = PhaseResult(peer, 1)
                results.many[peer] = PhaseResult(peer, WRITERS)
                for writers in writer_order(settings.rounds, WRITERS):
                    into = results.one[peer] if writers == 1 else results.many[peer]
                    run_phase(
                        pool,
                        target,
                        peer,
                        writers,
                        target_ok=settings.successes_per_phase,
                        seconds=settings.phase_seconds,
                        into=into,
                    )
                one, many = results.one[peer], results.many[peer]
                _say(
                    f"{peer}: goodput {one.goodput:,.0f}/s with 1, {many.goodput:,.0f}/s with "
                    f"{WRITERS}; lost {many.lost}, failed {many.failed + many.errors}"
                )
        if settings.limit_bursts > 1:
            limit_burst()

        results.append = measure_append(
            target, samples=settings.append_samples, seconds=settings.append_seconds
        )
        _say(
            f"append: built the histories in {results.append.build_seconds:.1f}s; "
            f"ratio {results.append.ratio:.2f}"
        )

        _say("cleanup scan, on this plane (no watch cache: lists read etcd)")
        results.scan = scan(plane, settings)

    # The scan again where lists are served from the API server's cache, as
    # in a cluster (kube-apiserver's default): a plane of its own, after the first.
    with ControlPlane.start(watch_cache=True) as cached:
        ready = cached.startup_seconds
        _say(f"cleanup scan, on a plane with the watch cache (ready in {ready:.1f}s)")
        results.scan_cached = scan(cached, settings)

    # After the control planes have stopped: one less tenant on 2 cores, for both sides alike.
    results.embedded = measure_embedded(
        rounds=settings.embedded_rounds,
        seconds=settings.embedded_seconds,
        max_ops=settings.embedded_max_ops,
    )
    _say(
        f"embedded: {results.embedded.remstate_rate:,.0f}/s vs "
        f"raw sqlite3 {results.embedded.raw_rate:,.0f}/s"
    )
    # The dashboard's loops page, 10,000 tasks against 100 (embedded store, for seeding speed).
    results.dashboard = measure_dashboard(rounds=settings.dashboard_rounds)
    d = results.dashboard
    _say(f"dashboard: loops page {d.ratio:.2f}x the time with {d.large:,} tasks as with {d.small}")
    machine["load_end"] = _load()
    machine["seconds"] = now() - began
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="remstate against its peers, on a local kube-apiserver and etcd. "
        "Every figure is a ratio against a baseline measured in the same run.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller counts: about a minute instead of five"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    check_clock()

    mode = "quick" if args.quick else "full"
    results = run(QUICK if args.quick else FULL, mode=mode)
    table = results.markdown()
    print(table)
    if args.json is not None:
        args.json.write_text(json.dumps(results.to_dict(), indent=2) + "\n")
        _say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
