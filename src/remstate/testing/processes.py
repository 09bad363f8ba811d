"""The child processes of a test control plane: ports, spawning, stopping, logs.

A control plane runs on a busy shared machine, so its children must never
outlive the process that started them: each is killed when its parent dies,
even by SIGKILL, and is stopped on loopback ports found free just before.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

__all__ = ["free_ports", "kill", "spawn", "tail", "terminate"]


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now; held open together so that they differ."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def tail(path: Path, lines: int) -> str:
    """The last lines of a log, or why it cannot be read."""
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


def spawn(
    argv: Sequence[str], *, log: IO[bytes], env: Mapping[str, str], cwd: Path
) -> subprocess.Popen[bytes]:
    """Start a child writing stdout and stderr to ``log``, killed if we die."""
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,
        # Ctrl-C in a terminal goes to our process group; we stop the children ourselves.
        start_new_session=True,
        preexec_fn=_parent_death_signal(),  # noqa: PLW1509 (no locks taken in it)
    )


def terminate(proc: subprocess.Popen[bytes] | None, grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; nothing if it is not running."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def kill(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL (a crash: no wait for in-flight requests); nothing if it is not running."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()
