"""``remstate watch -o json`` as a real process: the changes other processes make, once each.

On both backends; and on a control plane of this module's own, across a
restart of its API server: the watch resumes from the last resourceVersion,
and the resourceVersions it prints are exactly those of the writes, none
lost, none twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from remstate import StateManager
from remstate.cli import Exit, main
from remstate.retry import RetryPolicy
from remstate.schema import object_name
from remstate.store import Store
from remstate.store.kubernetes import KubernetesStore
from remstate.testing.controlplane import ControlPlane
from tests.backends import StoreSpec, new_namespace

#: How long a line may take to come before the test calls it lost.
WAIT = 60.0


class Watching:
    """A ``remstate watch`` process: its stdout lines as JSON, its stderr kept."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        argv = [sys.executable, "-m", "remstate.cli", "watch", *args]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            cwd=cwd,
            start_new_session=True,
        )
        self.out: queue.Queue[str | None] = queue.Queue()
        self.err: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self.pumps = [
            threading.Thread(target=_pump, args=(stream, into), daemon=True)
            for stream, into in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for pump in self.pumps:
            pump.start()

    def close(self) -> None:
        """Kill the process if it runs; close its pipes once read to their end."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pump in self.pumps:
            pump.join(timeout=WAIT)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def started(self) -> str:
        """The stderr line that says the watch follows the store."""
        while True:
            line = self.err.get(timeout=WAIT)
            assert line is not None, f"exited {self.proc.wait()}: {self.stderr}"
            self.stderr.append(line)
            if "watching" in line:
                return line

    def next(self) -> dict[str, Any]:
        line = self.out.get(timeout=WAIT)
        assert line is not None, f"exited {self.proc.poll()}: {self.stderr}"
        change: dict[str, Any] = json.loads(line)
        return change

    def rest(self) -> list[dict[str, Any]]:
        """Every line left, once the process has ended."""
        lines = []
        while (line := self.out.get(timeout=WAIT)) is not None:
            lines.append(json.loads(line))
        return lines

    def interrupt(self) -> int:
        """Ctrl-C; the exit code."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=WAIT)


def _pump(stream: IO[bytes], into: queue.Queue[str | None]) -> None:
    for raw in stream:
        into.put(raw.decode().rstrip("\n"))
    into.put(None)


@contextlib.contextmanager
def watching(args: list[str], env: dict[str, str], cwd: Path) -> Iterator[Watching]:
    w = Watching(args, env, cwd)
    try:
        w.started()
        yield w
    finally:
        w.close()


def store_args(spec: StoreSpec) -> tuple[list[str], dict[str, str]]:
    if spec.kind == "embedded":
        return ["--store", f"sqlite://{spec.path}"], {}
    assert spec.kubeconfig is not None
    return ["--store", f"kubernetes://{spec.namespace}"], {"KUBECONFIG": spec.kubeconfig}


def version(store: Store, task_id: str) -> str:
    return store.get(object_name(task_id)).resource_version


class TestWatch:
    def test_sees_added_modified_deleted_made_by_another_process(
        self, store_spec: StoreSpec, store: Store, tmp_path: Path
    ) -> None:
        """A create, a change and a delete from this process: ADDED, MODIFIED, DELETED; ^C: 0."""
        manager = StateManager(store)
        manager.increment_iteration("seed")  # so that the embedded file exists
        args, env = store_args(store_spec)
        with watching([*args, "-o", "json"], env, tmp_path) as w:
            manager.increment_iteration("w")
            created = version(store, "w")
            manager.set_status("w", "failed")
            changed = version(store, "w")
            manager.delete_state("w")
            lines = [w.next(), w.next(), w.next()]
            assert w.interrupt() == Exit.OK
        assert [(c["type"], c["task"]["task_id"]) for c in lines] == [
            ("ADDED", "w"),
            ("MODIFIED", "w"),
            ("DELETED", "w"),
        ]
        assert [c["resource_version"] for c in lines[:2]] == [created, changed]
        assert lines[1]["task"]["status"] == "failed"
        assert int(lines[2]["resource_version"]) > int(changed)
        assert w.rest() == []

    def test_filters_and_stops_at_its_timeout(
        self, store_spec: StoreSpec, store: Store, tmp_path: Path
    ) -> None:
        """``watch b --status failed --timeout 8s``: b entering and leaving failed; then 0."""
        manager = StateManager(store)
        manager.increment_iteration("seed")
        args, env = store_args(store_spec)
        filters = ["b", "--status", "failed", "--timeout", "8s", "-o", "json"]
        with watching([*args, *filters], env, tmp_path) as w:
            manager.set_status("a", "failed")
            manager.increment_iteration("b")
            manager.set_status("b", "failed")
            manager.set_status("b", "completed")
            assert w.proc.wait(timeout=WAIT) == Exit.OK
            lines = w.rest()
        assert [(c["task"]["task_id"], c["task"]["status"]) for c in lines] == [
            ("b", "failed"),
            ("b", "completed"),
        ]
        assert lines[1]["previous_status"] == "failed"

    def test_a_bad_status_is_one_line_and_exit_2(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An unknown status: exit 2, one line, before anything is opened."""
        code = main(["--store", f"sqlite://{tmp_path / 'none.db'}", "watch", "--status", "bored"])
        assert code == Exit.INVALID
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1
        assert err[0].startswith("remstate: unknown status 'bored'")


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    """A control plane of this module's own: its API server's restart touches no other test."""
    with ControlPlane.start() as started:
        yield started


class TestApiServerRestart:
    def test_resumes_with_no_change_lost_or_doubled(
        self, plane: ControlPlane, tmp_path: Path
    ) -> None:
        """The API server restarts under the watch: every write's version once, in order."""
        namespace = new_namespace(plane, prefix="watch")
        with plane.api_client() as api:
            store = KubernetesStore(namespace, api_client=api)
            manager = StateManager(store, retry=RetryPolicy(deadline=120))
            manager.increment_iteration("o")
            env = {"KUBECONFIG": str(plane.kubeconfig)}
            args = ["--store", f"kubernetes://{namespace}", "-o", "json"]
            written: list[str] = []
            with watching(args, env, tmp_path) as w:
                for _ in range(3):
                    manager.increment_iteration("o")
                    written.append(version(store, "o"))
                before = [w.next() for _ in range(3)]
                plane.stop_apiserver()
                plane.start_apiserver()
                for _ in range(3):
                    manager.increment_iteration("o")
                    written.append(version(store, "o"))
                after = [w.next() for _ in range(3)]
                assert w.interrupt() == Exit.OK
                rest = w.rest()
        seen = [c["task"]["resource_version"] for c in (*before, *after, *rest)]
        assert seen == written
        assert [c["task"]["iteration"] for c in (*before, *after)] == [2, 3, 4, 5, 6, 7]
        assert any("resuming" in line for line in w.stderr + drain(w.err))


def drain(q: queue.Queue[str | None]) -> list[str]:
    lines = []
    with contextlib.suppress(queue.Empty):
        while (line := q.get(timeout=1)) is not None:
            lines.append(line)
    return lines
