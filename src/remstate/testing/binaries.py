"""Where kube-apiserver, etcd and kubectl come from: a cache keyed by version, filled by one script.

The binaries are built from their published Go modules by
``hack/build-controlplane.sh`` into ``~/.cache/remstate/controlplane/<versions>/bin``
(see DESIGN.md). That script is the one place that knows how to build them and
which versions are the default, so from a checkout (or a wheel, which carries
a copy of it) we run it: it returns at once when the cache is filled. Without
the script we can still use a filled cache, and otherwise say how to fill it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from remstate.testing.errors import ControlPlaneError

__all__ = [
    "ETCD_VERSION",
    "K8S_VERSION",
    "TOOLS",
    "build_script",
    "cache_dir",
    "ensure_built",
    "kubectl",
]

#: The script's default versions; a test checks that the two agree.
K8S_VERSION = "v1.37.2"
ETCD_VERSION = "v3.6.16"
#: kubectl is built from the same wrapper module as kube-apiserver, so that tests
#: and the README use the real one (``apply -k``, ``auth can-i``, ``get -o yaml``).
TOOLS = ("kube-apiserver", "etcd", "kubectl")
#: A directory holding every one of ``TOOLS``, to use instead of the cache.
BIN_ENV = "REMSTATE_CONTROLPLANE_BIN"

_HERE = Path(__file__).resolve().parent
#: The copy in a wheel first, then the checkout's (src/remstate/testing -> the root).
_SCRIPT_CANDIDATES = (
    _HERE / "build-controlplane.sh",
    _HERE.parents[2] / "hack" / "build-controlplane.sh",
)


def build_script() -> Path | None:
    """``build-controlplane.sh``, from the installed package or the checkout; None if neither."""
    return next((path for path in _SCRIPT_CANDIDATES if path.is_file()), None)


def cache_dir() -> Path:
    """The cache directory for the versions the environment selects, as the script names it."""
    root = os.environ.get("REMSTATE_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "remstate"
    )
    k8s = os.environ.get("REMSTATE_K8S_VERSION") or K8S_VERSION
    etcd = os.environ.get("REMSTATE_ETCD_VERSION") or ETCD_VERSION
    return Path(root) / "controlplane" / f"k8s-{k8s}-etcd-{etcd}"


def _missing(bin_dir: Path) -> list[str]:
    return [tool for tool in TOOLS if not os.access(bin_dir / tool, os.X_OK)]


def _run_script(script: Path) -> Path:
    proc = subprocess.run(
        ["bash", str(script)],
        cwd=script.parent,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ControlPlaneError(
            f"{script} failed with exit code {proc.returncode} (its messages are above); "
            "building needs Go 1.26 or later and the Go module proxy"
        )
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise ControlPlaneError(f"{script} printed no output directory")
    return Path(lines[-1]) / "bin"


def ensure_built(*, build: bool = True) -> Path:
    """Return the directory holding kube-apiserver, etcd and kubectl, building them if need be.

    In order: the directory named by ``$REMSTATE_CONTROLPLANE_BIN``; the build
    script's answer (cached, or built now: minutes on a cold cache); the cache
    without the script. ``build=False`` never runs the script.

    Raises:
        ControlPlaneError: the binaries are not there and cannot be built;
            the message says where they were looked for and how to build them.
    """
    given = os.environ.get(BIN_ENV)
    if given:
        bin_dir = Path(given)
        if missing := _missing(bin_dir):
            raise ControlPlaneError(f"${BIN_ENV}={given} has no executable {', '.join(missing)}")
        return bin_dir
    script = build_script()
    if script is not None and build:
        bin_dir = _run_script(script)
        if missing := _missing(bin_dir):
            raise ControlPlaneError(f"{script} did not produce {', '.join(missing)} in {bin_dir}")
        return bin_dir
    bin_dir = cache_dir() / "bin"
    if not _missing(bin_dir):
        return bin_dir
    how = (
        f"run `bash {script}` (needs Go 1.26+)"
        if script is not None
        else "run `hack/build-controlplane.sh` from a remstate checkout (needs Go 1.26+)"
    )
    raise ControlPlaneError(
        f"{', '.join(TOOLS)} are not in {bin_dir}: {how}, "
        f"or set ${BIN_ENV} to a directory holding them all"
    )


def kubectl(*, build: bool = True) -> Path:
    """The path of the kubectl built beside kube-apiserver (see :func:`ensure_built`).

    Raises:
        ControlPlaneError: as :func:`ensure_built`.
    """
    return ensure_built(build=build) / "kubectl"
