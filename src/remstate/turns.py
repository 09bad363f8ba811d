"""Taking turns on a task that stays contended (issue 6, defect 11).

Why: with optimistic concurrency alone, the writer that has just won keeps the
freshest object cached and writes again at once with one request, while a
loser must read and then write, a longer window. The winner keeps winning;
measured, 6 writers for 60 s got [1061, 1, 1, 3262, 253, 738] successes and
5 ran out of attempts.

How: a writer that has lost for a while (``TAKE_AFTER_LOSSES`` lost races, or
``TAKE_AFTER`` seconds since its first setback) takes the turn with a write
that cannot conflict: a merge patch of one annotation, ``remstate.io/turn``,
which returns the object and so stands in for the re-read it would have made.
The patch changes the resourceVersion, so every other writer's cached object
is stale: its next write conflicts, it reads again, sees another writer's turn
and waits, reading now and then, until the holder has written (every write of
ours drops the annotation) or the turn has been in sight for ``TURN_TTL``
seconds (its holder died or gave up). An uncontended writer never sees a turn
and keeps its one request per write.

Correctness never rests on turns: every data write is still a compare-and-swap
from the object read, and a turn is only an annotation. Expiry is measured from
when this writer first saw the turn, on its own monotonic clock, so no two
hosts' clocks are ever compared.

This module decides; the manager does the reads and writes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = ["ANNOTATION_TURN", "TURN_TTL", "Turns"]

#: Holds the token of the operation whose turn it is.
ANNOTATION_TURN: Final = "remstate.io/turn"
#: Seconds a turn is honoured after this writer first saw it: a holder writes
#: within one round trip of taking it, so this only bounds a dead holder's cost.
TURN_TTL: Final = 0.5
#: Lost races after which an operation takes the turn.
TAKE_AFTER_LOSSES: Final = 2
#: Or seconds since its first setback (a lost race, or a wait on another's turn).
TAKE_AFTER: Final = 0.05
#: Jittered pauses between reads while another writer holds the turn.
POLL_MIN: Final = 0.002
POLL_MAX: Final = 0.02


@dataclass(slots=True)
class Turns:
    """One operation's part in turn-taking: its token, its setbacks, the turns it has seen."""

    token: str
    #: When the operation started (monotonic), to keep waiting inside its deadline.
    started: float = field(default_factory=time.monotonic)
    losses: int = 0
    first_setback: float | None = None
    #: True from taking the turn until a write of ours (which drops it) lands.
    holding: bool = False
    #: Other operations' turn tokens -> when this operation first saw each.
    _seen: dict[str, float] = field(default_factory=dict)

    def lost(self) -> None:
        """A write of ours met a Conflict: another writer got there first."""
        self.losses += 1
        if self.first_setback is None:
            self.first_setback = time.monotonic()

    def must_wait(self, annotations: Mapping[str, str]) -> bool:
        """True while another operation holds the turn and it has not expired for us."""
        holder = annotations.get(ANNOTATION_TURN)
        if not holder or holder == self.token:
            return False
        now = time.monotonic()
        if self.first_setback is None:
            self.first_setback = now
        first = self._seen.setdefault(holder, now)
        return now - first < TURN_TTL

    def should_take(self, annotations: Mapping[str, str]) -> bool:
        """True when we have lost long enough and the turn is not ours already.

        Called only when ``must_wait`` is False: the turn is free, expired or ours.
        """
        if annotations.get(ANNOTATION_TURN) == self.token:
            return False
        if self.losses >= TAKE_AFTER_LOSSES:
            return True
        return self.first_setback is not None and (
            time.monotonic() - self.first_setback >= TAKE_AFTER
        )

    def pause(self) -> float:
        """How long to wait before reading again; jittered, so waiters do not read in step."""
        # S311: jitter, not cryptography.
        return random.uniform(POLL_MIN, POLL_MAX)  # noqa: S311
