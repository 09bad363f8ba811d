"""One opener for every store URL: the manager, the CLI and the service open stores here.

Design constraint: a URL is parsed in this one place, and a URL that cannot
give a store fails here with one clear error, before anything is written:

- an unknown scheme, no path, or a bad option: ``InvalidInput``;
- no Kubernetes configuration (no kubeconfig, a broken one, and not a pod):
  ``Unavailable``, as an embedded file that cannot be opened is;
- an embedded file that the mode may not create: ``NotFound``.

The backends are imported only when their scheme is asked for, so opening a
``sqlite://`` store never loads the Kubernetes client, nor the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from remstate.errors import InvalidInput

if TYPE_CHECKING:
    # Re-exported for the manager's signature: only the store layer names the client.
    from kubernetes.client import ApiClient as ApiClient  # noqa: PLC0414 (explicit re-export)

    from remstate.store.base import Store
    from remstate.store.embedded_file import OpenMode

__all__ = ["StoreURL", "open_store", "parse_store_url"]

#: SQLite's own URI modes, most restrictive first (``embedded_file.OpenMode``).
_SQLITE_MODES: Final = ("ro", "rw", "rwc")
_KUBERNETES_SCHEMES: Final = ("kubernetes", "k8s")


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A store URL, parsed and checked.

    Attributes:
        backend: ``"sqlite"`` or ``"kubernetes"``.
        path: the embedded store's file (``""`` for Kubernetes).
        namespace: the namespace the URL names, if it names one.
        mode: the ``?mode=`` of a sqlite URL (``"rwc"`` when it has none).
    """

    backend: Literal["sqlite", "kubernetes"]
    path: str = ""
    namespace: str | None = None
    mode: OpenMode = "rwc"


def parse_store_url(url: object) -> StoreURL:
    """Parse a store URL without opening anything.

    - ``sqlite:///path/to/state.db`` (or ``sqlite://relative.db``): the embedded
      store; ``?mode=ro`` opens it read-only, ``?mode=rw`` only if the file exists;
    - ``kubernetes://NAMESPACE`` (or ``k8s://``): ConfigMaps; ``kubernetes://``
      alone names no namespace.

    Raises:
        InvalidInput: not a string, an unknown scheme, no database path, or a
            query a sqlite URL does not take.
    """
    if not isinstance(url, str):
        raise InvalidInput(f"a store URL is a string, not {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.netloc + parts.path)
        if not path:
            raise InvalidInput(f"no database path in {url!r}")
        query = parse_qs(parts.query, keep_blank_values=True)
        if set(query) - {"mode"} or len(query.get("mode", ())) > 1:
            raise InvalidInput(f"a sqlite store URL takes one query parameter, mode: {url!r}")
        (mode,) = query.get("mode", ("rwc",))
        return StoreURL("sqlite", path=path, mode=_checked_mode(mode))
    if parts.scheme in _KUBERNETES_SCHEMES:
        return StoreURL("kubernetes", namespace=parts.netloc or parts.path.strip("/") or None)
    raise InvalidInput(
        f"unknown store URL {url!r}: use sqlite:///path/to/state.db or kubernetes://NAMESPACE"
    )


def open_store(
    url: str,
    *,
    namespace: str | None = None,
    mode: str = "rwc",
    api_client: ApiClient | None = None,
    kubeconfig: str | None = None,
    context: str | None = None,
) -> Store:
    """Open the store a URL names (see ``parse_store_url`` for the URLs).

    Args:
        url: the store URL.
        namespace: for sqlite, the namespace inside the file (``default``); for
            Kubernetes, used when the URL names none (then the kubeconfig
            context's namespace, or in a pod the pod's, else ``default``, as kubectl).
        mode: ``"rwc"``, ``"rw"`` or ``"ro"``: the embedded store opens in the
            stricter of this and the URL's ``?mode=``; Kubernetes ignores it.
        api_client: for Kubernetes, the caller's ``kubernetes.client.ApiClient``;
            with none, the kubeconfig (``kubeconfig``, else ``KUBECONFIG``, else
            ``~/.kube/config``) is loaded with ``context`` (else its current one),
            or, when neither was named and it cannot be, the in-cluster config.
        kubeconfig: for Kubernetes, the kubeconfig file to load.
        context: for Kubernetes, the kubeconfig context to use.

    Raises:
        InvalidInput: as ``parse_store_url``; a bad ``mode``; an ``api_client``,
            ``kubeconfig`` or ``context`` for a sqlite URL, or with an ``api_client``;
            a ``namespace`` other than the one the URL names.
        NotFound: the embedded store's file does not exist, and the mode may not create it.
        CorruptStore: the embedded store's file is damaged or newer than us.
        Unavailable: the embedded store's file cannot be opened, or no Kubernetes
            configuration can be loaded.
    """
    parsed = parse_store_url(url)
    if parsed.namespace and namespace and parsed.namespace != namespace:
        raise InvalidInput(
            f"the store URL {url!r} names namespace {parsed.namespace!r}, not {namespace!r}"
        )
    if parsed.backend == "sqlite":
        for what, given in (("an api_client", api_client), ("a kubeconfig", kubeconfig)):
            if given is not None:
                raise InvalidInput(f"{what} is for a kubernetes:// store, not {url!r}")
        if context is not None:
            raise InvalidInput(f"a kubeconfig context is for a kubernetes:// store, not {url!r}")
        from remstate.store.embedded import EmbeddedStore

        strictest = min(_checked_mode(mode), parsed.mode, key=_SQLITE_MODES.index)
        return EmbeddedStore(
            parsed.path, "default" if namespace is None else namespace, mode=strictest
        )
    from remstate.store.kubernetes import KubernetesStore

    if api_client is None:
        return KubernetesStore.from_environment(
            parsed.namespace or namespace, kubeconfig=kubeconfig, context=context
        )
    if kubeconfig is not None or context is not None:
        raise InvalidInput("give an api_client, or a kubeconfig and context, not both")
    return KubernetesStore(parsed.namespace or namespace or "default", api_client=api_client)


def _checked_mode(mode: object) -> OpenMode:
    if mode not in _SQLITE_MODES:
        raise InvalidInput(f"mode must be one of ro, rw or rwc, not {mode!r}")
    return mode
