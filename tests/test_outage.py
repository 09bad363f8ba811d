"""Outages of the real API server and etcd: what a caller sees, and that deadlines hold.

These tests stop and restart kube-apiserver or etcd of a control plane of
their own (module-scoped), on the same ports, so no other test ever sees it
down; each outage lasts a few seconds. A server that never answers and a
relay that loses the server's answers are real sockets on 127.0.0.1
(``tests/faults.py``). Nothing is mocked.

The few bounds on elapsed time here are bounds, not benchmarks: an operation
must end within its deadline plus a margin far larger than any noise, where
the defect took several times the deadline.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from remstate.cli import Exit, main
from remstate.errors import OutcomeUnknown, RemstateError, StoreError, Unavailable
from remstate.manager import StateManager
from remstate.retry import RetryPolicy
from remstate.store import StoredObject
from remstate.store.kubernetes import KubernetesStore
from remstate.testing.controlplane import ControlPlane
from tests.backends import new_namespace
from tests.faults import Relay, hung_server

#: Seconds added to a deadline before an operation counts as having outlived it:
#: the defects took 4 request timeouts (120 s) or the whole attempt budget.
MARGIN = 15.0
#: The longest error line a person should have to read.
SHORT_LINE = 160


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    """A control plane of this module's own: its outages touch no other test."""
    with ControlPlane.start() as started:
        yield started


@pytest.fixture
def namespace(plane: ControlPlane) -> str:
    return new_namespace(plane, prefix="outage")


@contextlib.contextmanager
def manager_at(
    plane: ControlPlane,
    namespace: str,
    *,
    deadline: float,
    server: str | None = None,
    max_iterations: int = 10,
) -> Iterator[StateManager]:
    """A manager on the plane (or on ``server``, with the plane's CA and token)."""
    api = plane.api_client()
    if server is not None:
        api.configuration.host = server
    try:
        yield StateManager(
            KubernetesStore(namespace, api_client=api),
            retry=RetryPolicy(deadline=deadline),
            max_iterations=max_iterations,
        )
    finally:
        api.close()


def kubeconfig_for(plane: ControlPlane, server: str, directory: Path) -> Path:
    """A copy of the plane's kubeconfig that points at ``server``."""
    config = json.loads(plane.kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = server
    path = directory / "kubeconfig"
    path.write_text(json.dumps(config))
    return path


def run_cli(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    kubeconfig: Path,
    *args: str,
) -> tuple[int, list[str]]:
    """Run the command in-process; return its exit code and its stderr lines."""
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("REMSTATE_TIMEOUT", raising=False)
    code = main(list(args))
    return int(code), capsys.readouterr().err.splitlines()


def iteration_of(plane: ControlPlane, namespace: str, task_id: str) -> int:
    """The task's counter, read straight from the plane."""
    with manager_at(plane, namespace, deadline=30) as manager:
        return manager.get_state(task_id).iteration


# --- the API server is down -------------------------------------------------------------


@pytest.fixture(scope="class")
def apiserver_down(plane: ControlPlane) -> Iterator[str]:
    """The plane's API server is stopped for the tests of one class; yields its URL."""
    namespace = new_namespace(plane, prefix="down")
    plane.stop_apiserver()
    try:
        yield namespace
    finally:
        plane.start_apiserver()


class TestApiServerDown:
    def test_a_read_raises_unavailable_naming_server_and_cause(
        self, plane: ControlPlane, apiserver_down: str
    ) -> None:
        """A read that outlasts its deadline raises Unavailable itself, in one short line."""
        with (
            manager_at(plane, apiserver_down, deadline=1.5) as manager,
            pytest.raises(Unavailable) as caught,
        ):
            manager.get_state("42")
        assert type(caught.value) is Unavailable
        message = str(caught.value)
        assert "connection refused" in message
        assert plane.server in message
        assert len(message) <= SHORT_LINE
        assert caught.value.attempts > 1  # retried, then given up
        assert not caught.value.maybe_applied

    def test_a_write_that_was_never_sent_is_unavailable_not_unknown(
        self, plane: ControlPlane, apiserver_down: str
    ) -> None:
        """A refused connection sends nothing: the write raises Unavailable, not OutcomeUnknown."""
        with (
            manager_at(plane, apiserver_down, deadline=1.5) as manager,
            pytest.raises(Unavailable) as caught,
        ):
            manager.increment_iteration("42")
        assert type(caught.value) is Unavailable
        assert "connection refused" in str(caught.value)

    @pytest.mark.parametrize("command", [["get", "42"], ["increment", "42"]])
    def test_the_cli_exits_6_with_one_short_line(
        self,
        plane: ControlPlane,
        apiserver_down: str,
        command: list[str],
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The CLI says the store is unavailable, names the server and the cause, and exits 6."""
        code, lines = run_cli(
            capsys,
            monkeypatch,
            plane.kubeconfig,
            *("-s", f"kubernetes://{apiserver_down}", "--timeout", "1.5", *command),
        )
        assert code == Exit.UNAVAILABLE
        assert len(lines) == 1
        line = lines[0]
        assert line.startswith("remstate: the store is unavailable: ")
        assert "connection refused" in line
        assert plane.server in line
        assert "urllib3" not in line
        assert "HTTPSConnectionPool" not in line
        assert len(line) <= SHORT_LINE


# --- a server that accepts connections and never answers --------------------------------


class TestHungServer:
    def test_no_hidden_retry_below_the_store(self, plane: ControlPlane) -> None:
        """A caller's client with urllib3's default retries makes one connection per request."""
        with hung_server() as hung:
            configuration = client.Configuration(
                host=f"https://127.0.0.1:{hung.port}", ssl_ca_cert=str(plane.ca_file)
            )
            assert configuration.retries is None  # urllib3's default: 3 hidden retries
            with client.ApiClient(configuration) as api:
                store = KubernetesStore("default", api_client=api, request_timeout=0.5)
                with pytest.raises(Unavailable):
                    store.get("x")
            assert len(hung.accepted) == 1

    @pytest.mark.parametrize("operation", ["read", "write"])
    def test_an_operation_ends_within_its_deadline(
        self, plane: ControlPlane, operation: str
    ) -> None:
        """With the store's default timeouts (30 s), a 3 s deadline still ends the operation."""
        deadline = 3.0
        with hung_server() as hung:
            server = f"https://127.0.0.1:{hung.port}"
            with manager_at(plane, "default", deadline=deadline, server=server) as manager:
                began = time.monotonic()
                call = manager.get_state if operation == "read" else manager.increment_iteration
                with pytest.raises(Unavailable) as caught:
                    call("42")
                elapsed = time.monotonic() - began
        assert elapsed < deadline + MARGIN, f"took {elapsed:.1f}s"
        # The handshake never finished, so no request was sent: nothing may have committed.
        assert type(caught.value) is Unavailable
        assert server in str(caught.value)

    def test_the_cli_ends_within_its_timeout(
        self,
        plane: ControlPlane,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """``--timeout 2`` bounds a read from a hung server; it exits 6."""
        with hung_server() as hung:
            kubeconfig = kubeconfig_for(plane, f"https://127.0.0.1:{hung.port}", tmp_path)
            began = time.monotonic()
            args = ("-s", "kubernetes://default", "--timeout", "2", "get", "42")
            code, lines = run_cli(capsys, monkeypatch, kubeconfig, *args)
            elapsed = time.monotonic() - began
        assert elapsed < 2 + MARGIN, f"took {elapsed:.1f}s"
        assert code == Exit.UNAVAILABLE
        assert len(lines) == 1
        assert len(lines[0]) <= SHORT_LINE


# --- a write commits and its answer is lost ---------------------------------------------


def _configmap(name: str, value: str, resource_version: str = "") -> StoredObject:
    return StoredObject(name=name, data={"v": value}, resource_version=resource_version)


class TestLostAnswer:
    def test_a_put_whose_answer_is_lost_is_not_resent(
        self, plane: ControlPlane, namespace: str
    ) -> None:
        """The answer to a committed PUT is lost: Unavailable that may have applied, not Conflict.

        urllib3 used to send the PUT again, which met its own first copy's new
        resourceVersion and reported "Conflict: the object has been modified".
        """
        upstream = int(plane.server.rsplit(":", 1)[1])
        with Relay(upstream) as relay, plane.api_client() as api:
            api.configuration.host = f"https://127.0.0.1:{relay.port}"
            store = KubernetesStore(namespace, api_client=api, request_timeout=2)
            created = store.create(_configmap("lost", "1"))
            relay.lose_answers()  # the connection the create used, kept alive in the pool
            with pytest.raises(StoreError) as caught:
                store.replace(_configmap("lost", "2", created.resource_version))
            assert relay.lost > 0
        assert type(caught.value) is Unavailable, caught.value
        assert caught.value.maybe_applied
        with plane.api_client() as api:
            committed = KubernetesStore(namespace, api_client=api).get("lost")
        assert committed.data == {"v": "2"}

    def test_a_lost_answer_then_an_outage_is_outcome_unknown(
        self, plane: ControlPlane, namespace: str
    ) -> None:
        """An increment commits, its answer is lost, the API server stops: OutcomeUnknown."""
        upstream = int(plane.server.rsplit(":", 1)[1])
        failure: list[BaseException] = []
        with Relay(upstream) as relay:
            relay_url = f"https://127.0.0.1:{relay.port}"
            with manager_at(plane, namespace, deadline=4, server=relay_url) as manager:
                assert manager.increment_iteration("t") == 1  # and the connection stays pooled

                def increment() -> None:
                    try:
                        manager.increment_iteration("t")
                    except RemstateError as e:
                        failure.append(e)

                relay.lose_answers()
                writer = threading.Thread(target=increment)
                writer.start()
                try:
                    # The server's answer arrived at the relay: the write committed.
                    for _ in range(200):
                        if relay.lost:
                            break
                        time.sleep(0.05)
                    plane.stop_apiserver()
                finally:
                    writer.join(timeout=60)
                    plane.start_apiserver()
                lost = relay.lost
        assert lost > 0
        assert len(failure) == 1
        error = failure[0]
        assert isinstance(error, OutcomeUnknown), repr(error)
        assert "may have committed" in str(error)
        assert error.task_id == "t"
        assert iteration_of(plane, namespace, "t") == 2  # it did


# --- etcd stops and starts again under a writer -----------------------------------------


class TestEtcdDown:
    def test_a_write_sent_while_etcd_is_down_is_outcome_unknown(
        self, plane: ControlPlane, namespace: str
    ) -> None:
        """The API server takes the PUT and cannot answer: past the deadline, OutcomeUnknown."""
        with manager_at(plane, namespace, deadline=3) as manager:
            manager.increment_iteration("u")
            plane.stop_etcd()
            try:
                with pytest.raises(Unavailable) as caught:
                    manager.increment_iteration("u")
            finally:
                plane.start_etcd()
        assert isinstance(caught.value, OutcomeUnknown), repr(caught.value)
        assert plane.server in str(caught.value)


class TestEtcdRestart:
    def test_a_writer_rides_out_an_etcd_restart(self, plane: ControlPlane, namespace: str) -> None:
        """etcd down for 3 s under a writer: no failed increment, none lost, none doubled."""
        acknowledged: list[int] = []
        errors: list[BaseException] = []
        done = threading.Event()

        def write() -> None:
            with manager_at(plane, namespace, deadline=60, max_iterations=10_000) as manager:
                while not done.is_set():
                    try:
                        acknowledged.append(manager.increment_iteration("e"))
                    except RemstateError as e:
                        errors.append(e)
                        return

        def wait_for(count: int) -> None:
            for _ in range(2400):
                if len(acknowledged) >= count or not writer.is_alive():
                    return
                time.sleep(0.05)

        writer = threading.Thread(target=write)
        writer.start()
        try:
            wait_for(5)
            plane.stop_etcd()
            time.sleep(3)
            plane.start_etcd()
            wait_for(len(acknowledged) + 5)
        finally:
            done.set()
            writer.join(timeout=120)
        assert errors == []
        assert len(acknowledged) >= 10
        assert acknowledged == list(range(1, len(acknowledged) + 1))
        assert iteration_of(plane, namespace, "e") == len(acknowledged)
