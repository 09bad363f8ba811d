"""``/readyz`` in a cluster: does this service still have each permission it uses?

The constraint this module lives under: one named check per permission in
``remstate.service.permissions`` (the list RBAC is written from), each a
SelfSubjectAccessReview sent with the service's own credentials through the
store's client, so a RoleBinding removed or a verb dropped from the Role
makes the replica unready with the missing permission named
(``permission: update configmaps``), before a caller meets the refusal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final

from remstate.service.checks import ReadinessCheck
from remstate.service.kube_api import call
from remstate.service.permissions import ALL, Permission

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["PermissionMissing", "can_i", "permission_checks"]

_SELFSUBJECTACCESSREVIEWS: Final = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


class PermissionMissing(Exception):
    """The service's own credentials lack a permission it uses."""


def can_i(api: ApiClient, permission: Permission, namespace: str) -> tuple[bool, str]:
    """Whether the client's own credentials have ``permission``, and the API server's reason.

    Raises:
        StoreError: the review itself failed (``Unavailable`` when the server
            cannot be reached).
    """
    attributes = {
        "verb": permission.verb,
        "group": permission.group,
        "resource": permission.resource,
    }
    if permission.namespaced:
        attributes["namespace"] = namespace
    review = call(
        api,
        "POST",
        _SELFSUBJECTACCESSREVIEWS,
        body={
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        },
    )
    status = review.get("status") or {}
    allowed = bool(status.get("allowed")) and not status.get("denied")
    return allowed, str(status.get("reason") or "")


#: Seconds a permission's answer is reused: ``/readyz`` is open to anyone, and
#: must not turn each call into a dozen reviews on the API server.
CACHE_SECONDS: Final = 10.0


def permission_checks(
    api: ApiClient,
    namespace: str,
    permissions: Iterable[Permission] = ALL,
    *,
    cache_seconds: float = CACHE_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[ReadinessCheck, ...]:
    """One readiness check per permission, named ``permission: VERB RESOURCE``.

    An answer (allowed or not) is reused for ``cache_seconds``; a review that
    failed is asked again next time.
    """
    answers: dict[Permission, tuple[float, bool, str]] = {}

    def ask(permission: Permission) -> tuple[bool, str]:
        now = clock()
        cached = answers.get(permission)
        if cached is not None and now - cached[0] < cache_seconds:
            return cached[1], cached[2]
        allowed, reason = can_i(api, permission, namespace)
        answers[permission] = (now, allowed, reason)
        return allowed, reason

    def check(permission: Permission) -> ReadinessCheck:
        def probe() -> None:
            allowed, reason = ask(permission)
            if not allowed:
                where = f" in namespace {namespace}" if permission.namespaced else ""
                because = f" ({reason})" if reason else ""
                raise PermissionMissing(
                    f"this service may not {permission}{where}{because}: {permission.why}"
                )

        return ReadinessCheck(f"permission: {permission}", probe)

    return tuple(check(p) for p in permissions)
