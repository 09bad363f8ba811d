"""Fixtures shared by every test: the real control plane and a store on each backend.

The Kubernetes backend is always tested against a real kube-apiserver with
etcd, started once per session; a test never skips because it is missing.
Each test gets a namespace of its own, so tests do not see each other's objects.
Namespaces are never deleted: with no controller manager running they would
stay Terminating, and the whole plane is thrown away at the end of the session.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from remstate.store import Store
from tests.backends import BACKENDS, StoreSpec
from tests.controlplane import ControlPlane


@pytest.fixture(scope="session")
def controlplane() -> Iterator[ControlPlane]:
    """A real kube-apiserver and etcd for the whole session."""
    with ControlPlane.start() as plane:
        yield plane


def new_namespace(plane: ControlPlane) -> str:
    """Create a namespace of its own for one test."""
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:10]}"
    with plane.api_client() as api:
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
        )
    return name


@pytest.fixture(params=BACKENDS)
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    """Where this test's store lives, on each backend in turn."""
    if request.param == "embedded":
        return StoreSpec("embedded", "default", path=str(tmp_path / "state.db"))
    plane: ControlPlane = request.getfixturevalue("controlplane")
    return StoreSpec("kubernetes", new_namespace(plane), kubeconfig=str(plane.kubeconfig))


@pytest.fixture
def store(store_spec: StoreSpec) -> Iterator[Store]:
    """A store on this test's backend, closed after the test."""
    with store_spec.open() as opened:
        yield opened
