"""The checks of a caller's arguments to the manager: one readable InvalidInput each.

Apart from the manager so that its operations read as what they do; the
checks of records and states themselves are schema's (``validate``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from remstate.cache import DEFAULT_CACHE_SIZE
from remstate.errors import InvalidInput
from remstate.metrics import Metrics
from remstate.retry import RetryPolicy
from remstate.schema import MAX_ITERATIONS_LIMIT, FeedbackEntry, Policy, utc_now
from remstate.schema.datavalue import normalize_json

__all__ = [
    "OPTIONS",
    "bool_argument",
    "check_settings",
    "feedback_argument",
    "int_argument",
    "keys_argument",
    "metadata_argument",
    "policy_argument",
]

#: The options ``StateManager.from_url`` takes.
OPTIONS = frozenset(
    {
        "namespace",
        "max_iterations",
        "ttl",
        "retry",
        "clock",
        "cache_size",
        "mode",
        "metrics",
        "registry",
        "snapshots_kept",
    }
)


def metadata_argument(value: object) -> dict[str, Any]:
    """Metadata given by a caller, checked: a mapping of JSON values, or nothing."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput(f"metadata must be a mapping, not {type(value).__name__}")
    normalized: dict[str, Any] = normalize_json(dict(value), what="metadata")
    return normalized


def check_settings(
    *,
    max_iterations: object = 10,
    ttl: object = None,
    retry: object = None,
    clock: object = utc_now,
    cache_size: object = DEFAULT_CACHE_SIZE,
    snapshots_kept: object = 5,
    metrics: object = None,
    registry: object = None,
) -> None:
    """The constructor's settings, checked (``from_url`` checks them before opening a store)."""
    policy_argument(max_iterations=max_iterations, ttl=ttl)
    int_argument(snapshots_kept, "snapshots_kept", low=1)
    int_argument(cache_size, "cache_size", low=0)
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise InvalidInput(f"retry must be a RetryPolicy, not {type(retry).__name__}")
    if not callable(clock):
        raise InvalidInput("clock must be a function returning an aware datetime")
    if metrics is not None and not isinstance(metrics, Metrics):
        raise InvalidInput(
            f"metrics must be a remstate.metrics.Metrics, not {type(metrics).__name__}"
        )
    if registry is not None and not isinstance(registry, CollectorRegistry):
        raise InvalidInput(
            f"registry must be a prometheus_client.CollectorRegistry, not {type(registry).__name__}"
        )
    if metrics is not None and registry is not None:
        # Which registry would the manager count in? Metrics already has one.
        raise InvalidInput("give metrics or registry, not both")


def policy_argument(*, max_iterations: object = None, ttl: object = None) -> Policy:
    """A policy given by a caller: a limit in 1..MAX_ITERATIONS_LIMIT, a ttl as a duration.

    ``None`` leaves a field out. The ttl is a timedelta, ``"14d"`` or seconds.
    """
    if max_iterations is not None:
        int_argument(max_iterations, "max_iterations", low=1, high=MAX_ITERATIONS_LIMIT)
    if ttl is not None and not isinstance(ttl, timedelta | str | int | float):
        raise InvalidInput(f"ttl must be a duration (timedelta, '7d' or seconds), not {ttl!r}")
    return Policy.of(max_iterations=max_iterations, ttl=ttl)


def int_argument(value: object, what: str, *, low: int, high: int | None = None) -> None:
    """Refuse what is not an int in ``low..high``; a bool is an int to Python, not to us."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be an integer, not {type(value).__name__} {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidInput(f"{what} must be {bounds}, not {value!r}")


def bool_argument(value: object, what: str) -> None:
    """Refuse what is not a bool: ``"no"`` or ``0`` must not silently mean anything."""
    if not isinstance(value, bool):
        raise InvalidInput(f"{what} must be True or False, not {type(value).__name__} {value!r}")


def feedback_argument(entries: object) -> list[FeedbackEntry]:
    """A batch of feedback entries given by a caller, each validated as new input."""
    if isinstance(entries, str | bytes | Mapping) or not isinstance(entries, Iterable):
        raise InvalidInput("entries must be a list of FeedbackEntry")
    batch = list(entries)
    for entry in batch:
        if not isinstance(entry, FeedbackEntry):
            raise InvalidInput(f"entries must be FeedbackEntry, not {type(entry).__name__}")
        entry.validate()
    return batch


def keys_argument(value: object, name: str, *, what: str) -> None:
    """Refuse what is not a list of strings; a string alone is not a list of its letters."""
    if (
        isinstance(value, str)
        or not isinstance(value, Sequence)
        or not all(isinstance(k, str) for k in value)
    ):
        raise InvalidInput(f"{name} must be a list of {what}")
