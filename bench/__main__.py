"""``python -m bench [--quick] [--json out.json]``: run every figure, print the tables.

The figures also go, as JSON, to ``bench/results/`` (or ``--json``).

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
import time
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
from bench.dashboard import DashboardResult, measure_dashboard
from bench.embedded import measure_embedded
from bench.footprint import measure_footprint
from bench.history import measure_append
from bench.limit import measure_burst
from bench.manytasks import measure_many_tasks
from bench.memory import measure_memory
from bench.peers import PEERS
from bench.report import Results
from bench.servercpu import server_cpu
from bench.service import measure_service
from bench.states import ListResult, build_bare, measure_export, measure_list
from remstate.testing.controlplane import ControlPlane

WRITERS = 8
#: Where each run's JSON goes unless --json says (not committed: .gitignore).
RESULTS = Path(__file__).parent / "results"
#: Tasks of the small namespace the listing's page time is compared with.
LIST_SMALL = 100


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
    many_writes: int
    many_reads: int
    many_seconds: float
    service_increments: int
    service_rounds: int
    auth_checks: int
    list_rounds: int
    export_small: int
    memory_small: int
    memory_large: int


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
    many_writes=1_600,
    many_reads=1_600,
    many_seconds=30.0,
    service_increments=480,
    service_rounds=2,
    auth_checks=5_000,
    list_rounds=3,
    export_small=1_000,
    memory_small=1_000,
    memory_large=10_000,
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
    # Not fewer: a phase ends with its last writer, and one asleep for its turn
    # (up to 1.5 s) weighs on a phase of a few seconds. Measured on a loaded
    # machine: 0.25 of the limit with 400, 0.41 with 800; the full run's 1,600, 0.68.
    many_writes=800,
    many_reads=400,
    many_seconds=12.0,
    service_increments=160,
    service_rounds=1,
    auth_checks=2_000,
    list_rounds=1,
    export_small=1_000,
    memory_small=1_000,
    memory_large=10_000,
)


def _say(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def scan(plane: ControlPlane, settings: Settings) -> tuple[ScanResult, list[str]]:
    """The cleanup scan's figures on ``plane``, in three namespaces of their own (returned)."""
    namespaces = [plane.create_namespace(p) for p in ("scan-empty", "scan-big", "scan-many")]
    return measure_scan(
        Target.of(plane),
        namespaces,
        count=settings.scan_tasks,
        many=settings.scan_many,
        rounds=settings.scan_rounds,
        say=_say,
    ), namespaces


def listing(plane: ControlPlane, many_namespace: str, settings: Settings) -> ListResult:
    """``list_states`` page times: the scan's many tasks ÷ a namespace of ``LIST_SMALL``."""
    small = Target.of(plane, plane.create_namespace("ls-small"))
    build_bare(small, LIST_SMALL)
    return measure_list(
        small,
        LIST_SMALL,
        Target.of(plane, many_namespace),
        settings.scan_many,
        rounds=settings.list_rounds,
    )


def many_tasks(plane: ControlPlane, settings: Settings, results: Results) -> None:
    """``WRITERS`` writer processes over 100 tasks, in a namespace of their own."""
    scale = results.scale
    _say(f"many tasks: {WRITERS} writer processes over 100 tasks")
    scale.many = measure_many_tasks(
        Target.of(plane, plane.create_namespace("many")),
        writers=WRITERS,
        writes=settings.many_writes,
        reads=settings.many_reads,
        seconds=settings.many_seconds,
        server_cpu=server_cpu(plane),
    )
    _say(
        f"many tasks: {scale.many.goodput:,.0f} writes/s, "
        f"{scale.many.requests_per_write:.2f} requests per write"
    )


def service(plane: ControlPlane, settings: Settings, results: Results) -> None:
    """``remstate serve`` with Kubernetes auth ÷ the library; then the footprint of a state."""
    scale = results.scale
    _say("service: remstate serve (Kubernetes auth) vs the library, 8 threads")
    scale.service = measure_service(
        plane,
        increments=settings.service_increments,
        rounds=settings.service_rounds,
        auth_checks=settings.auth_checks,
    )
    _say(
        f"service: {scale.service.service.rate:,.0f}/s vs library "
        f"{scale.service.library.rate:,.0f}/s; auth check "
        f"{scale.service.auth_per_check * 1e6:,.1f} µs warm"
    )
    scale.footprint = measure_footprint(
        Target.of(plane, plane.create_namespace("size")), server_cpu(plane), plane.etcd_url
    )


def states(plane: ControlPlane, many_namespace: str, settings: Settings, results: Results) -> None:
    """``list_states`` pages and ``remstate export`` on the scan's many tasks."""
    scale = results.scale
    _say("list_states pages, and export of every state")
    scale.listing = listing(plane, many_namespace, settings)
    scale.export = measure_export(Target.of(plane, many_namespace), small=settings.export_small)
    _say(
        f"list: page ratio {scale.listing.ratio:.2f}; export "
        f"{scale.export.rate:,.0f} states/s, memory ratio {scale.export.memory_ratio:.2f}"
    )


def dashboard(settings: Settings) -> DashboardResult:
    """The dashboard's loops page, 10,000 tasks against 100 (embedded store, for seeding speed)."""
    d = measure_dashboard(rounds=settings.dashboard_rounds)
    _say(f"dashboard: loops page {d.ratio:.2f}x the time with {d.large:,} tasks as with {d.small}")
    return d


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
        scale = results.scale
        many_tasks(plane, settings, results)
        if settings.limit_bursts > 1:
            limit_burst()

        service(plane, settings, results)

        results.append = measure_append(
            target, samples=settings.append_samples, seconds=settings.append_seconds
        )
        _say(
            f"append: built the histories in {results.append.build_seconds:.1f}s; "
            f"ratio {results.append.ratio:.2f}"
        )

        _say("cleanup scan, on this plane (no watch cache: lists read etcd)")
        results.scan, namespaces = scan(plane, settings)
        states(plane, namespaces[2], settings, results)

    # The scan again where lists are served from the API server's cache, as
    # in a cluster (kube-apiserver's default): a plane of its own, after the first.
    with ControlPlane.start(watch_cache=True) as cached:
        ready = cached.startup_seconds
        _say(f"cleanup scan, on a plane with the watch cache (ready in {ready:.1f}s)")
        results.scan_cached, namespaces = scan(cached, settings)
        scale.listing_cached = listing(cached, namespaces[2], settings)

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
    results.dashboard = dashboard(settings)
    _say("memory: a manager touching many tasks, in a process of its own")
    scale.memory = measure_memory(small=settings.memory_small, large=settings.memory_large)
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
    parser.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="write the figures here (default: bench/results/MODE-YYYYmmddTHHMMSSZ.json)",
    )
    args = parser.parse_args(argv)
    check_clock()

    mode = "quick" if args.quick else "full"
    results = run(QUICK if args.quick else FULL, mode=mode)
    table = results.markdown()
    print(table)
    path = args.json
    if path is None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = RESULTS / f"{mode}-{stamp}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results.to_dict(), indent=2) + "\n")
    _say(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
