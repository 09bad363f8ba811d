"""``remstate policy ID``: show or change the stored policy, on both backends, with exit codes.

The command runs in-process (``remstate.cli.main``) against the test's store:
an embedded file, or a namespace of the real API server through a kubeconfig.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from remstate import Policy, StateManager
from remstate.cli import Exit, main
from remstate.schema import ANNOTATION_TTL, object_name
from remstate.store import Store
from tests.backends import StoreSpec

TASK = "42"


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
    """Run ``remstate --store <this test's store> ARGS`` in-process."""
    for name in ("REMSTATE_STORE", "REMSTATE_MAX_ITERATIONS", "REMSTATE_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
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


class TestShow:
    def test_prints_the_stored_policy(self, run: Run) -> None:
        """With no option it prints the policy, as text and as JSON, and writes nothing."""
        assert run("--max-iterations", "4", "increment", TASK).code == Exit.OK
        text = run("policy", TASK)
        assert (text.code, text.out) == (Exit.OK, f"task {TASK}: max iterations 4, ttl -\n")
        shown = run("-o", "json", "policy", TASK)
        assert shown.json() == {
            "task_id": TASK,
            "policy": {"max_iterations": 4, "ttl_seconds": None},
            "ttl": None,
        }

    def test_a_task_with_no_state_exits_3(self, run: Run) -> None:
        """No state: exit 3 with one line, and nothing is created."""
        result = run("policy", TASK)
        assert result.code == Exit.NOT_FOUND == 3
        one_error_line(result)
        assert run("get", TASK).code == Exit.NOT_FOUND


class TestChange:
    def test_sets_the_limit_and_ttl(self, run: Run, store: Store) -> None:
        """``--max-iterations 20 --ttl 14d`` stores both and prints them."""
        result = run("-o", "json", "policy", TASK, "--max-iterations", "20", "--ttl", "14d")
        assert result.code == Exit.OK
        assert result.json() == {
            "task_id": TASK,
            "policy": {"max_iterations": 20, "ttl_seconds": 1_209_600},
            "ttl": "2w",
        }
        assert StateManager(store).get_state(TASK).policy == Policy(20, timedelta(days=14))
        assert store.get(object_name(TASK)).annotations[ANNOTATION_TTL] == "1209600"

    def test_every_later_increment_obeys_it_whatever_its_own_setting(self, run: Run) -> None:
        """After ``policy --max-iterations 2``, ``--max-iterations 10 increment`` exits 4 at 2."""
        run("increment", TASK)
        assert run("policy", TASK, "--max-iterations", "2").code == Exit.OK
        assert run("--max-iterations", "10", "increment", TASK).code == Exit.OK
        refused = run("--max-iterations", "10", "increment", TASK)
        assert refused.code == Exit.MAX_ITERATIONS == 4
        assert "maximum of 2" in one_error_line(refused)

    def test_clear_ttl(self, run: Run, store: Store) -> None:
        """``--clear-ttl`` drops the ttl and its annotation, and keeps the limit."""
        run("policy", TASK, "--max-iterations", "5", "--ttl", "1d")
        result = run("policy", TASK, "--clear-ttl")
        assert (result.code, result.out) == (Exit.OK, f"task {TASK}: max iterations 5, ttl -\n")
        assert ANNOTATION_TTL not in store.get(object_name(TASK)).annotations

    def test_before_the_command_max_iterations_is_the_global_option(self, run: Run) -> None:
        """``remstate --max-iterations 7 policy 42 --ttl 1d`` creates the task with a limit of 7."""
        result = run("--max-iterations", "7", "policy", TASK, "--ttl", "1d")
        assert (result.code, result.out) == (Exit.OK, f"task {TASK}: max iterations 7, ttl 1d\n")

    def test_get_shows_the_policy(self, run: Run) -> None:
        """``get`` prints the policy in its summary, and ``-o json`` includes it."""
        run("policy", TASK, "--max-iterations", "5", "--ttl", "36h")
        assert run("get", TASK).out.rstrip().endswith("max iterations 5, ttl 1d12h")
        policy = run("-o", "json", "get", TASK).json()["policy"]
        assert policy == {"max_iterations": 5, "ttl_seconds": 129_600}


BAD = [
    pytest.param(["--ttl", "soon"], "--ttl", id="ttl not a duration"),
    pytest.param(["--ttl", "0"], "--ttl", id="ttl zero"),
    pytest.param(["--ttl", "1.5h"], "--ttl", id="ttl a fraction"),
    pytest.param(["--max-iterations", "0"], "max-iterations", id="limit 0"),
    pytest.param(["--max-iterations", "many"], "max-iterations", id="limit not a number"),
    pytest.param(["--max-iterations", "2000000000"], "max-iterations", id="limit too high"),
    pytest.param(["--ttl", "1d", "--clear-ttl"], "--clear-ttl", id="ttl and clear-ttl"),
]


class TestBadInput:
    @pytest.mark.parametrize(("args", "named"), BAD)
    def test_exits_2_with_one_line_and_writes_nothing(
        self, run: Run, store: Store, args: list[str], named: str
    ) -> None:
        """A bad option exits 2 with one line naming it; the stored object does not change."""
        run("policy", TASK, "--max-iterations", "5")
        before = store.get(object_name(TASK)).resource_version

        result = run("policy", TASK, *args)

        assert result.code == Exit.INVALID == 2
        assert named in one_error_line(result)
        assert store.get(object_name(TASK)).resource_version == before

    def test_on_a_missing_task_nothing_is_created(self, run: Run) -> None:
        """A bad --ttl on a task with no state exits 2 and does not create it."""
        result = run("policy", TASK, "--ttl", "soon")
        assert result.code == Exit.INVALID
        one_error_line(result)
        assert run("policy", TASK).code == Exit.NOT_FOUND
