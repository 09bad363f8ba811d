"""The service in the path: increments through ``remstate serve`` ÷ the library called directly.

``remstate serve`` runs as a real subprocess on 127.0.0.1, on the Kubernetes
store of a namespace of its own, with ``KUBERNETES_SERVICE_HOST`` set as in
a pod: every request is authorized by the cluster (``KubernetesAuthorizer``:
TokenReview, then SubjectAccessReview, cached 10 s). The clients present
the token of a ServiceAccount (TokenRequest) bound to a Role on ConfigMaps.

Both sides use 8 threads in one process, each incrementing a task of its
own (no contention between them: the figure is the path's cost, not the
turns'), the same count of increments each, on fresh tasks created with no
iteration limit in reach:

- **service**: ``POST /api/v1/tasks/{id}/iterations`` over one keep-alive
  ``http.client`` connection per thread, with the bearer token;
- **library**: ``StateManager.increment_iteration`` on one shared manager,
  as the service holds one.

Sides alternate (library, service, service, library...). The auth check's
own cost with its cache warm: ``KubernetesAuthorizer.check`` timed in this
process, on the same token, after one check has filled the cache.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from kubernetes import client

from bench.common import CountingApiClient, Target, median, now
from bench.peers import UNREACHABLE_MAX
from remstate import StateManager
from remstate.service.kube_auth import KubernetesAuthorizer
from remstate.testing.controlplane import ControlPlane
from remstate.testing.processes import free_ports

__all__ = ["ServiceResult", "measure_service"]

THREADS: Final = 8
ACCOUNT: Final = "bench-client"
VERBS: Final = ["get", "list", "create", "update", "patch", "delete"]
_REMSTATE = str(Path(sys.executable).with_name("remstate"))


@dataclass(slots=True)
class Side:
    increments: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    samples: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.increments / self.seconds if self.seconds else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "increments": self.increments,
            "seconds": self.seconds,
            "per_s": self.rate,
            "median_latency_s": median(self.latencies),
            "errors": self.errors,
            "error_samples": self.samples[:3],
        }


@dataclass(slots=True)
class ServiceResult:
    threads: int
    service: Side = field(default_factory=Side)
    library: Side = field(default_factory=Side)
    auth_checks: int = 0
    auth_seconds: float = 0.0
    serve_startup_seconds: float = 0.0

    @property
    def ratio(self) -> float:
        return self.service.rate / self.library.rate

    @property
    def auth_per_check(self) -> float:
        return self.auth_seconds / self.auth_checks if self.auth_checks else float("nan")

    @property
    def auth_share(self) -> float:
        """The warm check's time ÷ a request's time through the service (its median)."""
        return self.auth_per_check / median(self.service.latencies)

    def to_dict(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "service": self.service.to_dict(),
            "library": self.library.to_dict(),
            "ratio": self.ratio,
            "auth_checks": self.auth_checks,
            "auth_per_check_s": self.auth_per_check,
            "auth_share_of_request": self.auth_share,
            "serve_startup_seconds": self.serve_startup_seconds,
        }


def _service_account(api: client.ApiClient, namespace: str) -> str:
    """A ServiceAccount with a Role on ConfigMaps in ``namespace``; its TokenRequest token."""
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    meta = client.V1ObjectMeta(name=ACCOUNT)
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata=meta))
    rule = client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=VERBS)
    rbac.create_namespaced_role(namespace, client.V1Role(metadata=meta, rules=[rule]))
    subject = client.RbacV1Subject(kind="ServiceAccount", name=ACCOUNT, namespace=namespace)
    ref = client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=ACCOUNT)
    rbac.create_namespaced_role_binding(
        namespace, client.V1RoleBinding(metadata=meta, role_ref=ref, subjects=[subject])
    )
    spec = client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    issued = core.create_namespaced_service_account_token(
        ACCOUNT, namespace, client.AuthenticationV1TokenRequest(spec=spec)
    )
    assert issued.status is not None  # the API server answers a TokenRequest with its token
    return str(issued.status.token)


class _Serve:
    """``remstate serve`` in a process of its own, stopped (by its handle) on exit."""

    def __init__(self, plane: ControlPlane, namespace: str) -> None:
        (self.port,) = free_ports(1)
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        env = {
            **os.environ,
            "KUBECONFIG": str(plane.kubeconfig),
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",  # as in a pod: RBAC decides
            "POD_NAME": "bench-serve",
        }
        argv = [_REMSTATE, "serve", "--store", f"kubernetes://{namespace}"]
        argv += ["--port", str(self.port), "--no-cleanup"]
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def request(
        self, conn: http.client.HTTPConnection, method: str, path: str, token: str
    ) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn.request(method, path, body=b"{}" if method == "POST" else None, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def wait(self, token: str, timeout: float = 90.0) -> None:
        """Until a request with the token is answered 200 (serve up, the Role in force)."""
        deadline = now() + timeout
        last = ""
        while now() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                conn = self.connect()
                status, body = self.request(conn, "GET", "/api/v1/tasks?limit=1", token)
                conn.close()
                if status == 200:
                    return
                last = f"HTTP {status}: {body[:200]!r}"
            except OSError as e:
                last = str(e)
            time.sleep(0.2)
        self._log.seek(0)
        tail = self._log.read()[-2000:].decode(errors="replace")
        raise RuntimeError(f"remstate serve not ready ({last}); its log:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _threads(work: Callable[[int], None], side: Side) -> None:
    """``THREADS`` threads running ``work(index)``, started together; the side's wall time."""
    errors: list[BaseException] = []
    gate = threading.Barrier(THREADS + 1)

    def run(i: int) -> None:
        gate.wait()
        try:
            work(i)
        # BLE001: a thread's failure is reported, the others finish.
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    gate.wait()
    began = now()
    for t in threads:
        t.join()
    side.seconds += now() - began
    side.errors += len(errors)
    side.samples += [f"{type(e).__name__}: {str(e)[:200]}" for e in errors]


def measure_service(  # noqa: PLR0915 - the serve process's life and both sides, read whole
    plane: ControlPlane, *, increments: int, rounds: int, auth_checks: int
) -> ServiceResult:
    """The service's and the library's increments per second; the warm auth check's cost."""
    namespace = plane.create_namespace("service")
    result = ServiceResult(threads=THREADS)
    admin = plane.api_client()
    token = _service_account(admin, namespace)
    api = CountingApiClient(Target.of(plane, namespace).configuration())
    manager = StateManager(api_client=api, namespace=namespace, max_iterations=UNREACHABLE_MAX)
    per_thread = max(1, increments // THREADS)
    began = now()
    serve = _Serve(plane, namespace)
    try:
        serve.wait(token)
        result.serve_startup_seconds = now() - began
        lock = threading.Lock()

        def library(tag: str) -> Callable[[int], None]:
            def work(i: int) -> None:
                task = f"{tag}-{i}"
                for _ in range(per_thread):
                    t0 = now()
                    manager.increment_iteration(task)
                    with lock:
                        result.library.latencies.append(now() - t0)
                        result.library.increments += 1

            return work

        def service(tag: str) -> Callable[[int], None]:
            def work(i: int) -> None:
                conn = serve.connect()
                path = f"/api/v1/tasks/{tag}-{i}/iterations"
                try:
                    for _ in range(per_thread):
                        t0 = now()
                        status, body = serve.request(conn, "POST", path, token)
                        if status not in (200, 201):
                            raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
                        with lock:
                            result.service.latencies.append(now() - t0)
                            result.service.increments += 1
                finally:
                    conn.close()

            return work

        for r in range(max(1, rounds)):
            order = ("library", "service") if r % 2 == 0 else ("service", "library")
            for which in order:
                tag = f"{which}-r{r}"
                # Fresh tasks with no limit in reach; each thread's connection warmed
                # (and the auth cache filled) by reading its task once.
                for i in range(THREADS):
                    manager.get_or_create_state(f"{tag}-{i}")
                if which == "library":
                    _threads(library(tag), result.library)
                else:
                    warm = serve.connect()
                    serve.request(warm, "GET", f"/api/v1/tasks/{tag}-0", token)
                    warm.close()
                    _threads(service(tag), result.service)
        authorizer = KubernetesAuthorizer(admin, namespace)
        authorizer.check(token, ["update"])  # the reviews, once: the cache is warm after
        t0 = now()
        for _ in range(auth_checks):
            authorizer.check(token, ["update"])
        result.auth_seconds = now() - t0
        result.auth_checks = auth_checks
        return result
    finally:
        serve.stop()
        manager.close()
        api.close()
        admin.close()  # type: ignore[no-untyped-call]  # the client's methods carry no types


if __name__ == "__main__":  # a quick look on its own: python -m bench.service
    with ControlPlane.start() as p:
        print(json.dumps(measure_service(p, increments=160, rounds=1, auth_checks=1000).to_dict()))
