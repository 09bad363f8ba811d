"""A real kube-apiserver and etcd on loopback, for tests and for people.

The Kubernetes backend is never tested against a mock: this module starts the
real thing, built from the published Go modules by ``hack/build-controlplane.sh``
and cached outside the repository (``remstate.testing.binaries``). It runs on
a busy 2-core machine next to the tests, so it starts only what the store needs
(no controller manager, no scheduler, no kubelet) and turns off what burns CPU
for nothing here.

TLS verification stays on: we make our own CA and serving certificate
(``remstate.testing.credentials``), and every client verifies the API server against
that CA.

Usage from Python::

    with ControlPlane.start() as plane:
        api = plane.api_client()          # admin; plane.api_client(plane.tokens["nobody"])
        plane.kubectl("get", "configmaps", "-n", "default")   # the real kubectl, built beside
        ...

In pytest, the ``controlplane`` fixture of ``remstate.testing.pytest_plugin``.
From a shell (``make cluster``)::

    python -m remstate.testing.controlplane up
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, TYPE_CHECKING, Self

from remstate.testing import processes
from remstate.testing.binaries import ensure_built
from remstate.testing.credentials import context_name, write_kubeconfig, write_pki, write_tokens
from remstate.testing.errors import ControlPlaneError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["ISSUER", "ControlPlane", "ControlPlaneError", "ensure_built"]

#: Seconds allowed for /readyz on a busy 2-core machine (DESIGN.md).
READY_TIMEOUT = 90.0
#: Seconds a process gets after SIGTERM before SIGKILL.
STOP_GRACE = 5.0
#: Holds ``credentials.SERVICE_IP``, which the serving certificate names.
SERVICE_CIDR = "10.0.0.0/24"
ISSUER = "https://kubernetes.default.svc"
LOG_TAIL_LINES = 60


class ControlPlane:
    """etcd and kube-apiserver on 127.0.0.1, started by :meth:`start`, stopped by :meth:`stop`.

    Attributes:
        server: the API server's https URL.
        kubeconfig: a kubeconfig for the admin, current context set, namespace ``default``.
        ca_file: the CA that signed the API server's serving certificate.
        admin_token: bearer token of ``admin`` (group ``system:masters``).
        tokens: user name -> bearer token: ``admin``; ``nobody`` and ``reader``
            have no rights (tests may bind roles to ``reader``).
        startup_seconds: seconds from spawning etcd to a ready API server.
        workdir: the directory holding data, certificates and logs.
        kubectl_path: the kubectl built beside kube-apiserver (same version).
    """

    def __init__(
        self, *, workdir: Path, owns_workdir: bool, bin_dir: Path, tokens: dict[str, str]
    ) -> None:
        self.workdir = workdir
        self._owns_workdir = owns_workdir
        self.bin_dir = bin_dir
        self.kubectl_path = bin_dir / "kubectl"
        self.tokens = tokens
        self.admin_token = tokens["admin"]
        self.ca_file = workdir / "pki" / "ca.crt"
        self.kubeconfig = workdir / "kubeconfig"
        self.etcd_log = workdir / "etcd.log"
        self.apiserver_log = workdir / "kube-apiserver.log"
        self.server = ""
        self.etcd_url = ""
        self.startup_seconds = 0.0
        self._etcd: subprocess.Popen[bytes] | None = None
        self._apiserver: subprocess.Popen[bytes] | None = None
        self._etcd_argv: list[str] = []
        self._apiserver_argv: list[str] = []
        self._env: dict[str, str] = {}
        self._logs: list[IO[bytes]] = []
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        workdir: Path | None = None,
        *,
        watch_cache: bool = False,
        bin_dir: Path | None = None,
        etcd_quota_bytes: int | None = None,
    ) -> Self:
        """Build (if needed) and start etcd and kube-apiserver; return when they are ready.

        Args:
            workdir: where data, certificates and logs go. By default a fresh
                temporary directory, removed by :meth:`stop`; a given one is kept.
            watch_cache: serve lists and watches from the API server's cache, as
                production servers do. Off by default: reads then go to etcd, so
                :meth:`compact` makes old resourceVersions and continue tokens
                answer 410 Gone at once (the cache would hide the compaction for
                minutes), and a dozen caches less saves CPU. The API's semantics
                are the same either way.
            bin_dir: where kube-apiserver, etcd (and kubectl, for :meth:`kubectl`)
                are; by default :func:`ensure_built`'s.
            etcd_quota_bytes: etcd's ``--quota-backend-bytes``; a tiny one lets a
                test fill the database until etcd's space alarm fires.

        Raises:
            ControlPlaneError: a process died or /readyz did not answer in time;
                the tail of both logs is printed to stderr first.
        """
        bin_dir = bin_dir or ensure_built()
        if workdir is None:
            directory = Path(tempfile.mkdtemp(prefix="remstate-controlplane-"))
            owns = True
        else:
            directory = Path(workdir).resolve()
            directory.mkdir(parents=True, exist_ok=True)
            owns = False
        tokens = {name: secrets.token_hex(24) for name in ("admin", "nobody", "reader")}
        plane = cls(workdir=directory, owns_workdir=owns, bin_dir=bin_dir, tokens=tokens)
        try:
            plane._launch(watch_cache=watch_cache, etcd_quota_bytes=etcd_quota_bytes)
        except BaseException:
            plane._print_logs(sys.stderr)
            plane.stop()
            raise
        return plane

    def _launch(self, *, watch_cache: bool, etcd_quota_bytes: int | None) -> None:
        # Long because the two command lines read best whole, flag by flag, with their whys.
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)
        _, serving_cert, serving_key, sa_key, sa_pub = write_pki(pki)
        token_file = pki / "tokens.csv"
        write_tokens(token_file, self.tokens)

        etcd_client, etcd_peer, apiserver_port = processes.free_ports(3)
        self.etcd_url = f"http://127.0.0.1:{etcd_client}"
        self.server = f"https://127.0.0.1:{apiserver_port}"
        self.write_kubeconfig(self.kubeconfig)

        self._env = {**os.environ, "GOMAXPROCS": os.environ.get("GOMAXPROCS", "2")}
        spawned = time.monotonic()
        self._etcd_argv = [
            str(self.bin_dir / "etcd"),
            "--name=remstate-test",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=remstate-test=http://127.0.0.1:{etcd_peer}",
            "--initial-cluster-state=new",
            # A throwaway store: durability buys nothing and fsync costs much.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]
        if etcd_quota_bytes is not None:
            self._etcd_argv.append(f"--quota-backend-bytes={etcd_quota_bytes}")
        self._etcd = self._start_process(self._etcd_argv, self.etcd_log, self._env)
        self._apiserver_argv = [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            "--advertise-address=127.0.0.1",
            "--bind-address=127.0.0.1",
            f"--secure-port={apiserver_port}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={serving_cert}",
            f"--tls-private-key-file={serving_key}",
            "--authorization-mode=RBAC",
            f"--token-auth-file={token_file}",
            f"--service-account-issuer={ISSUER}",
            f"--service-account-key-file={sa_pub}",
            f"--service-account-signing-key-file={sa_key}",
            f"--api-audiences={ISSUER}",
            # No token controller runs; the admission plugin would wait for one.
            "--disable-admission-plugins=ServiceAccount",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # No controller manager or kubelet runs: these would only burn CPU.
            "--enable-priority-and-fairness=false",
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            f"--watch-cache={str(watch_cache).lower()}",
            "--v=1",
        ]
        self._apiserver = self._start_process(self._apiserver_argv, self.apiserver_log, self._env)
        # Until /readyz answers, etcd may still be starting; the API server retries it.
        self._wait_ready(time.monotonic() + READY_TIMEOUT)
        self.startup_seconds = time.monotonic() - spawned

    def _start_process(
        self, argv: Sequence[str], log: Path, env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        out = log.open("ab")
        self._logs.append(out)
        return processes.spawn(argv, log=out, env=env, cwd=self.workdir)

    def _check_alive(self) -> None:
        for name, proc in (("etcd", self._etcd), ("kube-apiserver", self._apiserver)):
            if proc is not None and proc.poll() is not None:
                raise ControlPlaneError(f"{name} exited with code {proc.returncode}")

    def _ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def _get(self, path: str, context: ssl.SSLContext, timeout: float = 5.0) -> tuple[int, bytes]:
        """GET a path as admin with only the standard library (the plane has no client yet)."""
        request = urllib.request.Request(  # noqa: S310 (an https URL we built)
            self.server + path, headers={"Authorization": f"Bearer {self.admin_token}"}
        )
        try:
            with urllib.request.urlopen(request, context=context, timeout=timeout) as resp:  # noqa: S310
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.read()

    def _wait_ready(self, deadline: float) -> None:
        """Wait for /readyz, then for the bootstrap controller's namespace ``default``."""
        context = self._ssl_context()
        last = "no answer yet"
        for path, what in (
            ("/readyz", "/readyz"),
            ("/api/v1/namespaces/default", "namespace default"),
        ):
            while True:
                self._check_alive()
                try:
                    code, body = self._get(path, context)
                except (OSError, urllib.error.URLError) as e:
                    last = f"{type(e).__name__}: {e}"
                else:
                    if code == 200:
                        break
                    last = f"HTTP {code}: {body[:2000].decode(errors='replace')}"
                if time.monotonic() > deadline:
                    raise ControlPlaneError(
                        f"{what} not ready within {READY_TIMEOUT:.0f}s; last: {last}"
                    )
                time.sleep(0.25)

    def stop(self) -> None:
        """Stop both processes (SIGTERM, then SIGKILL) and remove the temporary directory."""
        if self._stopped:
            return
        self._stopped = True
        # The API server first: it would otherwise log etcd errors while shutting down.
        for proc in (self._apiserver, self._etcd):
            processes.terminate(proc, STOP_GRACE)
        for log in self._logs:
            log.close()
        self._logs.clear()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- outages: stop one process, start it again on the same ports -----------------

    def stop_apiserver(self) -> None:
        """Kill kube-apiserver (SIGKILL: a crash, and no wait for in-flight requests)."""
        processes.kill(self._apiserver)

    def start_apiserver(self) -> None:
        """Start kube-apiserver again, same flags and port; return when it is ready.

        Raises:
            ControlPlaneError: it did not get ready in time (logs printed first).
        """
        self._apiserver = self._restart(self._apiserver, self._apiserver_argv, self.apiserver_log)
        try:
            self._wait_ready(time.monotonic() + READY_TIMEOUT)
        except BaseException:
            self._print_logs(sys.stderr)
            raise

    def stop_etcd(self) -> None:
        """Kill etcd (SIGKILL); the API server stays up and answers what it can."""
        processes.kill(self._etcd)

    def start_etcd(self) -> None:
        """Start etcd again on its data directory and ports; return when it is healthy.

        Raises:
            ControlPlaneError: it did not answer /health in time (logs printed first).
        """
        self._etcd = self._restart(self._etcd, self._etcd_argv, self.etcd_log)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(self.etcd_url + "/health", timeout=5) as resp:  # noqa: S310
                    if json.loads(resp.read()).get("health") == "true":
                        return
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                self._print_logs(sys.stderr)
                raise ControlPlaneError(f"etcd not healthy within {READY_TIMEOUT:.0f}s")
            time.sleep(0.1)

    def _restart(
        self, proc: subprocess.Popen[bytes] | None, argv: list[str], log: Path
    ) -> subprocess.Popen[bytes]:
        if self._stopped or not argv:
            raise ControlPlaneError("the control plane is not running")
        if proc is not None and proc.poll() is None:
            raise ControlPlaneError(f"{argv[0]} is still running")
        return self._start_process(argv, log, self._env)

    # -- helpers -----------------------------------------------------------------------

    def write_kubeconfig(
        self, path: Path, *, namespace: str = "default", user: str = "admin"
    ) -> Path:
        """Write a kubeconfig for this plane: a context per user, ``user``'s current.

        Args:
            path: where to write it (mode 0600); returned.
            namespace: the namespace of every context, which clients default to.
            user: whose context is current: ``admin``, ``nobody`` or ``reader``.
        """
        return write_kubeconfig(
            path,
            server=self.server,
            ca_file=self.ca_file,
            tokens=self.tokens,
            namespace=namespace,
            user=user,
        )

    def create_namespace(self, prefix: str = "t") -> str:
        """Create a namespace with a random name starting with ``prefix``; return its name.

        Nothing deletes it: with no controller manager running, a deleted
        namespace would stay Terminating. It goes with the plane.
        """
        from kubernetes import client

        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        with self.api_client() as api:
            client.CoreV1Api(api).create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
            )
        return name

    def api_client(self, token: str | None = None) -> ApiClient:
        """A new ``kubernetes.client.ApiClient`` for this plane, TLS verified; the caller closes it.

        Args:
            token: the bearer token to use; the admin's by default.
        """
        from kubernetes import client

        configuration = client.Configuration(
            host=self.server,
            api_key={"BearerToken": token or self.admin_token},
            api_key_prefix={"BearerToken": "Bearer"},
            ssl_ca_cert=str(self.ca_file),
        )
        return client.ApiClient(configuration)

    def kubectl(
        self,
        *args: str,
        user: str = "admin",
        input: str | None = None,  # noqa: A002 - subprocess.run's own name
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this plane as ``user``; its output as text.

        Args:
            args: kubectl's arguments (``"apply", "-k", "deploy/"``); the namespace
                is ``default`` unless they say ``-n``.
            user: whose context to use: ``admin``, ``nobody`` or ``reader``.
            input: text for kubectl's standard input (``apply -f -``).
            check: raise on a non-zero exit, with kubectl's stderr in the message.
            timeout: seconds before kubectl is killed.

        Raises:
            ControlPlaneError: kubectl is not in ``bin_dir``, or (``check``) it failed.
        """
        if not os.access(self.kubectl_path, os.X_OK):
            raise ControlPlaneError(
                f"no kubectl in {self.bin_dir}: run hack/build-controlplane.sh, which builds it"
            )
        proc = subprocess.run(
            [
                str(self.kubectl_path),
                f"--kubeconfig={self.kubeconfig}",
                f"--context={context_name(user)}",
                *args,
            ],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise ControlPlaneError(
                f"kubectl {' '.join(args)} exited with code {proc.returncode}: "
                f"{proc.stderr.strip()}"
            )
        return proc

    def compact(self) -> int:
        """Compact etcd up to its current revision; return that revision.

        Afterwards a watch from an older resourceVersion, or a continue token
        issued before, gets 410 Gone: the way to test expiry without waiting
        for the API server's own compaction (every 5 minutes).
        """

        def etcd(path: str, body: dict[str, object]) -> dict[str, object]:
            request = urllib.request.Request(  # noqa: S310 (an http URL we built, on loopback)
                self.etcd_url + path, data=json.dumps(body).encode(), method="POST"
            )
            with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
                answer: dict[str, object] = json.loads(resp.read())
                return answer

        header = etcd("/v3/kv/range", {"key": "AA=="})["header"]
        assert isinstance(header, dict)
        revision = int(header["revision"])
        etcd("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    def logs(self) -> dict[str, str]:
        """The tail of each process's log."""
        return {
            "etcd": processes.tail(self.etcd_log, LOG_TAIL_LINES),
            "kube-apiserver": processes.tail(self.apiserver_log, LOG_TAIL_LINES),
        }

    def _print_logs(self, out: IO[str]) -> None:
        for name, text in self.logs().items():
            print(f"----- {name} (last {LOG_TAIL_LINES} lines) -----", file=out)
            print(text, file=out)
        out.flush()

    def describe(self) -> str:
        """How to point kubectl and remstate at this plane, as shell lines."""
        lines = [
            f"# control plane at {self.server} (workdir {self.workdir})",
            f"export KUBECONFIG={self.kubeconfig}",
            f'export PATH="{self.bin_dir}:$PATH"   # kubectl, the same version as the server',
            "kubectl get configmaps                        # as admin",
            "kubectl --context remstate-test-nobody get cm   # as nobody (forbidden)",
            "remstate -s kubernetes://default increment 42  # KUBECONFIG selects this cluster",
            f"# server:  {self.server}",
            f"# CA file: {self.ca_file}",
        ]
        lines += [f"# token {name}: {token}" for name, token in self.tokens.items()]
        return "\n".join(lines)


# --- command line ----------------------------------------------------------------------


def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: Sequence[str] | None = None) -> int:
    """``up`` (start, print how to use it, wait for Ctrl-C) or ``build``; the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m remstate.testing.controlplane",
        description="A local kube-apiserver and etcd for remstate.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the control plane and wait for Ctrl-C")
    up.add_argument("--workdir", type=Path, help="keep data, certificates and logs here")
    up.add_argument(
        "--watch-cache", action="store_true", help="serve reads from the API server's cache"
    )
    sub.add_parser("build", help="build (or find cached) kube-apiserver, etcd and kubectl")
    args = parser.parse_args(argv)

    try:
        began = time.monotonic()
        bin_dir = ensure_built()
        built = time.monotonic() - began
        if args.command == "build":
            print(bin_dir)
            return 0
        print(f"# binaries: {bin_dir} (build or cache check took {built:.1f}s)", flush=True)
        plane = ControlPlane.start(args.workdir, watch_cache=args.watch_cache, bin_dir=bin_dir)
    except ControlPlaneError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    with plane:
        print(plane.describe())
        print(f"# ready in {plane.startup_seconds:.1f}s; Ctrl-C stops it", flush=True)
        _wait_for_signal()
        print("# stopping", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
