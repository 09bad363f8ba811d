"""The embedded store's rows: objects cleaned as the API server reads them, and read back.

Design constraint: what the embedded store stores for an object is what the
API server would store for the same ``StoredObject`` sent by our Kubernetes
backend (as JSON): Go's reading of strings and maps, sorted keys, whole
seconds. The columns hold compact JSON that only this module writes and reads.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from remstate.errors import InvalidInput
from remstate.objects import OwnerReference, StoredObject, WatchEvent, WatchEventType
from remstate.store import apivalidation, selectors
from remstate.store import embedded_sql as sql
from remstate.store.apistatus import JSON_KINDS, bad_request, conflict, request_entity_too_large
from remstate.store.embedded_sql import (
    ANNOTATIONS,
    CREATED,
    DATA,
    EVENT,
    LABELS,
    MODIFIED,
    OWNERS,
    RV,
    UID,
)

__all__ = [
    "MAX_REQUEST_BODY_BYTES",
    "Write",
    "check_request_size",
    "format_time",
    "go_mapping",
    "go_string",
    "insert",
    "map_from_json",
    "merge_metadata",
    "owners_from_json",
    "parse_time",
    "row_object",
    "snapshot",
    "unchanged",
    "watch_event",
]

_SURROGATE: Final = re.compile("[\ud800-\udfff]")

#: The most bytes of a request body the API server reads (its MaxRequestBodyBytes).
MAX_REQUEST_BODY_BYTES: Final = 3 * 1_048_576
#: The most bytes one character takes in the JSON the client sends (an astral
#: character as two ``\\uXXXX`` escapes), and room for the body's fixed parts.
_MAX_ESCAPED_CHAR: Final = 12
_BODY_OVERHEAD: Final = 4096


def check_request_size(obj: StoredObject, namespace: str, *, replace: bool) -> None:
    """Refuse, as the server does, an object whose request body would pass its limit.

    The body is what our Kubernetes backend sends: the ConfigMap as JSON with
    non-ASCII characters escaped (the client's ``json.dumps``), so 1 MiB of
    "é" is a 3 MiB body, refused (413) though its data is within 1 MiB. The
    body is built only when the object could be that large.

    Raises:
        InvalidObject: (413 RequestEntityTooLarge) the body would be too large.
    """
    if obj.data is None:
        return  # refused before anything is sent (``Write.of``), as by our Kubernetes backend
    maps = (obj.data, obj.labels, obj.annotations)
    # str() of a str is itself: a cheap count in C of what is usually all strings.
    chars = sum(sum(map(len, map(str, m))) + sum(map(len, map(str, m.values()))) for m in maps)
    chars += sum(len(str(ref.to_manifest())) for ref in obj.owner_references)
    if chars * _MAX_ESCAPED_CHAR + _BODY_OVERHEAD <= MAX_REQUEST_BODY_BYTES:
        return
    body = _request_body(obj, obj.data, namespace, replace=replace)
    if len(json.dumps(body, default=str)) > MAX_REQUEST_BODY_BYTES:
        raise request_entity_too_large(MAX_REQUEST_BODY_BYTES)


def _request_body(
    obj: StoredObject, data: Mapping[str, str], namespace: str, *, replace: bool
) -> dict[str, Any]:
    # The body our Kubernetes backend builds (``kubernetes_manifest.to_manifest``); the backends
    # are independent, so its shape is restated here.
    meta: dict[str, Any] = {"name": obj.name, "namespace": namespace}
    if obj.labels:
        meta["labels"] = dict(obj.labels)
    if obj.annotations:
        meta["annotations"] = dict(obj.annotations)
    if replace and obj.resource_version:
        meta["resourceVersion"] = obj.resource_version
    if obj.creation_timestamp is not None:
        meta["creationTimestamp"] = format_time(obj.creation_timestamp)
    if obj.owner_references:
        meta["ownerReferences"] = [ref.to_manifest() for ref in obj.owner_references]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(data)}


def go_string(value: str) -> str:
    """The string the API server would store for ``value``.

    Our Kubernetes backend sends JSON with escapes; Go decodes an escaped
    surrogate pair as one character and a lone surrogate as U+FFFD.
    """
    if value.isascii() or not _SURROGATE.search(value):
        return value
    joined: str = json.loads(json.dumps(value))
    return _SURROGATE.sub("\ufffd", joined)


def go_mapping(values: Mapping[str, str], field: str) -> dict[str, str]:
    """A map of strings as the API server reads it from our Kubernetes backend's JSON.

    JSON turns number, boolean and null keys into text; Go reads a null value as
    ""; any other value that is not a string is refused as a bad request.
    """
    try:
        # Every key and value a string (join refuses anything else), all ASCII:
        # Go reads them as they are. The usual case, checked in C.
        plain = "".join(values).isascii() and "".join(values.values()).isascii()
    except TypeError:
        plain = False
    if plain:
        return dict(values)
    cleaned = {}
    for key, value in values.items():
        text_key: Any = key
        if not isinstance(key, str) and (key is None or isinstance(key, bool | int | float)):
            text_key = json.dumps(key)
        if value is None:
            value = ""  # noqa: PLW2901 (a Go null is the empty string)
        if not isinstance(text_key, str) or not isinstance(value, str):
            bad = value if isinstance(text_key, str) else key
            kind = JSON_KINDS.get(type(bad), "object")
            message = (
                'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: '
                f"cannot unmarshal {kind} into Go struct field {field} of type string"
            )
            raise bad_request(message)
        cleaned[go_string(text_key)] = go_string(value)
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


def map_from_json(text: str) -> dict[str, str]:
    # Most objects have no annotations: skip the parser for them.
    if text == "{}":
        return {}
    decoded: dict[str, str] = _raw_decode(text)[0]
    return decoded


def owners_from_json(text: str) -> tuple[OwnerReference, ...]:
    if text == "[]":
        return ()
    return tuple(OwnerReference.from_manifest(ref) for ref in _from_json(text))


def format_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    # fromisoformat reads "Z" as UTC (Python 3.11), many times faster than strptime.
    return datetime.fromisoformat(text)


@dataclass(frozen=True, slots=True)
class Write:
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
    def of(cls, obj: StoredObject) -> Write:
        if obj.data is None:
            raise InvalidInput(
                f"object {obj.name!r} has no data (it came from a metadata-only list or watch); "
                "read it in full before writing it back"
            )
        data = dict(sorted(go_mapping(obj.data, "ConfigMap.data").items()))
        labels = dict(sorted(go_mapping(obj.labels, "ObjectMeta.metadata.labels").items()))
        annotations = dict(
            sorted(go_mapping(obj.annotations, "ObjectMeta.metadata.annotations").items())
        )
        owners = tuple(
            OwnerReference(
                api_version=go_string(ref.api_version),
                kind=go_string(ref.kind),
                name=go_string(ref.name),
                uid=go_string(ref.uid),
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
            name=go_string(obj.name),
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
            creation_timestamp=parse_time(created),
            owner_references=self.owners,
        )


def row_object(
    name: str, row: Sequence[Any], *, data: str | None, rv: int | None = None
) -> StoredObject:
    """A row (in the SELECT_HEAD layout) as an object; ``data`` None for metadata only."""
    return StoredObject(
        name=name,
        data=None if data is None else map_from_json(data),
        labels=map_from_json(row[LABELS]),
        annotations=map_from_json(row[ANNOTATIONS]),
        resource_version=str(row[RV] if rv is None else rv),
        uid=row[UID],
        creation_timestamp=parse_time(row[CREATED]),
        owner_references=owners_from_json(row[OWNERS]),
    )


# --- writes -------------------------------------------------------------------------------


def _merged(current: Mapping[str, str], changes: Mapping[str, str | None]) -> dict[str, str]:
    merged = dict(current)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def merge_metadata(
    current: StoredObject,
    annotations: Mapping[str, str | None],
    *,
    labels: Mapping[str, str | None],
    expect: Mapping[str, str | None] | None,
) -> StoredObject:
    """The object with ``annotations`` and ``labels`` merged in (``None`` removes a key).

    With ``expect``, as the API server applies a JSON patch: the tests come
    first, and a change to a map the object does not have fails the patch
    (the server's JSON patch cannot add into a missing ``metadata.labels``).

    Raises:
        Conflict: an annotation of ``expect`` has another value (``None``: is
            present), or, with ``expect``, the object has no annotations or no
            labels to change.
    """
    if expect:
        if not current.annotations:
            raise conflict(current.name, "the object has no annotations to test or change")
        if labels and not current.labels:
            raise conflict(current.name, "the object has no labels to change")
    for key, value in (expect or {}).items():
        if current.annotations.get(key) != value:
            raise conflict(current.name, f"annotation {key} is not as expected")
    return replace(
        current,
        annotations=_merged(current.annotations, annotations),
        labels=_merged(current.labels, labels),
    )


def unchanged(conn: sqlite3.Connection, head: Sequence[Any], write: Write) -> bool:
    """Whether ``write`` would store exactly the row ``head`` (SELECT_HEAD's layout)."""
    if (head[LABELS], head[ANNOTATIONS], head[OWNERS]) != (
        write.labels_json,
        write.annotations_json,
        write.owners_json,
    ):
        return False
    # Compared inside SQLite: the stored data is never copied out for this.
    (same,) = conn.execute(sql.SAME_DATA, (write.data_json, head[RV])).fetchone()
    return bool(same)


def insert(
    conn: sqlite3.Connection,
    write: Write,
    *,
    rv: int,
    namespace: str,
    event: str,
    uid: str,
    created: str,
) -> None:
    """Append ``write`` as the row of revision ``rv``."""
    conn.execute(
        sql.INSERT,
        (
            rv,
            namespace,
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


# --- reads at a revision -------------------------------------------------------------------


def snapshot(
    conn: sqlite3.Connection,
    namespace: str,
    selector: selectors.Selector,
    revision: int,
    *,
    start: str = "",
    limit: int = 0,
    with_data: bool,
) -> tuple[list[StoredObject], bool]:
    """The selected objects at ``revision`` from ``start``; and whether any object follows.

    Data is read only for the objects selected, after their metadata.
    """
    params = {"ns": namespace, "start": start, "snap": revision}
    picked: list[tuple[tuple[Any, ...], dict[str, str]]] = []
    more = False
    for row in conn.execute(sql.SELECT_SNAPSHOT, params):
        if limit and len(picked) >= limit:
            # The server offers another page if any object follows the last one
            # selected, whether or not it matches the selector.
            more = True
            break
        labels = map_from_json(row[4])
        if selector.matches(labels):
            picked.append((row, labels))
    data: dict[int, str] = {}
    if with_data and picked:
        wanted = json.dumps([row[0] for row, _ in picked])
        data = dict(conn.execute(sql.SELECT_DATA, (wanted,)).fetchall())
    items = [
        StoredObject(
            name=name,
            data=map_from_json(data[rv]) if with_data else None,
            labels=labels,
            annotations=map_from_json(annotations),
            resource_version=str(rv),
            uid=uid,
            creation_timestamp=parse_time(created),
            owner_references=owners_from_json(owners),
        )
        for (rv, name, uid, created, _, annotations, owners), labels in picked
    ]
    return items, more


def watch_event(
    conn: sqlite3.Connection, namespace: str, selector: selectors.Selector, row: Sequence[Any]
) -> WatchEvent | None:
    """The event a revision row makes for this selector, if any (the watch cache's rules)."""
    name, event = row[8], row[EVENT]
    now_matches = selector.matches(map_from_json(row[LABELS]))
    if event != MODIFIED or selector.empty:
        return (
            WatchEvent(WatchEventType(event), row_object(name, row, data=row[DATA]))
            if now_matches
            else None
        )
    before = conn.execute(sql.SELECT_PREVIOUS_WITH_DATA, (namespace, name, row[RV])).fetchone()
    before_matched = before is not None and selector.matches(map_from_json(before[LABELS]))
    if now_matches:
        kind = WatchEventType.MODIFIED if before_matched else WatchEventType.ADDED
        return WatchEvent(kind, row_object(name, row, data=row[DATA]))
    if before_matched:
        # The object left the selection: the server sends its previous state as
        # DELETED, at the revision of the change.
        return WatchEvent(
            WatchEventType.DELETED, row_object(name, before, data=before[DATA], rv=row[RV])
        )
    return None
