"""The Kubernetes backend's bodies: the one place that knows the ConfigMap's JSON.

A ConfigMap as the server sends it becomes a ``StoredObject`` (``to_stored``)
and back (``to_manifest``); an ``annotate`` becomes a merge patch, or, with
expectations, a JSON patch whose ``test`` operations check them first
(``metadata_patch``). Nothing here talks to the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from remstate.errors import InvalidInput
from remstate.objects import OwnerReference, StoredObject

__all__ = ["JSON_PATCH", "MERGE_PATCH", "metadata_patch", "to_manifest", "to_stored"]

MERGE_PATCH: Final = "application/merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _format_time(value: datetime) -> str:
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_stored(item: Mapping[str, Any], *, metadata_only: bool = False) -> StoredObject:
    """A ConfigMap (or PartialObjectMetadata) as the server sent it -> StoredObject."""
    meta: Mapping[str, Any] = item.get("metadata") or {}
    owners = tuple(OwnerReference.from_manifest(ref) for ref in meta.get("ownerReferences") or ())
    return StoredObject(
        name=str(meta.get("name", "")),
        data=None if metadata_only else dict(item.get("data") or {}),
        labels=dict(meta.get("labels") or {}),
        annotations=dict(meta.get("annotations") or {}),
        resource_version=str(meta.get("resourceVersion", "")),
        uid=str(meta.get("uid", "")),
        creation_timestamp=_parse_time(meta.get("creationTimestamp")),
        owner_references=owners,
    )


def to_manifest(obj: StoredObject, *, namespace: str, with_version: bool) -> dict[str, Any]:
    """StoredObject -> the ConfigMap JSON we send.

    The uid is never sent: in a body it would act as a precondition, which the
    contract does not give ``replace``. The creation time is sent for symmetry;
    the server keeps its own.
    """
    if obj.data is None:
        raise InvalidInput(
            f"object {obj.name!r} has no data (it came from a metadata-only list or watch); "
            "read it in full before writing it back"
        )
    meta: dict[str, Any] = {"name": obj.name, "namespace": namespace}
    if obj.labels:
        meta["labels"] = dict(obj.labels)
    if obj.annotations:
        meta["annotations"] = dict(obj.annotations)
    if with_version and obj.resource_version:
        meta["resourceVersion"] = obj.resource_version
    if obj.creation_timestamp is not None:
        meta["creationTimestamp"] = _format_time(obj.creation_timestamp)
    if obj.owner_references:
        meta["ownerReferences"] = [ref.to_manifest() for ref in obj.owner_references]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(obj.data)}


def _pointer(*parts: str) -> str:
    """A JSON pointer (RFC 6901): "~" and "/" in a key are escaped."""
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def metadata_patch(
    annotations: Mapping[str, str | None],
    *,
    labels: Mapping[str, str | None] | None = None,
    expect: Mapping[str, str | None] | None = None,
    resource_version: str | None = None,
) -> tuple[str, Any]:
    """The (content type, body) of the PATCH that merges ``annotations`` and ``labels``.

    With no ``expect``, a JSON merge patch; ``None`` removes a key. With
    ``expect``, a JSON patch whose ``test`` operations check those values
    first (a ``null`` value tests that the key is absent).

    A ``resource_version`` rides in the patched object's metadata (the merge
    patch's ``metadata.resourceVersion``, the JSON patch's ``replace`` of it):
    the API server then refuses the update with 409 Conflict unless the
    object is still at that version, exactly as for a PUT. (A JSON patch
    ``test`` of it would fail as a bare 422, indistinguishable from a failed
    expectation; the ``replace`` gives the server's own Conflict.)
    """
    labels = labels or {}
    if not expect:
        meta: dict[str, Any] = {}
        if annotations:
            meta["annotations"] = dict(annotations)
        if labels:
            meta["labels"] = dict(labels)
        if resource_version:
            meta["resourceVersion"] = resource_version
        return MERGE_PATCH, {"metadata": meta}

    body: list[dict[str, Any]] = [
        {"op": "test", "path": _pointer("metadata", "annotations", k), "value": v}
        for k, v in expect.items()
    ]
    if resource_version:
        body.append(
            {"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version}
        )
    for field, changes in (("annotations", annotations), ("labels", labels)):
        for key, value in changes.items():
            path = _pointer("metadata", field, key)
            if value is None and field == "labels":
                # No expectation says whether the label is there: add it first, so that
                # removing it cannot fail on an absent key (it is removed all the same).
                body.append({"op": "add", "path": path, "value": ""})
            if value is None:
                body.append({"op": "remove", "path": path})
            else:
                body.append({"op": "add", "path": path, "value": value})
    return JSON_PATCH, body
