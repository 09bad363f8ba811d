"""One JSON request to the API server through the service's own client: our errors out.

The constraint this module lives under: the service's reviews (TokenReview,
SubjectAccessReview, SelfSubjectAccessReview) and its Lease go through the
**store's** ``ApiClient``, so they use the same server, TLS, credentials and
no-hidden-retries setting as every state request, and no client exception
escapes: the store's ``translated`` and ``error_from_status`` map failures to
our tree (``Unavailable`` when the server cannot be reached, ``Forbidden``,
``Conflict``, ``NotFound`` ...). Plain JSON bodies, as the store sends, rather
than the generated models: one conversion, and the Lease's MicroTime fields
are written exactly as the API server writes them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from remstate.store.kubernetes_errors import error_from_status, translated

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["TIMEOUT", "call"]

_JSON: Final = "application/json"
#: (connect, read) seconds for one review or Lease request: they are small, and a
#: caller (or the elector's renew deadline) is waiting on each.
TIMEOUT: Final = (5.0, 10.0)


def call(
    api: ApiClient,
    method: str,
    path: str,
    *,
    body: Any = None,
    timeout: tuple[float, float] = TIMEOUT,
) -> dict[str, Any]:
    """Send one request; return the decoded JSON body.

    Args:
        api: the client (the store's).
        method: ``GET``, ``POST`` or ``PUT``.
        path: the resource path, names already in it.
        body: a JSON-serialisable body, or None.
        timeout: (connect, read) seconds.

    Raises:
        StoreError: the server's refusal as our error (``Forbidden``,
            ``Conflict``, ``NotFound``, ``AlreadyExists``...), or
            ``Unavailable`` when it cannot be reached or fails.
    """
    client: Any = api
    server = str(getattr(client.configuration, "host", "") or "")
    headers = {"Accept": _JSON}
    if body is not None:
        headers["Content-Type"] = _JSON
    with translated(server):
        method, url, headers, body, post = client.param_serialize(
            method=method,
            resource_path=path,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = client.call_api(
            method,
            url,
            header_params=headers,
            body=body,
            post_params=post,
            _request_timeout=timeout,
        )
        raw = response.read()
        if not 200 <= response.status <= 299:
            raise error_from_status(response.status, raw or response.reason)
        decoded = json.loads(raw) if raw else {}
    return decoded if isinstance(decoded, dict) else {}
