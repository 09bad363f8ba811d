"""``remstate cleanup`` and ``remstate restore`` on the embedded store: output and exit codes.

States are written by a manager whose clock stands years in the past, so the
command (on the real clock) finds them expired.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from remstate.cli import Exit, main
from remstate.manager import StateManager
from remstate.schema import LABEL_LIFECYCLE, LIFECYCLE_ACTIVE, LIFECYCLE_SOFT_DELETED
from tests.test_cli import Result, Run, assert_one_error_line

PAST = datetime(2020, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REMSTATE_STORE", "REMSTATE_MAX_ITERATIONS", "REMSTATE_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite://{tmp_path / 'state.db'}"
    with StateManager.from_url(url, clock=lambda: PAST) as manager:
        for task_id, status in (("old", "completed"), ("busy", "in_progress")):
            manager.set_status(task_id, status)
    return url


@pytest.fixture
def run(store_url: str, capsys: pytest.CaptureFixture[str]) -> Run:
    def run(*args: str) -> Result:
        code = main(["--store", store_url, *args])
        captured = capsys.readouterr()
        return Result(int(code), captured.out, captured.err)

    return run


def lifecycle(store_url: str, task_id: str) -> str:
    with StateManager.from_url(store_url) as manager:
        return manager.store.get(f"task-{task_id}-state").labels[LABEL_LIFECYCLE]


class TestCleanup:
    def test_json_report(self, run: Run, store_url: str) -> None:
        """-o json prints the report: counts and the states named, each with its reason."""
        result = run("cleanup", "-o", "json")
        assert result.code == Exit.OK
        assert result.err == ""  # no progress bar when not on a terminal
        report = result.json()
        assert (report["scanned"], report["soft_deleted"], report["skipped_active"]) == (2, 1, 1)
        assert {(i["task_id"], i["action"]) for i in report["items"]} == {
            ("old", "soft-delete"),
            ("busy", "skip-active"),
        }
        assert lifecycle(store_url, "old") == LIFECYCLE_SOFT_DELETED

    def test_text_report_is_a_table(self, run: Run) -> None:
        """Text output is a table of the named states with the counts under it."""
        result = run("cleanup", "--force", "--ttl", "30d")
        assert result.code == Exit.OK
        assert result.err == ""  # piped: no progress bar
        assert "soft-delete" in result.out
        assert "task-busy-state" in result.out
        assert "2 soft-deleted" in result.out

    def test_dry_run_writes_nothing(self, run: Run, store_url: str) -> None:
        """--dry-run reports the soft delete it would make and leaves the state active."""
        result = run("cleanup", "--dry-run", "-o", "json")
        assert result.code == Exit.OK
        assert (result.json()["dry_run"], result.json()["soft_deleted"]) == (True, 1)
        assert lifecycle(store_url, "old") == LIFECYCLE_ACTIVE

    def test_limit(self, run: Run) -> None:
        """--limit 1 with two to do: one soft delete, and the report says it stopped."""
        report = run("cleanup", "--force", "--limit", "1", "-o", "json").json()
        assert (report["soft_deleted"], report["limited"]) == (1, True)

    @pytest.mark.parametrize(
        ("args", "named"),
        [
            (("--ttl", "7x"), "--ttl"),
            (("--grace", "0"), "--grace"),
            (("--ttl", "-3d"), "--ttl"),
            (("--limit", "0"), "--limit"),
        ],
    )
    def test_bad_values_exit_2_with_one_line(
        self, run: Run, store_url: str, args: tuple[str, ...], named: str
    ) -> None:
        """A bad duration or limit: one line naming the option, exit 2, nothing written."""
        result = run("cleanup", *args)
        assert result.code == Exit.INVALID
        assert_one_error_line(result)
        assert named in result.err
        assert lifecycle(store_url, "old") == LIFECYCLE_ACTIVE

    def test_dry_run_on_a_missing_store_exits_3_and_creates_nothing(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A dry run opens the embedded store read-only: no file is made."""
        path = tmp_path / "none.db"
        code = main(["--store", f"sqlite://{path}", "cleanup", "--dry-run"])
        assert code == Exit.NOT_FOUND
        assert len(capsys.readouterr().err.splitlines()) == 1
        assert not path.exists()


class TestRestore:
    def test_restore_undoes_the_soft_delete(self, run: Run, store_url: str) -> None:
        """restore ID after a cleanup: active again; a second restore has nothing to do."""
        run("cleanup")
        result = run("restore", "old", "-o", "json")
        assert (result.code, result.json()) == (Exit.OK, {"task_id": "old", "restored": True})
        assert lifecycle(store_url, "old") == LIFECYCLE_ACTIVE
        again = run("restore", "old")
        assert again.code == Exit.OK
        assert "not soft-deleted" in again.out

    def test_restore_of_a_missing_task_exits_3(self, run: Run) -> None:
        """A task with no state: one line, exit 3."""
        result = run("restore", "nothing")
        assert result.code == Exit.NOT_FOUND
        assert_one_error_line(result)


def test_a_state_soft_deleted_long_ago_is_purged(run: Run, store_url: str) -> None:
    """Soft-deleted in 2020: the command, on today's clock, purges it."""
    with StateManager.from_url(store_url, clock=lambda: PAST + timedelta(days=8)) as manager:
        assert manager.cleanup_old_states(requests_per_second=None).soft_deleted == 1
    report = run("cleanup", "-o", "json").json()
    assert [(i["task_id"], i["action"]) for i in report["items"]] == [
        ("busy", "skip-active"),
        ("old", "purge"),
    ]
    assert run("get", "old").code == Exit.NOT_FOUND


def test_a_progress_bar_on_a_terminal(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal (forced here) the scan draws a progress bar on stderr; the report on stdout."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    result = run("cleanup")
    assert result.code == Exit.OK
    assert "scanning" in result.err
    assert "soft-delete" in result.out
