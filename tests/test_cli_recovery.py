"""``remstate validate``, ``recover``, ``snapshots`` and ``snapshots restore``, and exit code 11."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from remstate.cli import Exit, main
from remstate.manager import StateManager
from remstate.schema import object_name

TASK = "task-42"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Run = Callable[..., Result]


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REMSTATE_STORE", "REMSTATE_MAX_ITERATIONS", "REMSTATE_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'state.db'}"


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], store_url: str) -> Run:
    def run(*args: str) -> Result:
        code = main(["--store", store_url, *args])
        captured = capsys.readouterr()
        return Result(int(code), captured.out, captured.err)

    return run


def damage(store_url: str, **changes: str) -> None:
    """A task with two increments, then raw changes to its data keys."""
    with StateManager.from_url(store_url) as manager:
        manager.increment_iteration(TASK)
        manager.increment_iteration(TASK)
        head = manager.store.get(object_name(TASK))
        manager.store.replace(dataclasses.replace(head, data={**(head.data or {}), **changes}))


class TestValidate:
    def test_a_clean_state_exits_0(self, run: Run) -> None:
        """No problems: exit 0, and the text says so."""
        assert run("increment", TASK).code == 0
        result = run("validate", TASK)
        assert result.code == Exit.OK
        assert "no problems" in result.out

    def test_problems_exit_11_with_the_report(self, run: Run, store_url: str) -> None:
        """A counter behind its records: exit 11, the problem in the JSON report."""
        damage(store_url, iteration="0")
        result = run("validate", TASK, "-o", "json")
        assert result.code == Exit.PROBLEMS == 11
        report = result.json()
        assert report["ok"] is False
        assert [(p["kind"], p["key"], p["repairable"]) for p in report["problems"]] == [
            ("iteration_mismatch", "iteration", True)
        ]
        assert result.err == ""

    def test_a_newer_remstates_state_exits_8(self, run: Run, store_url: str) -> None:
        """Unsupported: exit 8, reported, not checked further."""
        damage(store_url, schema_version="9")
        result = run("validate", TASK, "-o", "json")
        assert result.code == Exit.CORRUPT == 8
        assert result.json()["supported"] is False

    def test_a_missing_task_exits_3(self, run: Run) -> None:
        """No state: exit 3 with one line."""
        result = run("validate", "nobody")
        assert result.code == Exit.NOT_FOUND
        assert result.err.startswith("remstate: ")


class TestRecover:
    def test_repairs_and_names_the_snapshot(self, run: Run, store_url: str) -> None:
        """recover repairs, names the snapshot and what was not kept; validate is clean after."""
        damage(store_url, metadata="{broken")
        result = run("recover", TASK, "-o", "json")
        assert result.code == Exit.OK
        report = result.json()
        assert report["written"] is True
        assert [x["key"] for x in report["lost"]] == ["metadata"]
        assert report["snapshot"] == f"{object_name(TASK)}-s1"
        assert run("validate", TASK).code == Exit.OK

    def test_text_output_lists_repairs(self, run: Run, store_url: str) -> None:
        """The text names the snapshot, each repair and each thing not kept."""
        damage(store_url, metadata="{broken")
        out = run("recover", TASK).out
        assert "the original is in task-task-42-state-s1" in out
        assert "repaired malformed_json metadata" in out
        assert "not kept metadata" in out

    def test_a_newer_remstates_state_is_left_alone_and_exits_8(
        self, run: Run, store_url: str
    ) -> None:
        """Unsupported: nothing written, no snapshot, exit 8."""
        damage(store_url, schema_version="9")
        result = run("recover", TASK, "-o", "json")
        assert result.code == Exit.CORRUPT
        assert result.json()["written"] is False
        assert run("snapshots", TASK, "-o", "json").json()["snapshots"] == []


class TestSnapshots:
    def test_lists_then_restores(self, run: Run, store_url: str) -> None:
        """snapshots ID lists newest first; snapshots restore ID NAME puts the original back."""
        damage(store_url, iteration="0")
        assert run("recover", TASK).code == 0
        listed = run("snapshots", TASK, "-o", "json").json()["snapshots"]
        assert [s["name"] for s in listed] == ["task-task-42-state-s1"]
        assert listed[0]["reason"] == "recover"

        result = run("snapshots", "restore", TASK, "task-task-42-state-s1", "-o", "json")
        assert result.code == 0
        assert result.json()["snapshot"] == "task-task-42-state-s2"
        assert run("validate", TASK).code == Exit.PROBLEMS  # the damaged original is back
        names = [s["name"] for s in run("snapshots", TASK, "-o", "json").json()["snapshots"]]
        assert names == ["task-task-42-state-s2", "task-task-42-state-s1"]

    def test_no_snapshots_says_so(self, run: Run) -> None:
        """A task with none: an empty list, exit 0."""
        run("increment", TASK)
        result = run("snapshots", TASK)
        assert result.code == 0
        assert result.out.strip() == "no snapshots"

    @pytest.mark.parametrize("words", [["restore", TASK], ["a", "b"], ["restore", TASK, "x", "y"]])
    def test_bad_words_exit_2(self, run: Run, words: list[str]) -> None:
        """Anything but ID, or restore ID NAME: exit 2 with one line."""
        result = run("snapshots", *words)
        assert result.code == Exit.INVALID
        assert len(result.err.splitlines()) == 1

    def test_restoring_another_tasks_object_exits_2(self, run: Run) -> None:
        """A name that is not one of the task's snapshots: exit 2, nothing written."""
        run("increment", TASK)
        result = run("snapshots", "restore", TASK, object_name(TASK))
        assert result.code == Exit.INVALID
        assert run("validate", TASK).code == 0
