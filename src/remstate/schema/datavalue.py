"""How one ConfigMap value holds a JSON document: plain, or gzip+base64 with a marker.

A value is self-describing, so a reader never guesses:

- plain JSON (``[...]``, ``{...}``, ``"..."``, a number, ``true``...), kept for
  small values so that ``kubectl get -o yaml`` stays readable;
- ``gzip+base64:`` followed by base64 of gzip of the UTF-8 JSON, for large
  values, when that is smaller;
- anything else that starts like a marker (``word+word:``) is an encoding
  written by a newer remstate, and is reported as such, never parsed as JSON.

JSON is written compactly and with ``ensure_ascii=False``, so sizes are UTF-8
bytes, which is what the API server counts against its 1 MiB limit. A string
that UTF-8 cannot carry (a lone surrogate) falls back to ASCII escapes, which
read back to the very same string. One case cannot: a high surrogate followed
by a low one, as two code points, reads back from JSON as the one character
they encode in UTF-16, so it is refused (``InvalidInput``).

Nesting is bounded: the values remstate keeps (metadata, the unknown keys of a
record) may nest arrays and objects at most :data:`MAX_JSON_DEPTH` levels
deep; deeper input is refused with ``InvalidInput`` (:func:`normalize_json`).
A stored value too deeply nested to decode is reported as malformed JSON,
never as a ``RecursionError``.

Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import math
import re
import zlib
from collections.abc import Mapping
from typing import Any

from remstate.errors import CorruptState, InvalidInput
from remstate.schema.problems import MalformedError, ProblemCode

__all__ = [
    "COMPRESS_OVER",
    "GZIP_MARKER",
    "MAX_DATA_BYTES",
    "MAX_DECODED_BYTES",
    "MAX_JSON_DEPTH",
    "compress_json_text",
    "decode_json",
    "dumps",
    "encode_json",
    "normalize_json",
    "utf8_len",
    "value_bytes",
]

#: The API server's limit on a ConfigMap's ``data`` plus ``binaryData`` (value bytes).
MAX_DATA_BYTES = 1_048_576

#: Plain JSON longer than this (UTF-8 bytes) is compressed, when that is smaller.
COMPRESS_OVER = 4096

#: The marker of a gzip-then-base64 value.
GZIP_MARKER = "gzip+base64:"

#: The most a compressed value may expand to: 16 MiB, 16 times the API
#: server's 1 MiB limit on an object's data. It guards every reader against a
#: decompression bomb (gzip reaches about 1000:1, so 1 MiB of stored text could
#: otherwise inflate to 768 MiB, and parsing that takes gigabytes); inflating
#: stops at this bound. The margin: remstate's own JSON compresses 6 to 15
#: times (measured: feedback text 6x, iteration records 8x, the same error
#: message over and over 15x), so what fits in an object fits here. Writers
#: refuse larger documents, and segments are cut to fit (``compaction``), so
#: whatever remstate writes reads back.
MAX_DECODED_BYTES = 16 * 1024 * 1024

#: How deeply arrays and objects may nest in a value remstate keeps: metadata
#: (the object itself is level 1: ``{"a": [1]}`` has 2 levels), or a record's
#: unknown keys (likewise counted from their object). Far more than real
#: metadata uses, and far from Python's recursion limit, so every value
#: remstate writes reads back on any reader.
MAX_JSON_DEPTH = 64

# A high then a low surrogate: JSON's \uXXXX\uXXXX reads back as one astral character.
_SPLIT_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")

# Plain JSON never starts with a letter followed by ``word:``, so this is a marker.
_MARKER = re.compile(r"[A-Za-z][A-Za-z0-9.+-]*:")
# gzip level 6 is zlib's default: most of level 9's ratio at a fraction of its time.
_GZIP_LEVEL = 6


def dumps(value: Any) -> str:
    """Compact JSON text of ``value``, readable UTF-8 where UTF-8 can carry it.

    Raises:
        InvalidInput: the value is not JSON (a set, NaN, an object...), is
            nested too deeply for the JSON encoder, or holds a surrogate pair
            as two code points (which would read back as one character).
    """
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"value is not JSON-serialisable: {e}") from e
    except RecursionError as e:
        raise InvalidInput("value is not JSON-serialisable: nested too deeply") from e
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate: ASCII escapes carry it and read back identically,
        # unless a low one follows a high one (inside one string: the encoder
        # escapes only control characters, quotes and backslashes).
        if _SPLIT_PAIR.search(text):
            raise InvalidInput(_SPLIT_PAIR_MESSAGE) from None
        return json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text


_SPLIT_PAIR_MESSAGE = (
    "a string holds a UTF-16 surrogate pair as two code points; "
    "JSON would read it back as one character"
)


def utf8_len(text: str) -> int:
    """UTF-8 length of ``text``; lone surrogates count as their escapes would."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return len(text.encode("utf-8", "surrogatepass"))


def compress_json_text(text: str, *, compress_over: int = COMPRESS_OVER) -> str:
    """Store ``text`` (JSON made by :func:`dumps`) as a value: plain, or compressed.

    It is compressed when its UTF-8 size is over ``compress_over`` and the
    compressed form is smaller.

    Raises:
        InvalidInput: the document is larger than :data:`MAX_DECODED_BYTES`.
    """
    raw = text.encode("utf-8")
    if len(raw) > MAX_DECODED_BYTES:
        raise InvalidInput(
            f"JSON document of {len(raw)} bytes is larger than the {MAX_DECODED_BYTES} "
            "bytes remstate reads back"
        )
    if len(raw) <= compress_over:
        return text
    # mtime=0: the same document always gives the same bytes.
    packed = GZIP_MARKER + base64.b64encode(
        gzip.compress(raw, compresslevel=_GZIP_LEVEL, mtime=0)
    ).decode("ascii")
    return packed if len(packed) < len(raw) else text


def encode_json(value: Any, *, compress_over: int = COMPRESS_OVER) -> str:
    """Encode ``value`` as a ConfigMap value: plain JSON, or ``gzip+base64:`` when large.

    Raises:
        InvalidInput: the value is not JSON, or is too large to read back.
    """
    return compress_json_text(dumps(value), compress_over=compress_over)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_value(text: str) -> Any:
    """Internal: decode one value, raising ``MalformedError`` (with an empty field) on failure."""
    text = decode_text(text)
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as e:  # JSONDecodeError, and ints too long to convert
        raise MalformedError(ProblemCode.MALFORMED_JSON, "", f"malformed JSON: {e}") from e
    except RecursionError as e:  # "[[[[...": the C scanner recurses per level
        raise MalformedError(
            ProblemCode.MALFORMED_JSON, "", "malformed JSON: arrays or objects nested too deeply"
        ) from e


def decode_text(text: str) -> str:
    """Internal: the JSON text of a stored value, inflated if compressed; not parsed.

    Raises:
        MalformedError: a broken compressed form, or an unknown encoding marker.
    """
    if text.startswith(GZIP_MARKER):
        try:
            packed = base64.b64decode(text[len(GZIP_MARKER) :], validate=True)
        except (binascii.Error, ValueError) as e:
            raise MalformedError(
                ProblemCode.BAD_ENCODING, "", f"bad base64 after marker: {e}"
            ) from e
        inflater = zlib.decompressobj(wbits=31)  # 31: gzip header and trailer
        try:
            # max_length: a bomb costs at most the bound, never what it would inflate to.
            raw = inflater.decompress(packed, MAX_DECODED_BYTES + 1)
        except zlib.error as e:
            raise MalformedError(ProblemCode.BAD_ENCODING, "", f"bad gzip data: {e}") from e
        if len(raw) > MAX_DECODED_BYTES:
            raise MalformedError(
                ProblemCode.BAD_ENCODING,
                "",
                f"expands to more than {MAX_DECODED_BYTES} bytes, the most remstate reads",
            )
        if not inflater.eof or inflater.unused_data:
            raise MalformedError(ProblemCode.BAD_ENCODING, "", "gzip data is truncated or trailed")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise MalformedError(ProblemCode.BAD_ENCODING, "", f"not UTF-8: {e}") from e
    elif _MARKER.match(text):
        marker = text.split(":", 1)[0]
        raise MalformedError(
            ProblemCode.UNKNOWN_ENCODING,
            "",
            f"unknown encoding {marker!r}: written by a newer remstate?",
        )
    return text


def decode_json(text: str, *, field: str, task_id: str | None = None) -> Any:
    """Decode a value written by :func:`encode_json` (or plain JSON by anyone).

    Raises:
        CorruptState: the value is malformed JSON, its compressed form is broken,
            or it has an unknown encoding marker. ``.field`` is ``field``.
    """
    try:
        return decode_value(text)
    except MalformedError as e:
        raise CorruptState(f"{field}: {e.message}", task_id=task_id, field=field) from e


def value_bytes(data: Mapping[str, str]) -> int:
    """The size the API server counts against :data:`MAX_DATA_BYTES`: UTF-8 value bytes."""
    return sum(utf8_len(v) for v in data.values())


def normalize_json(value: Any, *, what: str) -> Any:
    """A deep copy of ``value`` that reads back from JSON as an equal value.

    Tuples become lists. Mapping keys must be strings; floats must be finite;
    only JSON types (and tuples) are accepted; arrays and objects may nest at
    most :data:`MAX_JSON_DEPTH` levels deep (``value`` itself is level 1); no
    string may hold a surrogate pair as two code points.

    Raises:
        InvalidInput: ``value`` holds something JSON cannot carry exactly, or
            is nested more than :data:`MAX_JSON_DEPTH` levels deep.
    """
    return _normalize(value, what, 1)


def _normalize(value: Any, what: str, depth: int) -> Any:
    # Radon grade C: one branch per JSON type, in one function so that the depth
    # bound holds for all of them.
    if isinstance(value, str):
        if _SPLIT_PAIR.search(value):
            raise InvalidInput(f"{what}: {_SPLIT_PAIR_MESSAGE}")
        return value
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{what}: {value!r} is not a JSON number")
        return value
    if isinstance(value, Mapping | list | tuple) and depth > MAX_JSON_DEPTH:
        where = what if len(what) <= 120 else what[:117] + "..."
        raise InvalidInput(
            f"{where}: arrays and objects nest more than {MAX_JSON_DEPTH} levels deep"
        )
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidInput(f"{what}: key {k!r} is not a string")
            if _SPLIT_PAIR.search(k):
                raise InvalidInput(f"{what}: key {k!r}: {_SPLIT_PAIR_MESSAGE}")
            out[k] = _normalize(v, f"{what}.{k}", depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_normalize(v, f"{what}[{i}]", depth + 1) for i, v in enumerate(value)]
    raise InvalidInput(f"{what}: {type(value).__name__} is not a JSON value")
