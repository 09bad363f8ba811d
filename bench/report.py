"""The figures of one run, as markdown tables and as JSON.

Only ratios go in the tables' figure cells; the absolute numbers they come
from are in the detail cells and in the JSON, for reading, not for comparing
across runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bench.cleanup import ScanResult
from bench.common import median
from bench.contention import PhaseResult, Uncontended, writer_order
from bench.dashboard import DashboardResult
from bench.embedded import EmbeddedResult
from bench.history import AppendResult
from bench.limit import LimitBurst
from bench.peers import PEERS
from bench.report_scale import ScaleResults

__all__ = ["NOT_MEASURED", "Results"]

#: DESIGN.md's figures this run cannot produce yet, and why.
NOT_MEASURED: tuple[tuple[str, str, str], ...] = ()


@dataclass(slots=True)
class Results:
    mode: str
    machine: dict[str, Any]
    limit: list[LimitBurst] = field(default_factory=list)
    uncontended: dict[str, Uncontended] = field(default_factory=dict)
    one: dict[str, PhaseResult] = field(default_factory=dict)
    many: dict[str, PhaseResult] = field(default_factory=dict)
    writers: int = 8
    target_ok: int = 0
    rounds: int = 1
    append: AppendResult | None = None
    embedded: EmbeddedResult | None = None
    dashboard: DashboardResult | None = None
    #: The cleanup scan on the bench's plane (no watch cache), and on one with it.
    scan: ScanResult | None = None
    scan_cached: ScanResult | None = None
    #: Many tasks, many states, the service, memory (``bench.report_scale``).
    scale: ScaleResults = field(default_factory=ScaleResults)

    # -- figures ---------------------------------------------------------------

    @property
    def limit_rate(self) -> float:
        """The baseline: the median of the bursts' PUT rates."""
        return median([b.rate for b in self.limit])

    def goodput_ratio(self, peer: str) -> float:
        return _div(self.many[peer].goodput, self.one[peer].goodput)

    # -- markdown --------------------------------------------------------------

    def markdown(self) -> str:
        return "\n".join(
            [
                self._peers_table(),
                "",
                self._remstate_table(),
                "",
                self._scale_table(),
                "",
                self._notes(),
            ]
        )

    def _peers_table(self) -> str:
        n = self.writers
        head = ["figure", *PEERS, "goal (remstate)"]
        rows: list[list[str]] = []

        def row(label: str, cell: Any, goal: str) -> None:
            rows.append([label, *(cell(p) for p in PEERS), goal])

        row(
            "API requests per uncontended increment",
            lambda p: _num(self.uncontended[p].per_increment) if p in self.uncontended else "—",
            "1",
        )
        row(f"goodput, {n} writers ÷ 1 writer", lambda p: _ratio(self.goodput_ratio(p)), "≥ 0.8")
        row(
            f"lost updates, {n} writers (of increments reported done)",
            lambda p: _of(self.many[p].lost, self.many[p].ok, also=self.one[p].lost),
            "0",
        )
        row(
            f"failed operations, {n} writers (of attempted)",
            lambda p: _of(
                self.many[p].failed + self.many[p].errors,
                self.many[p].attempted,
                also=self.one[p].failed + self.one[p].errors,
            ),
            "—",
        )
        row(
            "goodput, 1 writer ÷ raw PUT limit",
            lambda p: _ratio(_div(self.one[p].goodput, self.limit_rate)),
            "—",
        )
        row(
            f"goodput, {n} writers ÷ raw PUT limit",
            lambda p: _ratio(_div(self.many[p].goodput, self.limit_rate)),
            "—",
        )
        row(
            f"API requests per successful increment, {n} writers",
            lambda p: _num(_div(self.many[p].requests, self.many[p].ok)),
            "—",
        )
        return _table(head, rows)

    def _remstate_table(self) -> str:
        rows: list[list[str]] = []
        bursts = ", ".join(f"{b.rate:,.0f}" for b in self.limit)
        put = _ms(median([lat for b in self.limit for lat in b.latencies]))
        limit = f"{self.limit_rate:,.0f} PUT/s (median of bursts {bursts}); median PUT {put}"
        rows.append(["baseline: raw PUT limit, 1 keep-alive writer", "1", "—", limit])
        if self.append is not None:
            a = self.append
            samples = len(a.large_latencies)
            latency = f"median {_ms(median(a.large_latencies))} vs {_ms(median(a.small_latencies))}"
            requests = (
                f"{_num(_div(a.large_requests, samples))} vs "
                f"{_num(_div(a.small_requests, len(a.small_latencies)))} requests per append"
            )
            heads = (
                f"heads {a.large_head_bytes / 1024:,.0f} vs {a.small_head_bytes / 1024:,.0f} KiB"
            )
            rows.append(
                [
                    f"append latency, {a.large:,} entries ÷ {a.small:,} entries",
                    _ratio(a.ratio),
                    "≤ 1.5",
                    f"{latency}, {samples} appends each; {requests}; {heads}",
                ]
            )
        if self.embedded is not None:
            e = self.embedded
            rates = f"{e.remstate_rate:,.0f}/s vs {e.raw_rate:,.0f}/s"
            rows.append(
                [
                    "embedded store: increments/s ÷ raw sqlite3 UPDATE loop",
                    _ratio(e.ratio),
                    "—",
                    f"{rates}, {e.rounds} alternating turns each, WAL, synchronous=NORMAL",
                ]
            )
        rows.extend(_scan_rows(self.scan, self.scan_cached))
        if self.dashboard is not None:
            d = self.dashboard
            times = f"median {_ms(median(d.large_times))} vs {_ms(median(d.small_times))}"
            detail = (
                f"{times} a page of 50, {len(d.small_times)} alternating requests each; "
                f"embedded store (seeded in {d.seed_seconds:.0f} s)"
            )
            rows.append(
                [
                    f"dashboard loops page, {d.large:,} tasks ÷ {d.small}",
                    _ratio(d.ratio),
                    "flat (1)",
                    detail,
                ]
            )
        rows.extend([label, "—", goal, why] for label, goal, why in NOT_MEASURED)
        return _table(["figure (remstate alone)", "ratio", "goal", "measured"], rows)

    def _scale_table(self) -> str:
        rows = self.scale.rows(self.limit, self.scan)
        return _table(["figure (at scale)", "ratio", "goal", "measured"], rows)

    def _notes(self) -> str:
        m = self.machine
        command = "python -m bench" + (" --quick" if self.mode == "quick" else "")
        machine = (
            f"Machine: {m['cpus']} cores, noisy (load average {m['load_start']} at start, "
            f"{m['load_end']} at end); {m['controlplane']} on 127.0.0.1 "
            "(etcd --unsafe-no-fsync, no watch cache; the cleanup scan also on a second "
            f"plane with the watch cache); Python {m['python']}; "
            f"`{command}` took {m['seconds']:.0f} s."
        )
        order = ", ".join(str(w) for w in writer_order(self.rounds, self.writers))
        peers = (
            f"Peers: each phase is {self.target_ok} successful increments on a fresh object "
            f"(1 writer, or {self.writers} writer processes sharing the count); writers per "
            f"phase: {order}. The foils keep a bare counter, remstate its whole state (one "
            "iteration record per increment). Only ratios compare across runs."
        )
        return f"{machine}\n{peers}"

    # -- JSON ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        peers: dict[str, Any] = {}
        for p in PEERS:
            u = self.uncontended.get(p)
            peers[p] = {
                "uncontended": None
                if u is None
                else {
                    "increments": u.increments,
                    "requests": u.requests,
                    "requests_per_increment": u.per_increment,
                    "first_increment_requests": u.first_requests,
                },
                "one_writer": self.one[p].to_dict() if p in self.one else None,
                "many_writers": self.many[p].to_dict() if p in self.many else None,
                "goodput_ratio": self.goodput_ratio(p) if p in self.one else None,
                "goodput_one_over_limit": _div(self.one[p].goodput, self.limit_rate)
                if p in self.one
                else None,
                "goodput_many_over_limit": _div(self.many[p].goodput, self.limit_rate)
                if p in self.many
                else None,
            }
        figures: dict[str, Any] = _finite(
            {
                "mode": self.mode,
                "machine": self.machine,
                "writers": self.writers,
                "successes_per_phase": self.target_ok,
                "rounds": self.rounds,
                "limit": {
                    "rate_per_s": self.limit_rate,
                    "bursts": [
                        {
                            "puts": b.puts,
                            "seconds": b.seconds,
                            "rate_per_s": b.rate,
                            "median_latency_s": b.median_latency,
                        }
                        for b in self.limit
                    ],
                },
                "peers": peers,
                "append": self.append.to_dict() if self.append else None,
                "embedded": self.embedded.to_dict() if self.embedded else None,
                "dashboard": self.dashboard.to_dict() if self.dashboard else None,
                "scan": self.scan.to_dict() if self.scan else None,
                "scan_watch_cache": self.scan_cached.to_dict() if self.scan_cached else None,
                "scale": self.scale.to_dict(),
                "not_measured": [{"figure": f, "goal": g, "why": w} for f, g, w in NOT_MEASURED],
                "markdown": self.markdown(),
            }
        )
        return figures


def _scan_rows(plain: ScanResult | None, cached: ScanResult | None) -> list[list[str]]:
    """The cleanup scan's rows: the dry run's scan of heads, then with the orphan pass."""
    rows = _scan_kind_rows(plain, cached, "cleanup scan")
    rows += _scan_kind_rows(
        plain and plain.with_orphans,
        cached and cached.with_orphans,
        "cleanup with its orphan pass (lists every segment)",
        goals=False,
    )
    return rows


def _scan_kind_rows(
    plain: ScanResult | None, cached: ScanResult | None, label: str, *, goals: bool = True
) -> list[list[str]]:
    """Bytes, time on each plane, peak memory by history and by count, for one scan.

    ``goals=False``: shown for what it costs, with no goal (the orphan pass lists
    every segment, so it grows with history by design).
    """
    ratio_goal, flat_goal = ("≤ 1.2", "flat (1)") if goals else ("none", "none")
    either = cached or plain
    if either is None:
        return []
    n, page = either.empty.tasks, either.page
    how = f"{n:,} tasks each, pages of {page}, metadata only, scan `{either.scan}`"
    e, b = either.empty, either.big
    rows = [
        [
            f"{label}: response bytes per task, 1 MiB history ÷ empty",
            _ratio(either.bytes_ratio),
            ratio_goal,
            (
                f"{b.bytes_per_task:,.0f} vs {e.bytes_per_task:,.0f} bytes per task "
                f"({b.requests} vs {e.requests} requests); {how}"
            ),
        ]
    ]
    for result, where in (
        (cached, "watch cache on (kube-apiserver's default)"),
        (plain, "watch cache off (the test plane: lists read etcd, histories included)"),
    ):
        if result is None:
            continue
        e, b = result.empty, result.big
        rows.append(
            [
                f"{label}: time per task, 1 MiB history ÷ empty, {where}",
                _ratio(result.time_ratio),
                ratio_goal,
                (
                    f"median scan {_ms(median(b.seconds))} vs {_ms(median(e.seconds))} "
                    f"for {n:,} tasks, {len(b.seconds)} scans each, alternating"
                ),
            ]
        )
    e, b, m = either.empty, either.big, either.many
    rows.append(
        [
            f"{label}: peak memory, 1 MiB history ÷ empty",
            _ratio(either.memory_ratio),
            flat_goal,
            (
                f"tracemalloc peak {b.peak_bytes / 1024:,.0f} vs {e.peak_bytes / 1024:,.0f} KiB "
                f"scanning {n:,} tasks"
            ),
        ]
    )
    rows.append(
        [
            f"{label}: peak memory, {m.tasks:,} states ÷ {n:,} states (empty)",
            _ratio(_div(m.peak_bytes, e.peak_bytes)),
            flat_goal,
            (
                f"tracemalloc peak {m.peak_bytes / 1024:,.0f} vs {e.peak_bytes / 1024:,.0f} KiB; "
                f"{m.requests} requests, {m.response_bytes / 1024:,.0f} KiB read, "
                f"{_ms(median(m.seconds))} for {m.tasks:,}"
            ),
        ]
    )
    return rows


def _div(a: float, b: float) -> float:
    return a / b if b else float("nan")


def _ratio(x: float) -> str:
    """Two decimals; two significant digits below 0.1, where two decimals would hide it."""
    if math.isnan(x):
        return "n/a"
    return f"{x:.2f}" if x >= 0.1 else f"{x:.2g}"


def _num(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.2f}"


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def _of(part: int, whole: int, *, also: int = 0) -> str:
    text = f"{part} of {whole}" + (f" ({100 * part / whole:.0f} %)" if whole and part else "")
    if also:
        text += f"; 1 writer: {also}"
    return text


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _finite(value: Any) -> Any:
    """JSON has no NaN: a figure that could not be computed is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
