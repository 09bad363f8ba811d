"""Leader election between real processes: exactly one leads, and takeovers are timely.

Two electors (``tests/electors.py``) run as separate processes on one real
control plane (the Lease, with client-go's default timings) or one lock file.
The takeover times are measured from the signal to the moment the Lease
names the other process (printed with ``-rP``); the bounds asserted are the
design's, plus a margin for a busy machine:

- SIGKILL: the Lease runs out, about one lease duration after the last
  renewal the follower saw (never before), so between ``lease - retry`` and
  ``lease + 1.2 retry`` periods after the kill;
- SIGTERM: the leader releases the Lease, so the follower takes it at its
  next try, within 1.2 retry periods.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from remstate.service.filelock import FileLockElection, lock_path_for
from remstate.service.kube_api import call
from remstate.service.lease import LeaseTiming
from remstate.testing.controlplane import ControlPlane

TIMING = LeaseTiming()
#: Seconds allowed beyond the design's bound for a busy 2-core machine.
MARGIN = 3.0
FILE_RETRY = 0.5
ROOT = Path(__file__).resolve().parent.parent


class Child:
    """One elector process and its printed events."""

    def __init__(self, argv: list[str], out: Path) -> None:
        self.out = out
        self._log = out.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.electors", *argv],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    def lines(self) -> list[str]:
        return self.out.read_text().split()

    def wait_for(self, word: str, timeout: float = 60.0) -> None:
        wait_until(lambda: word in self.lines(), timeout, f"{word!r} from {self.out.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._log.close()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll every 50 ms; return the seconds waited."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"no {what} within {timeout:.0f}s")
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.fixture
def children() -> Iterator[Callable[[list[str], Path], Child]]:
    started: list[Child] = []

    def start(argv: list[str], out: Path) -> Child:
        child = Child(argv, out)
        started.append(child)
        return child

    yield start
    for child in started:
        child.stop()


def holder_of(plane: ControlPlane, namespace: str) -> str:
    with plane.api_client() as api:
        lease = call(
            api,
            "GET",
            f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/remstate-leader",
        )
    return str(lease["spec"].get("holderIdentity") or "")


def two_lease_electors(
    plane: ControlPlane, namespace: str, tmp_path: Path, start: Callable[[list[str], Path], Child]
) -> tuple[Child, Child]:
    """A leads, B follows and has seen A's record."""
    kubeconfig = str(plane.write_kubeconfig(tmp_path / "kubeconfig", namespace=namespace))
    a = start(["lease", kubeconfig, namespace, "a"], tmp_path / "a.out")
    a.wait_for("started")
    b = start(["lease", kubeconfig, namespace, "b"], tmp_path / "b.out")
    b.wait_for("ready")
    return a, b


class TestLeaseProcesses:
    def test_exactly_one_of_two_leads(
        self,
        controlplane: ControlPlane,
        controlplane_namespace: str,
        tmp_path: Path,
        children: Callable[[list[str], Path], Child],
    ) -> None:
        """Two processes started together: one leads, the other follows, for several renewals."""
        kubeconfig = str(
            controlplane.write_kubeconfig(tmp_path / "kubeconfig", namespace=controlplane_namespace)
        )
        pair = [
            children(["lease", kubeconfig, controlplane_namespace, name], tmp_path / f"{name}.out")
            for name in ("a", "b")
        ]
        for child in pair:
            child.wait_for("ready")
        time.sleep(
            3 * TIMING.retry_period
        )  # several renewals and tries: the claim is that none flips
        leaders = [c for c in pair if "started" in c.lines()]
        assert len(leaders) == 1
        assert all("stopped" not in c.lines() for c in pair)
        assert holder_of(controlplane, controlplane_namespace) == leaders[0].out.stem

    def test_sigkill_the_leader_and_the_other_takes_over_within_the_lease_duration(
        self,
        controlplane: ControlPlane,
        controlplane_namespace: str,
        tmp_path: Path,
        children: Callable[[list[str], Path], Child],
    ) -> None:
        """After SIGKILL the Lease runs out on the follower's clock: never early, never late."""
        a, b = two_lease_electors(controlplane, controlplane_namespace, tmp_path, children)
        time.sleep(TIMING.retry_period)  # b has seen at least one of a's renewals
        a.proc.send_signal(signal.SIGKILL)
        took = wait_until(
            lambda: holder_of(controlplane, controlplane_namespace) == "b",
            TIMING.lease_duration + 2 * TIMING.retry_period + MARGIN,
            "takeover by b",
        )
        print(
            f"lease takeover after SIGKILL: {took:.1f}s (lease duration {TIMING.lease_duration}s)"
        )
        assert took >= TIMING.lease_duration - 2 * TIMING.retry_period
        assert took <= TIMING.lease_duration + 1.2 * TIMING.retry_period + MARGIN
        b.wait_for("started", timeout=5)

    def test_sigterm_the_leader_and_the_other_takes_over_within_a_retry_period(
        self,
        controlplane: ControlPlane,
        controlplane_namespace: str,
        tmp_path: Path,
        children: Callable[[list[str], Path], Child],
    ) -> None:
        """A leader stopped cleanly releases the Lease: the follower takes it at its next try."""
        a, _ = two_lease_electors(controlplane, controlplane_namespace, tmp_path, children)
        a.proc.send_signal(signal.SIGTERM)
        took = wait_until(
            lambda: holder_of(controlplane, controlplane_namespace) == "b",
            TIMING.lease_duration,
            "takeover by b",
        )
        print(f"lease takeover after SIGTERM: {took:.1f}s (retry period {TIMING.retry_period}s)")
        assert took <= 1.2 * TIMING.retry_period + MARGIN
        assert a.proc.wait(timeout=10) == 0
        assert a.lines()[-2:] == ["stopped", "released"]


class TestFileLockProcesses:
    def test_one_leads_and_a_kill_hands_over_at_the_next_try(
        self, tmp_path: Path, children: Callable[[list[str], Path], Child]
    ) -> None:
        """Two processes on one lock file: one leads; SIGKILL it and the other takes the lock."""
        lock = str(lock_path_for(tmp_path / "state.db"))
        a = children(["file", lock, "a", str(FILE_RETRY)], tmp_path / "a.out")
        a.wait_for("started")
        b = children(["file", lock, "b", str(FILE_RETRY)], tmp_path / "b.out")
        b.wait_for("ready")
        time.sleep(2 * FILE_RETRY)
        assert "started" not in b.lines()
        observer = FileLockElection(lock, identity="observer")
        assert observer.holder() == "a"
        a.proc.send_signal(signal.SIGKILL)
        took = wait_until(lambda: observer.holder() == "b", 10, "takeover by b")
        print(f"file lock takeover after SIGKILL: {took:.2f}s (retry period {FILE_RETRY}s)")
        assert took <= FILE_RETRY + MARGIN
        b.wait_for("started", timeout=5)

    def test_sigterm_unlocks_for_the_other(
        self, tmp_path: Path, children: Callable[[list[str], Path], Child]
    ) -> None:
        """A clean stop unlocks at once, and the file no longer names the old leader."""
        lock = str(lock_path_for(tmp_path / "state.db"))
        a = children(["file", lock, "a", str(FILE_RETRY)], tmp_path / "a.out")
        a.wait_for("started")
        b = children(["file", lock, "b", str(FILE_RETRY)], tmp_path / "b.out")
        b.wait_for("ready")
        a.proc.send_signal(signal.SIGTERM)
        assert a.proc.wait(timeout=10) == 0
        b.wait_for("started", timeout=FILE_RETRY + MARGIN)
        assert FileLockElection(lock, identity="observer").holder() == "b"
