"""The stored objects: what every layer above the errors passes around.

A ``StoredObject`` is a ConfigMap's metadata and data, as both store backends
return it and as the schema encodes a task's state into it. It sits below
schema and store alike (DESIGN.md's layer picture), so that the schema never
imports the store to name the objects it reads and writes. It imports
nothing of ours.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "ObjectList",
    "OwnerReference",
    "StoredObject",
    "WatchEvent",
    "WatchEventType",
]


@dataclass(frozen=True, slots=True)
class OwnerReference:
    """A metadata.ownerReferences entry; the garbage collector follows it."""

    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool = False
    block_owner_deletion: bool = False

    def to_manifest(self) -> dict[str, Any]:
        """metav1.OwnerReference as JSON (both flags always sent)."""
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": self.controller,
            "blockOwnerDeletion": self.block_owner_deletion,
        }

    @classmethod
    def from_manifest(cls, ref: Mapping[str, Any]) -> OwnerReference:
        """The JSON form read back; absent fields are empty or false, as in Go."""
        return cls(
            api_version=str(ref.get("apiVersion", "")),
            kind=str(ref.get("kind", "")),
            name=str(ref.get("name", "")),
            uid=str(ref.get("uid", "")),
            controller=bool(ref.get("controller", False)),
            block_owner_deletion=bool(ref.get("blockOwnerDeletion", False)),
        )


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object of the store: a ConfigMap's metadata and data.

    ``data`` is ``None`` only on objects from a metadata-only list or watch.
    On ``create`` and ``replace``, the server-set fields (uid, creation time)
    are ignored; ``resource_version`` is the expected version on ``replace``.
    """

    name: str
    data: Mapping[str, str] | None = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    resource_version: str = ""
    uid: str = ""
    creation_timestamp: datetime | None = None
    owner_references: tuple[OwnerReference, ...] = ()


@dataclass(frozen=True, slots=True)
class ObjectList:
    """One page of a list. ``continue_token`` is ``None`` on the last page."""

    items: list[StoredObject]
    resource_version: str
    continue_token: str | None = None
    #: The server's estimate of items left after this page, when it gives one.
    remaining_item_count: int | None = None


class WatchEventType(enum.StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: WatchEventType
    object: StoredObject
