"""The API server's errors, as the embedded store must answer them: Status bodies and messages.

Design constraint: for the same failure, the embedded store raises the same
error class with the same ``ApiStatus`` (code, reason, message, details) as
kube-apiserver (1.37); the contract suite compares them against the real
server. So the messages here are the server's, verbatim, built as it builds
them: Go's quoting (``%q``), encoding/json's words for JSON values, the
``field.Error`` list of an ``Invalid`` Status, and the ``StatusError``
constructors of apimachinery's ``api/errors`` (``NewNotFound``,
``NewAlreadyExists``, ``NewConflict``, ``NewBadRequest``, ``NewGone``...).
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from remstate.errors import (
    AlreadyExists,
    ApiStatus,
    Conflict,
    Gone,
    InvalidObject,
    NotFound,
    Unavailable,
)

__all__ = [
    "INCONSISTENT_CONTINUE",
    "JSON_KINDS",
    "OPTIMISTIC_LOCK",
    "WATCH_EXPIRED",
    "ErrorType",
    "FieldError",
    "already_exists",
    "bad_request",
    "check_delete_preconditions",
    "check_path_name",
    "conflict",
    "go_json",
    "go_quote",
    "gone",
    "internal",
    "invalid",
    "not_found",
    "parse_uint",
    "raise_if_invalid",
    "request_entity_too_large",
    "too_large_resource_version",
]

_MAX_UINT64: Final = 2**64 - 1
_DIGITS: Final = re.compile(r"[0-9]+")

# How encoding/json names a JSON value of each Python type in its errors.
JSON_KINDS: Final[dict[type, str]] = {
    str: "string",
    int: "number",
    float: "number",
    bool: "bool",
    list: "array",
    tuple: "array",
    dict: "object",
}

# --- Go's text ---------------------------------------------------------------------------


def go_quote(value: str) -> str:
    """Go's ``%q`` of a string (``strconv.Quote``), as the server writes values and names."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def go_json(value: Any) -> str:
    # encoding/json.Marshal: compact, with <, > and & escaped for HTML.
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(raw, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


# --- field errors -------------------------------------------------------------------------


class ErrorType(enum.StrEnum):
    """``field.ErrorType``: the ``reason`` of a Status cause."""

    NOT_FOUND = "FieldValueNotFound"
    REQUIRED = "FieldValueRequired"
    DUPLICATE = "FieldValueDuplicate"
    INVALID = "FieldValueInvalid"
    NOT_SUPPORTED = "FieldValueNotSupported"
    FORBIDDEN = "FieldValueForbidden"
    TOO_LONG = "FieldValueTooLong"
    TOO_MANY = "FieldValueTooMany"
    INTERNAL = "InternalError"

    @property
    def text(self) -> str:
        """How the server writes the type in a message."""
        return _TYPE_TEXT[self]


_TYPE_TEXT = {
    ErrorType.NOT_FOUND: "Not found",
    ErrorType.REQUIRED: "Required value",
    ErrorType.DUPLICATE: "Duplicate value",
    ErrorType.INVALID: "Invalid value",
    ErrorType.NOT_SUPPORTED: "Unsupported value",
    ErrorType.FORBIDDEN: "Forbidden",
    ErrorType.TOO_LONG: "Too long",
    ErrorType.TOO_MANY: "Too many",
    ErrorType.INTERNAL: "Internal error",
}
# The types whose message shows no value (field.Error.ErrorBody).
_VALUELESS = frozenset(
    {ErrorType.REQUIRED, ErrorType.FORBIDDEN, ErrorType.TOO_LONG, ErrorType.INTERNAL}
)


@dataclass(frozen=True, slots=True)
class FieldError:
    """One ``field.Error``: a type, the field's path, the bad value and a detail."""

    type: ErrorType
    field: str
    bad_value: Any = ""
    detail: str = ""

    @property
    def body(self) -> str:
        """``field.Error.ErrorBody()``: the cause's message."""
        if self.type in _VALUELESS:
            text = self.type.text
        elif isinstance(self.bad_value, str):
            text = f"{self.type.text}: {go_quote(self.bad_value)}"
        elif isinstance(self.bad_value, bool):
            text = f"{self.type.text}: {'true' if self.bad_value else 'false'}"
        elif isinstance(self.bad_value, int | float):
            text = f"{self.type.text}: {self.bad_value}"
        else:
            text = f"{self.type.text}: {go_json(self.bad_value)}"
        if self.detail:
            text += f": {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body}"

    def cause(self) -> dict[str, str]:
        """The ``StatusCause`` (empty fields omitted, as the server's JSON does)."""
        cause = {"reason": str(self.type), "message": self.body, "field": self.field}
        return {k: v for k, v in cause.items() if v}


# --- the Invalid Status -------------------------------------------------------------------


def invalid(name: str, errors: Iterable[FieldError], *, kind: str = "ConfigMap") -> InvalidObject:
    """The ``InvalidObject`` error the server answers for these field errors (422, ``NewInvalid``).

    As on the server, an error that repeats another (same field, same message)
    is dropped: each appears once in the message and once in the causes, in the
    order first seen. The message brackets the list when there are several.
    """
    errs: list[FieldError] = []
    seen: set[str] = set()
    for err in errors:
        line = str(err)
        if line not in seen:
            seen.add(line)
            errs.append(err)
    message = f"{kind} {go_quote(name)} is invalid"
    if len(errs) == 1:
        message += f": {errs[0]}"
    elif errs:
        message += f": [{', '.join(str(e) for e in errs)}]"
    details: dict[str, Any] = {"name": name, "kind": kind}
    if not name:
        del details["name"]
    if errs:
        details["causes"] = [err.cause() for err in errs]
    status = ApiStatus(code=422, reason="Invalid", message=message, details=details)
    return InvalidObject(message, status=status)


def raise_if_invalid(name: str, errors: Iterable[FieldError], *, kind: str = "ConfigMap") -> None:
    """Raise ``invalid(name, errors)`` if there is any error.

    Raises:
        InvalidObject: there was at least one error.
    """
    errs = list(errors)
    if errs:
        raise invalid(name, errs, kind=kind)


# --- the other StatusErrors ---------------------------------------------------------------

OPTIMISTIC_LOCK: Final = (
    "the object has been modified; please apply your changes to the latest version and try again"
)
INCONSISTENT_CONTINUE: Final = (
    "The provided continue parameter is too old to display a consistent list result. "
    "You can start a new list without the continue parameter, or use the continue token "
    "in this response to retrieve the remainder of the results. Continuing with the "
    "provided token results in an inconsistent list - objects that were created, "
    "modified, or deleted between the time the first chunk was returned and now may "
    "show up in the list."
)
WATCH_EXPIRED: Final = "The resourceVersion for the provided watch is too old."


def request_entity_too_large(limit: int) -> InvalidObject:
    # The server reads a body only up to its limit, and refuses a longer one
    # before decoding it: this comes before every other check of a write.
    message = f"Request entity too large: limit is {limit}"
    return InvalidObject(message, status=ApiStatus(413, "RequestEntityTooLarge", message))


def _details(name: str, kind: str) -> dict[str, Any]:
    return {"name": name, "kind": kind}


def not_found(name: str) -> NotFound:
    message = f"configmaps {go_quote(name)} not found"
    status = ApiStatus(404, "NotFound", message, _details(name, "configmaps"))
    return NotFound(message, status=status)


def already_exists(name: str) -> AlreadyExists:
    message = f"configmaps {go_quote(name)} already exists"
    status = ApiStatus(409, "AlreadyExists", message, _details(name, "configmaps"))
    return AlreadyExists(message, status=status)


def conflict(name: str, reason: str, *, kind: str = "configmaps") -> Conflict:
    # The update path names the resource ("configmaps"); the delete preconditions,
    # checked by rest.BeforeDelete, name the kind ("ConfigMap").
    message = f"Operation cannot be fulfilled on {kind} {go_quote(name)}: {reason}"
    status = ApiStatus(409, "Conflict", message, _details(name, kind))
    return Conflict(message, status=status)


def check_delete_preconditions(
    name: str, *, uid: str | None, resource_version: str | None, found: tuple[str, str]
) -> None:
    """``rest.BeforeDelete``'s preconditions, against the stored (uid, resourceVersion).

    Raises:
        Conflict: a precondition did not hold, with the server's message.
    """
    found_uid, found_version = found
    if uid and uid != found_uid:
        raise conflict(
            name,
            f"the UID in the precondition ({uid}) does not match the UID in record "
            f"({found_uid}). The object might have been deleted and then recreated",
            kind="ConfigMap",
        )
    if resource_version and resource_version != found_version:
        raise conflict(
            name,
            f"the ResourceVersion in the precondition ({resource_version}) does not "
            f"match the ResourceVersion in record ({found_version}). "
            "The object might have been modified",
            kind="ConfigMap",
        )


def check_path_name(name: str) -> None:
    """Refuse, as the server's URL handling does, a name that cannot be a path segment.

    A "/" in the name makes another URL, which the server does not serve; a "%"
    fails its key function. ("." and ".." are not found, as by our Kubernetes
    backend, which never sends them.)
    """
    if "/" in name:
        message = "the server could not find the requested resource"
        raise NotFound(message, status=ApiStatus(404, "NotFound", message))
    if "%" in name:
        raise bad_request(f"Name parameter invalid: {go_quote(name)}: may not contain '%'")


def bad_request(message: str) -> InvalidObject:
    return InvalidObject(message, status=ApiStatus(400, "BadRequest", message))


def gone(message: str) -> Gone:
    return Gone(message, status=ApiStatus(410, "Expired", message))


def internal(message: str) -> Unavailable:
    # A plain Go error reaches the client as a 500 with no reason; our tree's 5xx is Unavailable.
    return Unavailable(message, status=ApiStatus(500, "", message))


def too_large_resource_version(wanted: int, current: int) -> Unavailable:
    # What a list at a future revision gets from etcd (no retry delay is set).
    message = f"Timeout: Too large resource version: {wanted}, current: {current}"
    details = {
        "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}]
    }
    return Unavailable(message, status=ApiStatus(504, "Timeout", message, details))


def parse_uint(text: str) -> int | str:
    """``strconv.ParseUint(text, 10, 64)``: the number, or Go's error message."""
    if not _DIGITS.fullmatch(text):
        return f"strconv.ParseUint: parsing {go_quote(text)}: invalid syntax"
    number = int(text)
    if number > _MAX_UINT64:
        return f"strconv.ParseUint: parsing {go_quote(text)}: value out of range"
    return number
