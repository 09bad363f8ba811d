"""``--kubeconfig``, ``--context``, ``-n``: which store a command uses; ``kubectl remstate``.

Against the real API server: each test has a namespace of its own and a
kubeconfig whose contexts (admin, nobody, reader) all default to it. The
embedded default file is moved into the test's directory, so that "which store
did this command use" is answered by reading both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from remstate import StateManager
from remstate.cli import Exit, main
from remstate.schema import object_name
from remstate.store import KubernetesStore, open_store
from remstate.store.embedded import EmbeddedStore
from remstate.testing.controlplane import ControlPlane
from remstate.testing.credentials import context_name


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


Run = Callable[..., Result]


@pytest.fixture
def default_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The embedded default store, moved into this test's directory."""
    path = tmp_path / "data" / "state.db"
    monkeypatch.setattr("remstate.cli.options.DEFAULT_DB", path)
    return path


@pytest.fixture
def kubeconfig(controlplane: ControlPlane, controlplane_namespace: str, tmp_path: Path) -> Path:
    """A kubeconfig in this test's namespace; admin's context is current."""
    return controlplane.write_kubeconfig(tmp_path / "kc", namespace=controlplane_namespace)


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Run:
    """Run the CLI in-process with no remstate variables, and a KUBECONFIG that is not there."""
    for name in (
        "REMSTATE_STORE",
        "REMSTATE_NAMESPACE",
        "REMSTATE_KUBECONFIG",
        "REMSTATE_CONTEXT",
        "REMSTATE_MAX_ITERATIONS",
        "REMSTATE_TIMEOUT",
        "KUBERNETES_SERVICE_HOST",
        "KUBERNETES_SERVICE_PORT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))

    def run(*args: str, plugin: bool = False) -> Result:
        code = main(list(args), plugin=plugin)
        captured = capsys.readouterr()
        return Result(int(code), captured.out, captured.err)

    return run


def _iteration(kubeconfig: Path, namespace: str, task: str = "42") -> int | None:
    """The task's counter in that namespace of the cluster; None if it has no state."""
    with KubernetesStore.from_kubeconfig(kubeconfig, namespace=namespace) as store:
        names = {o.name for o in store.list(label_selector="remstate.io/role=state").items}
        if object_name(task) not in names:
            return None
        return StateManager(store).get_current_iteration(task)


class TestKubernetesOptions:
    def test_kubeconfig_and_namespace(
        self, run: Run, kubeconfig: Path, controlplane: ControlPlane, default_db: Path
    ) -> None:
        """--kubeconfig and -n, with no --store: the cluster, in that namespace."""
        other = controlplane.create_namespace("other")
        result = run("--kubeconfig", str(kubeconfig), "-n", other, "increment", "42")
        assert (result.code, result.out, result.err) == (Exit.OK, "1\n", "")
        assert _iteration(kubeconfig, other) == 1
        assert not default_db.exists()

    def test_the_contexts_namespace_by_default(
        self, run: Run, kubeconfig: Path, controlplane_namespace: str
    ) -> None:
        """With no -n, the context's namespace, as kubectl."""
        assert run("--kubeconfig", str(kubeconfig), "increment", "42").code == Exit.OK
        assert _iteration(kubeconfig, controlplane_namespace) == 1
        shown = run("--kubeconfig", str(kubeconfig), "demo")
        assert f"store: kubernetes://{controlplane_namespace}" in shown.out

    def test_environment_variables(
        self,
        run: Run,
        kubeconfig: Path,
        controlplane: ControlPlane,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """REMSTATE_KUBECONFIG and REMSTATE_NAMESPACE do what the options do; options win."""
        first, second = controlplane.create_namespace("a"), controlplane.create_namespace("b")
        monkeypatch.setenv("REMSTATE_KUBECONFIG", str(kubeconfig))
        monkeypatch.setenv("REMSTATE_NAMESPACE", first)
        assert run("increment", "42").code == Exit.OK
        assert run("increment", "42", "-n", second).code == Exit.OK
        assert (_iteration(kubeconfig, first), _iteration(kubeconfig, second)) == (1, 1)

    def test_context(
        self,
        run: Run,
        kubeconfig: Path,
        monkeypatch: pytest.MonkeyPatch,
        controlplane_namespace: str,
    ) -> None:
        """--context picks the kubeconfig's context: nobody's is refused (exit 7)."""
        assert run("--kubeconfig", str(kubeconfig), "increment", "42").code == Exit.OK
        nobody = run(
            "--kubeconfig", str(kubeconfig), "--context", context_name("nobody"), "get", "42"
        )
        assert nobody.code == Exit.FORBIDDEN
        assert nobody.err.startswith("remstate: ")
        assert len(nobody.err.splitlines()) == 1
        monkeypatch.setenv("REMSTATE_CONTEXT", context_name("reader"))
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        # KUBECONFIG is the file; the context variable alone selects Kubernetes.
        assert run("increment", "42").code == Exit.FORBIDDEN  # the reader cannot write
        assert _iteration(kubeconfig, controlplane_namespace) == 1

    def test_unknown_context(self, run: Run, kubeconfig: Path) -> None:
        """A context the kubeconfig does not have: exit 6, one line naming the file."""
        result = run("--kubeconfig", str(kubeconfig), "--context", "nope", "get", "42")
        assert result.code == Exit.UNAVAILABLE
        assert len(result.err.splitlines()) == 1
        assert str(kubeconfig) in result.err

    def test_a_named_kubeconfig_that_is_missing(self, run: Run, tmp_path: Path) -> None:
        """A --kubeconfig that does not exist: exit 6; never the pod's configuration."""
        result = run("--kubeconfig", str(tmp_path / "missing"), "get", "42")
        assert result.code == Exit.UNAVAILABLE
        assert "missing" in result.err

    def test_url_and_namespace_must_agree(self, run: Run, kubeconfig: Path) -> None:
        """kubernetes://a with -n b is exit 2; kubernetes:// with -n takes -n."""
        result = run("--kubeconfig", str(kubeconfig), "-s", "kubernetes://a", "-n", "b", "get", "1")
        assert result.code == Exit.INVALID
        assert "names namespace 'a', not 'b'" in result.err

    @pytest.mark.parametrize("option", ["--namespace", "--kubeconfig", "--context"])
    def test_empty_values(self, run: Run, option: str, default_db: Path) -> None:
        """An empty value (an unset template variable) is exit 2, and nothing is opened."""
        result = run(option, "", "increment", "42")
        assert result.code == Exit.INVALID
        assert f"{option} is empty" in result.err
        assert not default_db.exists()


class TestDefaultStore:
    def test_kubeconfig_variable_alone_keeps_the_embedded_default(
        self,
        run: Run,
        kubeconfig: Path,
        controlplane_namespace: str,
        default_db: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A KUBECONFIG in the shell does not move a laptop's state to a cluster."""
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        assert run("increment", "42").code == Exit.OK
        assert _iteration(kubeconfig, controlplane_namespace) is None
        with EmbeddedStore(str(default_db)) as store:
            assert StateManager(store).get_current_iteration("42") == 1

    def test_store_wins(
        self, run: Run, kubeconfig: Path, tmp_path: Path, controlplane_namespace: str
    ) -> None:
        """--store sqlite:// wins over --kubeconfig; -n is then the namespace in the file."""
        path = tmp_path / "s.db"
        result = run(
            "--kubeconfig",
            str(kubeconfig),
            "-s",
            f"sqlite://{path}",
            "-n",
            "team",
            "increment",
            "42",
        )
        assert result.code == Exit.OK
        assert _iteration(kubeconfig, controlplane_namespace) is None
        with open_store(f"sqlite://{path}", namespace="team") as store:
            assert StateManager(store).get_current_iteration("42") == 1
        with open_store(f"sqlite://{path}", namespace="default") as store:
            assert store.list().items == []


class TestKubectlPlugin:
    def test_plugin_defaults_to_the_cluster(
        self,
        run: Run,
        kubeconfig: Path,
        controlplane_namespace: str,
        default_db: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """As kubectl remstate, the kubeconfig's context and namespace are the default store."""
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        assert run("increment", "42", plugin=True).code == Exit.OK
        assert _iteration(kubeconfig, controlplane_namespace) == 1
        assert not default_db.exists()
        usage = run("--help", plugin=True)
        assert "Usage: kubectl remstate" in usage.out

    def test_installed_entry_point(self, kubeconfig: Path, controlplane_namespace: str) -> None:
        """kubectl-remstate is installed beside remstate and runs the CLI."""
        plugin = Path(sys.executable).parent / "kubectl-remstate"
        assert os.access(plugin, os.X_OK)
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        env.pop("REMSTATE_STORE", None)
        done = subprocess.run(
            [str(plugin), "-o", "json", "increment", "42"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert (done.returncode, done.stderr) == (0, "")
        assert json.loads(done.stdout) == {"task_id": "42", "iteration": 1}

    def test_kubectl_runs_the_plugin(
        self, controlplane: ControlPlane, kubeconfig: Path, controlplane_namespace: str
    ) -> None:
        """kubectl remstate get 42: the real kubectl finds the plugin on PATH and runs it."""
        kubectl = controlplane.kubectl_path
        venv_bin = Path(sys.executable).parent
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        env.pop("REMSTATE_STORE", None)
        listed = subprocess.run(
            [str(kubectl), "plugin", "list"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert str(venv_bin / "kubectl-remstate") in listed.stdout
        for args, expected in ((["increment", "42"], "1"), (["increment", "42"], "2")):
            done = subprocess.run(
                [str(kubectl), "remstate", *args],
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
            assert (done.returncode, done.stdout.strip()) == (0, expected), done.stderr
        got = subprocess.run(
            [str(kubectl), "remstate", "get", "42", "-o", "json"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["iteration"] == 2
        missing = subprocess.run(
            [str(kubectl), "remstate", "get", "nope"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert missing.returncode == Exit.NOT_FOUND
        assert _iteration(kubeconfig, controlplane_namespace) == 2
