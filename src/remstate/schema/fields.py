"""Reading and checking one field of a stored document or of new input.

Private to the schema package: the readers raise ``MalformedError`` with the
path of the field (``history_index.segments[2].uid``), which the decoders turn
into ``CorruptState`` or a ``Problem``; the checks raise ``InvalidInput`` for
values a constructor refuses.

Pure code, no I/O.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from remstate.errors import CorruptState, InvalidInput
from remstate.schema.datavalue import normalize_json, utf8_len
from remstate.schema.problems import MalformedError, ProblemCode
from remstate.schema.values import (
    MAX_FEEDBACK_ID_LENGTH,
    MAX_TEXT_BYTES,
    parse_timestamp,
)

__all__ = []

_T = TypeVar("_T")
# -- reading helpers: raise MalformedError with a path ------------------------------


def _path(base: str, key: str | int) -> str:
    return f"{base}[{key}]" if isinstance(key, int) else (f"{base}.{key}" if base else key)


def _object(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedError(ProblemCode.BAD_VALUE, path, f"expected an object, not {_kind(value)}")
    return value


def _kind(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _get(obj: Mapping[str, Any], key: str, path: str) -> Any:
    try:
        return obj[key]
    except KeyError:
        raise MalformedError(ProblemCode.MISSING_KEY, _path(path, key), "missing") from None


def _str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise MalformedError(ProblemCode.BAD_VALUE, path, f"expected a string, not {_kind(value)}")
    return value


def _int(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedError(
            ProblemCode.BAD_VALUE, path, f"expected an integer, not {_kind(value)}"
        )
    return value


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise MalformedError(ProblemCode.BAD_VALUE, path, f"expected a boolean, not {_kind(value)}")
    return value


def _time(value: object, path: str) -> datetime:
    try:
        return parse_timestamp(value)
    except InvalidInput as e:
        raise MalformedError(ProblemCode.BAD_TIMESTAMP, path, str(e)) from None


def _array(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedError(ProblemCode.BAD_VALUE, path, f"expected an array, not {_kind(value)}")
    return value


def _extra(obj: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in known}


def _construct(path: str, build: Callable[[], _T]) -> _T:
    try:
        return build()
    except InvalidInput as e:
        raise MalformedError(ProblemCode.BAD_VALUE, path, str(e)) from None


def _public(build: Callable[[], _T]) -> _T:
    """Run an internal reader; turn its MalformedError into the public CorruptState."""
    try:
        return build()
    except MalformedError as e:
        raise CorruptState(str(e), field=e.field) from None


# -- construction helpers: raise InvalidInput -----------------------------------


def _check_extra(extra: Mapping[str, Any], known: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(extra, Mapping):
        raise InvalidInput(f"{what}.extra must be a mapping")
    clash = sorted(known.intersection(extra))
    if clash:
        raise InvalidInput(f"{what}.extra must not hold the known keys {clash}")
    out: dict[str, Any] = normalize_json(extra, what=f"{what}.extra")
    return out


def _check_type(value: object, kind: type, what: str) -> None:
    if isinstance(value, bool) and kind is int:
        raise InvalidInput(f"{what} must be an int, not bool")
    if not isinstance(value, kind):
        raise InvalidInput(f"{what} must be {kind.__name__}, not {type(value).__name__}")


def _check_text(value: str, what: str, *, max_bytes: int = MAX_TEXT_BYTES) -> None:
    size = utf8_len(value)
    if size > max_bytes:
        raise InvalidInput(f"{what} is {size} bytes; the maximum is {max_bytes}")


def _check_feedback_id(value: object, what: str = "feedback id") -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, not {type(value).__name__}")
    if not value or len(value) > MAX_FEEDBACK_ID_LENGTH or not value.isprintable():
        raise InvalidInput(
            f"{what} must be 1 to {MAX_FEEDBACK_ID_LENGTH} printable characters, "
            f"not {value[:140]!r}"
        )
    return value


def _tuple_of(value: Iterable[Any], kind: type, what: str) -> tuple[Any, ...]:
    if isinstance(value, str | bytes | Mapping):
        raise InvalidInput(f"{what} must be a sequence of {kind.__name__}")
    items = tuple(value)
    # Checked in C first: every state change re-checks every record it carries.
    if all(map(isinstance, items, itertools.repeat(kind))):
        return items
    for item in items:
        if not isinstance(item, kind):
            raise InvalidInput(f"{what} must hold {kind.__name__}, not {type(item).__name__}")
    return items
