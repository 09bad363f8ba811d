"""Leader election with a ``coordination.k8s.io/v1`` Lease, through the store's own client.

The constraints this module lives under:

- **Our own client.** The official client's ``LeaseLock`` builds a client of
  its own; this elector sends its requests through the store's ``ApiClient``
  (``kube_api.call``), so the same server, credentials and errors apply.
- **client-go's algorithm and timings** (lease duration 15 s, renew deadline
  10 s, retry period 2 s, all configurable). Every retry period a replica
  reads the Lease and takes it when it is free (no holder) or expired, or
  renews it when it holds it. Every write is a compare-and-swap: a PUT with
  the resourceVersion just read, so of two replicas that both saw it
  expired, exactly one wins (the other gets a Conflict).
- **Expiry is judged on our own clock, never the holder's.** As client-go
  does, a Lease counts as expired when its record (holder, renewTime) has
  not changed for ``leaseDurationSeconds`` *as we observed it*, on our
  monotonic clock, so clock skew between replicas cannot hand the Lease over
  early. The price: a replica that starts while another holds the Lease waits
  a full lease duration after the last change it saw.
- **A leader that cannot renew stops leading** once its last successful renew
  is older than the renew deadline (shorter than the lease duration, so it
  stops before anyone else may take over); ``is_leader()`` says no from that
  moment on, and ``on_stopped_leading`` runs so the cleanup loop stops at once.
- **Release on a clean stop:** the holder writes an empty holder and a lease
  duration of 1 s, so the other replica takes over at its next retry.

The clock is injectable: the unit tests drive expiry and deadlines with a
fake clock against the real API server, without sleeping.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from remstate.errors import AlreadyExists, Conflict, InvalidInput, NotFound, StoreError
from remstate.service.checks import ReadinessCheck
from remstate.service.kube_api import call
from remstate.service.leadership import default_identity

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["DEFAULT_LEASE_NAME", "LeaseElection", "LeaseTiming"]

log = logging.getLogger(__name__)

DEFAULT_LEASE_NAME: Final = "remstate-leader"
_LEASES: Final = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
#: client-go's JitterFactor: a follower waits between 1 and 1.2 retry periods,
#: so followers do not all ask at the same instant.
_JITTER: Final = 0.2

Callback = Callable[[], object]


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    """The election's timings, in seconds (client-go's defaults).

    Attributes:
        lease_duration: how long a follower waits, after the record last
            changed, before it takes the Lease.
        renew_deadline: how long the leader keeps trying to renew before it
            stops leading; shorter than the lease duration.
        retry_period: how often every replica reads or renews the Lease.

    Raises:
        InvalidInput: a timing that is not positive, or not ordered
            ``lease_duration > renew_deadline > retry_period * 1.2``.
    """

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        for name in ("lease_duration", "renew_deadline", "retry_period"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise InvalidInput(f"{name} must be a positive number of seconds, not {value!r}")
        # client-go refuses the same orders: a leader must give up before a
        # follower may take over, and retry at least once within its deadline.
        if not self.lease_duration > self.renew_deadline:
            raise InvalidInput("the lease duration must be longer than the renew deadline")
        if not self.renew_deadline > self.retry_period * (1 + _JITTER):
            raise InvalidInput("the renew deadline must be longer than 1.2 retry periods")


def _micro_time(moment: datetime) -> str:
    """A MicroTime as the API server writes it (RFC 3339, six fraction digits, UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElection:
    """One replica's part in electing a leader through a Lease (the ``Leadership`` protocol).

    Args:
        api_client: the client to talk through (the store's); never closed here.
        namespace: where the Lease lives (the store's namespace).
        name: the Lease's name.
        identity: this replica's holder identity; ``POD_NAME``, else host and pid.
        timing: lease duration, renew deadline and retry period.
        clock: monotonic seconds; expiry and deadlines are judged on it.
        wall_clock: the time written into the Lease (acquireTime, renewTime),
            for people reading it.
        on_started_leading: called (in the election's thread) on becoming leader.
        on_stopped_leading: called on losing, giving up or releasing leadership.
    """

    def __init__(
        self,
        api_client: ApiClient,
        namespace: str,
        name: str = DEFAULT_LEASE_NAME,
        *,
        identity: str | None = None,
        timing: LeaseTiming | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_started_leading: Callback | None = None,
        on_stopped_leading: Callback | None = None,
    ) -> None:
        self._api = api_client
        self._path = _LEASES.format(namespace=namespace)
        self.name = name
        self.identity = identity or default_identity()
        self.timing = timing or LeaseTiming()
        self._clock = clock
        self._wall_clock = wall_clock
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._lock = threading.RLock()
        self._leading = False
        self._renewed_at = -math.inf
        #: The last Lease we read or wrote, and when (our clock) its record last changed.
        self._lease: dict[str, Any] | None = None
        self._record: tuple[Any, ...] | None = None
        self._observed_at = -math.inf
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the Leadership protocol ---------------------------------------------------------

    def start(self) -> None:
        """Take part in the election in a daemon thread: a first try at once, then every period."""
        with self._lock:
            if self._thread is not None:
                return
            self._stopping.clear()
            self._thread = threading.Thread(
                target=self._run, name=f"lease-{self.name}", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop taking part without giving the Lease back (it runs out); stop leading."""
        self._join()
        self._stop_leading()

    def release(self) -> None:
        """Stop taking part and give the Lease back, so another replica takes over at once."""
        self._join()
        with self._lock:
            if self._leading and self._lease is not None:
                lease = self._lease
                spec = dict(lease.get("spec") or {})
                spec.update(
                    holderIdentity="",
                    leaseDurationSeconds=1,
                    renewTime=_micro_time(self._wall_clock()),
                )
                # A Conflict or an outage: the Lease is someone else's, or it runs out.
                with contextlib.suppress(StoreError):
                    self._put({**lease, "spec": spec})
        self._stop_leading()

    # is_leader() and holder() take no lock: a request thread must not wait for a
    # round that is waiting for the API server. They read attributes the round
    # replaces whole, so each sees one round's values or the next one's.

    def is_leader(self) -> bool:
        """Whether this replica leads: it holds the Lease, renewed within the renew deadline."""
        leading, renewed_at = self._leading, self._renewed_at
        return leading and self._clock() - renewed_at < self.timing.renew_deadline

    def holder(self) -> str | None:
        """Who leads, as last seen: this replica, another, or None (free or expired)."""
        if self.is_leader():
            return self.identity
        lease = self._lease
        if lease is None:
            return None
        holder = (lease.get("spec") or {}).get("holderIdentity") or None
        if holder is None or holder == self.identity or self._expired(self._clock()):
            return None
        return str(holder)

    def readiness_checks(self) -> Sequence[ReadinessCheck]:
        """None of its own: the Lease permissions are among the service's permission checks."""
        return ()

    # -- one round of the election ---------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """One round: read the Lease; take it if free or expired, renew it if ours.

        Returns whether this replica leads afterwards. Never raises for the
        server's answers or an outage: a leader that cannot renew keeps leading
        until the renew deadline passes, then stops.
        """
        now = self._clock()
        with self._lock:
            try:
                won = self._round(now)
            except StoreError as e:
                log.warning("lease %s: %s", self.name, e)
                won = False
            if won:
                self._renewed_at = now
                if not self._leading:
                    self._leading = True
                    log.info("lease %s: %s started leading", self.name, self.identity)
                    self._notify(self._on_started)
            elif self._leading and not self._holds_record():
                self._stop_leading()
            elif self._leading and now - self._renewed_at >= self.timing.renew_deadline:
                log.warning("lease %s: no renew within the renew deadline", self.name)
                self._stop_leading()
            return self.is_leader()

    def _round(self, now: float) -> bool:
        if self._leading and self._lease is not None:
            # Renew with the version we wrote last: one PUT when nothing changed.
            try:
                self._put(self._renewed(self._lease, now))
                return True
            except Conflict:
                pass  # someone wrote it: read it and judge again
        try:
            lease = call(self._api, "GET", f"{self._path}/{self.name}")
        except NotFound:
            return self._create(now)
        # Timed from when the answer came, as client-go does: a slow GET must not
        # make a renewal it returns look older than it is (an early takeover).
        now = self._clock()
        self._observe(lease, now)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self.identity and not self._expired(now):
            return False
        try:
            self._put(self._renewed(lease, now))
        except Conflict:
            return False  # another replica took it first
        return True

    def _create(self, now: float) -> bool:
        wall = _micro_time(self._wall_clock())
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": math.ceil(self.timing.lease_duration),
                "acquireTime": wall,
                "renewTime": wall,
                "leaseTransitions": 0,
            },
        }
        try:
            created = call(self._api, "POST", self._path, body=body)
        except AlreadyExists:
            return False
        self._observe(created, now)
        return True

    def _renewed(self, lease: dict[str, Any], now: float) -> dict[str, Any]:
        """The Lease held by us, renewed now (acquired now if it was not ours)."""
        spec = dict(lease.get("spec") or {})
        wall = _micro_time(self._wall_clock())
        if spec.get("holderIdentity") != self.identity:
            spec["acquireTime"] = wall
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (
                1 if spec.get("holderIdentity") else 0
            )
        spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=math.ceil(self.timing.lease_duration),
            renewTime=wall,
        )
        return {**lease, "spec": spec}

    def _put(self, lease: dict[str, Any]) -> None:
        # The body carries metadata.resourceVersion: the server's compare-and-swap.
        written = call(self._api, "PUT", f"{self._path}/{self.name}", body=lease)
        self._observe(written, self._clock())

    def _observe(self, lease: dict[str, Any], now: float) -> None:
        spec = lease.get("spec") or {}
        record = (
            spec.get("holderIdentity"),
            spec.get("renewTime"),
            spec.get("leaseDurationSeconds"),
        )
        if record != self._record:
            self._record = record
            self._observed_at = now
        self._lease = lease

    def _expired(self, now: float) -> bool:
        spec = (self._lease or {}).get("spec") or {}
        duration = spec.get("leaseDurationSeconds") or self.timing.lease_duration
        return bool(self._observed_at + float(duration) <= now)

    def _holds_record(self) -> bool:
        spec = (self._lease or {}).get("spec") or {}
        return bool(spec.get("holderIdentity") == self.identity)

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            leading = self.try_acquire_or_renew()
            self._stopping.wait(self._next_try(leading))

    def _next_try(self, leading: bool) -> float:
        """Seconds to the next round: a leader renews every period; followers spread out.

        A follower also wakes when the Lease it watches would expire, if that
        comes sooner: a dead leader's place is then taken one lease duration
        after the last renewal seen, not up to a retry period later.
        """
        period = self.timing.retry_period
        if leading:
            return period
        wait = period * (1 + random.random() * _JITTER)  # noqa: S311 (jitter, not secrets)
        with self._lock:
            spec = (self._lease or {}).get("spec") or {}
            if spec.get("holderIdentity") and spec.get("holderIdentity") != self.identity:
                duration = float(spec.get("leaseDurationSeconds") or self.timing.lease_duration)
                until_expiry = self._observed_at + duration - self._clock()
                if 0 < until_expiry < wait:
                    # A hair past expiry: at it exactly, the Lease is not yet expired.
                    wait = until_expiry + 0.01
        return wait

    def _join(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._stopping.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _stop_leading(self) -> None:
        with self._lock:
            if not self._leading:
                return
            self._leading = False
            self._renewed_at = -math.inf
            log.info("lease %s: %s stopped leading", self.name, self.identity)
            self._notify(self._on_stopped)

    def _notify(self, callback: Callback | None) -> None:
        if callback is None:
            return
        try:
            callback()
        except Exception:
            log.exception("lease %s: a leadership callback failed", self.name)
