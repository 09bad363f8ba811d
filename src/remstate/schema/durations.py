"""Durations as people write them: ``7d``, ``24h``, ``90m``, ``1h30m``, ``3600s``, ``3600``.

Used for the per-task ``ttl`` and for the cleanup's ``ttl`` and ``grace``, in
the library, the CLI and (later) over HTTP. Written by hand: the libraries
that parse durations take ISO 8601 (``P7D``) or free text ("7 days"), and a
workflow step or ``kubectl``-minded operator writes ``7d``.

Pure functions, no I/O.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

from remstate.errors import InvalidInput

__all__ = ["MAX_DURATION", "duration_argument", "format_duration", "parse_duration"]

#: The longest duration accepted: far beyond any retention, well inside timedelta.
MAX_DURATION = timedelta(days=36_500)

_UNITS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_PART = re.compile(r"(\d{1,9})([wdhms])")
_WHOLE = re.compile(r"(?:\d{1,9}[wdhms])+")


def parse_duration(text: str) -> timedelta:
    """``7d``, ``24h``, ``1h30m``, ``2w``, or a number of seconds, as a positive timedelta.

    Raises:
        InvalidInput: not such a duration, zero, or longer than 100 years.
    """
    if not isinstance(text, str):
        raise InvalidInput(f"a duration is a string such as '7d', not {type(text).__name__}")
    value = text.strip().lower()
    if value.isdigit() and len(value) <= 12:
        seconds = int(value)
    elif _WHOLE.fullmatch(value):
        seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(value))
    else:
        raise InvalidInput(
            f"not a duration: {text!r} (write, for example, 7d, 24h, 90m, 1h30m or 3600s)"
        )
    return _checked(timedelta(seconds=seconds), text)


def duration_argument(value: timedelta | str | int | float, what: str) -> timedelta:
    """A duration given as a timedelta, a string (see :func:`parse_duration`) or seconds.

    Raises:
        InvalidInput: anything else, zero or negative, or longer than 100 years.
    """
    if isinstance(value, timedelta):
        return _checked(value, what)
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(
            f"{what} must be a duration (timedelta, '7d', or seconds), not {type(value).__name__}"
        )
    if math.isnan(value) or math.isinf(value):
        raise InvalidInput(f"{what} must be a finite number of seconds, not {value!r}")
    if abs(value) > MAX_DURATION.total_seconds():
        raise InvalidInput(f"{what} must be at most 100 years, not {value!r} seconds")
    return _checked(timedelta(seconds=value), what)


def format_duration(value: timedelta) -> str:
    """The shortest form (``2w``, ``7d``, ``1d12h``, ``90s``); ``parse_duration`` reads it back."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in _UNITS.items():
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def _checked(value: timedelta, what: str) -> timedelta:
    if value <= timedelta(0):
        raise InvalidInput(f"{what} must be a positive duration, not {value}")
    if value > MAX_DURATION:
        raise InvalidInput(f"{what} must be at most 100 years, not {value}")
    if value != timedelta(seconds=int(value.total_seconds())):
        raise InvalidInput(f"{what} must be a whole number of seconds, not {value}")
    return value
