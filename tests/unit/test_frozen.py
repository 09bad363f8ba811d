"""The cached-JSON invariant of ``remstate.schema.frozen``, checked on every cache field."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from datetime import UTC, datetime, timedelta

import remstate.schema
from remstate.schema import (
    ErrorRecord,
    FeedbackEntry,
    HistoryIndex,
    IterationRecord,
    SegmentRef,
)
from remstate.schema.datavalue import dumps

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def schema_dataclasses() -> list[type]:
    """Every dataclass defined in the schema package."""
    found: list[type] = []
    for info in pkgutil.iter_modules(remstate.schema.__path__):
        module = importlib.import_module(f"remstate.schema.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and dataclasses.is_dataclass(cls):
                found.append(cls)
    return found


class TestCacheFields:
    def test_every_cache_field_is_declared_with_cache_field(self) -> None:
        """A field set after __init__ is not an argument, not shown and not compared."""
        caches = [
            (cls.__name__, f.name)
            for cls in schema_dataclasses()
            for f in dataclasses.fields(cls)
            if not f.init
        ]
        assert ("FeedbackEntry", "_json") in caches
        assert ("HistoryIndex", "_encoded") in caches
        for cls in schema_dataclasses():
            for f in dataclasses.fields(cls):
                if not f.init:
                    assert (f.repr, f.compare, f.default) == (False, False, None), (cls, f.name)

    def test_a_filled_cache_does_not_change_equality(self) -> None:
        """An object equals a twin whose cache is still empty."""
        entry = FeedbackEntry("e1", T0, "bot", "high", "bug", "text")
        twin = FeedbackEntry("e1", T0, "bot", "high", "bug", "text")
        entry.to_json()
        assert entry._json is not None
        assert twin._json is None
        assert entry == twin

    def test_replace_starts_with_an_empty_cache(self) -> None:
        """``dataclasses.replace`` never carries the old JSON into the changed record."""
        records = [
            (FeedbackEntry("e1", T0, "bot", "high", "bug", "text"), {"description": "other"}),
            (IterationRecord(1, T0), {"note": "changed"}),
            (ErrorRecord(T0, "boom"), {"timestamp": T0 + timedelta(days=1)}),
        ]
        for record, change in records:
            before = record.to_json()
            after = dataclasses.replace(record, **change)
            assert after._json is None
            assert after.to_json() != before
            assert after.to_json() == dumps(after.to_dict())

    def test_an_index_encoding_follows_its_content(self) -> None:
        """A new index (the only way to change one) encodes its own content."""
        one = HistoryIndex((SegmentRef(1, "s1", 0, 2, "u1"),))
        text = one.encoded(10**9)
        two = dataclasses.replace(one, segments=(*one.segments, SegmentRef(2, "s2", 2, 2, "u2")))
        assert two.encoded(10**9) != text
        assert two.encoded(10**9) == dumps(two.to_dict())
        assert one.encoded(10**9) is text
