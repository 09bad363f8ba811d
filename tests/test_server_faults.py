"""Server errors that retrying will not mend: a real etcd that is out of space.

A control plane of this module's own runs etcd with a tiny
``--quota-backend-bytes`` and is filled until etcd's space alarm fires: from
then on every write fails with "etcdserver: mvcc: database space exceeded"
(HTTP 500) until an operator compacts, defragments and disarms it. remstate
must say so at once (``ServerFault``, exit 10), not retry for its whole
deadline and then blame contention (exit 5).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from remstate.cli import Exit, main
from remstate.errors import ServerFault, Unavailable
from remstate.manager import StateManager
from remstate.retry import RetryPolicy
from remstate.store.kubernetes import KubernetesStore, error_from_status
from remstate.testing.controlplane import ControlPlane
from tests.backends import CountingStore

#: etcd's quota: room for what the API server writes when it starts, and a few MB more.
QUOTA = 8_000_000
FULL = "etcdserver: mvcc: database space exceeded"


def _fill(plane: ControlPlane) -> None:
    """Write 900 KB ConfigMaps until etcd refuses for want of space."""
    with plane.api_client() as api:
        core = client.CoreV1Api(api)
        for i in range(4 * QUOTA // 900_000):
            body = client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name=f"fill-{i}"), data={"v": "x" * 900_000}
            )
            try:
                core.create_namespaced_config_map("default", body)
            except ApiException as e:
                if "database space exceeded" not in str(e.body):
                    raise
                return
    raise AssertionError(f"etcd took {4 * QUOTA} bytes without its space alarm")


@pytest.fixture(scope="module")
def full_plane() -> Iterator[ControlPlane]:
    """A control plane whose etcd is full; the task ``before`` was written before it filled."""
    with ControlPlane.start(etcd_quota_bytes=QUOTA) as plane:
        with manager_on(plane) as manager:
            manager.increment_iteration("before")
        _fill(plane)
        yield plane


@contextlib.contextmanager
def manager_on(plane: ControlPlane, *, counting: bool = False) -> Iterator[StateManager]:
    with plane.api_client() as api:
        store = KubernetesStore("default", api_client=api)
        yield StateManager(
            CountingStore(store) if counting else store,  # type: ignore[arg-type]
            retry=RetryPolicy(deadline=30),
        )


class TestDatabaseSpaceExceeded:
    def test_a_write_raises_server_fault_without_retrying(self, full_plane: ControlPlane) -> None:
        """The first refusal is final: ServerFault, after one request, naming etcd's reason."""
        with manager_on(full_plane, counting=True) as manager:
            with pytest.raises(ServerFault) as caught:
                manager.increment_iteration("new")
            calls = manager.store.calls  # type: ignore[attr-defined]
        assert calls == ["get", "create"]
        assert FULL in str(caught.value)
        assert caught.value.status.code == 500

    def test_an_existing_task_refuses_its_write_too(self, full_plane: ControlPlane) -> None:
        """A replace of an existing task is refused the same way, once."""
        with manager_on(full_plane, counting=True) as manager:
            with pytest.raises(ServerFault):
                manager.increment_iteration("before")
            calls = manager.store.calls  # type: ignore[attr-defined]
        assert calls == ["get", "replace"]

    def test_reads_still_work(self, full_plane: ControlPlane) -> None:
        """A full etcd still serves reads: the store is not 'unavailable'."""
        with manager_on(full_plane) as manager:
            assert manager.get_state("before").iteration == 1

    def test_the_cli_exits_10_with_one_line(
        self,
        full_plane: ControlPlane,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """``remstate increment`` exits 10 at once, with one line that says etcd is full."""
        monkeypatch.setenv("KUBECONFIG", str(full_plane.kubeconfig))
        monkeypatch.delenv("REMSTATE_TIMEOUT", raising=False)
        code = main(["-s", "kubernetes://default", "increment", "before"])
        lines = capsys.readouterr().err.splitlines()
        assert code == Exit.SERVER_FAULT
        assert len(lines) == 1
        assert lines[0].startswith("remstate: ")
        assert FULL in lines[0]


@pytest.mark.parametrize(
    ("code", "message", "expected", "maybe_applied"),
    [
        (500, FULL, ServerFault, False),
        (500, "etcdserver: too many operations in txn request (max 128)", ServerFault, False),
        (501, "not implemented", ServerFault, False),
        (500, "etcdserver: request timed out", Unavailable, True),
        (502, "bad gateway", Unavailable, True),
        (503, "the server is shutting down", Unavailable, False),
        (504, "Timeout: request did not complete within the allotted timeout", Unavailable, True),
        (429, "too many requests", Unavailable, False),
    ],
)
def test_server_errors_are_classified(
    code: int, message: str, expected: type, maybe_applied: bool
) -> None:
    """Permanent server errors are ServerFault; a transient one says if a write may have applied."""
    body = {"kind": "Status", "apiVersion": "v1", "code": code, "message": message}
    error = error_from_status(code, body)
    assert type(error) is expected
    assert message in str(error)
    if isinstance(error, Unavailable):
        assert error.maybe_applied is maybe_applied
