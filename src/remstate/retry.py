"""Retry policy: bounded, exponential, jittered backoff on conflicts and transient errors.

Built on tenacity rather than by hand: its ``wait_random_exponential`` is the
"full jitter" of the AWS architecture note, which spreads writers that
collided apart far better than client-go's fixed 10 ms steps, and its stop
conditions compose an attempt cap with a deadline.

A Conflict is retried by the caller re-reading and re-applying its function;
this module only decides whether and when to try again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from remstate.errors import Conflict, InvalidInput, RetriesExhausted, Unavailable

__all__ = ["RetryPolicy"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to go on after conflicts and transient failures.

    Args:
        max_attempts: attempts in all, the first one included.
        deadline: seconds after which no new attempt starts.
        initial_backoff: the upper bound of the first jittered wait, in seconds.
        max_backoff: the cap on any one wait, in seconds.
        retry_transient: retry ``Unavailable`` (5xx, timeouts, refused connections).
    """

    max_attempts: int = 100
    deadline: float = 60.0
    initial_backoff: float = 0.005
    max_backoff: float = 0.5
    retry_transient: bool = True

    def __post_init__(self) -> None:
        # A bool is an int to Python: True would mean one attempt, or one second.
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise InvalidInput(f"max_attempts must be an integer, not {self.max_attempts!r}")
        numbers = (self.deadline, self.initial_backoff, self.max_backoff)
        if not all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers):
            raise InvalidInput("retry policy values must be numbers")
        if not isinstance(self.retry_transient, bool):
            raise InvalidInput(
                f"retry_transient must be True or False, not {self.retry_transient!r}"
            )
        if self.max_attempts < 1:
            raise InvalidInput("max_attempts must be at least 1")
        if self.deadline <= 0 or self.initial_backoff < 0 or self.max_backoff < 0:
            raise InvalidInput("deadline must be positive and backoffs not negative")

    @classmethod
    def none(cls) -> RetryPolicy:
        """One attempt and no retry: the first Conflict or Unavailable is raised."""
        return cls(max_attempts=1, retry_transient=False)

    def call(self, fn: Callable[[], _T], *, sleep: Callable[[float], None] | None = None) -> _T:
        """Call ``fn`` until it returns, retrying Conflict and (if enabled) Unavailable.

        Raises:
            RetriesExhausted: the attempts or the deadline ran out; ``.last`` is the last error.
        """
        retryable: tuple[type[BaseException], ...] = (
            (Conflict, Unavailable) if self.retry_transient else (Conflict,)
        )
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts)
            | tenacity.stop_after_delay(self.deadline),
            wait=tenacity.wait_random_exponential(
                multiplier=self.initial_backoff, max=self.max_backoff
            ),
            retry=tenacity.retry_if_exception_type(retryable),
            sleep=sleep or tenacity.nap.sleep,
            reraise=False,
        )
        try:
            return retrying(fn)
        except tenacity.RetryError as e:
            last = e.last_attempt.exception()
            raise RetriesExhausted(
                f"gave up after {e.last_attempt.attempt_number} attempts: {last}",
                attempts=e.last_attempt.attempt_number,
                last=last,
            ) from last
