"""Continue tokens of a paged list, in the API server's own format.

Design constraint: a token from the embedded store is what the API server
would give for the same page (``storage.EncodeContinue``: base64url of
``{"v", "rv", "start"}``), and a token it refuses is refused with the
server's own message (``storage.DecodeContinue`` and Go's JSON errors).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Final

from remstate.store.apistatus import JSON_KINDS, bad_request, go_quote

__all__ = ["decode", "encode"]

_CONTINUE_VERSION: Final = "meta.k8s.io/v1"


def encode(last_name: str, revision: int) -> str:
    # storage.EncodeContinue: the key after the last item (its name and a NUL byte).
    token = json.dumps(
        {"v": _CONTINUE_VERSION, "rv": revision, "start": last_name + "\x00"},
        separators=(",", ":"),
    )
    return base64.urlsafe_b64encode(token.encode()).rstrip(b"=").decode()


_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


# Grade C on purpose: the server's checks, one branch each, in its order, so that
# the first one a bad token fails is the one the server reports.
def decode(token: str) -> tuple[str, int]:
    """``storage.DecodeContinue``: the first name to list and the snapshot revision.

    Raises:
        InvalidObject: (400 BadRequest) the token is not one the server would accept;
            the message is the server's (for JSON errors, its common ones).
    """
    prefix = "invalid continue token: continue key is not valid"
    match = _BASE64URL.match(token)
    end = match.end() if match else 0
    if end < len(token) or len(token) % 4 == 1:
        # Go's RawURLEncoding names the first byte it cannot use.
        at = end if end < len(token) else len(token) - 1
        raise bad_request(f"{prefix}: illegal base64 data at input byte {at}")
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    fields = _go_unmarshal_token(raw)
    if isinstance(fields, str):
        raise bad_request(f"{prefix}: {fields}")
    version, revision, start = fields
    if version != _CONTINUE_VERSION:
        raise bad_request(f"{prefix}: server does not recognize this encoded version {version}")
    if revision == 0:
        raise bad_request(
            f"{prefix}: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
        )
    if not start:
        raise bad_request(f"{prefix}: encoded start key empty (version meta.k8s.io/v1)")
    key = start if start.startswith("/") else "/" + start
    if not _is_clean_path(key):
        raise bad_request(f"{prefix}: {start}")
    return key[1:], revision


def _go_unmarshal_token(raw: bytes) -> tuple[str, int, str] | str:
    """``json.Unmarshal`` into the server's continueToken: its fields, or Go's error."""
    text = raw.decode("utf-8", "replace")
    stripped = text.lstrip(" \t\r\n")
    if not stripped:
        return "unexpected end of JSON input"
    if stripped[0] not in '{["-0123456789tfn':
        return f"invalid character {_go_quote_char(stripped[0])} looking for beginning of value"
    try:
        decoded = json.loads(text)
    except ValueError as e:
        return str(e)
    if decoded is None:
        decoded = {}
    if not isinstance(decoded, dict):
        kind = JSON_KINDS.get(type(decoded), "value")
        return f"json: cannot unmarshal {kind} into Go value of type storage.continueToken"
    values: dict[str, Any] = {"v": "", "rv": 0, "start": ""}
    for field, wanted in (("v", str), ("rv", int), ("start", str)):
        value = decoded.get(field)
        if value is None:
            continue
        if type(value) is not wanted:
            kind = JSON_KINDS.get(type(value), "value")
            go_type = "int64" if wanted is int else "string"
            return (
                f"json: cannot unmarshal {kind} into Go struct field "
                f"continueToken.{field} of type {go_type}"
            )
        values[field] = value
    return values["v"], values["rv"], values["start"]


def _go_quote_char(ch: str) -> str:
    # encoding/json's quoteChar.
    if ch == "'":
        return "'\\''"
    if ch == '"':
        return "'\"'"
    return "'" + go_quote(ch)[1:-1] + "'"


def _is_clean_path(path: str) -> bool:
    # path.Clean(path) == path, for a path that starts with "/".
    if path == "/":
        return True
    if path.endswith("/") or "//" in path:
        return False
    return all(part not in (".", "..") for part in path.split("/")[1:])
