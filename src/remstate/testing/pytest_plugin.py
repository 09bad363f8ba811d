"""pytest fixtures for a real kube-apiserver and etcd: test your agents as remstate tests itself.

Installed with remstate (a ``pytest11`` entry point), so the fixtures are there
in any test suite of an environment that has remstate and its ``testing``
extra; nothing starts until a test asks for one:

- ``controlplane``: one :class:`ControlPlane` for the session (built or found
  in the cache first; started in about 3 s, stopped at the end).
- ``controlplane_namespace``: a fresh namespace for this test.
- ``controlplane_api_client``: an admin ``kubernetes.client.ApiClient``, closed after the test.
- ``controlplane_kubeconfig``: a kubeconfig file whose current context is the
  admin in this test's namespace: for code that reads ``$KUBECONFIG``.

Disable with ``-p no:remstate.testing.pytest_plugin``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from remstate.testing.controlplane import ControlPlane

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = [
    "controlplane",
    "controlplane_api_client",
    "controlplane_kubeconfig",
    "controlplane_namespace",
]

#: What the session's plane was, for the summary at the end.
_STARTED: list[str] = []


@pytest.fixture(scope="session")
def controlplane() -> Iterator[ControlPlane]:
    """A real kube-apiserver and etcd on 127.0.0.1 for the whole session."""
    from kubernetes import client

    with ControlPlane.start() as plane:
        with plane.api_client() as api:
            version = client.VersionApi(api).get_code().git_version
        etcd = subprocess.run(
            [str(plane.bin_dir / "etcd"), "--version"], capture_output=True, text=True, check=True
        ).stdout.splitlines()[0]
        _STARTED.append(
            f"kube-apiserver {version} at {plane.server}, {etcd}; "
            f"ready in {plane.startup_seconds:.1f}s"
        )
        yield plane


@pytest.fixture
def controlplane_namespace(controlplane: ControlPlane) -> str:
    """A namespace of this test's own, so tests do not see each other's objects."""
    return controlplane.create_namespace()


@pytest.fixture
def controlplane_api_client(controlplane: ControlPlane) -> Iterator[ApiClient]:
    """An admin client of the session's plane (TLS verified), closed after the test."""
    with controlplane.api_client() as api:
        yield api


@pytest.fixture
def controlplane_kubeconfig(
    controlplane: ControlPlane, controlplane_namespace: str, tmp_path: Path
) -> Path:
    """A kubeconfig for the admin, in this test's namespace (contexts for the other users too)."""
    return controlplane.write_kubeconfig(tmp_path / "kubeconfig", namespace=controlplane_namespace)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which control plane the session ran against, if it started one."""
    if not _STARTED:
        return
    terminalreporter.section("remstate control plane")
    for line in _STARTED:
        terminalreporter.write_line(f"control plane: {line}")
