"""The ``remstate`` command on the embedded store: its output and its documented exit codes.

Most tests call ``remstate.cli.main`` in-process; one runs the installed
console script, because a workflow step runs that, not ``main``.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from remstate import cli
from remstate.cli import Exit, exit_code, main
from remstate.errors import (
    CorruptState,
    CorruptStore,
    Forbidden,
    InvalidInput,
    MaxIterationsReached,
    NotFound,
    OutcomeUnknown,
    RemstateError,
    RetriesExhausted,
    ServerFault,
    StateNotFound,
    StoreError,
    Unavailable,
    UnsupportedSchemaVersion,
)
from remstate.manager import StateManager
from remstate.schema import TaskState
from tests.embedded_files import DAMAGES, as_nobody, filled_store, reachable_dir

TASK = "task-42"


@dataclass(frozen=True)
class Result:
    """What one run of the command left behind."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


Run = Callable[..., Result]


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No REMSTATE_* setting of the developer's shell reaches a test."""
    monkeypatch.delenv("REMSTATE_STORE", raising=False)
    monkeypatch.delenv("REMSTATE_MAX_ITERATIONS", raising=False)
    monkeypatch.delenv("REMSTATE_TIMEOUT", raising=False)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """An embedded store of this test's own."""
    return f"sqlite://{tmp_path / 'state.db'}"


@pytest.fixture
def run_bare(capsys: pytest.CaptureFixture[str]) -> Run:
    """Run the command in-process with exactly these arguments."""

    def run(*args: str) -> Result:
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(int(code), captured.out, captured.err)

    return run


@pytest.fixture
def run(run_bare: Run, store_url: str) -> Run:
    """Run the command in-process on this test's store."""
    return lambda *args: run_bare("--store", store_url, *args)


def stored_state(store_url: str, task_id: str = TASK) -> TaskState | None:
    """The task's state as the store holds it, read without the CLI; None if it has none."""
    with StateManager.from_url(store_url) as manager:
        try:
            return manager.get_state(task_id)
        except StateNotFound:
            return None


def assert_one_error_line(result: Result) -> None:
    """A failure prints one ``remstate: ...`` line on stderr and nothing on stdout."""
    assert len(result.err_lines) == 1, result.err
    assert result.err_lines[0].startswith("remstate: ")
    assert result.err_lines[0] != "remstate: "
    assert result.out == ""


class TestIncrement:
    def test_prints_the_new_iteration(self, run: Run) -> None:
        """Each increment prints the task's new iteration number."""
        assert [run("increment", TASK).out for _ in range(3)] == ["1\n", "2\n", "3\n"]

    def test_json_output(self, run: Run) -> None:
        """``-o json`` prints a JSON object with the task ID and the iteration."""
        run("increment", TASK)
        result = run("-o", "json", "increment", TASK)
        assert result.code == Exit.OK
        assert result.json() == {"task_id": TASK, "iteration": 2}

    def test_note_is_kept_in_the_iteration_record(self, run: Run) -> None:
        """``--note`` is stored with the iteration it starts."""
        run("increment", TASK, "--note", "first attempt")
        history = run("-o", "json", "get", TASK).json()["iteration_history"]
        assert [record.get("note") for record in history] == ["first attempt"]

    def test_at_the_maximum_exits_4_and_writes_nothing(self, run: Run) -> None:
        """At ``--max-iterations`` the increment exits 4 with one line and leaves the state."""
        for _ in range(2):
            assert run("--max-iterations", "2", "increment", TASK).code == Exit.OK

        result = run("--max-iterations", "2", "increment", TASK)

        assert result.code == Exit.MAX_ITERATIONS == 4
        assert_one_error_line(result)
        state = run("-o", "json", "get", TASK).json()
        assert state["iteration"] == 2
        assert len(state["iteration_history"]) == 2


class TestGet:
    def test_prints_a_summary(self, run: Run) -> None:
        """The text output is one line naming the task, its iteration and its status."""
        run("increment", TASK)
        result = run("get", TASK)
        assert result.code == Exit.OK
        assert result.out.startswith(f"task {TASK}: iteration 1, status pending,")
        assert len(result.out.splitlines()) == 1

    def test_json_output_is_the_state(self, run: Run) -> None:
        """``-o json`` prints the whole state as JSON."""
        run("increment", TASK)
        state = run("-o", "json", "get", TASK).json()
        assert (state["task_id"], state["iteration"], state["status"]) == (TASK, 1, "pending")

    def test_missing_task_exits_3(self, run: Run) -> None:
        """A task with no state exits 3 with one line on stderr."""
        result = run("get", TASK)
        assert result.code == Exit.NOT_FOUND == 3
        assert_one_error_line(result)


class TestBadInput:
    @pytest.mark.parametrize(
        ("store", "args"),
        [
            pytest.param(None, ["status", TASK, "bogus"], id="unknown-status"),
            pytest.param(
                None,
                ["feedback", "add", TASK, "looks wrong", "--author", "r", "--severity", "urgent"],
                id="unknown-severity",
            ),
            pytest.param(None, ["increment", TASK, "--bogus"], id="unknown-option"),
            pytest.param(None, ["-o", "yaml", "increment", TASK], id="unknown-output-format"),
            pytest.param(None, ["--max-iterations", "0", "increment", TASK], id="max-iterations-0"),
            pytest.param(None, ["status", TASK], id="missing-argument"),
            pytest.param(None, ["feedback", "add", TASK, "looks wrong"], id="missing-author"),
            pytest.param(None, ["bogus", TASK], id="unknown-command"),
            pytest.param(None, ["increment", ""], id="empty-task-id"),
            pytest.param(None, ["error", TASK, ""], id="empty-error-message"),
            pytest.param("nosuch://somewhere", ["increment", TASK], id="unknown-store-scheme"),
            pytest.param("sqlite://", ["increment", TASK], id="store-url-without-path"),
        ],
    )
    def test_exits_2_with_one_line_and_writes_nothing(
        self, run_bare: Run, store_url: str, store: str | None, args: list[str]
    ) -> None:
        """Bad input or usage exits 2 with one line on stderr; the task gets no state."""
        result = run_bare("--store", store or store_url, *args)
        assert result.code == Exit.INVALID == 2
        assert_one_error_line(result)
        assert stored_state(store_url) is None

    def test_no_arguments_exits_2_with_one_line(self, run_bare: Run) -> None:
        """With no arguments the help is shown and one line on stderr says a command is missing."""
        result = run_bare()
        assert result.code == Exit.INVALID
        assert len(result.err_lines) == 1
        assert result.err_lines[0].startswith("remstate: ")
        assert result.err_lines[0] != "remstate: "

    def test_help_exits_0(self, run: Run) -> None:
        """``--help`` is not an error."""
        result = run("increment", "--help")
        assert result.code == Exit.OK
        assert result.err == ""


class TestFeedback:
    def add(self, run: Run, entry_id: str, description: str = "looks wrong") -> Result:
        return run(
            "feedback", "add", TASK, description, "--author", "reviewer", "--id", entry_id,
            "--severity", "high", "--type", "bug",
        )  # fmt: skip

    def test_add_prints_the_entry_id(self, run: Run) -> None:
        """``feedback add`` prints the ID of the entry it added."""
        result = self.add(run, "fb-1")
        assert (result.code, result.out) == (Exit.OK, "fb-1\n")

    def test_add_with_the_same_id_twice_adds_one_entry(self, run: Run) -> None:
        """A retried ``feedback add --id`` is a no-op: the list shows one entry."""
        assert self.add(run, "fb-1").code == Exit.OK
        assert self.add(run, "fb-1").code == Exit.OK

        page = run("-o", "json", "feedback", "list", TASK).json()

        assert page["total"] == 1
        assert page["next_cursor"] is None
        [entry] = page["entries"]
        assert entry["id"] == "fb-1"
        assert (entry["author"], entry["severity"], entry["issue_type"]) == (
            "reviewer",
            "high",
            "bug",
        )
        assert entry["description"] == "looks wrong"
        assert entry["resolved"] is False

    def test_pages_return_every_entry_once(self, run: Run) -> None:
        """Following ``--cursor`` with ``--limit`` yields every entry exactly once, oldest first."""
        ids = [f"fb-{n}" for n in range(7)]
        for entry_id in ids:
            self.add(run, entry_id)

        seen: list[str] = []
        pages = 0
        cursor: list[str] = []
        while True:
            result = run("-o", "json", "feedback", "list", TASK, "--limit", "3", *cursor)
            assert result.code == Exit.OK
            page = result.json()
            assert page["total"] == len(ids)
            seen += [entry["id"] for entry in page["entries"]]
            pages += 1
            if page["next_cursor"] is None:
                break
            cursor = ["--cursor", page["next_cursor"]]

        assert seen == ids
        assert pages == 3

    def test_text_list_tells_the_next_cursor(self, run: Run) -> None:
        """The text list ends with the option that reads the next page."""
        for entry_id in ("fb-1", "fb-2"):
            self.add(run, entry_id)
        lines = run("feedback", "list", TASK, "--limit", "1").out.splitlines()
        assert lines[0] == "[ ] fb-1 high/bug reviewer: looks wrong"
        assert lines[1].startswith("next page: --cursor ")

    def test_bad_cursor_exits_2(self, run: Run) -> None:
        """A cursor that no page handed out exits 2."""
        self.add(run, "fb-1")
        result = run("feedback", "list", TASK, "--cursor", "not-a-cursor")
        assert result.code == Exit.INVALID
        assert_one_error_line(result)

    def test_resolve_marks_the_entry(self, run: Run) -> None:
        """``feedback resolve`` prints the entry marked resolved, and the store keeps it so."""
        self.add(run, "fb-1")

        result = run("feedback", "resolve", TASK, "fb-1")

        assert (result.code, result.out) == (Exit.OK, "[x] fb-1 high/bug reviewer: looks wrong\n")
        [entry] = run("-o", "json", "feedback", "list", TASK).json()["entries"]
        assert entry["resolved"] is True
        assert "resolved_at" in entry

    def test_resolve_unknown_entry_exits_2(self, run: Run) -> None:
        """Resolving an ID the task does not have exits 2."""
        self.add(run, "fb-1")
        result = run("feedback", "resolve", TASK, "fb-9")
        assert result.code == Exit.INVALID
        assert_one_error_line(result)


class TestStatus:
    @pytest.mark.parametrize(
        "status",
        ["pending", "in_progress", "awaiting_review", "completed", "failed", "cancelled"],
    )
    def test_sets_the_status(self, run: Run, store_url: str, status: str) -> None:
        """``status`` stores each documented status and prints the state."""
        result = run("-o", "json", "status", TASK, status)
        assert result.code == Exit.OK
        assert result.json()["status"] == status
        stored = stored_state(store_url)
        assert stored is not None
        assert stored.status == status

    def test_text_output_is_the_summary(self, run: Run) -> None:
        """The text output is the one-line summary with the new status."""
        result = run("status", TASK, "in_progress")
        assert result.out.startswith(f"task {TASK}: iteration 0, status in_progress,")


class TestError:
    def test_records_the_message(self, run: Run) -> None:
        """``error`` prints ``recorded`` and the state keeps the message."""
        result = run("error", TASK, "the build failed")
        assert (result.code, result.out) == (Exit.OK, "recorded\n")
        errors = run("-o", "json", "get", TASK).json()["error_messages"]
        assert [e["message"] for e in errors] == ["the build failed"]

    def test_json_output_is_the_record(self, run: Run) -> None:
        """``-o json`` prints the error record with its message and time."""
        record = run("-o", "json", "error", TASK, "the build failed").json()
        assert record["message"] == "the build failed"
        assert "timestamp" in record


class TestDelete:
    def test_deletes_the_state(self, run: Run, store_url: str) -> None:
        """``delete`` prints ``deleted`` and the task has no state after it."""
        run("increment", TASK)
        result = run("delete", TASK)
        assert (result.code, result.out) == (Exit.OK, "deleted\n")
        assert stored_state(store_url) is None
        assert run("get", TASK).code == Exit.NOT_FOUND

    def test_json_output(self, run: Run) -> None:
        """``-o json`` confirms the deletion as JSON."""
        run("increment", TASK)
        assert run("-o", "json", "delete", TASK).json() == {"task_id": TASK, "deleted": True}

    def test_missing_task_exits_3(self, run: Run) -> None:
        """Deleting a task with no state exits 3 with one line on stderr."""
        result = run("delete", TASK)
        assert result.code == Exit.NOT_FOUND
        assert_one_error_line(result)


class TestDemo:
    def test_json_output_is_a_completed_loop(self, run: Run) -> None:
        """``demo`` prints a state at iteration 2, completed, with its feedback resolved."""
        result = run("-o", "json", "demo")
        assert result.code == Exit.OK
        state = result.json()
        assert (state["task_id"], state["iteration"], state["status"]) == ("demo", 2, "completed")
        assert [e["resolved"] for e in state["feedback_history"]] == [True]

    def test_text_output_names_the_store(self, run: Run, store_url: str) -> None:
        """The text output names the store, then summarises the state."""
        lines = run("demo").out.splitlines()
        assert lines[0] == f"store: {store_url}"
        assert lines[1].startswith("task demo: iteration 2, status completed,")

    def test_runs_again_from_the_start(self, run: Run) -> None:
        """A second ``demo`` replaces the first one's state rather than adding to it."""
        run("demo")
        assert run("-o", "json", "demo").json()["iteration"] == 2


class TestStoreOption:
    def test_environment_variable_chooses_the_store(
        self, run_bare: Run, store_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With no ``--store``, REMSTATE_STORE names the store."""
        monkeypatch.setenv("REMSTATE_STORE", store_url)
        assert run_bare("increment", TASK).code == Exit.OK
        stored = stored_state(store_url)
        assert stored is not None
        assert stored.iteration == 1

    def test_option_wins_over_the_environment(
        self, run_bare: Run, tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``--store`` is used even when REMSTATE_STORE names another store."""
        other = f"sqlite://{tmp_path / 'other.db'}"
        monkeypatch.setenv("REMSTATE_STORE", other)
        assert run_bare("--store", store_url, "increment", TASK).code == Exit.OK
        assert stored_state(store_url) is not None
        assert stored_state(other) is None

    def test_store_directory_is_created(self, run_bare: Run, tmp_path: Path) -> None:
        """An embedded store's missing parent directories are made."""
        url = f"sqlite://{tmp_path / 'a' / 'b' / 'state.db'}"
        assert run_bare("--store", url, "increment", TASK).code == Exit.OK
        assert (tmp_path / "a" / "b" / "state.db").is_file()

    def test_unusable_store_path_is_one_line(self, run_bare: Run, tmp_path: Path) -> None:
        """A store path under a regular file fails with one line, not a traceback."""
        (tmp_path / "file").write_text("")
        result = run_bare("--store", f"sqlite://{tmp_path / 'file' / 'state.db'}", "get", TASK)
        assert result.code == Exit.UNAVAILABLE
        assert_one_error_line(result)


class TestKubeconfig:
    @pytest.mark.parametrize(
        "content",
        [
            pytest.param(None, id="missing"),
            pytest.param("garbage: [\n  not yaml", id="garbage"),
            pytest.param("apiVersion: v1\nkind: Config\n", id="no-contexts"),
        ],
    )
    @pytest.mark.parametrize("command", [["get", "42"], ["increment", "42"]])
    def test_unusable_kubeconfig_exits_6_with_one_line(
        self,
        run_bare: Run,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        content: str | None,
        command: list[str],
    ) -> None:
        """A missing or broken kubeconfig outside a pod exits 6 with one line naming it."""
        kubeconfig = tmp_path / "kubeconfig"
        if content is not None:
            kubeconfig.write_text(content)
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        monkeypatch.setenv("REMSTATE_STORE", "kubernetes://default")
        # Not a pod, whatever the machine running the tests is.
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
        result = run_bare(*command)
        assert result.code == Exit.UNAVAILABLE == 6
        assert_one_error_line(result)
        assert str(kubeconfig) in result.err


class TestTimeout:
    def test_timeout_after_the_command_is_taken(self, run: Run) -> None:
        """``--timeout`` is a global option, accepted after the command like ``-o``."""
        result = run("increment", TASK, "--timeout", "5")
        assert (result.code, result.out) == (0, "1\n")

    @pytest.mark.parametrize("value", ["0", "-1", "soon"])
    def test_a_bad_timeout_exits_2_and_writes_nothing(
        self, run: Run, store_url: str, value: str
    ) -> None:
        """A timeout that is not a positive number of seconds is refused before any write."""
        result = run("--timeout", value, "increment", TASK)
        assert result.code == Exit.INVALID
        assert_one_error_line(result)
        assert stored_state(store_url) is None


class TestStoreSetting:
    @pytest.mark.parametrize("value", ["", " "])
    @pytest.mark.parametrize("where", ["option", "environment"])
    def test_empty_store_exits_2_and_writes_nothing(
        self,
        run_bare: Run,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        where: str,
        value: str,
    ) -> None:
        """An empty ``--store`` or REMSTATE_STORE exits 2; the default store is not used."""
        default = tmp_path / "default" / "state.db"
        monkeypatch.setattr(cli.options, "DEFAULT_DB", default)
        if where == "option":
            result = run_bare("--store", value, "increment", TASK)
        else:
            monkeypatch.setenv("REMSTATE_STORE", value)
            result = run_bare("increment", TASK)
        assert result.code == Exit.INVALID == 2
        assert_one_error_line(result)
        assert "empty" in result.err
        assert list(tmp_path.iterdir()) == []


class TestEmbeddedStoreFile:
    @pytest.mark.parametrize(
        "command",
        [
            ["get", "42"],
            ["feedback", "list", "42"],
            ["delete", "42"],
            ["feedback", "resolve", "42", "x"],
        ],
    )
    def test_reads_create_nothing(
        self, run_bare: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
    ) -> None:
        """A read of a store that does not exist exits 3, says so, and creates no file or dir."""
        monkeypatch.chdir(tmp_path)
        result = run_bare("-s", "sqlite://typo/dir/s.db", *command)
        assert result.code == Exit.NOT_FOUND == 3
        assert_one_error_line(result)
        assert f"{tmp_path / 'typo' / 'dir' / 's.db'} does not exist" in result.err
        assert list(tmp_path.iterdir()) == []

    @pytest.mark.parametrize("command", [["get", TASK], ["increment", TASK]])
    def test_unopenable_file_is_named(
        self, run_bare: Run, tmp_path: Path, command: list[str]
    ) -> None:
        """A store SQLite cannot open exits 6 with one line that names the file."""
        path = tmp_path / "state.db"
        path.mkdir()
        result = run_bare("-s", f"sqlite://{path}", *command)
        assert result.code == Exit.UNAVAILABLE == 6
        assert_one_error_line(result)
        assert str(path) in result.err

    @pytest.mark.parametrize("damage", DAMAGES, ids=lambda f: f.__name__)
    @pytest.mark.parametrize("command", [["get", TASK], ["increment", TASK]])
    def test_damaged_file_exits_8_naming_it(
        self,
        run_bare: Run,
        tmp_path: Path,
        damage: Callable[[str], None],
        command: list[str],
    ) -> None:
        """A damaged, foreign or newer-layout file exits 8 (never 1) with one line naming it."""
        path = tmp_path / "state.db"
        filled_store(path)
        assert run_bare("-s", f"sqlite://{path}", "increment", TASK).code == Exit.OK
        damage(str(path))
        result = run_bare("-s", f"sqlite://{path}", *command)
        assert result.code == Exit.CORRUPT == 8
        assert_one_error_line(result)
        assert str(path) in result.err

    def test_read_only_url_refuses_writes_with_7(
        self, run_bare: Run, tmp_path: Path, store_url: str
    ) -> None:
        """``?mode=ro`` reads; a write exits 7 and writes nothing; a missing file stays missing."""
        assert run_bare("-s", store_url, "increment", TASK).code == Exit.OK
        assert run_bare("-s", f"{store_url}?mode=ro", "get", TASK).code == Exit.OK
        result = run_bare("-s", f"{store_url}?mode=ro", "increment", TASK)
        assert result.code == Exit.FORBIDDEN == 7
        assert_one_error_line(result)
        stored = stored_state(store_url)
        assert stored is not None
        assert stored.iteration == 1
        missing = tmp_path / "new" / "state.db"
        assert run_bare("-s", f"sqlite://{missing}?mode=ro", "increment", TASK).code == 3
        assert not missing.parent.exists()

    def test_read_only_file_reads_and_refuses_writes_with_7(self) -> None:
        """A file its user may not write: ``get`` works; a write exits 7 naming it, and fails."""
        with reachable_dir() as directory:
            url = f"sqlite://{directory / 'state.db'}"
            assert main(["-s", url, "increment", TASK]) == Exit.OK
            (directory / "state.db").chmod(0o444)

            def run(*args: str) -> tuple[int, str, str]:
                out, err = io.StringIO(), io.StringIO()
                with redirect_stdout(out), redirect_stderr(err):
                    code = main(["-s", url, *args])
                return int(code), out.getvalue(), err.getvalue()

            read = as_nobody(lambda: run("get", TASK))
            write = as_nobody(lambda: run("increment", TASK))
            assert read[0] == "ok"
            code, out, err = read[1]  # type: ignore[misc]
            assert (code, err) == (Exit.OK, "")
            assert out.startswith(f"task {TASK}: iteration 1,")
            assert write[0] == "ok"
            code, out, err = write[1]  # type: ignore[misc]
            assert code == Exit.FORBIDDEN == 7
            assert out == ""
            assert len(err.splitlines()) == 1
            assert str(directory / "state.db") in err
            assert "read-only" in err
            stored = stored_state(url)
            assert stored is not None
            assert stored.iteration == 1


class TestExitCode:
    @pytest.mark.parametrize(
        ("error", "code"),
        [
            (MaxIterationsReached(TASK, 10, 10), 4),
            (InvalidInput("bad"), 2),
            (StateNotFound(TASK), 3),
            (NotFound("gone"), 3),
            (RetriesExhausted("too many conflicts", attempts=8), 5),
            (Unavailable("down"), 6),
            (OutcomeUnknown("may have committed"), 9),
            (ServerFault("etcd is full"), 10),
            (Forbidden("no"), 7),
            (CorruptState("garbled"), 8),
            (UnsupportedSchemaVersion(2, 1), 8),
            (CorruptStore("damaged file"), 8),
            (StoreError("failed"), 1),
            (RuntimeError("not ours"), 1),
        ],
        ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
    )
    def test_maps_each_error_to_its_documented_code(self, error: BaseException, code: int) -> None:
        """Each error class exits with the code the module docstring documents."""
        assert exit_code(error) == code


def _error_tree(root: type[RemstateError] = RemstateError) -> list[type[RemstateError]]:
    """Every class under ``root`` that remstate defines, depth first.

    ``StoreError`` itself is left out, as ``RemstateError`` is: raised bare, it is
    a store failure the store could not classify (exit 1, see ``TestExitCode``).
    """
    found: list[type[RemstateError]] = []
    for sub in root.__subclasses__():
        if sub.__module__.startswith("remstate."):
            found += [*([] if sub is StoreError else [sub]), *_error_tree(sub)]
    return found


def _documented_codes() -> set[int]:
    """The codes the module docstring's table lists, one per line that starts with a code."""
    assert cli.__doc__ is not None
    return {int(m.group(1)) for m in re.finditer(r"^ {2,4}(\d+) {2}\S", cli.__doc__, re.M)}


class TestErrorTree:
    @pytest.mark.parametrize("kind", _error_tree(), ids=lambda kind: kind.__name__)
    def test_each_error_class_has_a_code_of_its_own(self, kind: type[RemstateError]) -> None:
        """Every class of the tree maps to a documented code other than 1 (unexpected)."""
        error = kind.__new__(kind)  # the code depends on the class alone
        code = exit_code(error)
        assert code != Exit.ERROR
        assert code in _documented_codes()

    def test_the_tree_is_walked_whole(self) -> None:
        """The walk finds the store's 409, 410 and 422 classes and the outage ones."""
        names = {kind.__name__ for kind in _error_tree()}
        assert {"AlreadyExists", "Conflict", "Gone", "CorruptStore", "ServerFault"} <= names
        assert {"OutcomeUnknown", "StateNotFound", "UnsupportedSchemaVersion"} <= names
        assert "InvalidObject" in names

    def test_the_docstring_lists_every_code(self) -> None:
        """The module docstring's table has a line for each exit code, and nothing else."""
        assert _documented_codes() == {int(code) for code in Exit}


class TestConsoleScript:
    def test_installed_script_runs_a_step(self, store_url: str) -> None:
        """The installed ``remstate`` prints JSON and exits 0, then exits 4 at the maximum."""
        script = Path(sys.executable).parent / "remstate"
        assert script.is_file(), f"the console script is not installed at {script}"
        argv = [str(script), "--store", store_url, "--max-iterations", "1", "-o", "json"]

        first = subprocess.run(
            [*argv, "increment", TASK], capture_output=True, text=True, timeout=60, check=False
        )
        second = subprocess.run(
            [*argv, "increment", TASK], capture_output=True, text=True, timeout=60, check=False
        )

        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout) == {"task_id": TASK, "iteration": 1}
        assert first.stderr == ""
        assert second.returncode == 4
        assert second.stdout == ""
        assert len(second.stderr.splitlines()) == 1
        assert second.stderr.startswith("remstate: ")


class TestGlobalOptionsAnywhere:
    @pytest.mark.parametrize(
        "args",
        [
            ["increment", TASK, "-o", "json"],
            ["increment", TASK, "--output=json"],
            ["-o", "json", "increment", TASK],
            ["increment", "-o", "json", TASK],
        ],
    )
    def test_output_option_after_the_command(
        self, run_bare: Run, store_url: str, args: list[str]
    ) -> None:
        """`remstate increment 42 -o json` works as the README shows it."""
        result = run_bare(*args, "--store", store_url)
        assert result.code == Exit.OK, result.err
        assert result.json() == {"task_id": TASK, "iteration": 1}

    def test_max_iterations_after_the_command(self, run_bare: Run, store_url: str) -> None:
        """--max-iterations after the command still sets the limit (exit 4 past it)."""
        assert run_bare("increment", TASK, "--store", store_url, "--max-iterations", "1").code == 0
        result = run_bare("increment", TASK, "--store", store_url, "--max-iterations", "1")
        assert result.code == Exit.MAX_ITERATIONS
        assert len(result.err_lines) == 1

    def test_a_subcommand_value_that_looks_like_an_option_stays(
        self, run_bare: Run, store_url: str
    ) -> None:
        """`--note -o` keeps "-o" as the note; only the later `-o json` is the output option."""
        result = run_bare("increment", TASK, "--note", "-o", "-o", "json", "--store", store_url)
        assert result.code == Exit.OK, result.err
        assert result.json() == {"task_id": TASK, "iteration": 1}
        state = run_bare("get", TASK, "-o", "json", "--store", store_url).json()
        assert state["iteration_history"][0]["note"] == "-o"

    def test_a_value_after_double_dash_is_an_argument(self, run_bare: Run, store_url: str) -> None:
        """After `--`, "-o" is the error message, not the output option."""
        result = run_bare("error", TASK, "-s", store_url, "-o", "json", "--", "-o")
        assert result.code == Exit.OK, result.err
        assert result.json()["message"] == "-o"

    def test_options_between_the_subgroup_and_its_command(
        self, run_bare: Run, store_url: str
    ) -> None:
        """`remstate feedback -o json list 42` takes the option where it stands."""
        run_bare("-s", store_url, "feedback", "add", TASK, "looks wrong", "--author", "r")
        result = run_bare("feedback", "-o", "json", "-s", store_url, "list", TASK)
        assert result.code == Exit.OK, result.err
        assert result.json()["total"] == 1

    def test_the_later_value_wins(self, run_bare: Run, store_url: str) -> None:
        """Given before and after the command, the value after it is used."""
        result = run_bare("-o", "text", "-s", store_url, "increment", TASK, "-o", "json")
        assert result.json() == {"task_id": TASK, "iteration": 1}

    def test_an_option_after_the_command_wins_over_the_environment(
        self, run_bare: Run, store_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """REMSTATE_MAX_ITERATIONS=1 is overridden by `--max-iterations 2` after the command."""
        monkeypatch.setenv("REMSTATE_MAX_ITERATIONS", "1")
        for _ in range(2):
            assert run_bare("increment", TASK, "-s", store_url, "--max-iterations", "2").code == 0
        assert run_bare("increment", TASK, "-s", store_url).code == Exit.MAX_ITERATIONS

    @pytest.mark.parametrize("args", [["increment", "--help"], ["feedback", "list", "--help"]])
    def test_each_command_lists_the_global_options(self, run_bare: Run, args: list[str]) -> None:
        """A command's help shows the global options it accepts."""
        result = run_bare(*args)
        assert result.code == Exit.OK
        for option in ("--output", "--store", "--max-iterations", "--timeout"):
            assert option in result.out
