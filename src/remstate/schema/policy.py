"""A task's policy, stored with its state: its iteration limit and its own retention.

Design constraint: every writer of a task must enforce the same limit,
whatever it was configured with, so the limit lives in the task's head
(data key ``policy``) rather than in each client. A field that is ``None``
is not stored: an empty policy is a state written before policies existed,
and its writers fall back on their own defaults (:meth:`Policy.or_defaults`).

Strict on new input (the constructor refuses what no writer should store)
and lenient only where that is safe: keys a newer remstate added to the
stored object stay in ``extra`` and are written back as they were.

Pure code, no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from remstate.errors import InvalidInput
from remstate.schema.durations import duration_argument, format_duration
from remstate.schema.fields import _check_extra, _construct, _extra, _int, _object, _path
from remstate.schema.frozen import set_normalized

__all__ = ["MAX_ITERATIONS_LIMIT", "Policy"]

#: The highest iteration limit a policy holds. Far above any remediation loop,
#: and high enough for the "unreachable" limits that benchmarks and long-history
#: tests configure (a manager's default becomes the stored policy of the tasks
#: it creates, so the two must accept the same values).
MAX_ITERATIONS_LIMIT = 1_000_000_000

_KNOWN = frozenset({"max_iterations", "ttl_seconds"})


def _limit(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be an integer, not {type(value).__name__} {value!r}")
    if not 1 <= value <= MAX_ITERATIONS_LIMIT:
        raise InvalidInput(f"{what} must be between 1 and {MAX_ITERATIONS_LIMIT}, not {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Policy:
    """What every writer of one task enforces: ``max_iterations``, and its ``ttl``.

    ``max_iterations``: the most iterations the task may have (1 to
    :data:`MAX_ITERATIONS_LIMIT`); ``None`` when not stored (a state written
    before policies existed), and then a writer uses its own default.
    ``ttl``: how long after its last update the task's state is kept, a whole
    number of seconds; ``None``: the cleanup's default applies.

    Raises:
        InvalidInput: a limit out of range, or a ttl that is not a positive
            whole number of seconds of at most 100 years.
    """

    max_iterations: int | None = None
    ttl: timedelta | None = None
    #: Keys a newer remstate stored in the policy, kept and written back as they were.
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_iterations is not None:
            _limit(self.max_iterations, "max_iterations")
        if self.ttl is not None:
            if not isinstance(self.ttl, timedelta):
                raise InvalidInput(f"ttl must be a timedelta, not {type(self.ttl).__name__}")
            duration_argument(self.ttl, "ttl")
        set_normalized(self, "extra", _check_extra(self.extra, _KNOWN, "policy"))

    @classmethod
    def of(
        cls, *, max_iterations: object = None, ttl: timedelta | str | int | float | None = None
    ) -> Policy:
        """A policy from a caller's arguments: a ttl as a timedelta, ``"14d"`` or seconds.

        Raises:
            InvalidInput: as the constructor; a ttl that is not a duration.
        """
        limit = None if max_iterations is None else _limit(max_iterations, "max_iterations")
        return cls(limit, None if ttl is None else duration_argument(ttl, "ttl"))

    def __bool__(self) -> bool:
        """Whether anything is stored (an empty policy is not written)."""
        return self.max_iterations is not None or self.ttl is not None or bool(self.extra)

    @property
    def ttl_seconds(self) -> int | None:
        """The ttl in whole seconds, as stored."""
        return None if self.ttl is None else int(self.ttl.total_seconds())

    def or_defaults(self, defaults: Policy) -> Policy:
        """This policy with each field it does not store taken from ``defaults``."""
        return dataclasses.replace(
            self,
            max_iterations=(
                defaults.max_iterations if self.max_iterations is None else self.max_iterations
            ),
            ttl=defaults.ttl if self.ttl is None else self.ttl,
        )

    def stored_or(self, defaults: Policy) -> Policy:
        """The policy a write stores: this one, or, if it stores no limit, ``defaults`` filled in.

        A state without a stored limit was written before policies existed (or
        is being created); its first write by this version stores the writer's
        defaults, and from then on every writer enforces those.
        """
        return self if self.max_iterations is not None else self.or_defaults(defaults)

    def limit(self, default: int) -> int:
        """The iteration limit to enforce: the stored one, else ``default``."""
        return default if self.max_iterations is None else self.max_iterations

    def describe(self) -> str:
        """For people: ``max iterations 10, ttl 14d`` (``-`` where nothing is stored)."""
        limit = "-" if self.max_iterations is None else str(self.max_iterations)
        ttl = "-" if self.ttl is None else format_duration(self.ttl)
        return f"max iterations {limit}, ttl {ttl}"

    # -- JSON ---------------------------------------------------------------------

    def to_stored(self) -> dict[str, Any]:
        """The stored form: the fields that are set, and the keys kept from a newer remstate."""
        out: dict[str, Any] = {}
        if self.max_iterations is not None:
            out["max_iterations"] = self.max_iterations
        if self.ttl is not None:
            out["ttl_seconds"] = self.ttl_seconds
        out.update(self.extra)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The plain JSON form (CLI, HTTP): both fields always there, ``null`` when not stored."""
        return {
            "max_iterations": self.max_iterations,
            "ttl_seconds": self.ttl_seconds,
            **self.extra,
        }

    @classmethod
    def _read(cls, value: object, path: str) -> Policy:
        """Read the stored form (or :meth:`to_dict`'s); raises MalformedError with a path."""
        obj = _object(value, path)
        raw_limit = obj.get("max_iterations")
        limit = None if raw_limit is None else _int(raw_limit, _path(path, "max_iterations"))
        raw_ttl = obj.get("ttl_seconds")
        seconds = None if raw_ttl is None else _int(raw_ttl, _path(path, "ttl_seconds"))
        extra = _extra(obj, _KNOWN)

        def build() -> Policy:
            if seconds is not None and abs(seconds) > 10**12:
                raise InvalidInput(f"ttl_seconds is out of range: {seconds}")
            ttl = None if seconds is None else timedelta(seconds=seconds)
            return cls(max_iterations=limit, ttl=ttl, extra=extra)

        return _construct(path, build)
