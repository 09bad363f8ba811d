"""A real kube-apiserver and etcd on loopback, for tests and for people.

The Kubernetes backend is never tested against a mock: this module starts the
real thing, built from the published Go modules by ``hack/build-controlplane.sh``
(cached outside the repository). It runs on a busy 2-core machine next to the
tests, so it starts only what the store needs (no controller manager, no
scheduler, no kubelet) and turns off what burns CPU for nothing here.

TLS verification stays on: we make our own CA and serving certificate, and
every client verifies the API server against that CA.

Usage from Python::

    with ControlPlane.start() as plane:
        api = plane.api_client()          # admin; plane.api_client(plane.tokens["nobody"])
        ...

From a shell (``make cluster``)::

    python -m tests.controlplane up
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, TYPE_CHECKING, Self

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["ControlPlane", "ControlPlaneError", "ensure_built"]

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-controlplane.sh"

#: Seconds allowed for /readyz on a busy 2-core machine (DESIGN.md).
READY_TIMEOUT = 90.0
#: Seconds a process gets after SIGTERM before SIGKILL.
STOP_GRACE = 5.0
SERVICE_CIDR = "10.0.0.0/24"
#: The first address of SERVICE_CIDR: the ``kubernetes`` Service's ClusterIP.
SERVICE_IP = "10.0.0.1"
ISSUER = "https://kubernetes.default.svc"
LOG_TAIL_LINES = 60


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started."""


def ensure_built() -> Path:
    """Build kube-apiserver and etcd if they are not cached; return their bin directory.

    Raises:
        ControlPlaneError: the build script failed.
    """
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ControlPlaneError(f"{BUILD_SCRIPT} failed with exit code {proc.returncode}")
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise ControlPlaneError(f"{BUILD_SCRIPT} printed no output directory")
    bin_dir = Path(lines[-1]) / "bin"
    for tool in ("kube-apiserver", "etcd"):
        if not os.access(bin_dir / tool, os.X_OK):
            raise ControlPlaneError(f"{BUILD_SCRIPT} did not produce {bin_dir / tool}")
    return bin_dir


def _free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now; held open together so that they differ."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


# --- certificates and keys -------------------------------------------------------------


def _write_pki(directory: Path) -> tuple[Path, Path, Path, Path, Path]:
    """Write a CA, a serving certificate signed by it, and the service-account key pair.

    Returns the paths of: CA certificate, serving certificate, serving key,
    service-account private key, service-account public key.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    not_before = now - datetime.timedelta(hours=1)
    not_after = now + datetime.timedelta(days=30)

    # EC keys: far cheaper to generate than RSA on a busy machine.
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "remstate-test-ca")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    serving_key = ec.generate_private_key(ec.SECP256R1())
    serving_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(serving_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address(SERVICE_IP)),
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes"),
                    x509.DNSName("kubernetes.default"),
                    x509.DNSName("kubernetes.default.svc"),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(serving_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    # The service-account signing key: RSA, the algorithm every consumer accepts.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    paths = (
        directory / "ca.crt",
        directory / "apiserver.crt",
        directory / "apiserver.key",
        directory / "sa.key",
        directory / "sa.pub",
    )
    contents = (
        ca_cert.public_bytes(serialization.Encoding.PEM),
        serving_cert.public_bytes(serialization.Encoding.PEM),
        pem_key(serving_key),
        pem_key(sa_key),
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    for path, content in zip(paths, contents, strict=True):
        path.write_bytes(content)
        path.chmod(0o600)
    return paths


# --- the control plane -----------------------------------------------------------------


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"(cannot read {path}: {e})"
    return "\n".join(text.splitlines()[-lines:])


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec function that kills the child when its parent dies (Linux only).

    Without it, a test run killed with SIGKILL leaves an API server and etcd
    burning CPU on the machine. The lookup happens here, before the fork.
    The signal follows the *thread* that spawned the child: start the plane
    from a thread that outlives it (the main thread, in pytest and the CLI).
    SIGKILL, not SIGTERM: an orphaned plane has nothing worth a graceful stop,
    and the API server's graceful stop waits long for an etcd that is leaving too.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGKILL))

    return preexec


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
    """

    def __init__(
        self, *, workdir: Path, owns_workdir: bool, bin_dir: Path, tokens: dict[str, str]
    ) -> None:
        self.workdir = workdir
        self._owns_workdir = owns_workdir
        self.bin_dir = bin_dir
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
            bin_dir: where kube-apiserver and etcd are; by default :func:`ensure_built`'s.
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
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)
        _, serving_cert, serving_key, sa_key, sa_pub = _write_pki(pki)
        token_file = pki / "tokens.csv"
        with token_file.open("w", newline="") as f:
            rows = csv.writer(f)
            # token,user,uid,"group1,group2"
            rows.writerow([self.tokens["admin"], "admin", "admin", "system:masters"])
            rows.writerow([self.tokens["nobody"], "nobody", "nobody"])
            rows.writerow([self.tokens["reader"], "reader", "reader"])
        token_file.chmod(0o600)

        etcd_client, etcd_peer, apiserver_port = _free_ports(3)
        self.etcd_url = f"http://127.0.0.1:{etcd_client}"
        self.server = f"https://127.0.0.1:{apiserver_port}"
        self._write_kubeconfig()

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
        self._etcd = self._spawn(self._etcd_argv, self.etcd_log, self._env)
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
        self._apiserver = self._spawn(self._apiserver_argv, self.apiserver_log, self._env)
        # Until /readyz answers, etcd may still be starting; the API server retries it.
        self._wait_ready(time.monotonic() + READY_TIMEOUT)
        self.startup_seconds = time.monotonic() - spawned

    def _spawn(
        self, argv: Sequence[str], log: Path, env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        out = log.open("ab")
        self._logs.append(out)
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.workdir,
            # Ctrl-C in a terminal goes to our process group; we stop the children ourselves.
            start_new_session=True,
            preexec_fn=_parent_death_signal(),  # noqa: PLW1509 (no locks taken in it)
        )

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

    def _write_kubeconfig(self) -> None:
        # JSON is YAML: every kubeconfig reader takes it, and we need no YAML writer.
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "remstate-test",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [
                {"name": name, "user": {"token": token}} for name, token in self.tokens.items()
            ],
            "contexts": [
                {
                    "name": "remstate-test" if name == "admin" else f"remstate-test-{name}",
                    "context": {"cluster": "remstate-test", "user": name, "namespace": "default"},
                }
                for name in self.tokens
            ],
            "current-context": "remstate-test",
            "preferences": {},
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2) + "\n")
        self.kubeconfig.chmod(0o600)

    def stop(self) -> None:
        """Stop both processes (SIGTERM, then SIGKILL) and remove the temporary directory."""
        if self._stopped:
            return
        self._stopped = True
        # The API server first: it would otherwise log etcd errors while shutting down.
        for proc in (self._apiserver, self._etcd):
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
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
        self._kill(self._apiserver)

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
        self._kill(self._etcd)

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

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes] | None) -> None:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def _restart(
        self, proc: subprocess.Popen[bytes] | None, argv: list[str], log: Path
    ) -> subprocess.Popen[bytes]:
        if self._stopped or not argv:
            raise ControlPlaneError("the control plane is not running")
        if proc is not None and proc.poll() is None:
            raise ControlPlaneError(f"{argv[0]} is still running")
        return self._spawn(argv, log, self._env)

    # -- helpers -----------------------------------------------------------------------

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
        return {"etcd": _tail(self.etcd_log), "kube-apiserver": _tail(self.apiserver_log)}

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
    parser = argparse.ArgumentParser(
        prog="python -m tests.controlplane",
        description="A local kube-apiserver and etcd for remstate.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the control plane and wait for Ctrl-C")
    up.add_argument("--workdir", type=Path, help="keep data, certificates and logs here")
    up.add_argument(
        "--watch-cache", action="store_true", help="serve reads from the API server's cache"
    )
    sub.add_parser("build", help="build (or find cached) kube-apiserver and etcd")
    args = parser.parse_args(argv)

    began = time.monotonic()
    bin_dir = ensure_built()
    built = time.monotonic() - began
    if args.command == "build":
        print(bin_dir)
        return 0

    print(f"# binaries: {bin_dir} (build or cache check took {built:.1f}s)", flush=True)
    try:
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
