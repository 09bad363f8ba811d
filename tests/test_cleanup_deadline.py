"""Best-effort cleanup after an operation is bounded by a short deadline, on both backends.

Giving back a turn and deleting a deleted task's segments run after the
operation's retry policy has returned. Without a deadline of their own, each
request would wait out the store's timeouts (30 s) against a hung server. The
store is real; the wrapper records the deadline each request was sent under
(``remstate.retry.remaining``), which is what the Kubernetes store derives its
connect and read timeouts from.
"""

from __future__ import annotations

import pytest

from remstate.errors import Conflict, RemstateError
from remstate.manager import CLEANUP_DEADLINE, StateManager
from remstate.retry import RetryPolicy, remaining
from remstate.store import Store
from tests.backends import LosesResponses
from tests.helpers import entry


class RecordsDeadlines(LosesResponses):
    """A real store that notes, for each call, the retry deadline's remainder it ran under."""

    def __init__(self, inner: Store, losses: int = 0, **kwargs: object) -> None:
        super().__init__(inner, losses, **kwargs)  # type: ignore[arg-type]
        self.deadlines: list[tuple[str, float | None]] = []

    def __getattr__(self, name: str) -> object:
        attr = super().__getattr__(name)
        if not callable(attr):
            return attr

        def noted(*args: object, **kwargs: object) -> object:
            self.deadlines.append((name, remaining()))
            return attr(*args, **kwargs)

        return noted


def _bounded(deadlines: list[tuple[str, float | None]], method: str) -> list[bool]:
    return [
        left is not None and left <= CLEANUP_DEADLINE for name, left in deadlines if name == method
    ]


class TestCleanupDeadline:
    def test_segment_deletes_after_delete_state_have_a_deadline(self, store: Store) -> None:
        """Each segment delete after the head's is sent under the short cleanup deadline."""
        manager = StateManager(store)
        for i in range(400):
            manager.append_feedback("h", entry(i, description="lorem ipsum dolor " * 30))
        segments = len(manager.get_state("h").segments)
        assert segments >= 1
        recording = RecordsDeadlines(store)
        assert StateManager(recording).delete_state("h") is True  # type: ignore[arg-type]
        deletes = _bounded(recording.deadlines, "delete")
        assert len(deletes) == 1 + segments
        assert deletes[1:] == [True] * segments
        assert store.list().items == []

    def test_giving_back_a_turn_has_a_deadline(self, store: Store) -> None:
        """A writer that took the turn and then gave up gives it back under the short deadline."""
        StateManager(store).increment_iteration("t")
        # Every write loses a race: two losses queue it for the turn, the third gives up.
        losing = RecordsDeadlines(
            store, 3, methods=frozenset({"replace"}), error=Conflict, commit=False
        )
        manager = StateManager(losing, retry=RetryPolicy(max_attempts=3))  # type: ignore[arg-type]
        with pytest.raises(RemstateError):
            manager.increment_iteration("t")
        annotates = _bounded(losing.deadlines, "annotate")
        assert len(annotates) == 2  # the turn taken, then given back
        assert annotates[-1] is True
        assert StateManager(store).get_current_iteration("t") == 1
