"""The Kubernetes backend's errors: the one place that maps the client's failures to ours.

Design constraint: no client exception escapes the store. ``translate_error``
maps ``ApiException``, urllib3 and socket errors to our tree (the store
raises them chained with ``raise ... from``, inside ``translated()``). The
server's Status is carried as data; a network failure becomes one short line
naming the server and the cause ("connection refused"), and says whether the
request may have been carried out (``Unavailable.maybe_applied``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

import urllib3
from kubernetes.client.exceptions import ApiException

from remstate.errors import (
    AlreadyExists,
    ApiStatus,
    Conflict,
    Forbidden,
    Gone,
    InvalidObject,
    NotFound,
    ServerFault,
    StoreError,
    Unavailable,
)

__all__ = ["error_from_status", "translate_error", "translated"]


#: Status code -> our error; 409 and 5xx are decided in ``_status_class``.
_ERRORS_BY_CODE: Final[Mapping[int, type[StoreError]]] = {
    0: Unavailable,  # no response at all: refused, reset, TLS failure
    400: InvalidObject,  # e.g. a label selector that cannot be parsed
    401: Forbidden,
    403: Forbidden,
    404: NotFound,
    408: Unavailable,
    410: Gone,
    413: InvalidObject,  # a body over the server's request size limit
    422: InvalidObject,
    429: Unavailable,
}


#: Server errors that the same request will meet again, however long we wait:
#: etcd's space quota alarm (it refuses every write until an operator compacts,
#: defragments and disarms), and requests etcd can never take.
_PERMANENT_MESSAGES: Final = (
    "database space exceeded",
    "too many operations in txn request",
)
#: Not implemented, HTTP version not supported, insufficient storage.
_PERMANENT_CODES: Final = frozenset({501, 505, 507})
#: Server errors after which a write may yet commit: the server took the
#: request and did not say how it ended (etcd timed out, a gateway gave up).
_MAYBE_APPLIED_CODES: Final = frozenset({500, 502, 504})


def _status_class(code: int, reason: str, message: str = "") -> type[StoreError]:
    if code == 409:
        return AlreadyExists if reason == "AlreadyExists" else Conflict
    if code in _PERMANENT_CODES or (code >= 500 and any(m in message for m in _PERMANENT_MESSAGES)):
        return ServerFault
    if code >= 500:
        return Unavailable
    return _ERRORS_BY_CODE.get(code, StoreError)


# Grade C on purpose: one place decides every class of server answer (see the tests).
def error_from_status(code: int, body: str | bytes | Mapping[str, Any] | None) -> StoreError:
    """Our error for an HTTP code and the server's response body (a Status, usually).

    Args:
        code: the HTTP status code (0 when no response arrived).
        body: the body, raw or decoded; a non-Status body becomes the message.
    """
    decoded: Any = body
    if isinstance(body, str | bytes):
        try:
            decoded = json.loads(body) if body else None
        except ValueError:
            decoded = None
    if isinstance(decoded, Mapping) and decoded.get("kind") == "Status":
        status = ApiStatus.from_dict(decoded, default_code=code)
    else:
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        message = text.strip()[:1000] if isinstance(text, str) and text.strip() else ""
        cls = _status_class(code, "", message)
        status = ApiStatus(code=code or cls.code, reason=cls.reason, message=message)
    cls = _status_class(status.code, status.reason, status.message)
    message = status.message or f"the API server answered HTTP {status.code}"
    if cls is ServerFault:
        return ServerFault(f"the API server cannot carry this out: {message}", status=status)
    if cls is Unavailable:
        return Unavailable(message, status=status, maybe_applied=code in _MAYBE_APPLIED_CODES)
    return cls(message, status=status)


def translate_error(exc: BaseException, *, server: str = "") -> StoreError:
    """Our error for anything the client or the network raised. The one place that maps them.

    Args:
        exc: what the client raised.
        server: the API server's URL, named in the message of a network failure.
    """
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, ApiException) and exc.status:
        return error_from_status(int(exc.status), exc.body or exc.reason)
    if isinstance(exc, ApiException | urllib3.exceptions.HTTPError | OSError):
        # No response at all (the client wraps TLS errors in an ApiException of status 0).
        cause, maybe_applied = _transport_cause(exc)
        where = f"the API server at {server}" if server else "the API server"
        return Unavailable(f"cannot reach {where}: {cause}", maybe_applied=maybe_applied)
    if isinstance(exc, UnicodeDecodeError | json.JSONDecodeError):
        # Only a 2xx body is decoded: the request was carried out.
        return Unavailable(
            f"the API server sent a body that is not JSON: {exc}", maybe_applied=True
        )
    if isinstance(exc, ValueError | TypeError):
        # The client's own validation (ApiValueError, pydantic) or an unserialisable value.
        return InvalidObject(f"the request was refused before it was sent: {exc}")
    return StoreError(f"unexpected client failure: {type(exc).__name__}: {exc}")


def _tls_cause(text: str) -> str:
    """The one readable part of a TLS failure ("certificate verify failed: ...")."""
    found = re.search(r"\[SSL[^\]]*\] ([^(']+)", text)
    return f"TLS failure: {found.group(1).strip()}" if found else "TLS handshake failed"


#: Network failures: (class, cause, may the request have been carried out?). The
#: operating system's words win when the chain has an errno ("connection refused").
#: The first class that matches wins, so subclasses come first.
_TRANSPORT_CAUSES: Final[tuple[tuple[type[BaseException], str, bool], ...]] = (
    (urllib3.exceptions.NameResolutionError, "cannot resolve its host name", False),
    (urllib3.exceptions.NewConnectionError, "cannot connect", False),
    (urllib3.exceptions.ConnectTimeoutError, "no connection within the connect timeout", False),
    (urllib3.exceptions.ReadTimeoutError, "no response within the request timeout", True),
    (urllib3.exceptions.ProtocolError, "the connection closed before the response", True),
    (ConnectionRefusedError, "connection refused", False),
    (OSError, "network error", True),
)


# Grade C on purpose: urllib3 and the client wrap a network failure in several
# ways; each is unwrapped here, once.
def _transport_cause(exc: BaseException) -> tuple[str, bool]:
    """A few words on why no response came, and whether the request may have been carried out.

    urllib3 has no such summary: its messages repeat the pool, the URL and the
    wrapped exception's repr (hundreds of characters). It also reports a TLS
    handshake that timed out as a ``ReadTimeoutError``, though no request was
    sent: the handshake runs in ``_validate_conn``, which the traceback shows.
    """
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason  # only when a caller's own client still retries
    if isinstance(exc, ApiException) and not str(exc.reason or "").startswith("SSLError"):
        return str(exc.reason or "the client failed").splitlines()[0][:200], False
    if isinstance(exc, ApiException | urllib3.exceptions.SSLError):
        return _tls_cause(str(exc.reason if isinstance(exc, ApiException) else exc)), False
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError) and _raised_in(
        exc.__cause__, "_validate_conn"
    ):
        return "no TLS handshake within the connect timeout", False
    for kind, cause, maybe_applied in _TRANSPORT_CAUSES:
        if isinstance(exc, kind):
            return _os_cause(exc, cause), maybe_applied
    return type(exc).__name__, True


def _os_cause(exc: BaseException, default: str) -> str:
    """The operating system's words for the first errno in the exception's chain."""
    seen: BaseException | None = exc
    while seen is not None:
        for arg in (seen, *getattr(seen, "args", ())):
            number = getattr(arg, "errno", None)
            if isinstance(number, int) and number in errno.errorcode:
                return os.strerror(number).lower()
        seen = seen.__cause__ or seen.__context__
    return default


def _raised_in(exc: BaseException | None, function: str) -> bool:
    tb = exc.__traceback__ if exc is not None else None
    while tb is not None:
        if tb.tb_frame.f_code.co_name == function:
            return True
        tb = tb.tb_next
    return False


@contextlib.contextmanager
def translated(server: str = "") -> Iterator[None]:
    """Run client calls; whatever they raise leaves as one of our errors."""
    try:
        yield
    except StoreError:
        raise
    except Exception as e:
        raise translate_error(e, server=server) from e
