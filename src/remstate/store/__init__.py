"""Stores: the Store contract and its two backends.

Only the backends import the Kubernetes client or sqlite3; they are imported
lazily so that using one never loads the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from remstate.store.base import (
    ObjectList,
    OwnerReference,
    Store,
    StoredObject,
    WatchEvent,
    WatchEventType,
)
from remstate.store.opener import StoreURL, open_store, parse_store_url

if TYPE_CHECKING:
    from remstate.store.embedded import EmbeddedStore
    from remstate.store.kubernetes import KubernetesStore

__all__ = [
    "EmbeddedStore",
    "KubernetesStore",
    "ObjectList",
    "OwnerReference",
    "Store",
    "StoreURL",
    "StoredObject",
    "WatchEvent",
    "WatchEventType",
    "open_store",
    "parse_store_url",
]


def __getattr__(name: str) -> object:
    if name == "EmbeddedStore":
        from remstate.store.embedded import EmbeddedStore

        return EmbeddedStore
    if name == "KubernetesStore":
        from remstate.store.kubernetes import KubernetesStore

        return KubernetesStore
    raise AttributeError(name)
