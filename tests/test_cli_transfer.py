"""``remstate export`` and ``remstate import`` on both backends: lines, counts, exit codes.

In-process (``remstate.cli.main``) against the test's store: an embedded
file, or a namespace of the real API server through a kubeconfig. The round
trip embedded -> Kubernetes -> embedded goes through the commands and files.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from remstate import StateManager
from remstate.cli import Exit, main
from remstate.schema import EXPORT_FORMAT, object_name
from remstate.store import Store
from remstate.store.embedded import EmbeddedStore
from remstate.testing.controlplane import ControlPlane
from tests.backends import StoreSpec
from tests.test_transfer import Clock, build_long_history


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines()]


Run = Callable[..., Result]


def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REMSTATE_STORE", "REMSTATE_MAX_ITERATIONS", "REMSTATE_TIMEOUT", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TTY_COMPATIBLE", "0")


def _runner(url: str, capsys: pytest.CaptureFixture[str]) -> Run:
    def run(*args: str) -> Result:
        code = main(["--store", url, *args])
        captured = capsys.readouterr()
        return Result(int(code), captured.out, captured.err)

    return run


@pytest.fixture
def run(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Run:
    """Run ``remstate --store <this test's store> ARGS`` in-process, not on a terminal."""
    _clean_environment(monkeypatch)
    if store_spec.kind == "embedded":
        return _runner(f"sqlite://{store_spec.path}", capsys)
    assert store_spec.kubeconfig is not None
    monkeypatch.setenv("KUBECONFIG", store_spec.kubeconfig)
    return _runner(f"kubernetes://{store_spec.namespace}", capsys)


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


class TestExport:
    def test_every_state_one_line_each(self, run: Run, store: Store) -> None:
        """Every state, one JSON object a line, history included; nothing on stderr."""
        manager = StateManager(store)
        manager.append_feedback("a", author="r", severity="high", issue_type="bug", description="x")
        manager.increment_iteration("b")
        manager.record_error("b", "boom")
        result = run("export")
        assert (result.code, result.err) == (Exit.OK, "")
        lines = {line["task_id"]: line for line in result.lines()}
        assert sorted(lines) == ["a", "b"]
        assert lines["a"]["format"] == EXPORT_FORMAT
        assert lines["a"]["feedback_history"][0]["description"] == "x"
        assert [e["message"] for e in lines["b"]["error_messages"]] == ["boom"]
        assert lines["b"]["iteration_history"][0]["iteration"] == 1

    def test_the_ids_named(self, run: Run) -> None:
        """Only the ids named, in that order; a missing one is one line and exit 3."""
        for task in ("a", "b", "c"):
            run("init", task)
        result = run("export", "c", "nope", "a")
        assert result.code == Exit.NOT_FOUND
        assert [line["task_id"] for line in result.lines()] == ["c", "a"]
        assert result.err == "remstate: task nope: no state\n"

    def test_many_tasks_page_by_page(self, run: Run, store: Store) -> None:
        """More tasks than one listing page: every one exported once."""
        manager = StateManager(store)
        for i in range(130):
            manager.get_or_create_state(f"t{i}")
        result = run("export")
        assert result.code == Exit.OK
        assert sorted(line["task_id"] for line in result.lines()) == sorted(
            f"t{i}" for i in range(130)
        )


class TestImport:
    def test_created_then_skipped(self, run: Run, store: Store, tmp_path: Path) -> None:
        """Import twice: created, then skipped, and the second writes nothing."""
        run("init", "a", "--ttl", "3d")
        run("increment", "b")
        backup = _write(tmp_path / "b.jsonl", run("export").out)
        run("delete", "a")
        run("delete", "b")
        first = run("import", backup)
        assert (first.code, first.err) == (Exit.OK, "")
        assert first.out == "2 created, 0 skipped, 0 overwritten, 0 differs, 0 invalid\n"
        versions = {n: store.get(object_name(n)).resource_version for n in "ab"}
        again = run("-o", "json", "import", backup)
        assert again.json() == {
            "created": 0,
            "skipped": 2,
            "overwritten": 0,
            "differs": 0,
            "invalid": 0,
        }
        assert {n: store.get(object_name(n)).resource_version for n in "ab"} == versions

    def test_differs_then_overwrite(self, run: Run, tmp_path: Path) -> None:
        """A different state: left alone, exit 5; with --overwrite replaced after a snapshot."""
        run("increment", "a")
        backup = _write(tmp_path / "b.jsonl", run("export").out)
        run("increment", "a")
        kept = run("import", backup)
        assert kept.code == Exit.RETRIES_EXHAUSTED == 5
        assert "line 1: task a differs" in kept.err
        assert run("-o", "json", "get", "a").json()["iteration"] == 2
        replaced = run("import", backup, "--overwrite")
        assert replaced.code == Exit.OK
        assert replaced.out.startswith("0 created, 0 skipped, 1 overwritten")
        assert run("-o", "json", "get", "a").json()["iteration"] == 1
        snapshots = run("-o", "json", "snapshots", "a").json()
        assert [s["reason"] for s in snapshots["snapshots"]] == ["import --overwrite"]

    def test_bad_lines(self, run: Run, tmp_path: Path) -> None:
        """Each bad line is reported with its number, nothing written for it; exit 2."""
        run("init", "good")
        good = run("export", "good").out
        run("delete", "good")
        text = "\n".join(
            [
                "{not json",
                good.strip(),
                "",
                json.dumps({**json.loads(good), "task_id": "v2", "version": 2}),
                json.dumps({**json.loads(good), "task_id": "short", "iteration": 4}),
            ]
        )
        result = run("import", _write(tmp_path / "b.jsonl", text + "\n"))
        assert result.code == Exit.INVALID
        assert result.out == "1 created, 0 skipped, 0 overwritten, 0 differs, 3 invalid\n"
        errors = result.err.splitlines()
        assert [e.split(":")[1].strip() for e in errors] == ["line 1", "line 4", "line 5"]
        assert "newer remstate" in errors[1]
        assert "iteration is 4" in errors[2]
        listed = run("-o", "json", "ls").json()["tasks"]
        assert [t["task_id"] for t in listed] == ["good"]

    def test_stdin_and_a_missing_file(
        self, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``-`` reads stdin; a file that is not there is exit 2."""
        run("init", "a")
        backup = run("export").out
        run("delete", "a")
        monkeypatch.setattr("sys.stdin", io.StringIO(backup))
        assert run("import", "-").out.startswith("1 created")
        missing = run("import", str(tmp_path / "nope.jsonl"))
        assert missing.code == Exit.INVALID
        assert "cannot read" in missing.err

    def test_progress_bar_on_a_terminal_only(
        self, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """On a terminal a progress bar on stderr; piped, stderr stays empty."""
        run("init", "a")
        piped = run("export")
        assert piped.err == ""
        monkeypatch.setenv("TTY_COMPATIBLE", "1")
        shown = run("export")
        assert "exporting" in shown.err
        assert [line["task_id"] for line in shown.lines()] == ["a"]
        imported = run("import", _write(tmp_path / "b.jsonl", shown.out))
        assert "importing" in imported.err


def test_round_trip_through_the_commands(
    tmp_path: Path,
    controlplane: ControlPlane,
    controlplane_namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """embedded -> Kubernetes -> embedded with the commands: the exports are identical."""
    _clean_environment(monkeypatch)
    kubeconfig = controlplane.write_kubeconfig(tmp_path / "kc", namespace=controlplane_namespace)
    with EmbeddedStore(str(tmp_path / "a.db")) as source:
        manager = StateManager(source, clock=Clock())
        build_long_history(manager)
        manager.increment_iteration("small")
    embedded = _runner(f"sqlite://{tmp_path / 'a.db'}", capsys)
    kube = _runner("kubernetes://", capsys)
    back = _runner(f"sqlite://{tmp_path / 'b.db'}", capsys)

    first = embedded("export").out
    backup = _write(tmp_path / "1.jsonl", first)
    assert kube("--kubeconfig", str(kubeconfig), "import", backup).code == Exit.OK
    second = kube("--kubeconfig", str(kubeconfig), "export").out
    assert back("import", _write(tmp_path / "2.jsonl", second)).code == Exit.OK
    third = back("export").out

    def by_task(text: str) -> dict[str, Any]:
        return {json.loads(line)["task_id"]: json.loads(line) for line in text.splitlines()}

    assert by_task(first) == by_task(second) == by_task(third)
    assert len(by_task(first)["Org/Repo#7"]["feedback_history"]) == 600
