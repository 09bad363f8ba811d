"""Fixtures shared by every test: a store on each backend.

The Kubernetes backend is always tested against a real kube-apiserver with
etcd, started once per session by the ``controlplane`` fixture of
``remstate.testing.pytest_plugin`` (named in pyproject's ``addopts``, and a
``pytest11`` entry point); a test never skips because it is missing. Each test
gets a namespace of its own, so tests do not see each other's objects.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from remstate.store import Store
from remstate.testing.controlplane import ControlPlane
from tests.backends import BACKENDS, StoreSpec

_BACKEND_ID = re.compile(r"\[(?:[^\]]*-)?(" + "|".join(BACKENDS) + r")(?:-[^\]]*)?\]$")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say what each backend ran: the same contract, nothing skipped."""
    counts: dict[str, Counter[str]] = {backend: Counter() for backend in BACKENDS}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            match = _BACKEND_ID.search(getattr(report, "nodeid", ""))
            if match and (report.when == "call" or outcome != "passed"):
                counts[match.group(1)][outcome] += 1
    if not any(counts.values()):
        return
    terminalreporter.section("remstate backends")
    for backend, counted in counts.items():
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counted.items()))
        terminalreporter.write_line(f"{backend}: {summary or 'no tests'}")


@pytest.fixture(params=BACKENDS)
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    """Where this test's store lives, on each backend in turn."""
    if request.param == "embedded":
        return StoreSpec("embedded", "default", path=str(tmp_path / "state.db"))
    plane: ControlPlane = request.getfixturevalue("controlplane")
    namespace: str = request.getfixturevalue("controlplane_namespace")
    return StoreSpec("kubernetes", namespace, kubeconfig=str(plane.kubeconfig))


@pytest.fixture
def store(store_spec: StoreSpec) -> Iterator[Store]:
    """A store on this test's backend, closed after the test."""
    with store_spec.open() as opened:
        yield opened
