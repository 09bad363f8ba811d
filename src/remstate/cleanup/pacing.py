"""A token bucket that paces cleanup's requests, so that writers keep the API server.

Cleanup may delete thousands of objects in one run; each request it sends
(a page of the scan, a soft-delete patch, a re-read, a delete, an Event)
first takes a token. Tokens come back at ``rate`` per second, up to ``burst``,
so a run of 10,000 soft deletes at the default 20 per second spreads over
about eight minutes instead of crowding the writers out for a few seconds.

Written by hand: it is a dozen lines, and it must run on an injected clock
and sleep so that tests neither sleep nor flake. The rate-limiting libraries
(``limits``, ``pyrate-limiter``) bring storage backends and bucket managers
made for servers, not for one loop in one thread.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from remstate.errors import InvalidInput

__all__ = ["DEFAULT_RATE", "TokenBucket"]

#: Requests per second cleanup sends by default.
DEFAULT_RATE = 20.0


class TokenBucket:
    """``rate`` requests per second on average, at most ``burst`` at once.

    Args:
        rate: tokens added per second; ``None`` paces nothing.
        burst: the most tokens held (the bucket starts full); ``rate`` by default,
            at least 1.
        monotonic: the clock, in seconds.
        sleep: how to wait, in seconds.
    """

    def __init__(
        self,
        rate: float | None = DEFAULT_RATE,
        *,
        burst: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate is not None:
            if isinstance(rate, bool) or not isinstance(rate, int | float):
                raise InvalidInput(f"the request rate must be a number, not {rate!r}")
            if not math.isfinite(rate) or rate <= 0:
                raise InvalidInput(f"the request rate must be positive and finite, not {rate!r}")
        self.rate = rate
        self.burst = max(1.0, float(burst if burst is not None else rate or 1))
        self._monotonic = monotonic
        self._sleep = sleep
        self._tokens = self.burst
        self._last = monotonic()
        #: Seconds spent waiting for tokens, in all.
        self.waited = 0.0

    def __call__(self) -> None:
        """Take one token, waiting for it if the bucket is empty."""
        if self.rate is None:
            return
        now = self._monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1:
            wait = (1 - self._tokens) / self.rate
            self._sleep(wait)
            self.waited += wait
            # The token that came in while we slept is the one we take.
            self._last = now + wait
            self._tokens = 1.0
        self._tokens -= 1
