"""The CLI's exit codes: one per class of the error tree, documented in ``remstate.cli``.

Design constraint: every class of ``remstate.errors`` maps to a code that
tells a workflow step what to do next (fix the input, wait, read first, call
an operator). Only a bug of ours, or a store failure that the store itself
could not classify, exits 1. A test walks the error tree to hold this.
"""

from __future__ import annotations

import enum

from remstate.errors import (
    AlreadyExists,
    Conflict,
    CorruptStore,
    Forbidden,
    Gone,
    InvalidInput,
    InvalidObject,
    MaxIterationsReached,
    NotFound,
    OutcomeUnknown,
    PreconditionFailed,
    RemstateError,
    RetriesExhausted,
    ServerFault,
    StateError,
    StoreError,
    Unavailable,
)

__all__ = ["EXIT_CODES", "Exit", "describe", "exit_code", "one_line"]


class Exit(enum.IntEnum):
    OK = 0
    ERROR = 1
    INVALID = 2
    NOT_FOUND = 3
    MAX_ITERATIONS = 4
    RETRIES_EXHAUSTED = 5
    UNAVAILABLE = 6
    FORBIDDEN = 7
    CORRUPT = 8
    OUTCOME_UNKNOWN = 9
    SERVER_FAULT = 10
    #: ``validate`` (and ``recover``) found problems: not an error of the command.
    PROBLEMS = 11


#: The documented exit codes, most specific error class first.
EXIT_CODES: list[tuple[type[BaseException], Exit]] = [
    (MaxIterationsReached, Exit.MAX_ITERATIONS),
    (InvalidInput, Exit.INVALID),
    # The server refused what we sent as breaking its rules (too large, a bad
    # name): the same request again fails the same way, as bad input does.
    (InvalidObject, Exit.INVALID),
    (NotFound, Exit.NOT_FOUND),
    (RetriesExhausted, Exit.RETRIES_EXHAUSTED),
    # Another writer got in first and the manager did not retry it away: the
    # step's answer is the same as for contention, run it again.
    (Conflict, Exit.RETRIES_EXHAUSTED),
    (AlreadyExists, Exit.RETRIES_EXHAUSTED),
    # The state moved on from the version the step named: read it again.
    (PreconditionFailed, Exit.RETRIES_EXHAUSTED),
    (Gone, Exit.RETRIES_EXHAUSTED),
    (OutcomeUnknown, Exit.OUTCOME_UNKNOWN),
    (Unavailable, Exit.UNAVAILABLE),
    (ServerFault, Exit.SERVER_FAULT),
    (Forbidden, Exit.FORBIDDEN),
    (StateError, Exit.CORRUPT),
    (CorruptStore, Exit.CORRUPT),
    (StoreError, Exit.ERROR),
]


def exit_code(exc: BaseException) -> Exit:
    """The documented exit code for an error."""
    for kind, code in EXIT_CODES:
        if isinstance(exc, kind):
            return code
    return Exit.ERROR


def one_line(text: str) -> str:
    """The text on one line: a YAML parser's or a server's report may span several."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def describe(exc: RemstateError) -> str:
    """The error's one line; an outage says first that the store is unavailable."""
    if isinstance(exc, Unavailable) and not isinstance(exc, OutcomeUnknown):
        return one_line(f"the store is unavailable: {exc}")
    return one_line(str(exc))
