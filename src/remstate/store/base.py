"""The Store contract: a small, faithful subset of the Kubernetes object API.

Both backends (ConfigMaps through the API server, and the embedded SQLite
store) implement exactly this, with the same errors for the same failures.
The manager is written once against it and never asks which backend it has.

Semantics follow the API server:

- ``resource_version`` is opaque. ``replace`` sends the version it read; a
  stale one raises ``Conflict``. ``create`` ignores it.
- ``annotate`` merges annotations with no precondition on the resourceVersion
  (a merge patch; with expected values, a JSON patch that tests them first),
  and changes the resourceVersion as any write does.
- ``delete`` may carry preconditions on uid and resourceVersion; a mismatch
  raises ``Conflict`` and deletes nothing.
- ``list`` pages with ``limit`` and an opaque continue token; a snapshot of the
  first page's resourceVersion is kept across pages. ``metadata_only`` returns
  objects whose ``data`` is ``None``: the data never crosses the wire.
- ``watch`` yields ADDED, MODIFIED and DELETED events after a resourceVersion;
  with none, it first yields ADDED for every object that exists.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from remstate.errors import InvalidInput

__all__ = [
    "ObjectList",
    "OwnerReference",
    "Store",
    "StoredObject",
    "WatchEvent",
    "WatchEventType",
    "check_expectations",
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


def check_expectations(
    annotations: Mapping[str, str | None], expect: Mapping[str, str | None] | None
) -> None:
    """Refuse an ``annotate`` that removes a key its expectations do not hold present.

    A JSON patch cannot remove a key that is absent; both backends refuse it
    alike, before sending anything.

    Raises:
        InvalidInput: such a key is removed.
    """
    if not expect:
        return
    for key, value in annotations.items():
        if value is None and expect.get(key) is None:
            raise InvalidInput(f"annotation {key!r} is removed but not expected present")


@runtime_checkable
class Store(Protocol):
    """The operations every backend provides, in one namespace."""

    @property
    def namespace(self) -> str:
        """The namespace the store works in."""
        ...

    def get(self, name: str) -> StoredObject:
        """Return the object.

        Raises:
            NotFound: there is no such object.
        """
        ...

    def create(self, obj: StoredObject) -> StoredObject:
        """Create the object and return it as stored, with its new resourceVersion.

        Raises:
            AlreadyExists: the name is taken.
            Invalid: the name, labels, annotations, keys or size break the API's rules.
        """
        ...

    def replace(self, obj: StoredObject) -> StoredObject:
        """Replace the object if it is still at ``obj.resource_version``.

        Raises:
            Conflict: the object changed since that version.
            NotFound: the object is gone.
            Invalid: as for ``create``.
        """
        ...

    def annotate(
        self,
        name: str,
        annotations: Mapping[str, str | None],
        *,
        expect: Mapping[str, str | None] | None = None,
    ) -> StoredObject:
        """Merge ``annotations`` into the object, at whatever version it is; return it.

        A value of ``None`` removes the key. Nothing else changes, and the
        object's resourceVersion is no precondition: it is for marks that do
        not depend on the object's content, such as a writer taking its turn.
        With ``expect``, the write happens only if each of those annotations
        has that value now (``None``: absent); a key removed must be expected
        present. A patch that changes nothing keeps the resourceVersion.

        Raises:
            NotFound: there is no such object.
            Conflict: an expected annotation has another value; nothing was written.
            Invalid: the annotations break the API's rules.
            InvalidInput: a key is removed that ``expect`` does not expect present.
        """
        ...

    def delete(
        self, name: str, *, uid: str | None = None, resource_version: str | None = None
    ) -> None:
        """Delete the object, if it still has this uid and resourceVersion (when given).

        Raises:
            NotFound: there is no such object.
            Conflict: a precondition did not hold; nothing was deleted.
        """
        ...

    def list(
        self,
        *,
        label_selector: str = "",
        limit: int | None = None,
        continue_token: str | None = None,
        metadata_only: bool = False,
    ) -> ObjectList:
        """Return one page of the objects that match the label selector.

        Raises:
            Gone: the continue token has expired.
            Invalid: the label selector cannot be parsed.
        """
        ...

    def watch(
        self,
        *,
        label_selector: str = "",
        resource_version: str | None = None,
        timeout_seconds: float | None = None,
    ) -> Iterator[WatchEvent]:
        """Yield changes after ``resource_version`` until the timeout.

        With no ``resource_version`` it starts, as the API server does, with an
        ADDED event for every object that matches now, then follows changes.

        Raises:
            Gone: the resourceVersion is too old to watch from.
        """
        ...

    def close(self) -> None:
        """Release connections and files. The store is not used afterwards."""
        ...
