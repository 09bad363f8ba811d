"""The test control plane itself, its binaries and its pytest fixtures.

These prove what the other tests take for granted: the plane serves TLS that
clients verify, RBAC is on, TokenRequest and TokenReview work, the kubeconfig
it writes is usable, the fixtures of ``remstate.testing.pytest_plugin`` reach
any test suite, and the binaries are found (or their absence explained)
without a checkout.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from remstate.errors import Forbidden
from remstate.store import StoredObject
from remstate.store.kubernetes import KubernetesStore
from remstate.testing import binaries
from remstate.testing.controlplane import ISSUER, ControlPlane, ControlPlaneError

REPO = Path(__file__).resolve().parents[2]
PLUGIN_FIXTURES = (
    "controlplane",
    "controlplane_namespace",
    "controlplane_api_client",
    "controlplane_kubeconfig",
)


@pytest.mark.kubernetes
class TestControlPlane:
    def test_is_ready_with_namespace_default(self, controlplane: ControlPlane) -> None:
        """The plane is up on loopback, https, with namespace default and a start-up time."""
        assert controlplane.server.startswith("https://127.0.0.1:")
        assert controlplane.startup_seconds > 0
        assert set(controlplane.tokens) >= {"admin", "nobody", "reader"}
        with controlplane.api_client() as api:
            ns = client.CoreV1Api(api).read_namespace("default")
        assert ns.metadata is not None
        assert ns.metadata.name == "default"

    def test_clients_verify_tls_against_our_ca(self, controlplane: ControlPlane) -> None:
        """The client verifies the serving certificate; the system CAs do not trust it."""
        with controlplane.api_client() as api:
            assert api.configuration.verify_ssl
            assert api.configuration.ssl_ca_cert == str(controlplane.ca_file)
        context = ssl.create_default_context()
        host, port = controlplane.server.removeprefix("https://").split(":")
        with (
            socket.create_connection((host, int(port)), timeout=5) as raw,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            context.wrap_socket(raw, server_hostname=host)

    def test_token_request_and_token_review(self, controlplane: ControlPlane) -> None:
        """A service account token from TokenRequest is accepted by TokenReview."""
        name = f"sa-{uuid.uuid4().hex[:8]}"
        with controlplane.api_client() as api:
            core = client.CoreV1Api(api)
            core.create_namespaced_service_account(
                "default", client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
            )
            issued = core.create_namespaced_service_account_token(
                name,
                "default",
                client.AuthenticationV1TokenRequest(
                    spec=client.V1TokenRequestSpec(audiences=[ISSUER], expiration_seconds=600)
                ),
            )
            assert issued.status is not None
            token = issued.status.token
            assert token
            review = client.AuthenticationV1Api(api).create_token_review(
                client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token))
            )
        status = review.status
        assert status is not None
        assert status.authenticated is True
        assert status.user is not None
        assert status.user.username == f"system:serviceaccount:default:{name}"

    def test_kubeconfig_from_the_environment(
        self, controlplane: ControlPlane, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With KUBECONFIG pointing at the plane's kubeconfig, a store needs no arguments."""
        monkeypatch.setenv("KUBECONFIG", str(controlplane.kubeconfig))
        with KubernetesStore() as store:
            assert store.namespace == "default"
            name = f"kc-{uuid.uuid4().hex[:8]}"
            created = store.create(StoredObject(name=name, data={"k": "v"}))
            assert store.get(name).uid == created.uid
            store.delete(name)

    def test_kubeconfig_contexts_carry_each_user(self, controlplane: ControlPlane) -> None:
        """Each user has a context; the nobody context is forbidden to read ConfigMaps."""
        with KubernetesStore.from_kubeconfig(
            controlplane.kubeconfig, context="remstate-test-nobody"
        ) as store:
            assert store.namespace == "default"
            with pytest.raises(Forbidden):
                store.list()

    def test_nobody_is_forbidden(self, controlplane: ControlPlane) -> None:
        """The nobody token is authenticated but may do nothing: Forbidden, with the Status."""
        with (
            controlplane.api_client(controlplane.tokens["nobody"]) as api,
            KubernetesStore("default", api_client=api) as store,
            pytest.raises(Forbidden) as caught,
        ):
            store.get("anything")
        status = caught.value.status
        assert (status.code, status.reason) == (403, "Forbidden")
        assert 'User "nobody" cannot get resource "configmaps"' in status.message

    def test_kubectl_talks_to_the_plane_as_each_user(self, controlplane: ControlPlane) -> None:
        """``plane.kubectl`` runs the real kubectl: same version as the server; RBAC applies."""
        versions = json.loads(controlplane.kubectl("version", "-o", "json").stdout)
        assert versions["clientVersion"]["gitVersion"] == versions["serverVersion"]["gitVersion"]
        assert controlplane.kubectl("get", "namespace", "default", "-o", "name").stdout == (
            "namespace/default\n"
        )
        refused = controlplane.kubectl("get", "configmaps", user="nobody", check=False)
        assert refused.returncode == 1
        assert 'User "nobody" cannot list resource "configmaps"' in refused.stderr
        with pytest.raises(ControlPlaneError, match="cannot list resource"):
            controlplane.kubectl("get", "configmaps", user="nobody")

    def test_kubectl_missing_is_explained(self, controlplane: ControlPlane, tmp_path: Path) -> None:
        """A plane started from a directory without kubectl says where to get it."""
        plane = ControlPlane(
            workdir=tmp_path, owns_workdir=False, bin_dir=tmp_path, tokens=controlplane.tokens
        )
        with pytest.raises(ControlPlaneError, match=r"no kubectl in .*build-controlplane\.sh"):
            plane.kubectl("version")

    def test_reader_gets_what_a_role_grants(
        self, controlplane: ControlPlane, controlplane_namespace: str
    ) -> None:
        """RBAC is enforced: a Role bound to reader lets it list, and nothing more."""
        with controlplane.api_client() as api:
            rbac = client.RbacAuthorizationV1Api(api)
            rbac.create_namespaced_role(
                controlplane_namespace,
                client.V1Role(
                    metadata=client.V1ObjectMeta(name="read-configmaps"),
                    rules=[
                        client.V1PolicyRule(
                            api_groups=[""], resources=["configmaps"], verbs=["get", "list"]
                        )
                    ],
                ),
            )
            rbac.create_namespaced_role_binding(
                controlplane_namespace,
                client.V1RoleBinding(
                    metadata=client.V1ObjectMeta(name="reader"),
                    role_ref=client.V1RoleRef(
                        api_group="rbac.authorization.k8s.io", kind="Role", name="read-configmaps"
                    ),
                    subjects=[
                        client.RbacV1Subject(
                            api_group="rbac.authorization.k8s.io", kind="User", name="reader"
                        )
                    ],
                ),
            )
        with (
            controlplane.api_client(controlplane.tokens["reader"]) as api,
            KubernetesStore(controlplane_namespace, api_client=api) as store,
        ):
            assert store.list().items == []
            with pytest.raises(Forbidden):
                store.create(StoredObject(name="nope", data={}))


@pytest.mark.kubernetes
class TestPluginFixtures:
    def test_each_test_has_a_new_namespace(
        self, controlplane_api_client: client.ApiClient, controlplane_namespace: str
    ) -> None:
        """``controlplane_namespace`` exists, is not ``default``, and holds no ConfigMap yet."""
        core = client.CoreV1Api(controlplane_api_client)
        assert core.read_namespace(controlplane_namespace).metadata.name == controlplane_namespace
        assert controlplane_namespace != "default"
        assert core.list_namespaced_config_map(controlplane_namespace).items == []

    def test_the_api_client_is_the_admin(self, controlplane_api_client: client.ApiClient) -> None:
        """``controlplane_api_client`` may list namespaces, which only the admin may."""
        namespaces = client.CoreV1Api(controlplane_api_client).list_namespace().items
        assert "default" in {ns.metadata.name for ns in namespaces}

    def test_the_kubeconfig_puts_clients_in_the_test_namespace(
        self,
        controlplane_kubeconfig: Path,
        controlplane_namespace: str,
        controlplane_api_client: client.ApiClient,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Code that reads ``$KUBECONFIG`` works in this test's namespace, as the admin."""
        monkeypatch.setenv("KUBECONFIG", str(controlplane_kubeconfig))
        with KubernetesStore.from_kubeconfig() as store:
            assert store.namespace == controlplane_namespace
            store.create(StoredObject(name="here", data={"k": "v"}))
        read = client.CoreV1Api(controlplane_api_client).read_namespaced_config_map(
            "here", controlplane_namespace
        )
        assert read.data == {"k": "v"}
        assert controlplane_kubeconfig.stat().st_mode & 0o777 == 0o600

    def test_the_kubeconfig_has_every_user(
        self, controlplane_kubeconfig: Path, controlplane_namespace: str
    ) -> None:
        """Each user has a context in the test's namespace; the admin's is current."""
        contexts, current = config.list_kube_config_contexts(str(controlplane_kubeconfig))
        assert {c["name"]: c["context"]["user"] for c in contexts} == {
            "remstate-test": "admin",
            "remstate-test-nobody": "nobody",
            "remstate-test-reader": "reader",
        }
        assert current["name"] == "remstate-test"
        assert {c["context"]["namespace"] for c in contexts} == {controlplane_namespace}

    def test_any_project_gets_the_fixtures(self, tmp_path: Path) -> None:
        """The plugin is registered by its entry point, under its module name."""
        (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    assert True\n")

        def fixtures_listed(*options: str) -> list[str]:
            output = subprocess.run(
                [sys.executable, "-m", "pytest", "--fixtures", "-p", "no:cacheprovider", *options],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            return [name for name in PLUGIN_FIXTURES if re.search(rf"^{name}\b", output, re.M)]

        assert fixtures_listed() == list(PLUGIN_FIXTURES)
        assert fixtures_listed("-p", "no:remstate.testing.pytest_plugin") == []


class TestBinaries:
    @pytest.fixture
    def built(self, monkeypatch: pytest.MonkeyPatch) -> Path:
        """The real binaries, found by the checkout's script; then the script is hidden.

        As when remstate is installed without the script, and with no override.
        """
        monkeypatch.delenv(binaries.BIN_ENV, raising=False)
        bin_dir = binaries.ensure_built()
        monkeypatch.setattr(binaries, "_SCRIPT_CANDIDATES", ())
        return bin_dir

    def test_the_versions_are_the_build_scripts(self) -> None:
        """The versions named without the script are the script's defaults."""
        script = (REPO / "hack" / "build-controlplane.sh").read_text()
        default = re.compile(r'^(K8S|ETCD)_VERSION="\$\{\d:-\$\{\w+:-(v[\d.]+)\}\}"$', re.M)
        assert dict(default.findall(script)) == {
            "K8S": binaries.K8S_VERSION,
            "ETCD": binaries.ETCD_VERSION,
        }

    def test_a_checkout_finds_its_script(self) -> None:
        """From the repository, the build script in hack/ is the one run."""
        assert binaries.build_script() == REPO / "hack" / "build-controlplane.sh"

    def test_without_the_script_the_cache_is_used(
        self, built: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without a script, binaries already in the cache are found where the script put them."""
        monkeypatch.setenv("REMSTATE_CACHE", str(built.parents[2]))
        assert binaries.ensure_built() == built

    def test_without_the_script_or_cache_the_error_says_how_to_build(
        self, built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An empty cache and no script: one error naming the place, the script and the override."""
        monkeypatch.setenv("REMSTATE_CACHE", str(tmp_path))
        with pytest.raises(ControlPlaneError) as caught:
            binaries.ensure_built()
        message = str(caught.value)
        assert str(tmp_path / "controlplane") in message
        assert "hack/build-controlplane.sh" in message
        assert binaries.BIN_ENV in message

    def test_an_override_is_used_as_given(
        self, built: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``$REMSTATE_CONTROLPLANE_BIN`` naming a directory with every binary is used."""
        monkeypatch.setenv("REMSTATE_CACHE", "/nonexistent")  # so only the override can answer
        monkeypatch.setenv(binaries.BIN_ENV, str(built))
        assert binaries.ensure_built() == built

    def test_an_override_without_both_binaries_is_refused(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``$REMSTATE_CONTROLPLANE_BIN`` must hold every binary; the error names those missing."""
        monkeypatch.setenv(binaries.BIN_ENV, str(tmp_path))
        with pytest.raises(ControlPlaneError, match="kube-apiserver, etcd, kubectl"):
            binaries.ensure_built()
        (tmp_path / "kube-apiserver").touch(mode=0o755)
        (tmp_path / "etcd").touch(mode=0o755)
        with pytest.raises(ControlPlaneError, match=r"no executable kubectl$"):
            binaries.ensure_built()

    def test_kubectl_is_built_beside_the_server(self, built: Path) -> None:
        """The script builds kubectl into the same directory, at the server's version."""
        assert binaries.kubectl() == built / "kubectl"
        out = subprocess.run(
            [str(built / "kubectl"), "version", "--client", "-o", "json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert json.loads(out)["clientVersion"]["gitVersion"] == binaries.K8S_VERSION


class TestCommandLine:
    def test_build_prints_the_bin_directory(self) -> None:
        """``python -m remstate.testing.controlplane build`` prints where the binaries are."""
        out = subprocess.run(
            [sys.executable, "-m", "remstate.testing.controlplane", "build"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert Path(out.strip()) == binaries.ensure_built()

    def test_a_missing_build_is_one_line_and_exit_1(self, tmp_path: Path) -> None:
        """Nothing to run and nothing to build with: one ``error:`` line, exit code 1."""
        env = {**os.environ, binaries.BIN_ENV: str(tmp_path)}
        proc = subprocess.run(
            [sys.executable, "-m", "remstate.testing.controlplane", "up"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert proc.returncode == 1
        assert proc.stderr.startswith("error: ")
        assert len(proc.stderr.strip().splitlines()) == 1

    @pytest.mark.kubernetes
    def test_up_serves_until_interrupted(self, tmp_path: Path) -> None:
        """``make cluster``: ``up`` prints a usable KUBECONFIG, and Ctrl-C stops both processes."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "remstate.testing.controlplane", "up", "--workdir", tmp_path],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            lines = _lines_until(proc, "# ready in ")
            [kubeconfig] = [line.split("=", 1)[1] for line in lines if "KUBECONFIG=" in line]
            with config.new_client_from_config(config_file=kubeconfig) as api:
                ns = client.CoreV1Api(api).read_namespace("default")
            assert ns.metadata.name == "default"
            # The printed PATH puts the built kubectl first: the README's commands use it.
            [path_line] = [line for line in lines if line.startswith("export PATH=")]
            bin_dir = path_line.removeprefix('export PATH="').split(":")[0]
            shown = subprocess.run(
                ["kubectl", "get", "namespace", "default", "-o", "name"],
                env={**os.environ, "KUBECONFIG": kubeconfig, "PATH": f"{bin_dir}:/usr/bin:/bin"},
                capture_output=True,
                text=True,
                check=True,
            )
            assert shown.stdout == "namespace/default\n"
        finally:
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        assert "# stopping" in out


def _lines_until(proc: subprocess.Popen[str], marker: str) -> Iterator[str]:
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith(marker):
            return lines
    raise AssertionError(f"exited before {marker!r}: {lines}")
