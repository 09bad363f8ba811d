"""The peers: four ways to increment a counter in a ConfigMap, as algorithms.

Each peer keeps its counter in one object of the same API server and talks
through the same ``ApiClient`` configuration. The three foils use the
generated ``CoreV1Api`` on a bare ConfigMap (``data: {iteration: "N"}``);
remstate uses ``StateManager.increment_iteration``, whose object also gains
one iteration record per increment. That difference is remstate's own cost
and is kept in: it is what a caller gets.

- ``naive``: GET, then a JSON merge patch of the incremented value with no
  resourceVersion. Never fails; two writers that read the same value both
  write value + 1, and one update is lost.
- ``sketch``: the original specification's increment: GET, then one PUT that
  carries the resourceVersion read, no retry. Never loses; fails (409) under
  contention.
- ``retry-on-conflict``: client-go's ``retry.RetryOnConflict(backoff, fn)``,
  where ``fn`` is GET + PUT with the resourceVersion, re-read on every
  attempt, under ``wait.ExponentialBackoff``. Two backoffs, both from
  ``k8s.io/client-go/util/retry``:

  - ``DefaultBackoff`` (Steps 4, Duration 10 ms, Factor 5.0, Jitter 0.1): at
    most 4 attempts, waits of 10, 50, 250 ms, each plus up to 10 %. This is
    what DESIGN.md names;
  - ``DefaultRetry`` (Steps 5, Duration 10 ms, Factor 1.0, Jitter 0.1): at
    most 5 attempts, 10 ms waits. This is what client-go's own doc comment
    on ``RetryOnConflict`` passes, and what most controllers use.

  When the attempts run out the operation fails with the last Conflict.
- ``remstate``: ``StateManager.increment_iteration`` with ``max_iterations``
  far above anything a run reaches, and the default ``RetryPolicy``.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Final, Protocol

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from remstate import RemstateError, StateManager

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_RETRY",
    "PEERS",
    "Backoff",
    "Failed",
    "Peer",
    "make_peer",
]

#: Far above any count a bounded run reaches: the limit never refuses an increment.
UNREACHABLE_MAX: Final = 1_000_000_000
_MERGE_PATCH: Final = "application/merge-patch+json"


class Failed(Exception):
    """The peer gave up on the increment: the counter did not move (as far as it knows)."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """client-go's ``wait.Backoff``: the fields ``wait.ExponentialBackoff`` reads."""

    steps: int
    duration: float
    factor: float
    jitter: float


#: ``retry.DefaultBackoff`` in k8s.io/client-go/util/retry/util.go.
DEFAULT_BACKOFF: Final = Backoff(steps=4, duration=0.010, factor=5.0, jitter=0.1)
#: ``retry.DefaultRetry`` in the same file.
DEFAULT_RETRY: Final = Backoff(steps=5, duration=0.010, factor=1.0, jitter=0.1)


class Peer(Protocol):
    """One way to increment a counter; ``key`` names the counter's object."""

    name: str

    def prepare(self, key: str) -> None:
        """Make the counter exist at 0, fresh (any earlier object is deleted)."""

    def increment(self, key: str) -> None:
        """Add one. Raises ``Failed`` when the algorithm gives up."""

    def counter(self, key: str) -> int:
        """Read the counter."""

    def remove(self, key: str) -> None:
        """Delete the counter's object(s)."""


def _iteration(configmap: client.V1ConfigMap) -> int:
    return int((configmap.data or {})["iteration"])


class _BareConfigMap:
    """The foils' storage: a ConfigMap holding only ``iteration``."""

    name = "bare"

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace

    def prepare(self, key: str) -> None:
        self.remove(key)
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=key), data={"iteration": "0"})
        self.core.create_namespaced_config_map(self.namespace, body)

    def counter(self, key: str) -> int:
        return _iteration(self._read(key))

    def remove(self, key: str) -> None:
        try:
            self.core.delete_namespaced_config_map(key, self.namespace)
        except ApiException as e:
            if e.status != 404:
                raise

    def _read(self, key: str) -> client.V1ConfigMap:
        return self.core.read_namespaced_config_map(key, self.namespace)

    def _read_modify_replace(self, key: str) -> None:
        """GET, add one, PUT with the resourceVersion read (the model carries it)."""
        configmap = self._read(key)
        configmap.data = {**(configmap.data or {}), "iteration": str(_iteration(configmap) + 1)}
        self.core.replace_namespaced_config_map(key, self.namespace, configmap)


class Naive(_BareConfigMap):
    name = "naive"

    def increment(self, key: str) -> None:
        value = _iteration(self._read(key))
        # No resourceVersion in a merge patch: the server applies it to whatever is there.
        self.core.patch_namespaced_config_map(
            key,
            self.namespace,
            {"data": {"iteration": str(value + 1)}},
            _content_type=_MERGE_PATCH,
        )


class Sketch(_BareConfigMap):
    name = "sketch"

    def increment(self, key: str) -> None:
        try:
            self._read_modify_replace(key)
        except ApiException as e:
            if e.status == 409:
                raise Failed("Conflict, and the sketch does not retry") from e
            raise


class RetryOnConflict(_BareConfigMap):
    def __init__(
        self, api: client.ApiClient, namespace: str, *, backoff: Backoff, name: str
    ) -> None:
        super().__init__(api, namespace)
        self.backoff = backoff
        self.name = name

    def increment(self, key: str) -> None:
        # wait.ExponentialBackoff: call, and between calls sleep Step(): the
        # current duration plus up to jitter x it, then duration *= factor.
        # No sleep after the last of `steps` calls.
        duration = self.backoff.duration
        for attempt in range(1, self.backoff.steps + 1):
            try:
                self._read_modify_replace(key)
            except ApiException as e:
                if e.status != 409:
                    raise
                if attempt == self.backoff.steps:
                    raise Failed(f"Conflict on all {attempt} attempts") from e
            else:
                return
            # S311: jitter, not cryptography.
            time.sleep(duration * (1 + random.random() * self.backoff.jitter))  # noqa: S311
            duration *= self.backoff.factor


class Remstate:
    name = "remstate"

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.manager = StateManager(
            api_client=api, namespace=namespace, max_iterations=UNREACHABLE_MAX
        )

    def prepare(self, key: str) -> None:
        self.remove(key)
        self.manager.get_or_create_state(key)

    def increment(self, key: str) -> None:
        try:
            self.manager.increment_iteration(key)
        except RemstateError as e:
            raise Failed(f"{type(e).__name__}: {e}") from e

    def counter(self, key: str) -> int:
        return self.manager.get_current_iteration(key)

    def remove(self, key: str) -> None:
        self.manager.delete_state(key)


#: The peers in the order of the report's columns.
PEERS: Final = (
    "naive",
    "sketch",
    "retry-on-conflict (DefaultBackoff)",
    "retry-on-conflict (DefaultRetry)",
    "remstate",
)


def make_peer(name: str, api: client.ApiClient, namespace: str) -> Peer:
    """The peer called ``name`` on this client."""
    if name == "naive":
        return Naive(api, namespace)
    if name == "sketch":
        return Sketch(api, namespace)
    if name == "retry-on-conflict (DefaultBackoff)":
        return RetryOnConflict(api, namespace, backoff=DEFAULT_BACKOFF, name=name)
    if name == "retry-on-conflict (DefaultRetry)":
        return RetryOnConflict(api, namespace, backoff=DEFAULT_RETRY, name=name)
    if name == "remstate":
        return Remstate(api, namespace)
    raise ValueError(f"no peer called {name!r}")
