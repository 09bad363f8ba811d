"""Retry policy: bounded, exponential, jittered backoff on conflicts and transient errors.

Built on tenacity rather than by hand: its ``wait_random_exponential`` is the
"full jitter" of the AWS architecture note, which spreads writers that
collided apart far better than client-go's fixed 10 ms steps, and its stop
conditions compose an attempt cap with a deadline.

A Conflict is retried by the caller re-reading and re-applying its function;
this module only decides whether and when to try again.

The deadline holds end to end. remstate owns every retry (the Kubernetes
store turns urllib3's own off), and while ``call`` runs, the absolute deadline
is in a context variable: a store caps each request's connect and read
timeouts at :func:`remaining`, and a ``call`` nested in another (a read
inside a write's attempt) keeps the outer deadline if it is earlier. So a
server that accepts connections and never answers costs the deadline, not
the deadline plus a request timeout per hidden retry.

When the policy gives up on an outage it raises the last ``Unavailable``
itself: the caller learns that the store is unavailable, not that it lost a
race. Only conflicts end in ``RetriesExhausted``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from remstate.errors import Conflict, InvalidInput, RetriesExhausted, Unavailable

__all__ = ["RetryPolicy", "remaining"]

_T = TypeVar("_T")

#: An outage's waits start this many times longer than a conflict's: a server
#: that is restarting needs a second or so, a lost race a few milliseconds.
_TRANSIENT_SCALE = 20
#: Seconds kept for a last attempt: a wait is cut short so that one starts this
#: long before the deadline, rather than giving up early because the next wait
#: would have crossed it. Enough for a refused connection or a quick answer.
_LAST_ATTEMPT = 0.25

#: The monotonic time by which the innermost running ``RetryPolicy.call`` gives up.
_DEADLINE: ContextVar[float | None] = ContextVar("remstate_retry_deadline", default=None)


def remaining() -> float | None:
    """Seconds left before the running retry policy's deadline; None outside one.

    A store caps its request timeouts at this, so no request outlives the
    operation it is part of. It may be zero or less: the deadline has passed.
    """
    deadline = _DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


class _StopAt(tenacity.stop.stop_base):
    """Stop once the time for a last attempt has begun, by an absolute deadline.

    Not ``stop_after_delay``: that counts from the call's own start, so it
    cannot honour an enclosing call's deadline.
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return time.monotonic() >= self.deadline - _LAST_ATTEMPT


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to go on after conflicts and transient failures.

    Args:
        max_attempts: attempts in all, the first one included.
        deadline: seconds after which no new attempt starts.
        initial_backoff: the upper bound of the first jittered wait, in seconds.
        max_backoff: the cap on any one wait after a conflict, in seconds.
        retry_transient: retry ``Unavailable`` (5xx, timeouts, refused connections).
        transient_backoff: the cap on any one wait after a transient failure, in
            seconds: an outage is waited out, not hammered, so the deadline
            rather than ``max_attempts`` decides when an outage ends the call.
    """

    max_attempts: int = 100
    deadline: float = 60.0
    initial_backoff: float = 0.005
    max_backoff: float = 0.5
    retry_transient: bool = True
    transient_backoff: float = 2.0

    def __post_init__(self) -> None:
        # A bool is an int to Python: True would mean one attempt, or one second.
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise InvalidInput(f"max_attempts must be an integer, not {self.max_attempts!r}")
        backoffs = (self.initial_backoff, self.max_backoff, self.transient_backoff)
        numbers = (self.deadline, *backoffs)
        if not all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers):
            raise InvalidInput("retry policy values must be numbers")
        if not isinstance(self.retry_transient, bool):
            raise InvalidInput(
                f"retry_transient must be True or False, not {self.retry_transient!r}"
            )
        if self.max_attempts < 1:
            raise InvalidInput("max_attempts must be at least 1")
        if self.deadline <= 0 or min(backoffs) < 0:
            raise InvalidInput("deadline must be positive and backoffs not negative")

    @classmethod
    def none(cls) -> RetryPolicy:
        """One attempt and no retry: the first Conflict or Unavailable is raised."""
        return cls(max_attempts=1, retry_transient=False)

    def call(self, fn: Callable[[], _T], *, sleep: Callable[[float], None] | None = None) -> _T:
        """Call ``fn`` until it returns, retrying Conflict and (if enabled) Unavailable.

        No attempt starts after the deadline (or an enclosing call's deadline,
        if that is earlier); the last starts shortly before it.

        Raises:
            Unavailable: the last attempt failed on an outage; ``.attempts`` says
                how many were made.
            RetriesExhausted: conflicts outlasted the attempts or the deadline;
                ``.last`` is the last Conflict.
        """
        retryable: tuple[type[BaseException], ...] = (
            (Conflict, Unavailable) if self.retry_transient else (Conflict,)
        )
        deadline = time.monotonic() + self.deadline
        outer = _DEADLINE.get()
        if outer is not None:
            deadline = min(deadline, outer)
        conflict_wait = tenacity.wait_random_exponential(
            multiplier=self.initial_backoff, max=self.max_backoff
        )
        transient_wait = tenacity.wait_random_exponential(
            multiplier=self.initial_backoff * _TRANSIENT_SCALE, max=self.transient_backoff
        )

        def wait(state: tenacity.RetryCallState) -> float:
            failure = state.outcome.exception() if state.outcome else None
            chosen = transient_wait if isinstance(failure, Unavailable) else conflict_wait
            return min(chosen(state), max(0.0, deadline - _LAST_ATTEMPT - time.monotonic()))

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts) | _StopAt(deadline),
            wait=wait,
            retry=tenacity.retry_if_exception_type(retryable),
            sleep=sleep or tenacity.nap.sleep,
            reraise=False,
        )
        token = _DEADLINE.set(deadline)
        try:
            return retrying(fn)
        except tenacity.RetryError as e:
            last = e.last_attempt.exception()
            attempts = e.last_attempt.attempt_number
            if isinstance(last, Unavailable):
                last.attempts = attempts
                raise last from last.__cause__
            raise RetriesExhausted(
                f"gave up after {attempts} attempts: {last}", attempts=attempts, last=last
            ) from last
        finally:
            _DEADLINE.reset(token)
