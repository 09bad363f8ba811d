"""Fixtures shared by every test: the real control plane and a store on each backend.

The Kubernetes backend is always tested against a real kube-apiserver with
etcd, started once per session; a test never skips because it is missing.
Each test gets a namespace of its own, so tests do not see each other's objects.
Namespaces are never deleted: with no controller manager running they would
stay Terminating, and the whole plane is thrown away at the end of the session.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from remstate.store import Store
from tests.backends import BACKENDS, StoreSpec, new_namespace
from tests.controlplane import ControlPlane

#: What the session ran against, for the summary at the end.
_PLANE: list[str] = []


@pytest.fixture(scope="session")
def controlplane() -> Iterator[ControlPlane]:
    """A real kube-apiserver and etcd for the whole session."""
    from kubernetes import client

    with ControlPlane.start() as plane:
        with plane.api_client() as api:
            version = client.VersionApi(api).get_code().git_version
        etcd = subprocess.run(
            [str(plane.bin_dir / "etcd"), "--version"], capture_output=True, text=True, check=True
        ).stdout.splitlines()[0]
        _PLANE.append(
            f"kube-apiserver {version} at {plane.server}, {etcd}; "
            f"ready in {plane.startup_seconds:.1f}s"
        )
        yield plane


_BACKEND_ID = re.compile(r"\[(?:[^\]]*-)?(" + "|".join(BACKENDS) + r")(?:-[^\]]*)?\]$")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say what each backend ran: the same contract, nothing skipped."""
    counts: dict[str, Counter[str]] = {backend: Counter() for backend in BACKENDS}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            match = _BACKEND_ID.search(getattr(report, "nodeid", ""))
            if match and (report.when == "call" or outcome != "passed"):
                counts[match.group(1)][outcome] += 1
    if not _PLANE and not any(counts.values()):
        return
    terminalreporter.section("remstate backends")
    for line in _PLANE:
        terminalreporter.write_line(f"control plane: {line}")
    for backend, counted in counts.items():
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counted.items()))
        terminalreporter.write_line(f"{backend}: {summary or 'no tests'}")


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
