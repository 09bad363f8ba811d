"""Prometheus metrics of cleanup, recovery and the write path, in a registry the caller owns.

Built on ``prometheus_client``. Each ``Metrics`` registers its collectors in
the registry it is given (the service passes the one it exposes at
``/metrics``); with none, in a registry of its own, so that two managers in
one process never collide on the global default registry.

The names, all prefixed ``remstate_``:

- ``cleanup_states_scanned_total``, ``cleanup_states_soft_deleted_total``,
  ``cleanup_states_restored_total``, ``cleanup_states_purged_total``;
- ``cleanup_orphans_removed_total{kind}`` (``segment`` or ``snapshot``);
- ``cleanup_errors_total{kind}`` (the error class's name);
- ``cleanup_scan_duration_seconds`` (histogram, one observation per run);
- ``state_size_bytes`` (histogram of the head's data bytes at each write);
- ``iterations`` (histogram of the iteration counter at each increment);
- ``conflicts_retried_total`` (compare-and-swap writes retried after a Conflict);
- ``repairs_total{kind}`` (one per problem repaired, by problem code).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.registry import Collector

from remstate.errors import InvalidInput

__all__ = ["Metrics"]

_SIZE_BUCKETS = (1_024, 4_096, 16_384, 65_536, 262_144, 524_288, 786_432, 1_048_576)
_ITERATION_BUCKETS = (1, 2, 3, 5, 8, 10, 15, 20, 50, 100)
_SCAN_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    """The collectors, registered in ``registry`` (a new one when none is given).

    Several managers count in one registry by sharing one ``Metrics``
    (``StateManager(..., metrics=shared)``): a second ``Metrics`` in the same
    registry would register the same names twice.

    Raises:
        InvalidInput: ``registry`` already has these names (nothing is registered then).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True) if registry is None else registry
        # Built unregistered, then registered together: a clash leaves the registry as it was.
        r = None
        self.states_scanned = Counter(
            "remstate_cleanup_states_scanned", "Task states looked at by cleanup", registry=r
        )
        self.states_soft_deleted = Counter(
            "remstate_cleanup_states_soft_deleted", "Task states soft-deleted", registry=r
        )
        self.states_restored = Counter(
            "remstate_cleanup_states_restored",
            "Soft-deleted task states made active again",
            registry=r,
        )
        self.states_purged = Counter(
            "remstate_cleanup_states_purged",
            "Task states deleted after the grace period",
            registry=r,
        )
        self.orphans_removed = Counter(
            "remstate_cleanup_orphans_removed",
            "Segments and snapshots removed because no head refers to them",
            ["kind"],
            registry=r,
        )
        self.cleanup_errors = Counter(
            "remstate_cleanup_errors",
            "Cleanup decisions that failed, by error",
            ["kind"],
            registry=r,
        )
        self.scan_duration = Histogram(
            "remstate_cleanup_scan_duration_seconds",
            "Seconds one cleanup run took",
            buckets=_SCAN_BUCKETS,
            registry=r,
        )
        self.state_size = Histogram(
            "remstate_state_size_bytes",
            "Bytes of a head's data at each write",
            buckets=_SIZE_BUCKETS,
            registry=r,
        )
        self.iterations = Histogram(
            "remstate_iterations",
            "The iteration counter after each increment",
            buckets=_ITERATION_BUCKETS,
            registry=r,
        )
        self.conflicts_retried = Counter(
            "remstate_conflicts_retried",
            "Compare-and-swap writes retried after a Conflict",
            registry=r,
        )
        self.repairs = Counter(
            "remstate_repairs", "Problems repaired, by problem code", ["kind"], registry=r
        )
        self._register()

    def _register(self) -> None:
        collectors: list[Collector] = [
            self.states_scanned,
            self.states_soft_deleted,
            self.states_restored,
            self.states_purged,
            self.orphans_removed,
            self.cleanup_errors,
            self.scan_duration,
            self.state_size,
            self.iterations,
            self.conflicts_retried,
            self.repairs,
        ]
        done: list[Collector] = []
        try:
            for collector in collectors:
                self.registry.register(collector)
                done.append(collector)
        except ValueError as e:  # prometheus_client's "Duplicated timeseries"
            for collector in done:
                self.registry.unregister(collector)
            raise InvalidInput(
                f"this registry already has remstate's metrics ({e}); "
                "share one Metrics between managers instead"
            ) from e
