"""``remstate ls`` and ``remstate init`` on both backends: output forms, paging, exit codes.

The command runs in-process (``remstate.cli.main``) against the test's store:
an embedded file, or a namespace of the real API server through a kubeconfig.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from remstate import Policy, StateManager
from remstate.cli import Exit, main
from remstate.schema import utc_now
from remstate.store import Store
from tests.backends import StoreSpec


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Run = Callable[..., Result]


@pytest.fixture
def run(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Run:
    """Run ``remstate --store <this test's store> ARGS`` in-process, not on a terminal."""
    for name in ("REMSTATE_STORE", "REMSTATE_MAX_ITERATIONS", "REMSTATE_TIMEOUT", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TTY_COMPATIBLE", "0")
    if store_spec.kind == "embedded":
        url = f"sqlite://{store_spec.path}"
    else:
        assert store_spec.kubeconfig is not None
        monkeypatch.setenv("KUBECONFIG", store_spec.kubeconfig)
        url = f"kubernetes://{store_spec.namespace}"

    def run(*args: str) -> Result:
        code = main(["--store", url, *args])
        captured = capsys.readouterr()
        return Result(int(code), captured.out, captured.err)

    return run


def one_error_line(result: Result) -> str:
    """The one ``remstate: ...`` line a failure prints, with nothing on stdout."""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("remstate: ")
    assert result.out == ""
    return lines[0]


def rows(result: Result) -> list[list[str]]:
    """The plain table's rows (header first), split on runs of 2+ spaces."""
    return [re.split(r"\s{2,}", line.strip()) for line in result.out.splitlines()]


@pytest.fixture
def tasks(store: Store) -> None:
    """Five tasks: a..e, updated three hours ago; b at iteration 2 of 4, c completed."""
    past = utc_now() - timedelta(hours=3)
    manager = StateManager(store, clock=lambda: past)
    for task in "acde":
        manager.get_or_create_state(task)
    manager.get_or_create_state("b", max_iterations=4)
    manager.increment_iteration("b")
    manager.increment_iteration("b")
    manager.set_status("c", "completed")


class TestLs:
    @pytest.mark.usefixtures("tasks")
    def test_plain_columns_when_piped(self, run: Run) -> None:
        """Piped: a header and one padded row a task: task, status, iteration/max, time, age."""
        result = run("ls")
        assert (result.code, result.err) == (Exit.OK, "")
        table = rows(result)
        assert table[0] == ["TASK", "STATUS", "ITERATION", "LAST UPDATE", "AGE"]
        by_task = {row[0]: row for row in table[1:]}
        assert sorted(by_task) == list("abcde")
        assert by_task["b"][1:3] == ["pending", "2/4"]
        assert by_task["c"][1:3] == ["completed", "0/10"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", by_task["a"][3])
        assert by_task["a"][4] in ("2h", "3h")  # the clock of the store may lag ours a moment

    @pytest.mark.usefixtures("tasks")
    def test_json(self, run: Run) -> None:
        """-o json: one object with every task's summary and the next cursor."""
        result = run("-o", "json", "ls")
        assert result.code == Exit.OK
        body = result.json()
        assert body["next_cursor"] is None
        by_task = {t["task_id"]: t for t in body["tasks"]}
        assert sorted(by_task) == list("abcde")
        assert (by_task["b"]["iteration"], by_task["b"]["max_iterations"]) == (2, 4)
        assert by_task["c"]["status"] == "completed"
        assert by_task["a"]["lifecycle"] == "active"

    @pytest.mark.usefixtures("tasks")
    def test_one_page_then_the_cursor(self, run: Run) -> None:
        """--limit 2: two rows, and the next page's cursor on stderr; --cursor reads on."""
        first = run("ls", "--limit", "2")
        assert first.code == Exit.OK
        assert len(rows(first)) == 3
        match = re.fullmatch(
            r"remstate: more tasks: remstate ls --cursor (\S+) \(or --all\)\n", first.err
        )
        assert match is not None
        seen = [r[0] for r in rows(first)[1:]]
        cursor: str | None = match[1]
        while cursor is not None:
            page = run("-o", "json", "ls", "--limit", "2", "--cursor", cursor)
            seen += [t["task_id"] for t in page.json()["tasks"]]
            cursor = page.json()["next_cursor"]
        assert sorted(seen) == list("abcde")

    @pytest.mark.usefixtures("tasks")
    def test_all_pages(self, run: Run) -> None:
        """--all pages until the end, whatever --limit."""
        result = run("-o", "json", "ls", "--all", "--limit", "2")
        assert sorted(t["task_id"] for t in result.json()["tasks"]) == list("abcde")
        assert result.json()["next_cursor"] is None
        plain = run("ls", "--all", "--limit", "2")
        assert (len(rows(plain)), plain.err) == (6, "")

    @pytest.mark.usefixtures("tasks")
    def test_status_and_selector(self, run: Run, store: Store) -> None:
        """--status and -l select, together or alone."""
        assert [r[0] for r in rows(run("ls", "--status", "completed"))[1:]] == ["c"]
        assert [r[0] for r in rows(run("ls", "-l", "remstate.io/task in (a,b)"))[1:]] == ["a", "b"]
        assert run("ls", "-l", "remstate.io/task=a", "--status", "completed").out == ""

    def test_no_tasks(self, run: Run) -> None:
        """No task: nothing on stdout, one line on stderr, exit 0."""
        run("init", "x")
        run("delete", "x")
        result = run("ls")
        assert (result.code, result.out, result.err) == (Exit.OK, "", "remstate: no tasks\n")
        assert run("-o", "json", "ls").json() == {"tasks": [], "next_cursor": None}

    @pytest.mark.usefixtures("tasks")
    def test_table_on_a_terminal(self, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
        """On a terminal, a rich table, and the hint below it."""
        monkeypatch.setenv("TTY_COMPATIBLE", "1")
        result = run("ls", "--limit", "2")
        assert result.code == Exit.OK
        assert "┃" in result.out
        assert "TASK" in result.out
        assert "more tasks: remstate ls --cursor" in result.out

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--status", "nope"], "unknown status"),
            (["-l", "team in (a"], "bad label selector"),
            (["--limit", "0"], "--limit"),
            (["--cursor", "garbage"], "cursor"),
        ],
    )
    def test_bad_input_exits_2(self, run: Run, args: list[str], message: str) -> None:
        """A bad status, selector, limit or cursor: exit 2, one line."""
        run("init", "x")
        result = run("ls", *args)
        assert result.code == Exit.INVALID
        assert message in one_error_line(result)


class TestInit:
    def test_creates_with_the_policy(self, run: Run, store: Store) -> None:
        """init stores the limit and ttl, prints the state, and exits 0."""
        result = run("init", "42", "--max-iterations", "3", "--ttl", "14d")
        assert result.code == Exit.OK
        assert result.out.startswith("task 42: iteration 0, status pending")
        assert result.out.rstrip().endswith("max iterations 3, ttl 2w")
        assert StateManager(store).get_state("42").policy == Policy(3, timedelta(days=14))

    def test_json_and_idempotent(self, run: Run, store: Store) -> None:
        """A second init leaves the task as it is (its policy too) and prints it."""
        first = run("-o", "json", "init", "42", "--max-iterations", "3")
        again = run("-o", "json", "init", "42", "--max-iterations", "5")
        assert (first.code, again.code) == (Exit.OK, Exit.OK)
        assert first.json() == again.json()
        assert again.json()["policy"] == {"max_iterations": 3, "ttl_seconds": None}

    def test_global_default(self, run: Run) -> None:
        """Before the command --max-iterations is the global default, which init stores."""
        assert run("--max-iterations", "6", "-o", "json", "init", "42").json()["policy"] == {
            "max_iterations": 6,
            "ttl_seconds": None,
        }

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["42", "--ttl", "soon"], "--ttl"),
            (["42", "--max-iterations", "0"], "max-iterations"),
            (["bad\x01id"], "control characters"),
        ],
    )
    def test_bad_input_writes_nothing(self, run: Run, args: list[str], message: str) -> None:
        """A bad ttl, limit or task id: exit 2, one line, no task."""
        result = run("init", *args)
        assert result.code == Exit.INVALID
        assert message in one_error_line(result)
        run("init", "other")
        assert [t["task_id"] for t in run("-o", "json", "ls").json()["tasks"]] == ["other"]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (59, "59s"),
        (60, "1m"),
        (3599, "59m"),
        (3600, "1h"),
        (86399, "23h"),
        (86400, "1d"),
        (40 * 86400, "40d"),
        (-5, "0s"),
    ],
)
def test_age(seconds: int, shown: str) -> None:
    """The AGE column: the largest whole unit, as kubectl; a clock behind shows 0s."""
    from remstate.cli.listing import age

    assert age(timedelta(seconds=seconds)) == shown
