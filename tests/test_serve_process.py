"""``remstate serve`` as a real process: it serves, and SIGTERM stops it gracefully.

The request in flight is a real one: an increment whose write waits on the
embedded store's SQLite file, which the test holds locked. The test sees it
in flight in ``/metrics``, sends SIGTERM, sees the port refuse new
connections, then lets the write through: the request is answered 200, the
increment is stored, and the process exits 0 after releasing leadership.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from remstate import StateManager
from remstate.schema import object_name
from remstate.store.embedded import EmbeddedStore
from remstate.store.kubernetes import KubernetesStore
from remstate.testing.controlplane import ControlPlane
from remstate.testing.processes import free_ports, kill, spawn, tail

#: How long the process may take to answer at all, on a busy 2-core machine.
START = 60.0


class Served:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.log = log

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + START
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, tail(self.log, 40)
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.05)  # polling a process that starts: not a timed assertion
        raise AssertionError(f"remstate serve did not answer:\n{tail(self.log, 40)}")

    def refuses_connections(self) -> bool:
        with socket.socket() as sock:
            sock.settimeout(2)
            return sock.connect_ex(("127.0.0.1", self.port)) != 0


@contextlib.contextmanager
def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    port = free_ports(1)[0]
    log = tmp_path / "serve.log"
    argv = [sys.executable, "-m", "remstate.cli", "serve", "--port", str(port), *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with log.open("wb") as out:
        proc = spawn(argv, log=out, env=env, cwd=tmp_path)
        served = Served(proc, port, log)
        try:
            served.wait_until_up()
            yield served
        finally:
            kill(proc)


def metric(served: Served, name: str) -> float:
    """A sample without labels from the process's /metrics."""
    text = httpx.get(served.url + "/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def in_flight(served: Served) -> float:
    return metric(served, "remstate_http_requests_in_flight")


class TestServe:
    def test_serves_the_api_and_its_docs(self, tmp_path: Path) -> None:
        """The process answers the API, its OpenAPI document, and the probes."""
        db = tmp_path / "state.db"
        with serve(tmp_path, "--store", f"sqlite://{db}", "--no-cleanup") as served:
            r = httpx.post(served.url + "/api/v1/tasks/42/iterations", json={"op_id": "a"})
            assert r.json()["iteration"] == 1
            assert httpx.get(served.url + "/api/v1/tasks/42").json()["iteration"] == 1
            assert (
                "/api/v1/tasks/{task_id}" in httpx.get(served.url + "/openapi.json").json()["paths"]
            )
            assert httpx.get(served.url + "/readyz").status_code == 200
            served.proc.send_signal(signal.SIGTERM)
            assert served.proc.wait(timeout=30) == 0
        log = served.log.read_text()
        assert f"dashboard: http://127.0.0.1:{served.port}/;" in log
        assert f"API docs: http://127.0.0.1:{served.port}/docs" in log
        assert "leadership released" in log

    @pytest.mark.kubernetes
    def test_serves_a_kubernetes_namespace(
        self, tmp_path: Path, controlplane: ControlPlane, controlplane_namespace: str
    ) -> None:
        """On the real API server: the state is a ConfigMap, read back over HTTP; SIGTERM, 0."""
        store = f"kubernetes://{controlplane_namespace}"
        kubeconfig = {"KUBECONFIG": str(controlplane.kubeconfig)}
        with serve(tmp_path, "--store", store, "--no-cleanup", env=kubeconfig) as served:
            r = httpx.post(served.url + "/api/v1/tasks/42/iterations", json={"op_id": "a"})
            assert r.json()["iteration"] == 1
            got = httpx.get(served.url + "/api/v1/tasks/42")
            assert got.json()["iteration"] == 1
            with controlplane.api_client() as api:
                stored = KubernetesStore(controlplane_namespace, api_client=api).get(
                    object_name("42")
                )
            assert got.headers["etag"] == f'"{stored.resource_version}"'
            assert httpx.get(served.url + "/readyz").status_code == 200
            served.proc.send_signal(signal.SIGTERM)
            assert served.proc.wait(timeout=30) == 0

    def test_sigterm_finishes_the_request_in_flight_and_exits_0(self, tmp_path: Path) -> None:
        """SIGTERM: new connections refused, the request in flight answered, then exit 0."""
        db = tmp_path / "state.db"
        url = f"sqlite://{db}"
        with StateManager(EmbeddedStore(str(db))) as m:
            m.increment_iteration("42")
        with serve(tmp_path, "--store", url, "--no-cleanup", "--timeout", "120") as served:
            lock = sqlite3.connect(db, isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")
            answer: dict[str, Any] = {}

            def send() -> None:
                response = httpx.post(
                    served.url + "/api/v1/tasks/42/iterations", json={"op_id": "b"}, timeout=120
                )
                answer["status"] = response.status_code
                answer["body"] = response.json()

            sender = threading.Thread(target=send)
            sender.start()
            try:
                deadline = time.monotonic() + START
                # The /metrics request counts itself: the increment makes it 2.
                while in_flight(served) < 2:
                    assert time.monotonic() < deadline, tail(served.log, 40)
                    time.sleep(0.05)
                served.proc.send_signal(signal.SIGTERM)
                while not served.refuses_connections():
                    assert time.monotonic() < deadline, tail(served.log, 40)
                    time.sleep(0.05)
                assert sender.is_alive()
                assert served.proc.poll() is None  # waiting for the request in flight
            finally:
                lock.execute("ROLLBACK")
                lock.close()
            sender.join(timeout=120)
            assert answer == {
                "status": 200,
                "body": {"task_id": "42", "iteration": 2, "op_id": "b"},
            }
            assert served.proc.wait(timeout=60) == 0, tail(served.log, 40)
        with StateManager(EmbeddedStore(str(db))) as m:
            assert m.get_current_iteration("42") == 2
        assert "leadership released" in served.log.read_text()

    def test_the_leader_cleans_up_every_interval(self, tmp_path: Path) -> None:
        """With --cleanup-interval 1s, the cleanup's runs show in /metrics; SIGTERM stops it, 0."""
        db = tmp_path / "state.db"
        with StateManager(EmbeddedStore(str(db))) as m:
            m.increment_iteration("42")
        args = ("--store", f"sqlite://{db}", "--cleanup-interval", "1s")
        with serve(tmp_path, *args) as served:
            deadline = time.monotonic() + START
            while metric(served, "remstate_cleanup_states_scanned_total") < 2:
                assert time.monotonic() < deadline, tail(served.log, 40)
                time.sleep(0.2)  # polling a real process's loop, not a timed assertion
            served.proc.send_signal(signal.SIGTERM)
            assert served.proc.wait(timeout=60) == 0, tail(served.log, 40)
        log = served.log.read_text()
        assert "cleanup: every 1s" in log
        assert "the periodic cleanup starts" in log

    def test_a_token_file_guards_every_route_but_the_probes(self, tmp_path: Path) -> None:
        """With --token-file: no token 401 (WWW-Authenticate: Bearer), the token 200."""
        token = tmp_path / "token"
        token.write_text("t0ken\n")
        db = tmp_path / "state.db"
        args = ("--store", f"sqlite://{db}", "--no-cleanup", "--token-file", str(token))
        with serve(tmp_path, *args) as served:
            refused = httpx.get(served.url + "/api/v1/tasks")
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Bearer")
            auth = {"Authorization": "Bearer t0ken"}
            assert httpx.get(served.url + "/api/v1/tasks", headers=auth).status_code == 200
            assert httpx.get(served.url + "/readyz").status_code == 200
            served.proc.send_signal(signal.SIGTERM)
            assert served.proc.wait(timeout=30) == 0

    def test_a_taken_port_exits_1(self, tmp_path: Path) -> None:
        """The port in use: the process says so and exits 1, without serving."""
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            port = holder.getsockname()[1]
            argv = [sys.executable, "-m", "remstate.cli", "serve", "--port", str(port)]
            argv += ["--store", f"sqlite://{tmp_path / 'state.db'}", "--no-cleanup"]
            done = subprocess.run(argv, capture_output=True, timeout=START, check=False)
        assert done.returncode == 1, done.stderr.decode()
