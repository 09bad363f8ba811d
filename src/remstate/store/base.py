"""The Store contract: a small, faithful subset of the Kubernetes object API.

Both backends (ConfigMaps through the API server, and the embedded SQLite
store) implement exactly this, with the same errors for the same failures.
The manager is written once against it and never asks which backend it has.

Semantics follow the API server:

- ``resource_version`` is opaque. ``replace`` sends the version it read; a
  stale one raises ``Conflict``. ``create`` ignores it.
- ``annotate`` merges annotations and labels (a merge patch; with expected
  values, a JSON patch that tests them first), and changes the
  resourceVersion as any write does. It has no precondition on the
  resourceVersion unless given one: then a stale version raises ``Conflict``
  and writes nothing, as a ``replace`` would, without sending the data.
- ``delete`` may carry preconditions on uid and resourceVersion; a mismatch
  raises ``Conflict`` and deletes nothing.
- ``list`` pages with ``limit`` and an opaque continue token; a snapshot of the
  first page's resourceVersion is kept across pages. ``metadata_only`` returns
  objects whose ``data`` is ``None``: the data never crosses the wire.
- ``record_event`` records what happened to an object (an ``events.k8s.io/v1``
  Event on Kubernetes, a structured log record on the embedded store) and
  never raises: an Event is a courtesy to the operator, never a reason for an
  operation to fail.
- ``watch`` yields ADDED, MODIFIED and DELETED events after a resourceVersion;
  with none, it first yields ADDED for every object that exists.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol, runtime_checkable

from remstate.errors import InvalidInput

# The object types live below both schema and store; they are re-exported here
# so that ``from remstate.store.base import StoredObject`` keeps working.
from remstate.objects import (
    ObjectList,
    OwnerReference,
    StoredObject,
    WatchEvent,
    WatchEventType,
)

__all__ = [
    "ObjectList",
    "OwnerReference",
    "Store",
    "StoredObject",
    "WatchEvent",
    "WatchEventType",
    "check_expectations",
]


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
            InvalidObject: the name, labels, annotations, keys or size break the API's rules.
        """
        ...

    def replace(self, obj: StoredObject) -> StoredObject:
        """Replace the object if it is still at ``obj.resource_version``.

        Raises:
            Conflict: the object changed since that version.
            NotFound: the object is gone.
            InvalidObject: as for ``create``.
        """
        ...

    def annotate(
        self,
        name: str,
        annotations: Mapping[str, str | None],
        *,
        expect: Mapping[str, str | None] | None = None,
        labels: Mapping[str, str | None] | None = None,
        resource_version: str | None = None,
    ) -> StoredObject:
        """Merge ``annotations`` (and ``labels``) into the object; return it.

        A value of ``None`` removes the key. The data never crosses the wire,
        and nothing else changes. With no ``resource_version`` the write
        happens at whatever version the object is: it is for marks that do not
        depend on the object's content, such as a writer taking its turn. With
        one, it happens only if the object is still at that version (as a
        ``replace``). With ``expect``, only if each of those annotations has
        that value now (``None``: absent); then, as in a JSON patch, a key
        removed must be expected present, and the object must already have
        annotations (and labels, when ``labels`` are given) to change: every
        object remstate writes has both. A patch that changes nothing keeps
        the resourceVersion.

        Raises:
            NotFound: there is no such object.
            Conflict: the object is no longer at ``resource_version``, or an
                expected annotation has another value; nothing was written.
            InvalidObject: the annotations or labels break the API's rules.
            InvalidInput: a key is removed that ``expect`` does not expect present.
            Unavailable: ``resource_version`` is not a number (the server's 500).
        """
        ...

    def record_event(
        self,
        obj: StoredObject,
        *,
        reason: str,
        message: str,
        type: str = "Normal",  # noqa: A002 - the Event's own field name
        action: str = "",
    ) -> None:
        """Record what happened to ``obj``, for the operator; never raises.

        On Kubernetes an ``events.k8s.io/v1`` Event regarding the ConfigMap
        (``kubectl describe cm``, ``kubectl get events``); on the embedded store
        a record of the ``remstate.events`` logger with the same fields. A
        failure (no right to create Events, a server down or hung) is logged
        and swallowed, within a few seconds.

        Args:
            obj: the object the event is about (its name and uid are used).
            reason: why, in UpperCamelCase (``SoftDeleted``, ``Purged``).
            message: what happened, for a person (the Event's ``note``).
            type: ``Normal`` or ``Warning``.
            action: what was done (``SoftDelete``, ``Purge``); the reason by default.
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
            InvalidObject: the label selector cannot be parsed.
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
