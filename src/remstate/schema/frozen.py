"""How the schema's frozen dataclasses set a field after ``__init__``: one place.

The state's types are frozen dataclasses, yet two things are written after
construction, both through ``object.__setattr__`` and only through this module:

- **Normalisation** (:func:`set_normalized`), in ``__post_init__`` only: a
  timestamp to UTC, a list to a tuple, JSON to what JSON reads back. The
  object is not yet shared, so no one sees it change.
- **Caches** (:func:`remember`) of what is derived from the fields: a record's
  compact JSON (``_json``), an index's encoded value (``_encoded``), its
  segments by kind (``_by_kind``).

The invariant that makes the caches safe: **a cache field is declared with**
:func:`cache_field` (``init=False, repr=False, compare=False``) **and holds
only a pure function of the object's other fields, which never change after
``__post_init__``.** Hence:

- equality and hashing ignore it, so an object is equal to itself before and
  after the cache is filled;
- ``dataclasses.replace`` builds a new object whose cache starts empty
  (``init=False`` fields are not copied), so a changed record never serves the
  JSON of the old one;
- filling it twice (two threads) writes the same value, so no lock is needed.

``tests/unit/test_frozen.py`` checks every cache field of the package against
these rules.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from remstate.schema.datavalue import dumps

if TYPE_CHECKING:
    from remstate.schema.records import ErrorRecord, IterationRecord

__all__ = ["cache_field", "cached_json", "remember", "set_normalized"]


def cache_field() -> Any:
    """The declaration of a cache field: not an argument, not shown, not compared."""
    return dataclasses.field(default=None, init=False, repr=False, compare=False)


def set_normalized(obj: object, name: str, value: object) -> None:
    """Set a field of a frozen dataclass from its ``__post_init__`` (the documented way)."""
    object.__setattr__(obj, name, value)


def remember(obj: object, name: str, value: object) -> None:
    """Fill the cache field ``name`` with ``value``, derived from the object's fields."""
    object.__setattr__(obj, name, value)


def cached_json(record: IterationRecord | ErrorRecord) -> str:
    """A record's compact JSON, computed on first use and kept on the (frozen) record."""
    if record._json is None:
        remember(record, "_json", dumps(record.to_dict()))
    assert record._json is not None
    return record._json
