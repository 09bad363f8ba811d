"""The figures of one run, as markdown tables and as JSON.

Only ratios go in the tables' figure cells; the absolute numbers they come
from are in the detail cells and in the JSON, for reading, not for comparing
across runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bench.common import median
from bench.contention import PhaseResult, Uncontended, writer_order
from bench.embedded import EmbeddedResult
from bench.history import AppendResult
from bench.limit import LimitBurst
from bench.peers import PEERS

__all__ = ["NOT_MEASURED", "Results"]

#: DESIGN.md's figures this run cannot produce yet, and why.
NOT_MEASURED = (
    (
        "cleanup scan: bytes and time per task, 1 MiB history ÷ empty",
        "≤ 1.2",
        "not measured: needs the cleanup module, which does not exist yet",
    ),
    (
        "cleanup scan: peak memory while scanning 10,000 states",
        "—",
        "not measured: needs the cleanup module, which does not exist yet",
    ),
)


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
        rows.extend([label, "—", goal, why] for label, goal, why in NOT_MEASURED)
        return _table(["figure (remstate alone)", "ratio", "goal", "measured"], rows)

    def _notes(self) -> str:
        m = self.machine
        command = "python -m bench" + (" --quick" if self.mode == "quick" else "")
        machine = (
            f"Machine: {m['cpus']} cores, noisy (load average {m['load_start']} at start, "
            f"{m['load_end']} at end); {m['controlplane']} on 127.0.0.1 "
            f"(etcd --unsafe-no-fsync, no watch cache); Python {m['python']}; "
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
                "not_measured": [{"figure": f, "goal": g, "why": w} for f, g, w in NOT_MEASURED],
                "markdown": self.markdown(),
            }
        )
        return figures


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
