"""The Kubernetes backend: the Store contract over ConfigMaps in one namespace.

The constraints this module lives under:

- **One HTTP request per operation.** A replace is one PUT carrying the
  resourceVersion it was read at; the API server does the compare-and-swap.
- **No data where none is needed.** A metadata-only list asks the server for a
  ``PartialObjectMetadataList`` (content negotiation with ``as=``), so the
  ConfigMaps' data never leaves the server.
- **The official client, the caller's ``ApiClient``.** Requests go through
  ``ApiClient.param_serialize`` and ``ApiClient.call_api``, so the caller's
  host, TLS, proxy and credentials (including refreshing ones) apply. We skip the
  generated ``CoreV1Api`` methods: the metadata-only list needs an Accept header
  of its own and the watch a stream parser of its own, and plain JSON bodies
  give one conversion to and from ``StoredObject`` (``kubernetes_manifest``)
  rather than one per object model. Speed is not the reason:
  measured against the generated methods, a replace costs the same (about
  3.6 ms small, 60 ms at 1 MiB, on the test server); the server dominates.
- **No client exception escapes.** Every call runs inside ``translated()``;
  ``translate_error`` (both in ``kubernetes_errors``) is the one function that
  maps ``ApiException``, urllib3 and socket errors to our tree, chained with
  ``raise ... from``. A network
  failure becomes one short line naming the server and the cause
  ("connection refused"), and says whether the request may have been carried
  out (``Unavailable.maybe_applied``).
- **remstate owns retries.** urllib3 would re-send a request on a timeout or a
  broken connection (three times by default, a PUT included): that hides an
  outage for four request timeouts and turns a committed PUT into a
  misleading Conflict. The store turns those retries off on the client it
  talks through (the caller's included: ``retries=False`` on its
  Configuration and on its connection pools, as if it had been built so:
  ``kubernetes_config``),
  and caps each request's connect and read timeouts at what is left of the
  running retry policy's deadline (``remstate.retry.remaining``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Self, cast

from kubernetes import client as k8s

from remstate.errors import (
    ApiStatus,
    Conflict,
    InvalidObject,
    NotFound,
    Unavailable,
)
from remstate.objects import (
    ObjectList,
    StoredObject,
    WatchEvent,
    WatchEventType,
)
from remstate.retry import remaining
from remstate.store.base import check_expectations
from remstate.store.kubernetes_config import (
    configuration_and_namespace,
    kubeconfig_namespace,
    load_configuration,
    without_hidden_retries,
)
from remstate.store.kubernetes_errors import error_from_status, translate_error, translated
from remstate.store.kubernetes_events import record_event
from remstate.store.kubernetes_manifest import metadata_patch, to_manifest, to_stored

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["KubernetesStore", "error_from_status", "translate_error"]

_CONFIGMAPS: Final = "/api/v1/namespaces/{namespace}/configmaps"
_CONFIGMAP: Final = "/api/v1/namespaces/{namespace}/configmaps/{name}"
_JSON: Final = "application/json"
#: Content negotiation for metadata only: the server strips everything but metadata.
_METADATA_LIST: Final = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
#: Shown by ``kubectl get cm -o yaml --show-managed-fields`` as the writer.
_FIELD_MANAGER: Final = "remstate"
#: Seconds a watch may stay silent past its own timeout before we call the server stuck.
_WATCH_GRACE: Final = 10.0
#: Names that cannot be an object, but that URL normalisation would turn into another path.
_UNADDRESSABLE: Final = frozenset({"", ".", ".."})
#: Seconds allowed for a TCP connection and TLS handshake: milliseconds when the
#: server is well, so a few seconds mean it is not (even on a busy machine).
CONNECT_TIMEOUT: Final = 5.0
#: Seconds allowed for a response once the request is sent (capped by the deadline).
REQUEST_TIMEOUT: Final = 30.0


# --- errors -------------------------------------------------------------------------------


def _not_found(name: str) -> NotFound:
    status = ApiStatus(
        code=404,
        reason="NotFound",
        message=f'configmaps "{name}" not found',
        details={"name": name, "kind": "configmaps"},
    )
    return NotFound(status.message, status=status)


# --- the store --------------------------------------------------------------------------


class KubernetesStore:
    """The Store contract over ConfigMaps in one namespace of a real API server.

    Args:
        namespace: the namespace every operation works in.
        api_client: the caller's ``kubernetes.client.ApiClient``; the store never
            closes it. With none, the store loads the kubeconfig (``KUBECONFIG``, else
            ``~/.kube/config``) or else the in-cluster config, and closes the client
            it built in :meth:`close`. Either way the store turns off the client's
            own (urllib3) retries: see the module docstring.
        request_timeout: seconds allowed for a response, or ``None`` for no limit.
        connect_timeout: seconds allowed to connect (TCP and TLS), or ``None``.

    Both timeouts are capped at what is left of the running retry policy's
    deadline, so an operation never outlives it by more than a moment.

    Raises:
        Unavailable: with no ``api_client``, when neither configuration can be loaded.
    """

    def __init__(
        self,
        namespace: str = "default",
        *,
        api_client: ApiClient | None = None,
        request_timeout: float | None = REQUEST_TIMEOUT,
        connect_timeout: float | None = CONNECT_TIMEOUT,
    ) -> None:
        self._owns_client = api_client is None
        if api_client is None:
            api_client = k8s.ApiClient(load_configuration())
        without_hidden_retries(api_client)
        self._api: Any = api_client
        self._namespace = namespace
        self._timeout = request_timeout
        self._connect_timeout = connect_timeout
        self._server = str(getattr(api_client.configuration, "host", "") or "")

    @classmethod
    def from_kubeconfig(
        cls,
        config_file: str | os.PathLike[str] | None = None,
        *,
        context: str | None = None,
        namespace: str | None = None,
        request_timeout: float | None = REQUEST_TIMEOUT,
        connect_timeout: float | None = CONNECT_TIMEOUT,
    ) -> Self:
        """A store on a kubeconfig's cluster and credentials; it owns (and closes) its client.

        Args:
            config_file: the kubeconfig; ``KUBECONFIG`` or ``~/.kube/config`` by default.
            context: the context to use; the current one by default.
            namespace: the namespace; the context's (or ``default``) by default.
            request_timeout: as for the constructor.
            connect_timeout: as for the constructor.

        Raises:
            Unavailable: the kubeconfig cannot be loaded.
        """
        configuration = load_configuration(config_file, context=context, in_cluster_fallback=False)
        if namespace is None:
            namespace = kubeconfig_namespace(config_file, context)
        store = cls(
            namespace,
            api_client=k8s.ApiClient(configuration),
            request_timeout=request_timeout,
            connect_timeout=connect_timeout,
        )
        store._owns_client = True
        return store

    @classmethod
    def from_environment(
        cls,
        namespace: str | None = None,
        *,
        kubeconfig: str | os.PathLike[str] | None = None,
        context: str | None = None,
    ) -> Self:
        """A store configured as kubectl is; it owns (and closes) its client.

        The kubeconfig (``kubeconfig``, else ``KUBECONFIG``, else
        ``~/.kube/config``) with ``context`` (else its current one); when
        neither was named and no kubeconfig loads, the pod's service account.
        ``namespace``, else the context's (or the pod's), else ``default``.

        Raises:
            Unavailable: no configuration can be loaded.
        """
        configuration, default = configuration_and_namespace(kubeconfig, context=context)
        store = cls(namespace or default, api_client=k8s.ApiClient(configuration))
        store._owns_client = True
        return store

    @property
    def namespace(self) -> str:
        """The namespace the store works in."""
        return self._namespace

    @property
    def api_client(self) -> ApiClient:
        """The client the store talks through (for the same server's other APIs)."""
        return cast("ApiClient", self._api)

    # -- transport -------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        name: str | None = None,
        query: Iterable[tuple[str, str]] = (),
        body: Any = None,
        accept: str = _JSON,
        content_type: str = _JSON,
        timeout: Any = None,
    ) -> Any:
        """Send one request; return the client's unread response (status checked by callers)."""
        path_params = {"namespace": self._namespace}
        if name is not None:
            path_params["name"] = name
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        method, url, headers, body, post = self._api.param_serialize(
            method=method,
            resource_path=path,
            path_params=path_params,
            query_params=list(query),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        return self._api.call_api(
            method,
            url,
            header_params=headers,
            body=body,
            post_params=post,
            _request_timeout=timeout if timeout is not None else self._timeouts(),
        )

    def _timeouts(self) -> tuple[float | None, float | None]:
        """(connect, read) timeouts: the store's, capped at the retry deadline's remainder."""
        connect, read = self._connect_timeout, self._timeout
        if connect is None or (read is not None and read < connect):
            connect = read  # a request timeout bounds the whole request, connecting included
        left = remaining()
        if left is None:
            return connect, read
        if left <= 0:
            raise Unavailable(f"the retry deadline passed before a request to {self._server}")
        return (
            left if connect is None else min(connect, left),
            left if read is None else min(read, left),
        )

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request, read it whole; return the decoded JSON body or raise our error."""
        with translated(self._server):
            response = self._send(method, path, **kwargs)
            raw = response.read()
            if not 200 <= response.status <= 299:
                raise error_from_status(response.status, raw or response.reason)
            return json.loads(raw) if raw else {}

    # -- the contract ----------------------------------------------------------------

    def get(self, name: str) -> StoredObject:
        """Return the object.

        Raises:
            NotFound: there is no such object.
        """
        if name in _UNADDRESSABLE:
            raise _not_found(name)
        return to_stored(self._request("GET", _CONFIGMAP, name=name))

    def create(self, obj: StoredObject) -> StoredObject:
        """Create the object (its resourceVersion ignored) and return it as stored.

        Raises:
            AlreadyExists: the name is taken.
            InvalidObject: the name, labels, annotations, keys or size break the API's rules.
        """
        body = to_manifest(obj, namespace=self._namespace, with_version=False)
        return to_stored(
            self._request("POST", _CONFIGMAPS, query=[("fieldManager", _FIELD_MANAGER)], body=body)
        )

    def replace(self, obj: StoredObject) -> StoredObject:
        """Replace the object if it is still at ``obj.resource_version``: one PUT.

        As on the API server, an empty ``resource_version`` replaces unconditionally.

        Raises:
            Conflict: the object changed since that version.
            NotFound: the object is gone.
            InvalidObject: as for ``create``.
        """
        if obj.name in _UNADDRESSABLE:
            raise _not_found(obj.name)
        body = to_manifest(obj, namespace=self._namespace, with_version=True)
        return to_stored(
            self._request(
                "PUT",
                _CONFIGMAP,
                name=obj.name,
                query=[("fieldManager", _FIELD_MANAGER)],
                body=body,
            )
        )

    def annotate(
        self,
        name: str,
        annotations: Mapping[str, str | None],
        *,
        expect: Mapping[str, str | None] | None = None,
        labels: Mapping[str, str | None] | None = None,
        resource_version: str | None = None,
    ) -> StoredObject:
        """Merge ``annotations`` and ``labels`` into the object: one PATCH, no data sent.

        With no ``expect``, a JSON merge patch; ``None`` removes a key. With
        ``expect``, a JSON patch whose ``test`` operations check those values
        first (a ``null`` value tests that the key is absent). A
        ``resource_version`` goes into the patched metadata, so the server
        refuses (409) an object that has moved on.

        Raises:
            NotFound: there is no such object.
            Conflict: the object is no longer at ``resource_version``, or an
                expected annotation has another value; nothing was written.
            InvalidObject: the annotations or labels break the API's rules.
            InvalidInput: a key is removed that ``expect`` does not expect present.
            Unavailable: ``resource_version`` is not a number (the server's 500).
        """
        if name in _UNADDRESSABLE:
            raise _not_found(name)
        check_expectations(annotations, expect)
        content_type, body = metadata_patch(
            annotations, labels=labels, expect=expect, resource_version=resource_version
        )
        try:
            return to_stored(
                self._request(
                    "PATCH",
                    _CONFIGMAP,
                    name=name,
                    query=[("fieldManager", _FIELD_MANAGER)],
                    body=body,
                    content_type=content_type,
                )
            )
        except InvalidObject as e:
            # A failed test is a bare 422 with no causes; a refused value names its field.
            if not expect or e.status.details.get("causes"):
                raise
            raise Conflict(
                f"annotations of configmaps {name!r} are not as expected", status=e.status
            ) from e

    def record_event(
        self,
        obj: StoredObject,
        *,
        reason: str,
        message: str,
        type: str = "Normal",  # noqa: A002 - the Event's own field name
        action: str = "",
    ) -> None:
        """Create an ``events.k8s.io/v1`` Event regarding the ConfigMap; never raise.

        ``kubectl describe cm`` and ``kubectl get events`` show it. A failure
        (Forbidden, a server down or hung: at most ``EVENT_TIMEOUT``) is logged
        to ``remstate.events`` and swallowed (``kubernetes_events``).
        """
        record_event(
            self._api,
            self._namespace,
            obj,
            reason=reason,
            message=message,
            type=type,
            action=action,
        )

    def delete(
        self, name: str, *, uid: str | None = None, resource_version: str | None = None
    ) -> None:
        """Delete the object, if it still has this uid and resourceVersion (when given).

        Raises:
            NotFound: there is no such object.
            Conflict: a precondition did not hold; nothing was deleted.
        """
        if name in _UNADDRESSABLE:
            raise _not_found(name)
        body = None
        if uid or resource_version:
            with translated(self._server):
                body = k8s.V1DeleteOptions(
                    preconditions=k8s.V1Preconditions(
                        uid=uid or None, resource_version=resource_version or None
                    )
                )
        self._request("DELETE", _CONFIGMAP, name=name, body=body)

    def list(
        self,
        *,
        label_selector: str = "",
        limit: int | None = None,
        continue_token: str | None = None,
        metadata_only: bool = False,
    ) -> ObjectList:
        """Return one page of the objects that match the label selector.

        With ``metadata_only``, the server sends a ``PartialObjectMetadataList``:
        no data crosses the wire, and each item's ``data`` is ``None``.

        Raises:
            Gone: the continue token has expired.
            InvalidObject: the label selector cannot be parsed.
        """
        query: list[tuple[str, str]] = []
        if label_selector:
            query.append(("labelSelector", label_selector))
        if limit:
            query.append(("limit", str(limit)))
        if continue_token:
            query.append(("continue", continue_token))
        body = self._request(
            "GET", _CONFIGMAPS, query=query, accept=_METADATA_LIST if metadata_only else _JSON
        )
        meta = body.get("metadata") or {}
        remaining = meta.get("remainingItemCount")
        return ObjectList(
            items=[to_stored(i, metadata_only=metadata_only) for i in body.get("items") or ()],
            resource_version=str(meta.get("resourceVersion", "")),
            continue_token=meta.get("continue") or None,
            remaining_item_count=int(remaining) if remaining is not None else None,
        )

    def watch(
        self,
        *,
        label_selector: str = "",
        resource_version: str | None = None,
        timeout_seconds: float | None = None,
    ) -> Iterator[WatchEvent]:
        """Yield changes after ``resource_version`` until the timeout.

        Without a resourceVersion, the API server first sends an ADDED event
        for each object that exists, then the changes from then on.

        Raises:
            Gone: the resourceVersion is too old to watch from.
        """
        query = [("watch", "true")]
        if label_selector:
            query.append(("labelSelector", label_selector))
        if resource_version:
            query.append(("resourceVersion", resource_version))
        deadline = None
        read_timeout = None
        if timeout_seconds is not None:
            deadline = time.monotonic() + timeout_seconds
            server_timeout = max(1, math.ceil(timeout_seconds))
            query.append(("timeoutSeconds", str(server_timeout)))
            read_timeout = server_timeout + _WATCH_GRACE
        # The connect timeout is the store's; the stream may stay silent up to the deadline.
        return self._watch(query, deadline, (self._connect_timeout, read_timeout))

    # Grade C on purpose: one loop reads the stream and tells apart each way a
    # watch ends (timeout, server stuck, error event, broken stream).
    def _watch(
        self, query: Iterable[tuple[str, str]], deadline: float | None, timeout: Any
    ) -> Iterator[WatchEvent]:
        with translated(self._server):
            response = self._send("GET", _CONFIGMAPS, query=query, timeout=timeout)
        raw = response.response  # the urllib3 response, still unread
        try:
            if not 200 <= response.status <= 299:
                with translated(self._server):
                    body = response.read()
                raise error_from_status(response.status, body or response.reason)
            lines = _lines(raw)
            while True:
                with translated(self._server):
                    line = next(lines, None)
                    if line is None:
                        return
                    event = json.loads(line)
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    # 410 when the resourceVersion is too old: our Gone.
                    raise error_from_status(int(obj.get("code") or 0), obj)
                if kind in WatchEventType.__members__:
                    yield WatchEvent(WatchEventType(kind), to_stored(obj))
                # BOOKMARK and anything newer are not changes of ours: skip them.
                if deadline is not None and time.monotonic() >= deadline:
                    return
        finally:
            # The stream may be unfinished: close the connection rather than reuse it.
            with contextlib.suppress(Exception):
                raw.close()
                raw.release_conn()

    def close(self) -> None:
        """Release the connections of the client the store built; a caller's client stays open."""
        if self._owns_client:
            with contextlib.suppress(Exception):
                self._api.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _lines(response: Any) -> Iterator[bytes]:
    """The lines of a streamed body, each as soon as its chunk arrives."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=True):
        buffer += chunk
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                break
            line, buffer = buffer[:end], buffer[end + 1 :]
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer
