"""Typed validation results: what is wrong with a stored object, field by field.

The validator reports problems as data and never raises, so that a reader
facing a damaged object can show what is wrong and a repair can decide what
to keep. ``MalformedError`` is the internal carrier of one problem; the public
decoders turn it into ``CorruptState``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = ["Problem", "ProblemCode"]


class ProblemCode(enum.StrEnum):
    """The kinds of problem the validator reports."""

    #: The object came from a metadata-only read: there is no data to check.
    NO_DATA = "no_data"
    #: A key (or an entry's field) that must be there is not.
    MISSING_KEY = "missing_key"
    #: A value is not JSON.
    MALFORMED_JSON = "malformed_json"
    #: A value starts with an encoding marker this remstate does not know.
    UNKNOWN_ENCODING = "unknown_encoding"
    #: A value has a known marker, but its base64 or gzip is broken.
    BAD_ENCODING = "bad_encoding"
    #: A value is JSON, but of the wrong shape or type.
    BAD_VALUE = "bad_value"
    #: A timestamp cannot be parsed.
    BAD_TIMESTAMP = "bad_timestamp"
    #: Written by a newer remstate: nothing else is checked.
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    #: Written by an older remstate: readable (migrated on read), rewritten by a repair.
    OUTDATED_SCHEMA_VERSION = "outdated_schema_version"
    #: ``iteration`` disagrees with the length of ``iteration_history``.
    ITERATION_MISMATCH = "iteration_mismatch"
    #: ``task_id`` is not the task the object is named for.
    TASK_ID_MISMATCH = "task_id_mismatch"
    #: Two feedback entries share an ID.
    DUPLICATE_ID = "duplicate_id"
    #: ``history_index`` disagrees with itself or with the head.
    INDEX_MISMATCH = "index_mismatch"
    #: An annotation is missing or disagrees with the data (cleanup reads annotations).
    ANNOTATION_MISMATCH = "annotation_mismatch"


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found in a stored object.

    ``field`` names the data key, with a path into it where that helps
    (``feedback_history[3].timestamp``), or ``metadata.annotations...``.
    """

    field: str
    code: ProblemCode
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "code": str(self.code), "message": self.message}


class MalformedError(Exception):
    """Internal: one problem, raised while decoding. Public functions raise CorruptState."""

    def __init__(self, code: ProblemCode, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.code = code
        self.field = field
        self.message = message

    def problem(self) -> Problem:
        return Problem(self.field, self.code, self.message)
