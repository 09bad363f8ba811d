"""The CPU time the control plane's own processes (kube-apiserver and etcd) spend.

The capacity model needs what a request costs the server, not the client:
on this machine both share 2 cores, so a rate says little about a cluster's
dedicated control plane, but CPU seconds per request carry over (to a
first order). Read from ``/proc/PID/stat`` (utime + stime) of the plane's
two processes, found by their command lines naming the plane's working
directory (Linux only, as the bench's clock already is).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from remstate.testing.controlplane import ControlPlane

__all__ = ["server_cpu"]

_TICK = os.sysconf("SC_CLK_TCK")


def _pids(workdir: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        name = Path(argv[0].decode(errors="replace")).name
        if name in ("etcd", "kube-apiserver") and any(workdir.encode() in a for a in argv):
            found.append(int(entry.name))
    return found


def _cpu(pid: int) -> float:
    # Fields after the command (which may hold spaces) in parentheses; utime, stime are 14, 15.
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def server_cpu(plane: ControlPlane) -> Callable[[], float]:
    """A reader of the CPU seconds kube-apiserver and etcd of ``plane`` have used so far."""
    pids = _pids(str(plane.workdir))
    if len(pids) != 2:
        raise RuntimeError(f"found {len(pids)} control-plane processes of {plane.workdir}, not 2")
    return lambda: sum(_cpu(p) for p in pids)
