"""How tests open a store on each backend, in this process or in a child process.

A ``StoreSpec`` is small and picklable, so concurrency tests hand it to real
child processes, each of which opens its own connection to the same store.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubernetes import client

from remstate.store import Store

if TYPE_CHECKING:
    from remstate.testing.controlplane import ControlPlane

BACKENDS = ("embedded", "kubernetes")


def new_namespace(plane: ControlPlane, prefix: str = "t") -> str:
    """Create a namespace of its own for one test (never deleted: it goes with the plane)."""
    return plane.create_namespace(prefix)


class RecordingApiClient(client.ApiClient):  # type: ignore[misc]
    """The real client, recording every request it sends and every response it gets."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requests: list[tuple[str, str]] = []
        self.responses: list[Any] = []

    @classmethod
    def like(cls, plane: ControlPlane) -> RecordingApiClient:
        """A recording client with the plane's admin configuration."""
        with plane.api_client() as template:
            return cls(template.configuration)

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        self.requests.append((method, url))
        response = super().call_api(method, url, *args, **kwargs)
        self.responses.append(response)
        return response


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


class CountingStore:
    """A real store that counts the calls made on it; every call goes through."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: list[str] = []

    @property
    def namespace(self) -> str:
        return self.inner.namespace

    def __getattr__(self, name: str) -> object:
        attr = getattr(self.inner, name)
        if name in {"get", "create", "replace", "annotate", "delete", "list", "watch"}:

            def counted(*args: object, **kwargs: object) -> object:
                self.calls.append(name)
                return attr(*args, **kwargs)

            return counted
        return attr


class LosesResponses(CountingStore):
    """A real store whose next `losses` writes commit, and then raise anyway.

    By default they raise Unavailable: what a client sees when the server
    committed a write and the response was lost (a timeout, a dropped
    connection). With ``error=Conflict`` it is what a client sees when it
    re-sent a PUT whose first copy had committed.
    """

    def __init__(
        self,
        inner: Store,
        losses: int,
        *,
        methods: frozenset[str] = frozenset({"create", "replace"}),
        error: type[Exception] | None = None,
        commit: bool = True,
    ) -> None:
        super().__init__(inner)
        self.losses = losses
        self.methods = methods
        self.error = error
        self.commit = commit

    def __getattr__(self, name: str) -> object:
        attr = super().__getattr__(name)
        if name not in self.methods:
            return attr

        def lossy(*args: object, **kwargs: object) -> object:
            if self.losses > 0:
                self.losses -= 1
                from remstate.errors import Unavailable

                if self.commit:
                    attr(*args, **kwargs)  # type: ignore[operator]
                raise (self.error or Unavailable)("the response was lost")
            return attr(*args, **kwargs)  # type: ignore[operator]

        return lossy
