"""Every Kubernetes permission the service uses: one list for the code, RBAC and ``/readyz``.

The constraint this module lives under: **exactly what is used, nothing
more.** Each entry is a verb the service's code calls (the Kubernetes store's
requests on ConfigMaps, its Events, the leader election's Lease, and the
TokenReview and SubjectAccessReview of the in-cluster authentication), and
each of those calls has its entry. Three things hold to this list:

- ``deploy/base``'s Role and ClusterRole grant exactly these verbs (a test
  compares them);
- ``/readyz`` asks the API server about each of them (SelfSubjectAccessReview);
- ``tests/test_deploy.py`` runs the store's operations as the ServiceAccount
  with these rules and nothing else, and shows each store verb (ConfigMaps,
  Events) is needed: without it, the operation that uses it is refused. The
  Lease and review verbs are checked there as allowed; their "needed" cases
  come with the code that uses them.

Which request is which verb (the API server's own mapping): GET of one
object ``get``, of a collection ``list``, with ``watch=true`` ``watch``;
POST ``create``; PUT ``update``; PATCH ``patch``; DELETE ``delete``.
Pure data; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "ALL",
    "CLUSTER",
    "NAMESPACED",
    "Permission",
    "rbac_rules",
]


@dataclass(frozen=True, order=True)
class Permission:
    """One verb on one resource, as RBAC and SelfSubjectAccessReview name it.

    Attributes:
        group: the API group, ``""`` for the core group.
        resource: the plural resource name (``configmaps``).
        verb: the RBAC verb (``get``, ``list``, ``watch``, ``create``, ...).
        namespaced: in the service's own namespace (a Role) or cluster-wide
            (a ClusterRole).
        why: the code that uses it, for people reading a refusal.
    """

    group: str
    resource: str
    verb: str
    namespaced: bool
    #: Not part of the identity: two entries for the same verb are the same permission.
    why: str = field(default="", compare=False)

    def __str__(self) -> str:
        """``verb resource.group``, as ``kubectl auth can-i`` takes it."""
        qualified = f"{self.resource}.{self.group}" if self.group else self.resource
        return f"{self.verb} {qualified}"


def _each(
    group: str, resource: str, verbs: dict[str, str], *, namespaced: bool
) -> tuple[Permission, ...]:
    return tuple(Permission(group, resource, verb, namespaced, why) for verb, why in verbs.items())


#: In the service's namespace: a Role.
NAMESPACED: Final[tuple[Permission, ...]] = (
    *_each(
        "",
        "configmaps",
        {
            "get": "read a state (KubernetesStore.get)",
            "list": "list and page states, cleanup scans (KubernetesStore.list)",
            "watch": "follow changes (KubernetesStore.watch)",
            "create": "a new state, snapshot or segment (KubernetesStore.create)",
            "update": "every compare-and-swap write (KubernetesStore.replace)",
            "patch": "soft delete and restore marks (KubernetesStore.annotate)",
            "delete": "delete and purge (KubernetesStore.delete)",
        },
        namespaced=True,
    ),
    *_each(
        "events.k8s.io",
        "events",
        {"create": "what cleanup and recovery did (kubernetes_events.record_event)"},
        namespaced=True,
    ),
    *_each(
        "coordination.k8s.io",
        "leases",
        {
            "get": "read the leader Lease",
            "create": "take the Lease when there is none",
            "update": "renew, take over or release the Lease",
        },
        namespaced=True,
    ),
)

#: Cluster-wide: a ClusterRole. Review requests are not namespaced.
CLUSTER: Final[tuple[Permission, ...]] = (
    *_each(
        "authentication.k8s.io",
        "tokenreviews",
        {"create": "authenticate a request's bearer token"},
        namespaced=False,
    ),
    *_each(
        "authorization.k8s.io",
        "subjectaccessreviews",
        {"create": "authorize a request against RBAC on configmaps"},
        namespaced=False,
    ),
)

ALL: Final[tuple[Permission, ...]] = NAMESPACED + CLUSTER


def rbac_rules(permissions: Iterable[Permission]) -> list[dict[str, list[str]]]:
    """The RBAC ``rules`` granting exactly ``permissions``: one rule per group and resource.

    Sorted by group, resource and verb, so two rule lists compare equal when
    they grant the same verbs (the shape ``deploy/base`` writes them in).
    """
    verbs: dict[tuple[str, str], set[str]] = {}
    for p in permissions:
        verbs.setdefault((p.group, p.resource), set()).add(p.verb)
    return [
        {"apiGroups": [group], "resources": [resource], "verbs": sorted(found)}
        for (group, resource), found in sorted(verbs.items())
    ]
