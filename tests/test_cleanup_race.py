"""A purge racing a writer, in real processes: the purge never deletes data written after its read.

Each round soft-deletes a fresh task (with a fake clock, so its grace period
is over at once), then tells a writer process to increment it and, at the
same moment, runs cleanup, whose purge re-reads the head and deletes it with
preconditions on its uid and resourceVersion. Every increment the writer had
acknowledged must be in the task's state afterwards: either the head
survived (the write landed before the purge's read, or between the read and
the delete, where the delete's precondition fails), or the write landed
after the delete and created the task again.

Where the write lands is steered by a small delay before it, adjusted round
by round (later after the write was too early, sooner after it was too
late), so that many rounds hit the window between the purge's read and its
delete; the test counts them.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from remstate import StateManager
from remstate.cleanup import Cleaner
from remstate.store import Store
from tests.backends import StoreSpec

ROUNDS = 150
T0 = datetime(2020, 1, 1, tzinfo=UTC)


def _writer(spec: StoreSpec, go: Any, done: Any) -> None:
    """In a child process: for each (task, delay), wait ``delay`` seconds, then increment."""
    with spec.open() as store, StateManager(store) as manager:
        done.put(("ready", 0))
        while (job := go.get()) is not None:
            task_id, delay = job
            # A deliberate offset in time, not a wait for a condition: it places
            # the write relative to the purge's requests.
            time.sleep(delay)
            number = manager.increment_iteration(task_id, op_id=f"op-{task_id}")
            done.put((task_id, number))


@pytest.mark.timeout(900)
def test_a_purge_never_deletes_a_write_it_did_not_read(
    store_spec: StoreSpec, store: Store, record_property: Any
) -> None:
    """Over many rounds, no acknowledged write is lost; the read-to-delete window is hit."""
    ctx = multiprocessing.get_context("spawn")
    go, done = ctx.Queue(), ctx.Queue()
    child = ctx.Process(target=_writer, args=(store_spec, go, done), daemon=True)
    child.start()
    outcomes: Counter[str] = Counter()
    rng = random.Random(8)
    delay = 0.0
    step = 0.002 if store_spec.kind == "kubernetes" else 0.0005
    try:
        assert done.get(timeout=120) == ("ready", 0)
        creator = StateManager(store, clock=lambda: T0)
        soft = Cleaner(store, clock=lambda: T0 + timedelta(days=8), rate=None)
        purge = Cleaner(store, clock=lambda: T0 + timedelta(days=10), rate=None)
        for i in range(ROUNDS):
            task_id = f"r{i}"
            creator.set_status(task_id, "completed")
            # Only this round's task is expired by the fake clocks: earlier ones were
            # purged or written since with the real clock, years later.
            assert soft.run().soft_deleted == 1

            go.put((task_id, max(0.0, delay + rng.uniform(-step, step))))
            report = purge.run()
            acknowledged, number = done.get(timeout=60)
            assert (acknowledged, number) == (task_id, 1)  # the first increment, either way
            outcome = _outcome(report)
            outcomes[outcome] += 1
            if outcome == "purged first":
                delay = max(0.0, delay - step)  # the write came too late
            elif outcome != "between read and delete":
                delay += step / 2  # too early

            # The acknowledged increment is in the state, whichever way it went.
            records = StateManager(store).get_iteration_history(task_id).records
            assert f"op-{task_id}" in {r.extra.get("op") for r in records}, (i, outcome, report)
    finally:
        go.put(None)
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    record_property("race_outcomes", dict(outcomes))
    print(f"\n{store_spec.kind}: {ROUNDS} rounds: {dict(outcomes)}")
    assert outcomes["between read and delete"] >= 1, outcomes


def _outcome(report: Any) -> str:
    """Where the round's write landed, as the purge saw it."""
    if report.purged == 1:
        return "purged first"
    if not report.items:
        return "before the scan"
    reason = report.items[0].reason
    if "precondition" in reason:
        return "between read and delete"
    if "changed since the scan" in reason:
        return "between scan and read"
    return report.items[0].action
