"""The embedded store: the Store contract on one SQLite file, for hosts with no cluster.

Design constraint: it behaves exactly like kube-apiserver (1.37) for ConfigMaps.
Same validation, same errors and Status bodies, same paging and watch
semantics; a difference from the Kubernetes backend is a bug here.

It stores data the way etcd does (MVCC). Every write appends one row to
``revisions``, numbered by a global revision that is also the row's
``resourceVersion``:

- the newest row of a name is the object, unless it is a tombstone (DELETED,
  which keeps a copy of the last state for the watch event);
- the state at any revision S is, for each name, its newest row at or below S:
  that is how continue tokens read a consistent snapshot;
- the rows after a revision are the watch events after it.

Old rows are compacted as etcd compacts: rows superseded at or below the
compaction revision are deleted, keeping a window of history bounded in bytes,
age and revisions (``embedded_compaction``). Watches and continue tokens from
before it get ``Gone``, as from the API server.

Opening never writes to an existing store, so a read-only file can be read,
and never creates a file unless asked (``embedded_file``).

Several processes may share the file: WAL journal, a busy timeout, and every
write is one ``BEGIN IMMEDIATE`` transaction. In one process, the store object
may be shared by threads; they take turns on its one connection.

Every ``sqlite3`` error is translated in one place (``embedded_file.translated``)
into our error tree; none escapes.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import json
import os
import re
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Self

from remstate.errors import (
    AlreadyExists,
    ApiStatus,
    Conflict,
    Gone,
    InvalidInput,
    InvalidObject,
    NotFound,
    StoreError,
    Unavailable,
)
from remstate.objects import (
    ObjectList,
    OwnerReference,
    StoredObject,
    WatchEvent,
    WatchEventType,
)
from remstate.store import apivalidation, embedded_compaction, embedded_file, selectors
from remstate.store.apivalidation import go_quote
from remstate.store.embedded_compaction import HistoryBounds
from remstate.store.embedded_file import OpenMode, translated

__all__ = ["EmbeddedStore"]

#: How long a write waits for another process's write before it is Unavailable.
_BUSY_TIMEOUT_S: Final = 30.0
#: How often a watch looks for new revisions.
_POLL_INTERVAL_S: Final = 0.05
#: Rows a watch reads at once (each may hold 1 MiB of data).
_WATCH_BATCH: Final = 64
_MAX_UINT64: Final = 2**64 - 1
_DIGITS = re.compile(r"[0-9]+")
_SURROGATE = re.compile("[\ud800-\udfff]")

# How encoding/json names a JSON value of each Python type in its errors.
_JSON_KINDS: Final[dict[type, str]] = {
    str: "string",
    int: "number",
    float: "number",
    bool: "bool",
    list: "array",
    tuple: "array",
    dict: "object",
}

_ADDED: Final = "ADDED"
_MODIFIED: Final = "MODIFIED"
_DELETED: Final = "DELETED"

# --- schema and queries ---------------------------------------------------------------------

# The first revision is 1, as etcd's: a list never answers "0", which means "any".
_SELECT_REVISION: Final = "SELECT COALESCE(MAX(rv), 1) FROM revisions"
_SELECT_COMPACTED: Final = "SELECT value FROM meta WHERE key = 'compacted'"

_SELECT_HEAD: Final = """
    SELECT rv, event, uid, created, labels, annotations, owners
    FROM revisions WHERE namespace = ? AND name = ? ORDER BY rv DESC LIMIT 1"""
_SELECT_HEAD_WITH_DATA: Final = """
    SELECT rv, event, uid, created, labels, annotations, owners, data
    FROM revisions WHERE namespace = ? AND name = ? ORDER BY rv DESC LIMIT 1"""
_SELECT_PREVIOUS_WITH_DATA: Final = """
    SELECT rv, event, uid, created, labels, annotations, owners, data
    FROM revisions WHERE namespace = ? AND name = ? AND rv < ? ORDER BY rv DESC LIMIT 1"""
_SAME_DATA: Final = "SELECT data = ? FROM revisions WHERE rv = ?"
_SELECT_SIZE: Final = "SELECT size FROM revisions WHERE rv = ?"
_INSERT: Final = """
    INSERT INTO revisions
        (rv, namespace, name, event, uid, created, labels, annotations, owners, size, data)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
# A tombstone copies the last state, so the DELETED event can carry it.
_INSERT_TOMBSTONE: Final = """
    INSERT INTO revisions
        (rv, namespace, name, event, uid, created, labels, annotations, owners, size, data)
    SELECT ?, namespace, name, 'DELETED', uid, created, labels, annotations, owners, size, data
    FROM revisions WHERE rv = ?"""

# The objects of a namespace at revision :snap, from name :start on, in name
# (etcd key) order: for each name its newest row at or below :snap, unless a tombstone.
_SELECT_SNAPSHOT: Final = """
    SELECT r.rv, r.name, r.uid, r.created, r.labels, r.annotations, r.owners
    FROM revisions AS r
    WHERE r.namespace = :ns AND r.name >= :start AND r.rv <= :snap AND r.event != 'DELETED'
      AND r.rv = (SELECT MAX(p.rv) FROM revisions AS p
                  WHERE p.namespace = :ns AND p.name = r.name AND p.rv <= :snap)
    ORDER BY r.name"""
_COUNT_SNAPSHOT: Final = """
    SELECT COUNT(*)
    FROM revisions AS r
    WHERE r.namespace = :ns AND r.name >= :start AND r.rv <= :snap AND r.event != 'DELETED'
      AND r.rv = (SELECT MAX(p.rv) FROM revisions AS p
                  WHERE p.namespace = :ns AND p.name = r.name AND p.rv <= :snap)"""
_SELECT_DATA: Final = """
    SELECT rv, data FROM revisions WHERE rv IN (SELECT value FROM json_each(?))"""
_SELECT_EVENTS: Final = """
    SELECT rv, event, uid, created, labels, annotations, owners, data, name
    FROM revisions WHERE rv > ? AND namespace = ? ORDER BY rv LIMIT ?"""

# Row layout of _SELECT_HEAD(_WITH_DATA), _SELECT_PREVIOUS_WITH_DATA and _SELECT_EVENTS.
_RV, _EVENT, _UID, _CREATED, _LABELS, _ANNOTATIONS, _OWNERS, _DATA = range(8)

# --- the server's messages ------------------------------------------------------------------

_OPTIMISTIC_LOCK: Final = (
    "the object has been modified; please apply your changes to the latest version and try again"
)
_INCONSISTENT_CONTINUE: Final = (
    "The provided continue parameter is too old to display a consistent list result. "
    "You can start a new list without the continue parameter, or use the continue token "
    "in this response to retrieve the remainder of the results. Continuing with the "
    "provided token results in an inconsistent list - objects that were created, "
    "modified, or deleted between the time the first chunk was returned and now may "
    "show up in the list."
)
_WATCH_EXPIRED: Final = "The resourceVersion for the provided watch is too old."
_CONTINUE_VERSION: Final = "meta.k8s.io/v1"


def _details(name: str, kind: str) -> dict[str, Any]:
    return {"name": name, "kind": kind}


def _not_found(name: str) -> NotFound:
    message = f"configmaps {go_quote(name)} not found"
    status = ApiStatus(404, "NotFound", message, _details(name, "configmaps"))
    return NotFound(message, status=status)


def _already_exists(name: str) -> AlreadyExists:
    message = f"configmaps {go_quote(name)} already exists"
    status = ApiStatus(409, "AlreadyExists", message, _details(name, "configmaps"))
    return AlreadyExists(message, status=status)


def _conflict(name: str, reason: str, *, kind: str = "configmaps") -> Conflict:
    # The update path names the resource ("configmaps"); the delete preconditions,
    # checked by rest.BeforeDelete, name the kind ("ConfigMap").
    message = f"Operation cannot be fulfilled on {kind} {go_quote(name)}: {reason}"
    status = ApiStatus(409, "Conflict", message, _details(name, kind))
    return Conflict(message, status=status)


def _check_path_name(name: str) -> None:
    """Refuse, as the server's URL handling does, a name that cannot be a path segment.

    A "/" in the name makes another URL, which the server does not serve; a "%"
    fails its key function. ("." and ".." are not found, as by our Kubernetes
    backend, which never sends them.)
    """
    if "/" in name:
        message = "the server could not find the requested resource"
        raise NotFound(message, status=ApiStatus(404, "NotFound", message))
    if "%" in name:
        raise _bad_request(f"Name parameter invalid: {go_quote(name)}: may not contain '%'")


def _bad_request(message: str) -> InvalidObject:
    return InvalidObject(message, status=ApiStatus(400, "BadRequest", message))


def _gone(message: str) -> Gone:
    return Gone(message, status=ApiStatus(410, "Expired", message))


def _internal(message: str) -> Unavailable:
    # A plain Go error reaches the client as a 500 with no reason; our tree's 5xx is Unavailable.
    return Unavailable(message, status=ApiStatus(500, "", message))


def _too_large_resource_version(wanted: int, current: int) -> Unavailable:
    # What a list at a future revision gets from etcd (no retry delay is set).
    message = f"Timeout: Too large resource version: {wanted}, current: {current}"
    details = {
        "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}]
    }
    return Unavailable(message, status=ApiStatus(504, "Timeout", message, details))


def _parse_uint(text: str) -> int | str:
    """``strconv.ParseUint(text, 10, 64)``: the number, or Go's error message."""
    if not _DIGITS.fullmatch(text):
        return f"strconv.ParseUint: parsing {go_quote(text)}: invalid syntax"
    number = int(text)
    if number > _MAX_UINT64:
        return f"strconv.ParseUint: parsing {go_quote(text)}: value out of range"
    return number


def _close_quietly(connections: list[sqlite3.Connection]) -> None:
    for conn in connections:
        with contextlib.suppress(sqlite3.Error):
            conn.close()
    connections.clear()


# Connections inherited across a fork. They are never closed in the child: closing
# one there could checkpoint and remove the WAL under the parent's feet.
_INHERITED: list[sqlite3.Connection] = []


# --- conversion between objects and rows ---------------------------------------------------


def _go_string(value: str) -> str:
    """The string the API server would store for ``value``.

    Our Kubernetes backend sends JSON with escapes; Go decodes an escaped
    surrogate pair as one character and a lone surrogate as U+FFFD.
    """
    if value.isascii() or not _SURROGATE.search(value):
        return value
    joined: str = json.loads(json.dumps(value))
    return _SURROGATE.sub("\ufffd", joined)


def _go_mapping(values: Mapping[str, str], field: str) -> dict[str, str]:
    """A map of strings as the API server reads it from our Kubernetes backend's JSON.

    JSON turns number, boolean and null keys into text; Go reads a null value as
    ""; any other value that is not a string is refused as a bad request.
    """
    cleaned = {}
    for key, value in values.items():
        text_key: Any = key
        if not isinstance(key, str) and (key is None or isinstance(key, bool | int | float)):
            text_key = json.dumps(key)
        if value is None:
            value = ""  # noqa: PLW2901 (a Go null is the empty string)
        if not isinstance(text_key, str) or not isinstance(value, str):
            bad = value if isinstance(text_key, str) else key
            kind = _JSON_KINDS.get(type(bad), "object")
            message = (
                'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: '
                f"cannot unmarshal {kind} into Go struct field {field} of type string"
            )
            raise _bad_request(message)
        cleaned[_go_string(text_key)] = _go_string(value)
    return cleaned


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _owners_json(refs: Sequence[OwnerReference]) -> list[dict[str, Any]]:
    return [ref.to_manifest() for ref in refs]


# The columns hold compact JSON that we wrote: the decoder's own entry point skips
# the checks json.loads makes for text from elsewhere.
_raw_decode = json.JSONDecoder().raw_decode


def _from_json(text: str) -> Any:
    return _raw_decode(text)[0]


def _map_from_json(text: str) -> dict[str, str]:
    # Most objects have no annotations: skip the parser for them.
    if text == "{}":
        return {}
    decoded: dict[str, str] = _raw_decode(text)[0]
    return decoded


def _owners_from_json(text: str) -> tuple[OwnerReference, ...]:
    if text == "[]":
        return ()
    return tuple(OwnerReference.from_manifest(ref) for ref in _from_json(text))


def _format_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> datetime:
    # fromisoformat reads "Z" as UTC (Python 3.11), many times faster than strptime.
    return datetime.fromisoformat(text)


@dataclass(frozen=True, slots=True)
class _Write:
    """An object as it will be stored: cleaned, and its columns serialized."""

    name: str
    data: dict[str, str]
    labels: dict[str, str]
    annotations: dict[str, str]
    owners: tuple[OwnerReference, ...]
    labels_json: str
    annotations_json: str
    owners_json: str
    data_json: str
    size: int

    @classmethod
    def of(cls, obj: StoredObject) -> _Write:
        if obj.data is None:
            raise InvalidInput(
                f"object {obj.name!r} has no data (it came from a metadata-only list or watch); "
                "read it in full before writing it back"
            )
        data = dict(sorted(_go_mapping(obj.data, "ConfigMap.data").items()))
        labels = dict(sorted(_go_mapping(obj.labels, "ObjectMeta.metadata.labels").items()))
        annotations = dict(
            sorted(_go_mapping(obj.annotations, "ObjectMeta.metadata.annotations").items())
        )
        owners = tuple(
            OwnerReference(
                api_version=_go_string(ref.api_version),
                kind=_go_string(ref.kind),
                name=_go_string(ref.name),
                uid=_go_string(ref.uid),
                controller=bool(ref.controller),
                block_owner_deletion=bool(ref.block_owner_deletion),
            )
            for ref in obj.owner_references
        )
        columns = {
            "labels_json": _dumps(labels),
            "annotations_json": _dumps(annotations),
            "owners_json": _dumps(_owners_json(owners)),
            "data_json": _dumps(data),
        }
        return cls(
            name=_go_string(obj.name),
            data=data,
            labels=labels,
            annotations=annotations,
            owners=owners,
            # What the row holds, in bytes: the measure of the watch window.
            size=sum(len(text.encode()) for text in columns.values()),
            **columns,
        )

    def errors(self, namespace: str, *, update: bool) -> list[apivalidation.FieldError]:
        check = (
            apivalidation.validate_configmap_update if update else apivalidation.validate_configmap
        )
        return check(
            self.name,
            namespace=namespace,
            data=self.data,
            labels=self.labels,
            annotations=self.annotations,
            owner_references=self.owners,
        )

    def stored(self, rv: int, uid: str, created: str) -> StoredObject:
        return StoredObject(
            name=self.name,
            data=self.data,
            labels=self.labels,
            annotations=self.annotations,
            resource_version=str(rv),
            uid=uid,
            creation_timestamp=_parse_time(created),
            owner_references=self.owners,
        )


def _object(
    name: str, row: Sequence[Any], *, data: str | None, rv: int | None = None
) -> StoredObject:
    """A row (in the _SELECT_HEAD layout) as an object; ``data`` None for metadata only."""
    return StoredObject(
        name=name,
        data=None if data is None else _map_from_json(data),
        labels=_map_from_json(row[_LABELS]),
        annotations=_map_from_json(row[_ANNOTATIONS]),
        resource_version=str(row[_RV] if rv is None else rv),
        uid=row[_UID],
        creation_timestamp=_parse_time(row[_CREATED]),
        owner_references=_owners_from_json(row[_OWNERS]),
    )


# --- continue tokens: the API server's own format ------------------------------------------


def _encode_continue(last_name: str, revision: int) -> str:
    # storage.EncodeContinue: the key after the last item (its name and a NUL byte).
    token = json.dumps(
        {"v": _CONTINUE_VERSION, "rv": revision, "start": last_name + "\x00"},
        separators=(",", ":"),
    )
    return base64.urlsafe_b64encode(token.encode()).rstrip(b"=").decode()


_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


def _decode_continue(token: str) -> tuple[str, int]:
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
        raise _bad_request(f"{prefix}: illegal base64 data at input byte {at}")
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    fields = _go_unmarshal_token(raw)
    if isinstance(fields, str):
        raise _bad_request(f"{prefix}: {fields}")
    version, revision, start = fields
    if version != _CONTINUE_VERSION:
        raise _bad_request(f"{prefix}: server does not recognize this encoded version {version}")
    if revision == 0:
        raise _bad_request(
            f"{prefix}: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
        )
    if not start:
        raise _bad_request(f"{prefix}: encoded start key empty (version meta.k8s.io/v1)")
    key = start if start.startswith("/") else "/" + start
    if not _is_clean_path(key):
        raise _bad_request(f"{prefix}: {start}")
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
        kind = _JSON_KINDS.get(type(decoded), "value")
        return f"json: cannot unmarshal {kind} into Go value of type storage.continueToken"
    values: dict[str, Any] = {"v": "", "rv": 0, "start": ""}
    for field, wanted in (("v", str), ("rv", int), ("start", str)):
        value = decoded.get(field)
        if value is None:
            continue
        if type(value) is not wanted:
            kind = _JSON_KINDS.get(type(value), "value")
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


# --- the store -------------------------------------------------------------------------------


def _utc_now() -> datetime:
    return datetime.now(UTC)


class EmbeddedStore:
    """The Store contract on a SQLite file, behaving as kube-apiserver does for ConfigMaps.

    Args:
        path: the database file. Several processes may open the same file.
            ``":memory:"`` works for one store object only.
        namespace: the namespace this store works in; stores of other namespaces
            may share the file and never see each other's objects.
        clock: the time of creation timestamps and of compaction by age (aware
            UTC; naive is taken as UTC).
        history: about how many revisions at most stay watchable and listable by
            a continue token before compaction makes them ``Gone``.
        history_age: compaction, as the API server's every 5 minutes, to the
            revision of this long ago: a watch window of one to two times this.
        history_bytes: the most bytes of objects the watch window holds.
        mode: ``"rwc"`` creates the file if missing; ``"rw"`` and ``"ro"`` (read
            only) open an existing file only. A file the process may not write
            is read all the same; a write to it raises ``Forbidden``.

    Raises:
        InvalidInput: the namespace is not a DNS-1123 label, or a bound is not positive.
        NotFound: mode "rw" or "ro", and there is no such file (or, "ro", it is empty).
        CorruptStore: the file is not a store, is damaged, or is laid out by a
            newer remstate.
        Unavailable: the file cannot be opened.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        namespace: str = "default",
        *,
        clock: Callable[[], datetime] | None = None,
        history: int = 10_000,
        history_age: timedelta = timedelta(minutes=5),
        history_bytes: int = 32 * 1_048_576,
        mode: OpenMode = "rwc",
    ) -> None:
        problems = apivalidation.is_dns1123_label(namespace)
        if problems:
            raise InvalidInput(f"namespace {namespace!r} is not valid: {'; '.join(problems)}")
        if history < 1:
            raise InvalidInput(f"history must be at least 1, not {history}")
        if history_age <= timedelta(0) or history_bytes < 1:
            raise InvalidInput("history_age and history_bytes must be positive")
        if mode not in embedded_file.OPEN_MODES:
            raise InvalidInput(f"mode must be one of rwc, rw or ro, not {mode!r}")
        self._path = os.fspath(path)
        self._namespace = namespace
        self._clock = clock or _utc_now
        self._bounds = HistoryBounds(history, history_age, history_bytes)
        self._mode: OpenMode = mode
        self._reclaim = False
        self._lock = threading.RLock()
        self._closed = False
        self._connections: list[sqlite3.Connection] = []
        # Connections are closed with the store, or when it is collected unclosed.
        self._finalizer = weakref.finalize(self, _close_quietly, self._connections)
        self._pid = os.getpid()
        self._conn = self._connect()

    # -- connection ----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = embedded_file.open_file(self._path, self._mode, busy_timeout=_BUSY_TIMEOUT_S)
        self._connections.append(conn)
        return conn

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            message = "Internal error occurred: the embedded store is closed"
            raise StoreError(message, status=ApiStatus(500, "InternalError", message))
        if os.getpid() != self._pid:
            # A connection must not cross a fork: the child opens its own.
            _INHERITED.extend(self._connections)
            self._connections.clear()
            self._pid = os.getpid()
            self._conn = self._connect()
        return self._conn

    @contextlib.contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction: IMMEDIATE for writes, a consistent snapshot for reads."""
        with self._lock, translated(self._path):
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
                conn.execute("COMMIT")
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                    self._reclaim = False
            if self._reclaim:
                self._reclaim = False
                embedded_compaction.reclaim(conn)

    @property
    def namespace(self) -> str:
        """The namespace the store works in."""
        return self._namespace

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    def close(self) -> None:
        """Close the database. The store is not used afterwards."""
        with self._lock:
            self._closed = True
            self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reads -----------------------------------------------------------------------------

    def get(self, name: str) -> StoredObject:
        """Return the object.

        Raises:
            NotFound: there is no such object.
        """
        _check_path_name(name)
        with self._transaction(write=False) as conn:
            row = conn.execute(_SELECT_HEAD_WITH_DATA, (self._namespace, name)).fetchone()
            if row is None or row[_EVENT] == _DELETED:
                raise _not_found(name)
            return _object(name, row, data=row[_DATA])

    def list(
        self,
        *,
        label_selector: str = "",
        limit: int | None = None,
        continue_token: str | None = None,
        metadata_only: bool = False,
    ) -> ObjectList:
        """Return one page of the objects that match the label selector, in name order.

        Every page of a paged list reads the state at the first page's
        resourceVersion. ``remaining_item_count`` is given, as by the server,
        only when there is no selector and more pages follow.

        Raises:
            Gone: the continue token's revision has been compacted.
            InvalidObject: the label selector or the continue token cannot be parsed (400).
        """
        selector = selectors.parse(label_selector)
        start, token_revision = ("", 0) if not continue_token else _decode_continue(continue_token)
        page_size = limit if limit is not None and limit > 0 else 0
        with self._transaction(write=False) as conn:
            current = self._revision(conn)
            snapshot = current
            if token_revision > 0:
                if token_revision < self._compacted(conn):
                    raise _gone(_INCONSISTENT_CONTINUE)
                if token_revision > current:
                    raise _too_large_resource_version(token_revision, current)
                snapshot = token_revision
            items, more = self._snapshot(
                conn, selector, snapshot, start=start, limit=page_size, with_data=not metadata_only
            )
            token = None
            remaining = None
            if more:
                last = items[-1].name
                token = _encode_continue(last, snapshot)
                if selector.empty:
                    params = {"ns": self._namespace, "start": last + "\x00", "snap": snapshot}
                    (remaining,) = conn.execute(_COUNT_SNAPSHOT, params).fetchone()
        return ObjectList(
            items=items,
            resource_version=str(snapshot),
            continue_token=token,
            remaining_item_count=remaining,
        )

    def _snapshot(
        self,
        conn: sqlite3.Connection,
        selector: selectors.Selector,
        snapshot: int,
        *,
        start: str = "",
        limit: int = 0,
        with_data: bool,
    ) -> tuple[builtins.list[StoredObject], bool]:
        """The selected objects at ``snapshot`` from ``start``; and whether any object follows.

        Data is read only for the objects selected, after their metadata.
        """
        params = {"ns": self._namespace, "start": start, "snap": snapshot}
        picked: builtins.list[tuple[tuple[Any, ...], dict[str, str]]] = []
        more = False
        for row in conn.execute(_SELECT_SNAPSHOT, params):
            if limit and len(picked) >= limit:
                # The server offers another page if any object follows the last one
                # selected, whether or not it matches the selector.
                more = True
                break
            labels = _map_from_json(row[4])
            if selector.matches(labels):
                picked.append((row, labels))
        data: dict[int, str] = {}
        if with_data and picked:
            wanted = json.dumps([row[0] for row, _ in picked])
            data = dict(conn.execute(_SELECT_DATA, (wanted,)).fetchall())
        items = [
            StoredObject(
                name=name,
                data=_map_from_json(data[rv]) if with_data else None,
                labels=labels,
                annotations=_map_from_json(annotations),
                resource_version=str(rv),
                uid=uid,
                creation_timestamp=_parse_time(created),
                owner_references=_owners_from_json(owners),
            )
            for (rv, name, uid, created, _, annotations, owners), labels in picked
        ]
        return items, more

    def _revision(self, conn: sqlite3.Connection) -> int:
        (revision,) = conn.execute(_SELECT_REVISION).fetchone()
        return int(revision)

    def _compacted(self, conn: sqlite3.Connection) -> int:
        (compacted,) = conn.execute(_SELECT_COMPACTED).fetchone()
        return int(compacted)

    # -- writes ----------------------------------------------------------------------------

    def create(self, obj: StoredObject) -> StoredObject:
        """Create the object and return it as stored, with its new resourceVersion.

        The object's resourceVersion, uid and creation time are ignored.

        Raises:
            AlreadyExists: the name is taken.
            InvalidObject: the name, labels, annotations, keys or size break the API's rules.
            InvalidInput: the object has no data (it came from a metadata-only read).
        """
        write = _Write.of(obj)
        # The server validates before it looks at storage: InvalidObject wins over AlreadyExists.
        apivalidation.raise_if_invalid(write.name, write.errors(self._namespace, update=False))
        created = _format_time(self._now())
        uid = str(uuid.uuid4())
        with self._transaction(write=True) as conn:
            head = conn.execute(_SELECT_HEAD, (self._namespace, write.name)).fetchone()
            if head is not None and head[_EVENT] != _DELETED:
                raise _already_exists(write.name)
            rv = self._append(conn, write, _ADDED, uid, created)
        return write.stored(rv, uid, created)

    def replace(self, obj: StoredObject) -> StoredObject:
        """Replace the object if it is still at ``obj.resource_version``.

        As the API server does for ConfigMaps: an empty (or "0") resourceVersion
        replaces unconditionally; a replace that changes nothing writes nothing
        and keeps the resourceVersion; uid and creation time are the stored ones.

        Raises:
            NotFound: the object is gone.
            Conflict: the object changed since that version.
            InvalidObject: as for ``create``.
            InvalidInput: the object has no data (it came from a metadata-only read).
        """
        _check_path_name(obj.name)
        write = _Write.of(obj)
        expected = _parse_uint(obj.resource_version) if obj.resource_version else 0
        errors = write.errors(self._namespace, update=True)
        with self._transaction(write=True) as conn:
            head = conn.execute(_SELECT_HEAD, (self._namespace, write.name)).fetchone()
            # The server's order: existence, the version's syntax, the version, validity.
            if head is None or head[_EVENT] == _DELETED:
                raise _not_found(write.name)
            if isinstance(expected, str):
                raise _internal(expected)
            if expected and expected != head[_RV]:
                raise _conflict(write.name, _OPTIMISTIC_LOCK)
            apivalidation.raise_if_invalid(write.name, errors)
            if self._unchanged(conn, head, write):
                # etcd is not written when the bytes would not change: same version, no event.
                return write.stored(head[_RV], head[_UID], head[_CREATED])
            rv = self._append(conn, write, _MODIFIED, head[_UID], head[_CREATED])
        return write.stored(rv, head[_UID], head[_CREATED])

    def delete(
        self, name: str, *, uid: str | None = None, resource_version: str | None = None
    ) -> None:
        """Delete the object, if it still has this uid and resourceVersion (when given).

        Raises:
            NotFound: there is no such object.
            Conflict: a precondition did not hold; nothing was deleted.
        """
        _check_path_name(name)
        with self._transaction(write=True) as conn:
            head = conn.execute(_SELECT_HEAD, (self._namespace, name)).fetchone()
            if head is None or head[_EVENT] == _DELETED:
                raise _not_found(name)
            if uid and uid != head[_UID]:
                raise _conflict(
                    name,
                    f"the UID in the precondition ({uid}) does not match the UID in record "
                    f"({head[_UID]}). The object might have been deleted and then recreated",
                    kind="ConfigMap",
                )
            if resource_version and resource_version != str(head[_RV]):
                raise _conflict(
                    name,
                    f"the ResourceVersion in the precondition ({resource_version}) does not "
                    f"match the ResourceVersion in record ({head[_RV]}). "
                    "The object might have been modified",
                    kind="ConfigMap",
                )
            rv = self._revision(conn) + 1
            conn.execute(_INSERT_TOMBSTONE, (rv, head[_RV]))
            (size,) = conn.execute(_SELECT_SIZE, (rv,)).fetchone()
            self._after_write(conn, rv, size)

    def _now(self) -> datetime:
        moment = self._clock()
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).replace(microsecond=0)

    def _unchanged(self, conn: sqlite3.Connection, head: Sequence[Any], write: _Write) -> bool:
        if (head[_LABELS], head[_ANNOTATIONS], head[_OWNERS]) != (
            write.labels_json,
            write.annotations_json,
            write.owners_json,
        ):
            return False
        # Compared inside SQLite: the stored data is never copied out for this.
        (same,) = conn.execute(_SAME_DATA, (write.data_json, head[_RV])).fetchone()
        return bool(same)

    def _append(
        self, conn: sqlite3.Connection, write: _Write, event: str, uid: str, created: str
    ) -> int:
        rv = self._revision(conn) + 1
        conn.execute(
            _INSERT,
            (
                rv,
                self._namespace,
                write.name,
                event,
                uid,
                created,
                write.labels_json,
                write.annotations_json,
                write.owners_json,
                write.size,
                write.data_json,
            ),
        )
        self._after_write(conn, rv, write.size)
        return rv

    def _after_write(self, conn: sqlite3.Connection, rv: int, size: int) -> None:
        if embedded_compaction.after_write(conn, rv, size, now=self._now(), bounds=self._bounds):
            self._reclaim = True

    # -- watch -----------------------------------------------------------------------------

    def watch(
        self,
        *,
        label_selector: str = "",
        resource_version: str | None = None,
        timeout_seconds: float | None = None,
    ) -> Iterator[WatchEvent]:
        """Yield changes after ``resource_version`` until the timeout (None: forever).

        As the API server does: without a resourceVersion (or with "0"), an
        ADDED event for each object that exists comes first, in name order,
        then the changes. A label selector turns an object that stops matching
        into a DELETED event and one that starts matching into an ADDED event.
        Nothing happens until the first event is asked for.

        Raises:
            Gone: the resourceVersion is older than the compacted history.
            InvalidObject: the label selector cannot be parsed (400).
            Unavailable: the resourceVersion is not a number (500, as from the server).
        """
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        selector = selectors.parse(label_selector)
        if not resource_version or resource_version == "0":
            with self._transaction(write=False) as conn:
                last = self._revision(conn)
                initial, _ = self._snapshot(conn, selector, last, with_data=True)
            for obj in initial:
                yield WatchEvent(WatchEventType.ADDED, obj)
        else:
            last = self._watch_start(resource_version)
        while True:
            with self._transaction(write=False) as conn:
                compacted = self._compacted(conn)
                if last < compacted:
                    # The watcher fell behind compaction: events it has not seen are gone.
                    raise _gone(_WATCH_EXPIRED)
                rows = conn.execute(
                    _SELECT_EVENTS, (last, self._namespace, _WATCH_BATCH)
                ).fetchall()
                events = [e for row in rows if (e := self._event(conn, selector, row)) is not None]
            if rows:
                last = rows[-1][_RV]
            yield from events
            if deadline is not None and time.monotonic() >= deadline:
                return
            if len(rows) < _WATCH_BATCH:
                pause = _POLL_INTERVAL_S
                if deadline is not None:
                    pause = min(pause, max(0.0, deadline - time.monotonic()))
                time.sleep(pause)

    def _watch_start(self, resource_version: str) -> int:
        wanted = _parse_uint(resource_version)
        if isinstance(wanted, str):
            raise _internal(
                f"resourceVersion: Invalid value: {go_quote(resource_version)}: {wanted}"
            )
        with self._transaction(write=False) as conn:
            if wanted < self._compacted(conn):
                raise _gone(_WATCH_EXPIRED)
        # A future revision is waited for, as etcd does: its events come when it does.
        return wanted

    def _event(
        self, conn: sqlite3.Connection, selector: selectors.Selector, row: Sequence[Any]
    ) -> WatchEvent | None:
        """The event a revision row makes for this selector, if any (the watch cache's rules)."""
        name, event = row[8], row[_EVENT]
        now_matches = selector.matches(_map_from_json(row[_LABELS]))
        if event != _MODIFIED or selector.empty:
            return (
                WatchEvent(WatchEventType(event), _object(name, row, data=row[_DATA]))
                if now_matches
                else None
            )
        before = conn.execute(
            _SELECT_PREVIOUS_WITH_DATA, (self._namespace, name, row[_RV])
        ).fetchone()
        before_matched = before is not None and selector.matches(_map_from_json(before[_LABELS]))
        if now_matches:
            kind = WatchEventType.MODIFIED if before_matched else WatchEventType.ADDED
            return WatchEvent(kind, _object(name, row, data=row[_DATA]))
        if before_matched:
            # The object left the selection: the server sends its previous state as
            # DELETED, at the revision of the change.
            return WatchEvent(
                WatchEventType.DELETED, _object(name, before, data=before[_DATA], rv=row[_RV])
            )
        return None
