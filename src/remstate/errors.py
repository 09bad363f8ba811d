"""The one exception tree of remstate.

Every error that leaves remstate is one of these. The store backends translate
their client's errors here, in one place each, chained with ``raise ... from``,
so no ``kubernetes.client.ApiException`` and no ``sqlite3.Error`` ever escapes.

    RemstateError
    ├── StoreError                   the store refused or failed; carries .status
    │   ├── NotFound                 404
    │   │   └── StateNotFound        no state for this task
    │   ├── AlreadyExists            409 AlreadyExists
    │   ├── Conflict                 409 Conflict: stale resourceVersion or precondition
    │   ├── InvalidObject            422, 400, 413: too large, bad name, label, key or selector
    │   ├── Forbidden                403 (and 401 Unauthorized)
    │   ├── Gone                     410: continue token or watch resourceVersion expired
    │   ├── CorruptStore             500: the store's own file is damaged, or newer than us
    │   ├── ServerFault              a server error that retrying will not mend (etcd full, 501)
    │   └── Unavailable              5xx, 429, timeouts, refused connections: transient;
    │       │                        raised as itself once retries run out on an outage
    │       └── OutcomeUnknown       a write was sent, no answer came, retries ran out:
    │                                it may or may not have committed
    ├── StateError                   the state itself is not usable
    │   ├── CorruptState             a stored field cannot be read
    │   └── UnsupportedSchemaVersion written by a newer remstate than this one
    ├── InvalidInput                 the caller's input; nothing was written
    ├── MaxIterationsReached         the counter is at its maximum; nothing was written
    ├── PreconditionFailed           the state is not at the version the caller named; nothing
    │                                was written (an HTTP If-Match that is stale)
    └── RetriesExhausted             conflicts outlasted the retry policy (contention)

Outage and contention stay apart: when the retry policy gives up on an
outage the caller gets the ``Unavailable`` itself (or ``OutcomeUnknown``
when a write may have committed), never a ``RetriesExhausted``, which only
means that other writers kept winning.

The errors carry the server's Status as data (``.status``), never only a
parsed message, so callers can branch on reason and details.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AlreadyExists",
    "ApiStatus",
    "Conflict",
    "CorruptState",
    "CorruptStore",
    "Forbidden",
    "Gone",
    "InvalidInput",
    "InvalidObject",
    "MaxIterationsReached",
    "NotFound",
    "OutcomeUnknown",
    "PreconditionFailed",
    "RemstateError",
    "RetriesExhausted",
    "ServerFault",
    "StateError",
    "StateNotFound",
    "StoreError",
    "Unavailable",
    "UnsupportedSchemaVersion",
]


@dataclass(frozen=True, slots=True)
class ApiStatus:
    """A Kubernetes ``Status`` object (meta/v1), as the server sent it.

    The embedded store builds the same shape for the same failures, so callers
    never need to know which backend they talk to.
    """

    code: int
    reason: str
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, body: Mapping[str, Any], *, default_code: int = 0) -> ApiStatus:
        """Build from a decoded ``Status`` body; tolerant of missing fields."""
        details = body.get("details")
        return cls(
            code=int(body.get("code") or default_code),
            reason=str(body.get("reason") or ""),
            message=str(body.get("message") or ""),
            details=dict(details) if isinstance(details, Mapping) else {},
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``Status`` body, as the API server would send it."""
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "code": self.code,
            "reason": self.reason,
            "message": self.message,
            "details": dict(self.details),
        }


class RemstateError(Exception):
    """Base class of every error remstate raises."""


class StoreError(RemstateError):
    """The store refused a request or failed to carry it out."""

    #: The HTTP code the API server uses for this class of failure.
    code: int = 500
    #: The ``Status.reason`` the API server uses for this class of failure.
    reason: str = "InternalError"

    def __init__(self, message: str, *, status: ApiStatus | None = None) -> None:
        super().__init__(message)
        self.status = status or ApiStatus(code=self.code, reason=self.reason, message=message)

    @property
    def message(self) -> str:
        return self.status.message or str(self)


class NotFound(StoreError):
    """The object does not exist."""

    code = 404
    reason = "NotFound"


class AlreadyExists(StoreError):
    """An object of that name exists already."""

    code = 409
    reason = "AlreadyExists"


class Conflict(StoreError):
    """The resourceVersion or a delete precondition did not match."""

    code = 409
    reason = "Conflict"


class InvalidObject(StoreError):
    """The server refused the object or request as breaking a rule of its API.

    Too large, a bad name, label or key (422, reason ``Invalid``), or a request
    it cannot parse, such as a label selector or a continue token (400). Not to
    be confused with ``InvalidInput``, which remstate raises itself, before
    anything is sent, for a caller's bad argument.
    """

    code = 422
    reason = "Invalid"


class Forbidden(StoreError):
    """The caller may not do this (RBAC), or is not authenticated."""

    code = 403
    reason = "Forbidden"


class Gone(StoreError):
    """A continue token or watch resourceVersion is too old; start again."""

    code = 410
    reason = "Expired"


class ServerFault(StoreError):
    """The server failed in a way that retrying will not mend; an operator must act.

    For example etcd's "mvcc: database space exceeded" (its quota alarm: no
    write succeeds until the database is compacted, defragmented and the alarm
    disarmed), or a request the server does not implement (501).
    """

    code = 500
    reason = "InternalError"


class Unavailable(StoreError):
    """A transient failure: 5xx, throttling, a timeout or a refused connection.

    Attributes:
        maybe_applied: the request may have reached the server and been carried
            out (a timeout or a connection lost after sending, a gateway
            timeout). False when it certainly was not (a refused connection,
            a TLS failure, throttling).
        attempts: how many attempts the retry policy made before giving up
            (1 when raised by a store).
    """

    code = 503
    reason = "ServiceUnavailable"

    def __init__(
        self, message: str, *, status: ApiStatus | None = None, maybe_applied: bool = False
    ) -> None:
        super().__init__(message, status=status)
        self.maybe_applied = maybe_applied
        self.attempts = 1


class OutcomeUnknown(Unavailable):
    """A write was sent, its answer never came, and the retries ran out.

    It may or may not have committed: read the state before doing it again,
    or repeat it with the same idempotency key (a feedback id, an increment's
    ``op_id``), which recognises a write that committed.
    """

    def __init__(
        self, message: str, *, status: ApiStatus | None = None, task_id: str | None = None
    ) -> None:
        super().__init__(message, status=status, maybe_applied=True)
        self.task_id = task_id


class CorruptStore(StoreError):
    """The store's own file cannot be read: damaged, not a store, or from a newer remstate.

    Retrying does not help. The message names the file.
    """

    code = 500
    reason = "InternalError"


class StateError(RemstateError):
    """The stored state cannot be used as it is."""


class CorruptState(StateError):
    """A stored field cannot be decoded. ``field`` names it."""

    def __init__(self, message: str, *, task_id: str | None = None, field: str | None = None):
        super().__init__(message)
        self.task_id = task_id
        self.field = field


class UnsupportedSchemaVersion(StateError):
    """The state was written by a newer remstate whose schema this one does not know."""

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"state has schema_version {found}, but this remstate reads only up to "
            f"{supported}; upgrade remstate to read it"
        )
        self.found = found
        self.supported = supported


class StateNotFound(NotFound):
    """There is no state for this task."""

    def __init__(self, task_id: str, *, status: ApiStatus | None = None) -> None:
        super().__init__(f"no state for task {task_id!r}", status=status)
        self.task_id = task_id


class InvalidInput(RemstateError, ValueError):
    """The caller's input is not valid; nothing was written."""


class MaxIterationsReached(RemstateError):
    """The iteration counter is at its maximum; nothing was written."""

    def __init__(self, task_id: str, iteration: int, max_iterations: int) -> None:
        super().__init__(
            f"task {task_id!r} is at iteration {iteration}, "
            f"its maximum of {max_iterations}; nothing was written"
        )
        self.task_id = task_id
        self.iteration = iteration
        self.max_iterations = max_iterations


class PreconditionFailed(RemstateError):
    """The state is not at the resourceVersion the caller named; nothing was written.

    Not a ``Conflict``: a conflict is retried on fresh state, and this must not
    be, since the caller asked for that version and no other.
    """

    def __init__(self, task_id: str, expected: str, actual: str | None) -> None:
        now = "has no state" if actual is None else f"is at resourceVersion {actual!r}"
        super().__init__(
            f"task {task_id!r} {now}, not {expected!r} as the request required; nothing was written"
        )
        self.task_id = task_id
        self.expected = expected
        self.actual = actual


class RetriesExhausted(RemstateError):
    """Conflicts went on longer than the retry policy allows: other writers kept winning.

    Nothing this operation wrote was committed. An outage is never reported
    as this class: it raises ``Unavailable`` or ``OutcomeUnknown``.
    """

    def __init__(self, message: str, *, attempts: int, last: BaseException | None = None):
        super().__init__(message)
        self.attempts = attempts
        self.last = last
