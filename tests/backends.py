"""How tests open a store on each backend, in this process or in a child process.

A ``StoreSpec`` is small and picklable, so concurrency tests hand it to real
child processes, each of which opens its own connection to the same store.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from remstate.store import Store

BACKENDS = ("embedded", "kubernetes")


@dataclass(frozen=True)
class StoreSpec:
    """Where a test's store lives: a SQLite file, or a namespace of the real API server."""

    kind: str
    namespace: str
    path: str | None = None
    kubeconfig: str | None = None

    @contextlib.contextmanager
    def open(self) -> Iterator[Store]:
        """Open a fresh store (and, for Kubernetes, a fresh client) and close both after."""
        if self.kind == "embedded":
            from remstate.store.embedded import EmbeddedStore

            assert self.path is not None
            embedded = EmbeddedStore(self.path, namespace=self.namespace)
            try:
                yield embedded
            finally:
                embedded.close()
            return
        from kubernetes import config

        from remstate.store.kubernetes import KubernetesStore

        api = config.new_client_from_config(config_file=self.kubeconfig)
        kube = KubernetesStore(self.namespace, api_client=api)
        try:
            yield kube
        finally:
            kube.close()
            api.close()
