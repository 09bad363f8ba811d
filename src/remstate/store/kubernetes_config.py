"""The Kubernetes backend's client set-up: configuration, and no hidden retries.

Design constraint: a store built without the caller's client loads the
kubeconfig (or the in-cluster config) here, and a configuration that cannot be
loaded is one ``Unavailable`` line naming the file. Whatever client the store
talks through, urllib3's own retries are turned off: remstate's retry policy
owns them (see ``kubernetes``).
"""

from __future__ import annotations

import os
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as _k8s_config

from remstate.errors import ApiStatus, Unavailable

__all__ = [
    "IN_CLUSTER_NAMESPACE",
    "configuration_and_namespace",
    "kubeconfig_namespace",
    "load_configuration",
    "without_hidden_retries",
]

#: Where a pod finds its own namespace (beside its service account's token).
IN_CLUSTER_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

#: The client's config loaders carry no annotations; this alias keeps mypy --strict honest.
k8s_config: Any = _k8s_config


def _kubeconfig_path() -> str:
    # Read at call time: the client reads KUBECONFIG once, when it is imported.
    return os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def _one_line(exc: BaseException) -> str:
    # The client's config errors may carry a YAML parser's multi-line report.
    return " ".join(str(exc).split())


def _no_configuration(message: str) -> Unavailable:
    # Nothing was sent: the store cannot be reached at all, as an embedded file
    # that cannot be opened (CLI exit 6), not a bug of ours (exit 1).
    return Unavailable(message, status=ApiStatus(503, "ServiceUnavailable", message))


def load_configuration(
    config_file: str | os.PathLike[str] | None = None,
    *,
    context: str | None = None,
    in_cluster_fallback: bool = True,
) -> Any:
    """A fresh client Configuration from the kubeconfig, else from the pod's service account.

    Raises:
        Unavailable: neither can be loaded (one line naming the file and why).
    """
    configuration = k8s.Configuration()
    path = os.fspath(config_file) if config_file is not None else _kubeconfig_path()
    try:
        k8s_config.load_kube_config(
            config_file=path,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    except Exception as kube_error:
        if not in_cluster_fallback:
            raise _no_configuration(
                f"cannot load the kubeconfig {path}: {_one_line(kube_error)}"
            ) from kube_error
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except Exception as cluster_error:
            raise _no_configuration(
                f"no Kubernetes configuration: the kubeconfig {path} cannot be loaded "
                f"({_one_line(kube_error)}) and this is not a pod ({_one_line(cluster_error)})"
            ) from cluster_error
    return configuration


def kubeconfig_namespace(config_file: str | os.PathLike[str] | None, context: str | None) -> str:
    path = os.fspath(config_file) if config_file is not None else _kubeconfig_path()
    try:
        contexts, current = k8s_config.list_kube_config_contexts(config_file=path)
    except Exception as e:
        raise _no_configuration(f"cannot load the kubeconfig {path}: {_one_line(e)}") from e
    chosen = current
    if context is not None:
        chosen = next((c for c in contexts if c.get("name") == context), None)
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else "default"


def configuration_and_namespace(
    config_file: str | os.PathLike[str] | None = None, *, context: str | None = None
) -> tuple[Any, str]:
    """A fresh client Configuration, and the namespace to work in when none is named.

    kubectl's rule: the kubeconfig (``config_file``, else ``KUBECONFIG``, else
    ``~/.kube/config``) and its context's namespace; when neither a file nor a
    context was named and that cannot be loaded, the pod's service account and
    the pod's namespace. ``default`` when none names one.

    Raises:
        Unavailable: no configuration can be loaded (a named file or context
            never falls back on the pod's).
    """
    named = config_file is not None or context is not None
    try:
        configuration = load_configuration(config_file, context=context, in_cluster_fallback=False)
    except Unavailable:
        if named:
            raise
        configuration = load_configuration(config_file, context=context)
        return configuration, _pod_namespace()
    return configuration, kubeconfig_namespace(config_file, context)


def _pod_namespace() -> str:
    try:
        with open(IN_CLUSTER_NAMESPACE, encoding="utf-8") as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"


def without_hidden_retries(api_client: Any) -> None:
    """Turn urllib3's own retries off on this client: remstate's retry policy owns them.

    Set on the Configuration (read when a client builds its pools) and on the
    pool manager the client has built already; pools made before are dropped,
    so none keeps the old setting. client-go-style read retries go too: they
    would wait out Retry-After past our deadline.
    """
    configuration = api_client.configuration
    configuration.retries = False
    configuration.client_go_retries = False
    pools = getattr(getattr(api_client, "rest_client", None), "pool_manager", None)
    if pools is not None and pools.connection_pool_kw.get("retries") is not False:
        pools.connection_pool_kw["retries"] = False
        pools.clear()
