"""The reader behind every decoder: strict (raise on the first problem) or collecting.

The same reading code serves ``decode_state`` (strict: ``CorruptState`` on
the first field it cannot read) and the validator (collecting: every problem,
as data, never a raise), so the two cannot disagree on what is readable.

Private to the schema package. Pure code, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from remstate.errors import CorruptState, InvalidInput, RemstateError, UnsupportedSchemaVersion
from remstate.objects import StoredObject
from remstate.schema.datavalue import (
    decode_value,
)
from remstate.schema.migrations import UNVERSIONED
from remstate.schema.problems import MalformedError, Problem, ProblemCode
from remstate.schema.values import (
    SCHEMA_VERSION,
    parse_timestamp,
)

_T = TypeVar("_T")

# 18 digits at most: int() of a longer string is slow, or refused (4300 digits).
_DIGITS = re.compile(r"[0-9]{1,18}")


# -- reading ---------------------------------------------------------------------


class Reader:
    """Reads fields one by one; raises on the first problem, or collects them all."""

    def __init__(self, *, collect: bool) -> None:
        self.collect = collect
        self.problems: list[Problem] = []
        self.task_id: str | None = None

    def fail(self, m: MalformedError) -> None:
        """A problem that stops a strict read."""
        if not self.collect:
            raise CorruptState(str(m), task_id=self.task_id, field=m.field or None)
        self.problems.append(m.problem())

    def note(self, m: MalformedError) -> None:
        """A problem a strict read tolerates (it has a safe default); only reported."""
        if self.collect:
            self.problems.append(m.problem())

    def attempt(self, read: Callable[[], _T]) -> _T | None:
        try:
            return read()
        except MalformedError as m:
            self.fail(m)
            return None

    def json(self, data: Mapping[str, str], key: str) -> Any:
        """The decoded JSON value of ``key``; ``None`` when it is absent or broken."""
        text = data.get(key)
        if text is None:
            return None
        try:
            return decode_value(text)
        except MalformedError as m:
            self.fail(MalformedError(m.code, key, m.message))
            return None

    def items(self, value: Any, key: str, read: Callable[[Any, str, int], _T]) -> list[_T]:
        """Read each element of a JSON array; a collecting reader skips bad ones."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(MalformedError(ProblemCode.BAD_VALUE, key, "expected a JSON array"))
            return []
        out: list[_T] = []
        for i, item in enumerate(value):
            path = f"{key}[{i}]"
            try:
                out.append(read(item, path, i))
            except MalformedError as m:
                self.fail(m)
            except RecursionError:
                self.fail(MalformedError(ProblemCode.BAD_VALUE, path, "nested too deeply"))
        return out


def each(read: Callable[[Any, str], _T]) -> Callable[[Any, str, int], _T]:
    """Adapt a record reader that does not need the element's index."""
    return lambda item, path, _index: read(item, path)


def stored_version(data: Mapping[str, str], reader: Reader) -> int | None:
    raw = data.get("schema_version")
    if raw is None:
        return UNVERSIONED
    if not _DIGITS.fullmatch(raw.strip()):
        reader.fail(
            MalformedError(ProblemCode.BAD_VALUE, "schema_version", f"not a number: {raw[:40]!r}")
        )
        return None
    return int(raw.strip())


def check_version(version: int, reader: Reader) -> bool:
    if version <= SCHEMA_VERSION:
        return True
    if not reader.collect:
        raise UnsupportedSchemaVersion(version, SCHEMA_VERSION)
    reader.problems.append(
        Problem(
            "schema_version",
            ProblemCode.UNSUPPORTED_SCHEMA_VERSION,
            str(UnsupportedSchemaVersion(version, SCHEMA_VERSION)),
        )
    )
    return False


def int_field(data: Mapping[str, str], key: str, reader: Reader) -> int | None:
    raw = data.get(key)
    if raw is None:
        return None
    text = raw.strip()
    if not re.fullmatch(r"-?[0-9]{1,18}", text):
        reader.fail(MalformedError(ProblemCode.BAD_VALUE, key, f"not an integer: {raw[:40]!r}"))
        return None
    return int(text)


def time_field(
    data: Mapping[str, str], key: str, reader: Reader, *, field: str | None = None
) -> datetime | None:
    raw = data.get(key)
    if raw is None:
        return None
    try:
        return parse_timestamp(raw)
    except InvalidInput as e:
        reader.fail(MalformedError(ProblemCode.BAD_TIMESTAMP, field or key, str(e)))
        return None


def no_data(obj: StoredObject, reader: Reader) -> None:
    if not reader.collect:
        raise InvalidInput(f"{obj.name} was read metadata-only: it has no data to decode")
    reader.problems.append(Problem("data", ProblemCode.NO_DATA, "object has no data"))


def missing(reader: Reader, key: str, *, fatal: bool, detail: str = "missing") -> None:
    problem = MalformedError(ProblemCode.MISSING_KEY, key, detail)
    if fatal:
        reader.fail(problem)
    else:
        reader.note(problem)


def strictly(obj: StoredObject, read: Callable[[], _T]) -> _T:
    """Run a strict read: whatever the stored bytes, only remstate's errors leave it."""
    try:
        return read()
    except RemstateError:
        raise
    except Exception as e:  # the rule: corruption never crashes a reader
        raise CorruptState(f"{obj.name} cannot be read: {_describe(e)}") from e


def collecting(obj: StoredObject, reader: Reader, read: Callable[[], _T]) -> _T | None:
    """Run a collecting read: it never raises; a surprise becomes one more problem."""
    try:
        return read()
    except Exception as e:  # noqa: BLE001 -- the validator's promise: results, never a raise
        reader.problems.append(
            Problem("data", ProblemCode.BAD_VALUE, f"{obj.name} cannot be read: {_describe(e)}")
        )
        return None


def _describe(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return "a value is nested too deeply"
    return f"{type(e).__name__}: {str(e)[:200]}"
