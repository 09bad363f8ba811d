"""Which authorizer and which leader election a store gets: the service's one decision point.

The constraints this module lives under (DESIGN.md rule 7, "Several replicas"):

- **On Kubernetes, the cluster's RBAC decides** (``KubernetesAuthorizer``)
  whenever the API is reachable by anyone but this host's users: bound to a
  non-loopback address, or running in a pod (``KUBERNETES_SERVICE_HOST`` is
  set, as the kubelet sets it). Bound to loopback outside a pod (a developer's
  ``remstate serve`` on a kubeconfig), it behaves as the embedded store does.
- **Locally** (and for Kubernetes on loopback outside a pod): no token on
  loopback, or ``--token-file``'s token (``server.check_binding`` refuses
  another address without one).
- **Leadership:** a Lease in the store's namespace on Kubernetes; on the
  embedded store, a file lock beside the database (``<db>.leader``).

Timings come from the environment, so a Deployment can tune them without a
new flag: ``REMSTATE_LEASE_DURATION``, ``REMSTATE_RENEW_DEADLINE``,
``REMSTATE_RETRY_PERIOD`` (seconds; client-go's 15, 10, 2 by default) and
``REMSTATE_AUTH_CACHE_TTL`` (10). The Kubernetes client is imported only when
the store is a Kubernetes one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry

from remstate.errors import InvalidInput
from remstate.service.auth import Authorizer, OpenLocal, TokenFile
from remstate.service.leadership import Always, Leadership
from remstate.service.server import is_loopback
from remstate.store.base import Store

__all__ = ["authorizer_for", "in_a_pod", "leadership_for", "uses_cluster_auth"]

_LEASE_ENV: Final = {
    "lease_duration": "REMSTATE_LEASE_DURATION",
    "renew_deadline": "REMSTATE_RENEW_DEADLINE",
    "retry_period": "REMSTATE_RETRY_PERIOD",
}
_CACHE_TTL_ENV: Final = "REMSTATE_AUTH_CACHE_TTL"


def in_a_pod(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether we run in a Kubernetes pod (the kubelet sets ``KUBERNETES_SERVICE_HOST``)."""
    return bool(environ.get("KUBERNETES_SERVICE_HOST"))


def _is_kubernetes(store: Store | str) -> bool:
    if isinstance(store, str):
        return store == "kubernetes"
    # Checked by name, so that an embedded store never loads the Kubernetes client.
    return type(store).__name__ == "KubernetesStore"


def uses_cluster_auth(
    store: Store | str, host: str, environ: Mapping[str, str] = os.environ
) -> bool:
    """Whether requests are authorized by the cluster's RBAC (see the module docstring).

    Args:
        store: the store, or its backend's name (``"kubernetes"``, ``"sqlite"``).
        host: the address the service binds.
        environ: where to look for a pod's variables.
    """
    return _is_kubernetes(store) and (in_a_pod(environ) or not is_loopback(host))


def _seconds(environ: Mapping[str, str], name: str) -> float | None:
    value = environ.get(name)
    if value is None or not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        raise InvalidInput(f"{name} is a number of seconds, not {value!r}") from None


def authorizer_for(
    store: Store,
    *,
    host: str,
    token_file: str | os.PathLike[str] | None,
    environ: Mapping[str, str] = os.environ,
    registry: CollectorRegistry | None = None,
) -> Authorizer:
    """The authorizer for a service on ``store`` bound to ``host``.

    ``registry``, if given, gets the Kubernetes authorizer's decision counts.

    Raises:
        InvalidInput: the token file cannot be read; a token file where RBAC
            decides; a setting in the environment that is not a number.
    """
    if uses_cluster_auth(store, host, environ):
        if token_file is not None:
            raise InvalidInput(
                "--token-file is for a service outside a cluster: on Kubernetes, "
                "callers bring their own bearer tokens and RBAC decides"
            )
        from remstate.service.kube_auth import DEFAULT_CACHE_TTL, KubernetesAuthorizer
        from remstate.service.kube_readiness import permission_checks
        from remstate.store.kubernetes import KubernetesStore

        assert isinstance(store, KubernetesStore)
        ttl = _seconds(environ, _CACHE_TTL_ENV)
        return KubernetesAuthorizer(
            store.api_client,
            store.namespace,
            ttl=DEFAULT_CACHE_TTL if ttl is None else ttl,
            readiness=permission_checks(store.api_client, store.namespace),
            registry=registry,
        )
    return OpenLocal() if token_file is None else TokenFile(Path(token_file))


def leadership_for(
    store: Store, *, identity: str | None = None, environ: Mapping[str, str] = os.environ
) -> Leadership:
    """The leader election for replicas sharing ``store``.

    Raises:
        InvalidInput: a timing in the environment that is not a number, or
            timings in the wrong order (see ``LeaseTiming``).
    """
    if _is_kubernetes(store):
        from remstate.service.lease import LeaseElection, LeaseTiming
        from remstate.store.kubernetes import KubernetesStore

        assert isinstance(store, KubernetesStore)
        given = {
            field: value
            for field, name in _LEASE_ENV.items()
            if (value := _seconds(environ, name)) is not None
        }
        return LeaseElection(
            store.api_client, store.namespace, identity=identity, timing=LeaseTiming(**given)
        )
    path = getattr(store, "path", None)
    if isinstance(path, str) and path and path != ":memory:":
        from remstate.service.filelock import FileLockElection, lock_path_for

        retry = _seconds(environ, _LEASE_ENV["retry_period"])
        if retry is None:
            return FileLockElection(lock_path_for(path), identity=identity)
        return FileLockElection(lock_path_for(path), identity=identity, retry_period=retry)
    return Always(identity)
