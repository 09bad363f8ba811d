"""The embedded store's leadership: an exclusive file lock beside the database, in one process.

``flock`` locks belong to an open file, so two elections in one process
contend as two processes would (``test_leader_processes.py`` has those).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from remstate.errors import InvalidInput
from remstate.service.filelock import FileLockElection, lock_path_for


class Events:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def election(self, path: Path, identity: str) -> FileLockElection:
        return FileLockElection(
            path,
            identity=identity,
            on_started_leading=lambda: self.seen.append(f"{identity} started"),
            on_stopped_leading=lambda: self.seen.append(f"{identity} stopped"),
        )


class TestFileLockElection:
    def test_the_lock_file_is_beside_the_database(self, tmp_path: Path) -> None:
        """``state.db`` -> ``state.db.leader`` in the same directory."""
        assert lock_path_for(tmp_path / "state.db") == tmp_path / "state.db.leader"

    def test_one_holds_the_lock_and_is_named(self, tmp_path: Path) -> None:
        """The first try wins; the second fails without blocking and names the holder."""
        events = Events()
        path = lock_path_for(tmp_path / "state.db")
        a, b = events.election(path, "a"), events.election(path, "b")
        assert a.try_acquire()
        assert not b.try_acquire()
        assert a.is_leader()
        assert not b.is_leader()
        assert b.holder() == "a"
        assert events.seen == ["a started"]
        a.release()

    def test_release_hands_over_and_forgets_the_name(self, tmp_path: Path) -> None:
        """After release nobody is named; the other takes the lock at its next try."""
        events = Events()
        path = lock_path_for(tmp_path / "state.db")
        a, b = events.election(path, "a"), events.election(path, "b")
        assert a.try_acquire()
        a.release()
        assert not a.is_leader()
        assert b.holder() is None
        assert b.try_acquire()
        assert a.holder() == "b"
        b.release()
        assert events.seen == ["a started", "a stopped", "b started", "b stopped"]

    def test_a_stale_name_is_not_a_holder(self, tmp_path: Path) -> None:
        """A name left in the file by a holder that died is not reported as leading."""
        path = lock_path_for(tmp_path / "state.db")
        path.write_text("ghost\n")
        assert FileLockElection(path, identity="a").holder() is None

    @pytest.mark.parametrize("period", [0, -1, True, "2"])
    def test_refuses_a_retry_period_that_is_not_a_positive_number(
        self, tmp_path: Path, period: object
    ) -> None:
        """A bad period is InvalidInput."""
        with pytest.raises(InvalidInput, match="retry_period"):
            FileLockElection(tmp_path / "x", retry_period=period)  # type: ignore[arg-type]
