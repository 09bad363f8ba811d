"""The CLI's ``--id`` options and its listings of iteration and error records."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from remstate import FeedbackEntry, StateManager
from remstate.cli import Exit, main

TASK = "task-42"
Run = Callable[..., "Result"]


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REMSTATE_STORE", raising=False)
    monkeypatch.delenv("REMSTATE_MAX_ITERATIONS", raising=False)


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


class TestIncrementId:
    def test_a_resent_id_prints_the_same_iteration_and_increments_once(self, run: Run) -> None:
        """``increment --id`` twice with the same id prints 1 twice; the counter is 1."""
        assert run("-o", "json", "increment", TASK, "--id", "STEP-UID").json()["iteration"] == 1
        assert run("-o", "json", "increment", TASK, "--id", "STEP-UID").json()["iteration"] == 1
        assert run("increment", TASK, "--id", "OTHER").out == "2\n"
        assert run("-o", "json", "get", TASK).json()["iteration"] == 2

    def test_a_resent_id_after_many_increments_still_counts_once(
        self, run: Run, store_url: str
    ) -> None:
        """A key re-sent after 300 more increments (its record in a segment) prints its number."""
        run("--max-iterations", "1000", "increment", TASK, "--id", "first")
        with StateManager.from_url(store_url, max_iterations=1000) as m:
            for i in range(300):
                m.increment_iteration(TASK, op_id=f"k{i}")
        result = run("--max-iterations", "1000", "increment", TASK, "--id", "first")
        assert (result.code, result.out) == (Exit.OK, "1\n")
        assert run("-o", "json", "get", TASK).json()["iteration"] == 301

    @pytest.mark.parametrize(
        "args",
        [
            pytest.param(["increment", TASK, "--id", ""], id="empty-increment-id"),
            pytest.param(["increment", TASK, "--id", "x" * 129], id="long-increment-id"),
            pytest.param(["error", TASK, "boom", "--id", ""], id="empty-error-id"),
            pytest.param(["error", TASK, "boom", "--id", "a\tb"], id="unprintable-error-id"),
        ],
    )
    def test_a_bad_id_exits_2_and_writes_nothing(self, run: Run, args: list[str]) -> None:
        """A bad ``--id`` exits 2 with one line, and the task gets no state."""
        result = run(*args)
        assert result.code == Exit.INVALID == 2
        assert result.out == ""
        assert len(result.err.splitlines()) == 1
        assert run("get", TASK).code == Exit.NOT_FOUND


class TestErrorId:
    def test_a_resent_id_records_once(self, run: Run) -> None:
        """``error --id`` twice with the same id keeps one record."""
        first = run("-o", "json", "error", TASK, "the build failed", "--id", "E1").json()
        again = run("-o", "json", "error", TASK, "the build failed", "--id", "E1").json()
        assert first == again
        listed = run("-o", "json", "errors", TASK).json()
        assert listed["total"] == 1
        assert [r["message"] for r in listed["records"]] == ["the build failed"]


class TestFeedbackId:
    def test_an_old_id_added_again_is_kept_once(self, run: Run, store_url: str) -> None:
        """``feedback add --id n0`` after 5,000 newer entries stores n0 once."""
        assert run("feedback", "add", TASK, "first", "--author", "a", "--id", "n0").code == 0
        start = datetime(2026, 1, 1, tzinfo=UTC)
        with StateManager.from_url(store_url) as m:
            m.append_feedback_many(
                TASK,
                [
                    FeedbackEntry.new(
                        author="a",
                        severity="low",
                        issue_type="bug",
                        description=f"entry {i} " + "words " * 30,
                        id=f"e{i}",
                        timestamp=start + timedelta(seconds=i),
                    )
                    for i in range(5000)
                ],
            )
        assert run("feedback", "add", TASK, "again", "--author", "a", "--id", "n0").out == "n0\n"
        listed = run("-o", "json", "feedback", "list", TASK, "--limit", "10000").json()
        assert listed["total"] == 5001
        assert [e["id"] for e in listed["entries"]].count("n0") == 1


class TestListings:
    @pytest.mark.parametrize("newest_first", [False, True])
    def test_iterations_page_through_every_record(self, run: Run, newest_first: bool) -> None:
        """``iterations`` pages (either way) give every record once, with the total."""
        for _ in range(7):
            run("increment", TASK)
        seen: list[int] = []
        cursor: list[str] = []
        while True:
            flags = ["--newest-first"] if newest_first else []
            page = run("-o", "json", "iterations", TASK, "--limit", "3", *flags, *cursor).json()
            assert page["total"] == 7
            seen.extend(r["iteration"] for r in page["records"])
            if page["next_cursor"] is None:
                break
            cursor = ["--cursor", page["next_cursor"]]
        assert seen == (list(range(7, 0, -1)) if newest_first else list(range(1, 8)))

    def test_text_listings(self, run: Run) -> None:
        """The text forms print one line per record and the next cursor."""
        run("increment", TASK, "--note", "first attempt")
        run("increment", TASK)
        run("error", TASK, "the build failed")
        lines = run("iterations", TASK, "--limit", "1").out.splitlines()
        assert lines[0].startswith("1 ")
        assert lines[0].endswith("first attempt")
        assert lines[1].startswith("next page: --cursor ")
        assert run("errors", TASK).out.strip().endswith("the build failed")

    def test_a_missing_task_exits_3(self, run: Run) -> None:
        """Listing a task that has no state exits 3."""
        assert run("iterations", TASK).code == Exit.NOT_FOUND == 3
        assert run("errors", TASK).code == Exit.NOT_FOUND
