"""Leader election with a Lease, one round at a time, against the real API server.

Each elector has a fake clock of its own, so expiry and the renew deadline
are driven without sleeping; every request goes to the real kube-apiserver.
The claims about processes (exactly one of two leads; takeover after SIGKILL
and after a clean stop) are in ``test_leader_processes.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from remstate.errors import InvalidInput
from remstate.service.kube_api import call
from remstate.service.lease import LeaseElection, LeaseTiming
from remstate.testing.controlplane import ControlPlane
from remstate.testing.processes import free_ports

TIMING = LeaseTiming(lease_duration=15, renew_deadline=10, retry_period=2)


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Events:
    """Records the leadership callbacks of one elector."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def started(self) -> None:
        self.seen.append("started")

    def stopped(self) -> None:
        self.seen.append("stopped")


@pytest.fixture
def api(controlplane: ControlPlane) -> Iterator[client.ApiClient]:
    with controlplane.api_client() as opened:
        yield opened


def elector(
    api: client.ApiClient, namespace: str, identity: str, clock: Clock, events: Events | None = None
) -> LeaseElection:
    return LeaseElection(
        api,
        namespace,
        identity=identity,
        timing=TIMING,
        clock=clock,
        on_started_leading=events.started if events else None,
        on_stopped_leading=events.stopped if events else None,
    )


def lease_spec(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    lease = call(
        api, "GET", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/remstate-leader"
    )
    spec: dict[str, Any] = lease["spec"]
    return spec


class TestLeaseTiming:
    @pytest.mark.parametrize(
        ("values", "words"),
        [
            ({"lease_duration": 0}, "positive"),
            ({"retry_period": -1}, "positive"),
            ({"renew_deadline": True}, "positive"),
            ({"lease_duration": "15"}, "positive"),
            ({"lease_duration": 10, "renew_deadline": 10}, "longer than the renew deadline"),
            ({"renew_deadline": 2.2, "retry_period": 2}, "1.2 retry periods"),
        ],
    )
    def test_refuses_timings_client_go_refuses(self, values: dict[str, Any], words: str) -> None:
        """Timings that are not positive, or not ordered as client-go demands, are InvalidInput."""
        with pytest.raises(InvalidInput, match=words):
            LeaseTiming(**values)

    def test_defaults_are_client_gos(self) -> None:
        """15 s, 10 s and 2 s, as client-go."""
        assert LeaseTiming() == LeaseTiming(15.0, 10.0, 2.0)


class TestLeaseElection:
    def test_first_elector_creates_the_lease_and_leads(
        self, api: client.ApiClient, controlplane_namespace: str
    ) -> None:
        """With no Lease, the first round creates it, held by us, and on_started_leading runs."""
        events = Events()
        a = elector(api, controlplane_namespace, "a", Clock(), events)
        assert a.try_acquire_or_renew()
        assert a.is_leader()
        assert a.holder() == "a"
        assert events.seen == ["started"]
        spec = lease_spec(api, controlplane_namespace)
        assert spec["holderIdentity"] == "a"
        assert spec["leaseDurationSeconds"] == 15
        assert spec["renewTime"].endswith("Z")
        assert len(spec["renewTime"]) == 27

    def test_a_fresh_lease_is_not_taken_and_its_holder_is_named(
        self, api: client.ApiClient, controlplane_namespace: str
    ) -> None:
        """A second elector does not take a Lease held and fresh; holder() names who has it."""
        a = elector(api, controlplane_namespace, "a", Clock())
        clock_b = Clock()
        b = elector(api, controlplane_namespace, "b", clock_b)
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
        clock_b.now += 14.9
        assert not b.try_acquire_or_renew()
        assert not b.is_leader()
        assert b.holder() == "a"
        assert lease_spec(api, controlplane_namespace)["holderIdentity"] == "a"

    def test_an_expired_lease_is_taken_and_the_old_leader_stops_at_once(
        self, api: client.ApiClient, controlplane_namespace: str
    ) -> None:
        """Unrenewed for the lease duration (on the follower's clock), it changes hands."""
        events_a, events_b = Events(), Events()
        a = elector(api, controlplane_namespace, "a", Clock(), events_a)
        clock_b = Clock()
        b = elector(api, controlplane_namespace, "b", clock_b, events_b)
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
        clock_b.now += 15
        assert b.try_acquire_or_renew()
        assert events_b.seen == ["started"]
        spec = lease_spec(api, controlplane_namespace)
        assert spec["holderIdentity"] == "b"
        assert spec["leaseTransitions"] == 1
        # a's next round sees b's record: it stops leading, its clock has not moved.
        assert not a.try_acquire_or_renew()
        assert events_a.seen == ["started", "stopped"]
        assert a.holder() == "b"

    def test_renewals_keep_the_followers_away(
        self, api: client.ApiClient, controlplane_namespace: str
    ) -> None:
        """Expiry counts from the last change the follower saw, not from its first look."""
        clock_a, clock_b = Clock(), Clock()
        a = elector(api, controlplane_namespace, "a", clock_a)
        b = elector(api, controlplane_namespace, "b", clock_b)
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
        for _ in range(5):
            clock_a.now += 2
            clock_b.now += 14
            assert a.try_acquire_or_renew()
            assert not b.try_acquire_or_renew()
        assert a.is_leader()

    def test_a_leader_that_cannot_renew_stops_at_the_renew_deadline(
        self, controlplane: ControlPlane, controlplane_namespace: str
    ) -> None:
        """An unreachable server: still leader before the deadline, not after; callback runs."""
        events = Events()
        clock = Clock()
        with controlplane.api_client() as api:
            a = elector(api, controlplane_namespace, "a", clock, events)
            assert a.try_acquire_or_renew()
            api.configuration.host = f"https://127.0.0.1:{free_ports(1)[0]}"
            clock.now += 9.9
            assert a.try_acquire_or_renew()  # the renew failed, the deadline has not passed
            clock.now += 0.1
            assert not a.is_leader()  # at the deadline, even before the next round
            assert events.seen == ["started"]
            assert not a.try_acquire_or_renew()
            assert events.seen == ["started", "stopped"]

    def test_release_hands_over_at_the_next_round(
        self, api: client.ApiClient, controlplane_namespace: str
    ) -> None:
        """A released Lease has no holder and a 1 s duration: the follower takes it at once."""
        events_a = Events()
        a = elector(api, controlplane_namespace, "a", Clock(), events_a)
        b = elector(api, controlplane_namespace, "b", Clock())
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
        a.release()
        assert events_a.seen == ["started", "stopped"]
        spec = lease_spec(api, controlplane_namespace)
        assert spec["holderIdentity"] is None or spec["holderIdentity"] == ""
        assert spec["leaseDurationSeconds"] == 1
        assert b.try_acquire_or_renew()  # its clock has not moved: no waiting for expiry
        assert lease_spec(api, controlplane_namespace)["holderIdentity"] == "b"

    def test_stop_keeps_the_lease_until_it_runs_out(
        self, api: client.ApiClient, controlplane_namespace: str
    ) -> None:
        """stop() gives up leading here but does not give the Lease back."""
        events = Events()
        a = elector(api, controlplane_namespace, "a", Clock(), events)
        assert a.try_acquire_or_renew()
        a.stop()
        assert not a.is_leader()
        assert events.seen == ["started", "stopped"]
        assert lease_spec(api, controlplane_namespace)["holderIdentity"] == "a"

    def test_a_caller_without_rights_never_leads_and_never_raises(
        self, controlplane: ControlPlane, controlplane_namespace: str
    ) -> None:
        """Forbidden on the Lease: the round says no; nothing escapes."""
        with controlplane.api_client(controlplane.tokens["nobody"]) as api:
            a = elector(api, controlplane_namespace, "a", Clock())
            assert not a.try_acquire_or_renew()
            assert not a.is_leader()
            assert a.holder() is None


class TestNextTry:
    def test_a_follower_wakes_when_the_lease_would_expire(
        self, api: client.ApiClient, controlplane_namespace: str
    ) -> None:
        """Near expiry the follower's next round comes at expiry, not a retry period later."""
        a = elector(api, controlplane_namespace, "a", Clock())
        clock_b = Clock()
        b = elector(api, controlplane_namespace, "b", clock_b)
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
        assert 2.0 <= b._next_try(leading=False) <= 2.4
        clock_b.now += 14.5
        assert b._next_try(leading=False) == pytest.approx(0.51)
        assert a._next_try(leading=True) == 2.0
