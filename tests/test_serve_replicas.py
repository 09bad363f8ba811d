"""Two real ``remstate serve`` processes sharing one store: one leads, and takeovers are timely.

Each replica is ``remstate serve`` in a process of its own, on a port of its
own on 127.0.0.1, with ``POD_NAME`` as a Deployment passes it. On the
Kubernetes store they elect through the Lease in the store's namespace
(client-go's default timings); on the embedded store, through the lock file
beside the database. Which replica leads is read from the Lease itself (or
the lock file), and each replica says so over HTTP: ``POST /api/v1/cleanup``
is 409 on the follower, naming the leader. Takeover times are measured from
the signal to the moment the Lease names the other replica (printed with
``-rP``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from remstate.service.filelock import FileLockElection, lock_path_for
from remstate.service.kube_api import call
from remstate.service.lease import LeaseTiming
from remstate.testing.controlplane import ControlPlane
from remstate.testing.processes import free_ports

TIMING = LeaseTiming()
MARGIN = 3.0
REMSTATE = str(Path(sys.executable).with_name("remstate"))


class Replica:
    """``remstate serve`` in a process of its own."""

    def __init__(self, name: str, store: str, env: dict[str, str], log: Path, *extra: str) -> None:
        self.name = name
        (self.port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [REMSTATE, "serve", "--store", store, "--port", str(self.port), *extra],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env, "POD_NAME": name},
        )

    def request(
        self, method: str, path: str, body: object = None, token: str | None = None
    ) -> tuple[int, dict[str, object]]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def wait_healthy(self, timeout: float = 60.0) -> None:
        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited: {self.log_path.read_text()}")
            try:
                return self.request("GET", "/healthz")[0] == 200
            except OSError:
                return False

        wait_until(healthy, timeout, f"{self.name} healthy")

    def cleanup(self, token: str | None = None) -> tuple[int, dict[str, object]]:
        return self.request("POST", "/api/v1/cleanup", {"dry_run": True}, token)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._log.close()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"no {what} within {timeout:.0f}s")
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.fixture
def replicas() -> Iterator[Callable[..., Replica]]:
    started: list[Replica] = []

    def start(name: str, store: str, env: dict[str, str], log: Path, *extra: str) -> Replica:
        replica = Replica(name, store, env, log, *extra)
        started.append(replica)
        return replica

    yield start
    for replica in started:
        replica.stop()


def lease_holder(plane: ControlPlane, namespace: str) -> str:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/remstate-leader"
    with plane.api_client() as api:
        return str(call(api, "GET", path)["spec"].get("holderIdentity") or "")


@pytest.fixture
def pair(
    controlplane: ControlPlane,
    controlplane_namespace: str,
    tmp_path: Path,
    replicas: Callable[..., Replica],
) -> tuple[Replica, Replica]:
    """replica-a leads, replica-b follows (it has read the Lease)."""
    env = {"KUBECONFIG": str(controlplane.kubeconfig)}
    store = f"kubernetes://{controlplane_namespace}"
    a = replicas("replica-a", store, env, tmp_path / "a.log", "--no-cleanup")
    a.wait_healthy()
    wait_until(lambda: a.cleanup()[0] == 200, 30, "replica-a leading")
    b = replicas("replica-b", store, env, tmp_path / "b.log", "--no-cleanup")
    b.wait_healthy()
    wait_until(lambda: b.cleanup()[0] == 409, 30, "replica-b following")
    return a, b


class TestKubernetesReplicas:
    def test_exactly_one_leads_and_the_follower_names_it(
        self, pair: tuple[Replica, Replica], controlplane: ControlPlane, controlplane_namespace: str
    ) -> None:
        """The Lease names replica-a; replica-b refuses cleanup with 409 naming replica-a."""
        a, b = pair
        time.sleep(2 * TIMING.retry_period)  # renewals and tries: the claim is that none flips
        assert lease_holder(controlplane, controlplane_namespace) == "replica-a"
        assert a.cleanup()[0] == 200
        status, body = b.cleanup()
        assert status == 409
        assert "the leader is replica-a" in str(body["detail"])

    def test_sigkill_the_leader_and_the_other_takes_over_within_the_lease_duration(
        self, pair: tuple[Replica, Replica], controlplane: ControlPlane, controlplane_namespace: str
    ) -> None:
        """After SIGKILL the Lease runs out on replica-b's clock; then it leads and cleans up."""
        a, b = pair
        time.sleep(TIMING.retry_period)
        a.proc.send_signal(signal.SIGKILL)
        took = wait_until(
            lambda: lease_holder(controlplane, controlplane_namespace) == "replica-b",
            TIMING.lease_duration + 2 * TIMING.retry_period + MARGIN,
            "takeover by replica-b",
        )
        print(f"remstate serve takeover after SIGKILL: {took:.1f}s")
        assert took >= TIMING.lease_duration - 2 * TIMING.retry_period
        assert took <= TIMING.lease_duration + 1.2 * TIMING.retry_period + MARGIN
        wait_until(lambda: b.cleanup()[0] == 200, 5, "replica-b accepting cleanup")

    def test_sigterm_the_leader_and_the_other_takes_over_within_a_retry_period(
        self, pair: tuple[Replica, Replica], controlplane: ControlPlane, controlplane_namespace: str
    ) -> None:
        """SIGTERM: replica-a releases the Lease and exits 0; replica-b takes it at its next try."""
        a, b = pair
        a.proc.send_signal(signal.SIGTERM)
        took = wait_until(
            lambda: lease_holder(controlplane, controlplane_namespace) == "replica-b",
            TIMING.lease_duration,
            "takeover by replica-b",
        )
        print(f"remstate serve takeover after SIGTERM: {took:.1f}s")
        assert took <= 1.2 * TIMING.retry_period + MARGIN
        assert a.proc.wait(timeout=30) == 0
        wait_until(lambda: b.cleanup()[0] == 200, 5, "replica-b accepting cleanup")

    def test_the_periodic_cleanup_runs_on_the_leader_only(
        self,
        controlplane: ControlPlane,
        controlplane_namespace: str,
        tmp_path: Path,
        replicas: Callable[..., Replica],
    ) -> None:
        """Every 1 s on the leader, never on the follower: one run per interval, not per replica."""
        env = {"KUBECONFIG": str(controlplane.kubeconfig)}
        store = f"kubernetes://{controlplane_namespace}"
        a = replicas("replica-a", store, env, tmp_path / "a.log", "--cleanup-interval", "1s")
        a.wait_healthy()
        wait_until(lambda: a.cleanup()[0] == 200, 30, "replica-a leading")
        b = replicas("replica-b", store, env, tmp_path / "b.log", "--cleanup-interval", "1s")
        b.wait_healthy()
        time.sleep(5)
        for replica in (b, a):
            replica.proc.send_signal(signal.SIGTERM)
            assert replica.proc.wait(timeout=30) == 0
        runs = {r.name: cleanup_runs(r) for r in (a, b)}
        print(f"periodic cleanup runs in about 6 s at a 1 s interval: {runs}")
        assert runs["replica-b"] == [], runs
        assert len(runs["replica-a"]) == 1, runs  # started once, never handed over
        assert 4 <= runs["replica-a"][0] <= 9, runs


def cleanup_runs(replica: Replica) -> list[int]:
    """The runs of each period this replica ran the cleanup loop, from its log."""
    log = replica.log_path.read_text()
    return [int(n) for n in re.findall(r"stopped after (\d+) runs", log)]


class TestEmbeddedReplicas:
    def test_one_leads_by_the_file_lock_and_a_kill_hands_over(
        self, tmp_path: Path, replicas: Callable[..., Replica]
    ) -> None:
        """Two replicas on one database: the lock file names the leader; SIGKILL moves it."""
        database = tmp_path / "state.db"
        store = f"sqlite://{database}"
        env = {"REMSTATE_RETRY_PERIOD": "0.5"}
        a = replicas("replica-a", store, env, tmp_path / "a.log", "--no-cleanup")
        a.wait_healthy()
        wait_until(lambda: a.cleanup()[0] == 200, 30, "replica-a leading")
        b = replicas("replica-b", store, env, tmp_path / "b.log", "--no-cleanup")
        b.wait_healthy()
        observer = FileLockElection(lock_path_for(database), identity="observer")
        assert observer.holder() == "replica-a"
        status, body = b.cleanup()
        assert status == 409
        assert "replica-a" in str(body["detail"])
        a.proc.send_signal(signal.SIGKILL)
        took = wait_until(lambda: observer.holder() == "replica-b", 10, "takeover by replica-b")
        print(f"remstate serve (embedded) takeover after SIGKILL: {took:.2f}s")
        assert took <= 0.5 + MARGIN
        wait_until(lambda: b.cleanup()[0] == 200, 5, "replica-b accepting cleanup")


class TestClusterAuthInServe:
    def test_in_a_pod_every_request_needs_a_token_rbac_decides(
        self,
        controlplane: ControlPlane,
        controlplane_namespace: str,
        tmp_path: Path,
        replicas: Callable[..., Replica],
    ) -> None:
        """With KUBERNETES_SERVICE_HOST set, serve authorizes with the cluster: 401, 403, 200."""
        env = {"KUBECONFIG": str(controlplane.kubeconfig), "KUBERNETES_SERVICE_HOST": "127.0.0.1"}
        a = replicas(
            "replica-a",
            f"kubernetes://{controlplane_namespace}",
            env,
            tmp_path / "a.log",
            "--no-cleanup",
        )
        a.wait_healthy()
        assert a.request("GET", "/api/v1/tasks/42")[0] == 401
        status, body = a.request("GET", "/api/v1/tasks/42", token=controlplane.tokens["nobody"])
        assert status == 403
        assert "nobody may not get configmaps" in str(body["detail"])
        status, _ = a.request("POST", "/api/v1/tasks/42/iterations", {}, controlplane.admin_token)
        assert status in (200, 201)
        status, body = a.request("GET", "/readyz")
        assert status == 200, body  # the admin has every permission the service uses
        assert "permission: update leases.coordination.k8s.io" in json.dumps(body)
        # /metrics is not a probe: in a cluster it needs a token that may get configmaps.
        assert a.request("GET", "/metrics", token=controlplane.tokens["nobody"])[0] == 403
        scrape = urllib.request.Request(  # noqa: S310
            a.url + "/metrics", headers={"Authorization": f"Bearer {controlplane.admin_token}"}
        )
        with urllib.request.urlopen(scrape, timeout=10) as response:  # noqa: S310
            metrics = response.read().decode()
        assert 'remstate_auth_decisions_total{source="review"}' in metrics
