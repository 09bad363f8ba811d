"""A capacity model of one cluster's API server and etcd under remediation loops.

``python -m bench.capacity_model [RESULTS.json]`` prints the tables of
``docs/capacity.md``. Pure arithmetic, no server: what cannot be run here
(10,000 concurrent loops, a week of retained states) is simulated from what
was measured here (the JSON of a ``python -m bench`` run; without one, the
figures of the run ``docs/capacity.md`` quotes) and from the limits the
etcd and Kubernetes documentation state (cited in ``docs/capacity.md``).

The model of one loop, from ``bench.footprint``'s typical loop: ``ITERATIONS``
iterations, each one increment, one feedback entry and a ``get_state``; two
error records and a status change over its life: 23 writes and 10 reads.
A loop's iteration lasts ``period`` seconds (an agent's turn: a model call,
a build, the tests). Loops start at the rate that keeps ``loops`` of them
running, and each state is kept ``ttl`` + ``grace`` after its last write,
then purged by the cleanup.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = ["Measured", "Scenario", "evaluate", "main"]

GIB: Final = 1 << 30
#: etcd's default backend quota and its suggested maximum (etcd.io, "System limits").
ETCD_DEFAULT_QUOTA: Final = 2 * GIB
ETCD_SUGGESTED_MAX: Final = 8 * GIB
#: etcd's default largest request (etcd.io, "System limits"); a ConfigMap's data ≤ 1 MiB.
ETCD_MAX_REQUEST: Final = 1.5 * (1 << 20)
#: etcd keeps each key's older revisions until the API server compacts them,
#: every 5 minutes by default (kube-apiserver ``--etcd-compaction-interval``).
COMPACTION_SECONDS: Final = 300.0

ITERATIONS: Final = 10
WRITES_PER_LOOP: Final = 23
READS_PER_LOOP: Final = 10
DAY: Final = 86_400.0


@dataclass(frozen=True, slots=True)
class Measured:
    """Per-operation costs measured by ``python -m bench`` on this machine."""

    loop_bytes: float  # a finished loop's head as served (JSON)
    history_bytes: float  # a task with 1 MiB of history: head and segments
    requests_per_write: float  # uncontended: a loop is its task's one writer
    requests_per_write_shared: float  # 8 writers over 100 tasks (stale caches)
    server_cpu_per_request: float  # kube-apiserver + etcd CPU seconds per write request
    etcd_factor: float  # etcd's bytes in use per byte of the object as served

    @classmethod
    def from_results(cls, results: dict[str, Any]) -> Measured:
        scale = results["scale"]
        foot, many = scale["footprint"], scale["many_tasks"]
        remstate = results["peers"]["remstate"]["uncontended"]
        return cls(
            loop_bytes=foot["loop_bytes"],
            history_bytes=foot["history_total_bytes"],
            requests_per_write=remstate["requests_per_increment"],
            requests_per_write_shared=many["requests_per_write"],
            server_cpu_per_request=foot["server_cpu_per_put_s"],
            etcd_factor=foot["etcd_bytes_per_bare_state"] / foot["bare_bytes"],
        )


#: The run docs/capacity.md quotes (``python -m bench``, full, 2 Dec 2026, the 2-core machine).
DEFAULT: Final = Measured(
    loop_bytes=7_123,
    history_bytes=1_084_843,
    requests_per_write=1.0,
    requests_per_write_shared=2.58,
    server_cpu_per_request=0.00232,
    etcd_factor=2_019 / 1_624,
)


@dataclass(frozen=True, slots=True)
class Scenario:
    loops: int  # running at once
    period: float = 60.0  # seconds per iteration
    ttl_days: float = 7.0
    grace_days: float = 1.0
    watchers: int = 2  # processes holding a watch on the namespace (service replicas)
    big_share: float = 0.0  # share of states with a 1 MiB history


@dataclass(frozen=True, slots=True)
class Load:
    scenario: Scenario
    writes_per_s: float
    requests_per_s: float
    cpu_cores: float
    watch_bytes_per_s: float
    stored_states: float
    etcd_bytes: float

    @property
    def quota_share(self) -> float:
        return self.etcd_bytes / ETCD_DEFAULT_QUOTA

    @property
    def max_share(self) -> float:
        return self.etcd_bytes / ETCD_SUGGESTED_MAX


def evaluate(s: Scenario, m: Measured) -> Load:
    """The steady state of ``s.loops`` loops: rates, server CPU, bytes kept in etcd."""
    loop_seconds = ITERATIONS * s.period
    starts_per_s = s.loops / loop_seconds
    writes = starts_per_s * WRITES_PER_LOOP
    reads = starts_per_s * READS_PER_LOOP
    requests = writes * m.requests_per_write + reads
    # Each write's new object goes to every watcher (the API server's watch fan-out).
    watch = writes * m.loop_bytes * s.watchers
    kept_seconds = loop_seconds + (s.ttl_days + s.grace_days) * DAY
    states = starts_per_s * kept_seconds
    per_state = (1 - s.big_share) * m.loop_bytes + s.big_share * m.history_bytes
    # Revisions not yet compacted: every write's object, at half a finished head on average.
    revisions = writes * COMPACTION_SECONDS * m.loop_bytes / 2
    return Load(
        scenario=s,
        writes_per_s=writes,
        requests_per_s=requests,
        cpu_cores=requests * m.server_cpu_per_request,
        watch_bytes_per_s=watch,
        stored_states=states,
        etcd_bytes=(states * per_state + revisions) * m.etcd_factor,
    )


def max_states(m: Measured, quota: float, big_share: float = 0.0) -> float:
    per_state = (1 - big_share) * m.loop_bytes + big_share * m.history_bytes
    return quota / (per_state * m.etcd_factor)


def _si(x: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= size:
            return f"{x / size:,.1f} {unit}"
    return f"{x:,.1f}"


def table(m: Measured, scenarios: list[Scenario]) -> str:
    head = (
        "| loops at once | iteration | loops a day | ttl + grace | writes/s | API requests/s "
        "| server CPU (cores) | watch bytes/s | states kept | etcd bytes | of 2 GiB | of 8 GiB |"
    )
    lines = [head, "|" + "---|" * 12]
    for s in scenarios:
        load = evaluate(s, m)
        lines.append(
            f"| {s.loops:,} | {s.period:.0f} s | {_si(s.loops / (ITERATIONS * s.period) * DAY)} | "
            f"{s.ttl_days:g} d + {s.grace_days:g} d | "
            f"{load.writes_per_s:,.1f} | {load.requests_per_s:,.1f} | {load.cpu_cores:.2f} | "
            f"{_si(load.watch_bytes_per_s)}B | {_si(load.stored_states)} | "
            f"{_si(load.etcd_bytes)}B | {100 * load.quota_share:,.0f} % | "
            f"{100 * load.max_share:,.0f} % |"
        )
    return "\n".join(lines)


SCENARIOS: Final = [
    Scenario(100),
    Scenario(1_000),
    Scenario(10_000),
    Scenario(10_000, ttl_days=1, grace_days=1),
    Scenario(10_000, period=300),
    Scenario(10_000, period=300, ttl_days=1, grace_days=0.25),
]


def main(argv: list[str]) -> int:
    m = DEFAULT
    if argv:
        m = Measured.from_results(json.loads(Path(argv[0]).read_text()))
    print(f"Inputs: {m}\n")
    print(table(m, SCENARIOS))
    print()
    worst = evaluate(Scenario(10_000), m)
    shared = worst.writes_per_s * m.requests_per_write_shared
    print(
        f"If every write of 10,000 loops (60 s) found its cache stale, as 8 writers spread "
        f"over 100 tasks do: {shared:,.0f} write requests/s, "
        f"{shared * m.server_cpu_per_request:.2f} cores."
    )
    for quota, name in ((ETCD_DEFAULT_QUOTA, "2 GiB"), (ETCD_SUGGESTED_MAX, "8 GiB")):
        print(
            f"States that fit in {name}: {_si(max_states(m, quota))} typical loops; "
            f"{_si(max_states(m, quota, big_share=1.0))} with a 1 MiB history each; "
            f"{_si(max_states(m, quota, big_share=0.05))} if 5 % have one"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
