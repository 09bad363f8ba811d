"""Where an int (or a bool) is taken, a value of another type is refused (both backends).

Python's ``bool`` is an ``int``: ``max_iterations=True`` was a maximum of 1,
``limit=True`` a page of 1. Each is ``InvalidInput`` (CLI exit 2), and
nothing is written.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from remstate import InvalidInput, RetryPolicy, StateManager
from remstate.cli import Exit, main
from remstate.schema import object_name
from remstate.store import Store

TASK = "t"


def cursor(body: dict[str, Any]) -> str:
    """A cursor in the manager's format, with a body of our choosing."""
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


CASES: list[Any] = [
    # StateManager
    pytest.param(lambda s: StateManager(s, max_iterations=True), id="max_iterations=True"),
    pytest.param(lambda s: StateManager(s, max_iterations=False), id="max_iterations=False"),
    pytest.param(lambda s: StateManager(s, max_iterations=3.0), id="max_iterations=3.0"),
    pytest.param(lambda s: StateManager(s, max_iterations="3"), id="max_iterations='3'"),
    pytest.param(lambda s: StateManager(s, max_iterations=0), id="max_iterations=0"),
    pytest.param(lambda s: StateManager(s, ttl=True), id="ttl=True"),
    pytest.param(lambda s: StateManager(s, ttl=[60]), id="ttl=[60]"),
    pytest.param(lambda s: StateManager(s).set_policy(TASK, max_iterations=True), id="policy-True"),
    pytest.param(lambda s: StateManager(s).set_policy(TASK, clear_ttl=1), id="clear_ttl=1"),
    pytest.param(lambda s: StateManager(s, cache_size=True), id="cache_size=True"),
    pytest.param(lambda s: StateManager(s, cache_size=-1), id="cache_size=-1"),
    pytest.param(lambda s: StateManager(s, retry=3), id="retry=3"),
    pytest.param(lambda s: StateManager(s, clock="now"), id="clock='now'"),
    pytest.param(
        lambda s: StateManager.from_url("sqlite:///nonexistent/x.db", max_iterations=True),
        id="from_url-max_iterations=True",
    ),
    pytest.param(
        lambda s: StateManager.from_url("sqlite:///nonexistent/x.db", ttl="forever"),
        id="from_url-ttl='forever'",
    ),
    # RetryPolicy
    pytest.param(lambda s: RetryPolicy(max_attempts=True), id="max_attempts=True"),
    pytest.param(lambda s: RetryPolicy(max_attempts=2.5), id="max_attempts=2.5"),
    pytest.param(lambda s: RetryPolicy(deadline=True), id="deadline=True"),
    pytest.param(lambda s: RetryPolicy(initial_backoff=False), id="initial_backoff=False"),
    pytest.param(lambda s: RetryPolicy(max_backoff=True), id="max_backoff=True"),
    pytest.param(lambda s: RetryPolicy(retry_transient="yes"), id="retry_transient='yes'"),
    # pages and cursors
    pytest.param(lambda s: StateManager(s).get_feedback_history(TASK, limit=True), id="limit=True"),
    pytest.param(
        lambda s: StateManager(s).get_feedback_history(TASK, limit=False), id="limit=False"
    ),
    pytest.param(lambda s: StateManager(s).get_feedback_history(TASK, limit=1.0), id="limit=1.0"),
    pytest.param(lambda s: StateManager(s).get_feedback_history(TASK, limit=0), id="limit=0"),
    pytest.param(
        lambda s: StateManager(s).get_feedback_history(TASK, limit=10_001), id="limit=10001"
    ),
    pytest.param(
        lambda s: StateManager(s).get_feedback_history(TASK, newest_first="no"),
        id="newest_first='no'",
    ),
    pytest.param(
        lambda s: StateManager(s).get_feedback_history(TASK, newest_first=1), id="newest_first=1"
    ),
    pytest.param(
        lambda s: StateManager(s).get_feedback_history(TASK, cursor=True), id="cursor=True"
    ),
    pytest.param(
        lambda s: StateManager(s).get_feedback_history(TASK, cursor=cursor({"seq": True})),
        id="cursor-seq=true",
    ),
    pytest.param(
        lambda s: StateManager(s).get_feedback_history(
            TASK, cursor=cursor({"seq": 0, "newest_first": 1})
        ),
        id="cursor-newest_first=1",
    ),
    # other flags
    pytest.param(
        lambda s: StateManager(s).resolve_feedback(TASK, "e0", resolved="no"), id="resolved='no'"
    ),
]


class TestLibrary:
    @pytest.mark.parametrize("call", CASES)
    def test_raises_invalid_input_and_writes_nothing(
        self, store: Store, call: Callable[[Store], Any]
    ) -> None:
        """InvalidInput, never a silent meaning; the task's object is unchanged."""
        manager = StateManager(store)
        manager.append_feedback(
            TASK, author="a", severity="low", issue_type="bug", description="d", id="e0"
        )
        version = store.get(object_name(TASK)).resource_version
        with pytest.raises(InvalidInput):
            call(store)
        assert store.get(object_name(TASK)).resource_version == version


class TestCli:
    @pytest.mark.parametrize(
        ("args", "env"),
        [
            pytest.param(["--max-iterations", "True", "increment", TASK], {}, id="max-iterations"),
            pytest.param(["--max-iterations", "true", "increment", TASK], {}, id="lowercase"),
            pytest.param(
                ["increment", TASK], {"REMSTATE_MAX_ITERATIONS": "true"}, id="environment"
            ),
            pytest.param(["feedback", "list", TASK, "--limit", "True"], {}, id="limit"),
        ],
    )
    def test_exits_2_with_one_line(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        args: list[str],
        env: dict[str, str],
    ) -> None:
        """A bool where the CLI takes an integer is a usage error, exit 2; nothing is written."""
        monkeypatch.delenv("REMSTATE_STORE", raising=False)
        monkeypatch.delenv("REMSTATE_MAX_ITERATIONS", raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        url = f"sqlite://{tmp_path / 'state.db'}"
        with StateManager.from_url(url) as manager:
            before = manager.get_or_create_state(TASK)
        code = main(["--store", url, *args])
        err = capsys.readouterr().err.splitlines()
        assert code == Exit.INVALID == 2
        assert len(err) == 1
        assert err[0].startswith("remstate: ")
        with StateManager.from_url(url) as manager:
            assert manager.get_state(TASK) == before
