"""The figures at scale (issue 11): many tasks, many states, the service, memory; one table.

Each row divides by a baseline of the same run: the raw PUT limit and its
latencies (``bench.limit``), the same listing with fewer tasks, the library
without the service, the same process after fewer tasks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bench.cleanup import ScanResult
from bench.common import median
from bench.footprint import Footprint
from bench.limit import LimitBurst
from bench.manytasks import ManyTasksResult, percentile
from bench.memory import MemoryResult
from bench.service import ServiceResult
from bench.states import ExportResult, ListResult

__all__ = ["ScaleResults"]


def _div(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) else float("nan")


def _ratio(x: float) -> str:
    if math.isnan(x):
        return "n/a"
    return f"{x:.2f}" if x >= 0.1 else f"{x:.2g}"


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


@dataclass(slots=True)
class ScaleResults:
    many: ManyTasksResult | None = None
    listing: ListResult | None = None
    listing_cached: ListResult | None = None
    export: ExportResult | None = None
    service: ServiceResult | None = None
    memory: MemoryResult | None = None
    footprint: Footprint | None = None

    def rows(self, limit: list[LimitBurst], scan: ScanResult | None) -> list[list[str]]:
        """The table's rows: figure, ratio, goal, what was measured."""
        rows: list[list[str]] = []
        rate = median([b.rate for b in limit])
        puts = [lat for b in limit for lat in b.latencies]
        put50, put99 = percentile(puts, 50), percentile(puts, 99)
        if (m := self.many) is not None:
            how = f"{m.writers} writer processes, {m.tasks} tasks"
            rows.append(
                [
                    f"many tasks: goodput ÷ raw PUT limit ({how})",
                    _ratio(_div(m.goodput, rate)),
                    "≥ 0.7",
                    (
                        f"{m.goodput:,.0f} writes/s ({len(m.increments)} increments, "
                        f"{len(m.appends)} appends) vs {rate:,.0f} PUT/s; "
                        f"{m.requests_per_write:.2f} requests per write; server CPU "
                        f"{_ms(_div(m.server_cpu_seconds, m.requests))} per request; lost "
                        f"{m.lost_increments + m.lost_appends}, failed {m.errors}"
                    ),
                ]
            )
            for label, xs in (
                ("increment", m.increments),
                ("append", m.appends),
                ("get_state", m.reads),
            ):
                p50, p99 = percentile(xs, 50), percentile(xs, 99)
                rows.append(
                    [
                        f"many tasks: {label} latency p50 ÷ raw PUT p50; p99 ÷ p99",
                        f"{_ratio(_div(p50, put50))}; {_ratio(_div(p99, put99))}",
                        "—",
                        (
                            f"p50 {_ms(p50)} vs {_ms(put50)}, p99 {_ms(p99)} vs {_ms(put99)}; "
                            f"{len(xs)} operations"
                        ),
                    ]
                )
        for result, where in (
            (self.listing, "watch cache off"),
            (self.listing_cached, "watch cache on"),
        ):
            if result is None:
                continue
            s, g = result.small, result.many
            rows.append(
                [
                    f"`remstate ls`: time per page, {g.tasks:,} tasks ÷ {s.tasks:,} ({where})",
                    _ratio(result.ratio),
                    "flat (1)",
                    (
                        f"median page {_ms(median(g.pages))} vs {_ms(median(s.pages))} "
                        f"(pages of 100, {len(g.pages)} vs {len(s.pages)} pages; slowest "
                        f"{_ms(max(g.pages))})"
                    ),
                ]
            )
        if scan is not None:
            e, lots = scan.empty, scan.many
            rows.append(
                [
                    f"cleanup scan: time per state, {lots.tasks:,} states ÷ {e.tasks:,}",
                    _ratio(_div(lots.seconds_per_task, e.seconds_per_task)),
                    "linear (1)",
                    (
                        f"{_ms(median(lots.seconds))} for {lots.tasks:,} vs "
                        f"{_ms(median(e.seconds))} for {e.tasks:,}; peak memory: the rows above"
                    ),
                ]
            )
        if (x := self.export) is not None:
            rows.append(
                [
                    f"export: states per second, {x.states:,} states",
                    "—",
                    "—",
                    (
                        f"{x.rate:,.0f} states/s ({x.seconds:.1f} s, "
                        f"{x.line_bytes / x.states if x.states else 0:,.0f} bytes a line)"
                    ),
                ]
            )
            rows.append(
                [
                    f"export: peak memory, {x.states:,} states ÷ {x.small:,}",
                    _ratio(x.memory_ratio),
                    "flat (1)",
                    f"tracemalloc peak {x.peak_all / 1024:,.0f} vs {x.peak_small / 1024:,.0f} KiB",
                ]
            )
        if (v := self.service) is not None:
            rows.append(
                [
                    (
                        f"service: increments/s through `remstate serve` ÷ library ({v.threads} "
                        "threads)"
                    ),
                    _ratio(v.ratio),
                    "≥ 0.5",
                    (
                        f"{v.service.rate:,.0f}/s vs {v.library.rate:,.0f}/s; median "
                        f"{_ms(median(v.service.latencies))} vs "
                        f"{_ms(median(v.library.latencies))}; "
                        f"Kubernetes auth (ServiceAccount token); errors "
                        f"{v.service.errors + v.library.errors}"
                    ),
                ]
            )
            rows.append(
                [
                    "service: auth check, cache warm ÷ a request through the service",
                    _ratio(v.auth_share),
                    "—",
                    (
                        f"{v.auth_per_check * 1e6:,.1f} µs per `KubernetesAuthorizer.check` "
                        f"({v.auth_checks:,} checks) vs median request "
                        f"{_ms(median(v.service.latencies))}"
                    ),
                ]
            )
        if (r := self.memory) is not None:
            rows.append(
                [
                    f"memory: peak RSS after {r.large:,} tasks touched ÷ after {r.small:,}",
                    _ratio(r.ratio),
                    "flat (1)",
                    (
                        f"{r.peak[2] / 2**20:,.1f} vs {r.peak[1] / 2**20:,.1f} MiB (before any: "
                        f"{r.peak[0] / 2**20:,.1f}); growth ÷ growth {_ratio(r.growth_ratio)}; "
                        "embedded store, default caches"
                    ),
                ]
            )
        if (f := self.footprint) is not None:
            d = f.to_dict()
            rows.append(
                [
                    "footprint: bytes of a state as served (for docs/capacity.md)",
                    "—",
                    "—",
                    (
                        f"bare {f.bare_bytes:,} B; 10-iteration loop {f.loop_bytes:,} B "
                        f"({f.loop_requests} requests for {f.loop_writes} writes); 1 MiB history: "
                        f"head {f.history_head_bytes:,} B + {d['history_segments']} segments of "
                        f"{(d['history_segment_bytes_mean'] or 0):,.0f} B; server CPU "
                        f"{_ms(_div(f.put_cpu_seconds, f.puts))} per raw PUT; etcd bytes in "
                        f"use per bare state {_div(f.etcd_bytes, f.etcd_states):,.0f} B"
                    ),
                ]
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "many_tasks": self.many.to_dict() if self.many else None,
            "list": self.listing.to_dict() if self.listing else None,
            "list_watch_cache": self.listing_cached.to_dict() if self.listing_cached else None,
            "export": self.export.to_dict() if self.export else None,
            "service": self.service.to_dict() if self.service else None,
            "memory": self.memory.to_dict() if self.memory else None,
            "footprint": self.footprint.to_dict() if self.footprint else None,
        }
