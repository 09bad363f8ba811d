"""The service's authorizer in a cluster: TokenReview, then SubjectAccessReview, as kubectl's.

The constraints this module lives under:

- **The same RBAC that governs kubectl governs the API.** A request's bearer
  token is authenticated by the API server (TokenReview, authentication.k8s.io/v1),
  and the user it names (with groups, uid and extra) is authorized for each
  verb the route needs on ``configmaps`` in the store's namespace
  (SubjectAccessReview, authorization.k8s.io/v1). We decide nothing ourselves.
- **Decisions are cached briefly** (10 s by default), keyed by a hash of the
  token (never the token itself) and the verb, in a bounded cache: a revoked
  RoleBinding takes effect within the ttl. Failures to reach the API server
  are never cached.
- **Refusals say what is missing:** no token is 401 (with ``WWW-Authenticate:
  Bearer``, added by ``problems``), a token the API server does not accept is
  401, a verb refused is 403 naming the verb and the resource.
- **An API server that cannot be reached is 503**, never a refusal: the
  store's ``Unavailable``. The service's own lack of rights to review
  (its ClusterRole missing) is 503 too, with the permission named: the
  caller did nothing wrong; ``/readyz`` names it as well (``kube_readiness``).
- Requests go through the store's ``ApiClient`` (``kube_api.call``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, Counter
from starlette.requests import Request

from remstate.errors import Forbidden, Unavailable
from remstate.service.auth import RESOURCE, Caller, Verb, bearer_token, refuse
from remstate.service.checks import ReadinessCheck
from remstate.service.kube_api import call
from remstate.service.problems import NotAuthenticated
from remstate.service.ttlcache import TTLCache

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["DEFAULT_CACHE_TTL", "Identity", "KubernetesAuthorizer"]

#: Seconds a decision is reused: a revoked binding takes effect within this.
DEFAULT_CACHE_TTL: Final = 10.0
#: Decisions kept at most: distinct (token, verb) pairs in one ttl.
DEFAULT_CACHE_ENTRIES: Final = 4096
_TOKENREVIEWS: Final = "/apis/authentication.k8s.io/v1/tokenreviews"
_SUBJECTACCESSREVIEWS: Final = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a token belongs to, as TokenReview says."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())

    @classmethod
    def from_status(cls, user: dict[str, Any]) -> Identity:
        extra = user.get("extra") or {}
        return cls(
            username=str(user.get("username") or ""),
            uid=str(user.get("uid") or ""),
            groups=tuple(str(g) for g in user.get("groups") or ()),
            extra=tuple(sorted((str(k), tuple(str(v) for v in vs)) for k, vs in extra.items())),
        )


@dataclass(frozen=True, slots=True)
class _Authentication:
    """A cached TokenReview: who the token names, None if it is not accepted."""

    identity: Identity | None


@dataclass(frozen=True, slots=True)
class _Decision:
    """A cached answer for one (token, verb): who, and whether allowed (None: not authenticated)."""

    identity: Identity | None
    allowed: bool
    reason: str = ""


def _own_right(what: str, error: Forbidden) -> Unavailable:
    # The service's own ServiceAccount may not review: an operator's fix, not the caller's.
    return Unavailable(
        f"this service may not create {what} (its ClusterRole is missing?): {error.message}"
    )


class KubernetesAuthorizer:
    """Authorizes requests with the cluster's RBAC (the ``Authorizer`` protocol).

    Args:
        api_client: the client to send the reviews through (the store's).
        namespace: the store's namespace, where the ConfigMaps are.
        ttl: seconds a decision is reused (0: never).
        max_entries: decisions kept at most.
        clock: monotonic seconds, for the cache.
        readiness: the checks ``/readyz`` runs for this authorizer (see
            ``kube_readiness.permission_checks``).
        registry: where to count decisions taken from the cache or asked for
            (``remstate_auth_decisions_total{source="cache"|"review"}``).
    """

    def __init__(
        self,
        api_client: ApiClient,
        namespace: str,
        *,
        ttl: float = DEFAULT_CACHE_TTL,
        max_entries: int = DEFAULT_CACHE_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
        readiness: Sequence[ReadinessCheck] = (),
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._api = api_client
        self.namespace = namespace
        #: (token hash, verb) -> the decision; its hits and misses are the service's figure.
        self.cache: TTLCache[tuple[str, str], _Decision] = TTLCache(ttl, max_entries, clock=clock)
        #: token hash -> the TokenReview's answer, so several verbs cost one review.
        self.identities: TTLCache[str, _Authentication] = TTLCache(ttl, max_entries, clock=clock)
        self._readiness = tuple(readiness)
        self._decisions = (
            None
            if registry is None
            else Counter(
                "remstate_auth_decisions",
                "Authorization decisions, by where they came from: the cache or a review",
                ["source"],
                registry=registry,
            )
        )

    def authorize(self, request: Request, verbs: Sequence[Verb]) -> Caller:
        """The caller of ``request``, if every verb is allowed (see :meth:`check`)."""
        return self.check(bearer_token(request), verbs)

    def check(self, token: str | None, verbs: Sequence[Verb]) -> Caller:
        """The caller a token names, if it may use every verb on ConfigMaps in the namespace.

        Raises:
            NotAuthenticated: no token, or one the API server does not accept (401).
            NotAuthorized: a verb is refused (403, naming it and the resource).
            Unavailable: the API server cannot be reached, or refuses this
                service its reviews (503).
        """
        if token is None:
            raise NotAuthenticated("this service needs a bearer token (Authorization: Bearer …)")
        digest = hashlib.sha256(token.encode()).hexdigest()
        if not verbs:
            # Nothing to authorize, but the caller is still authenticated.
            identity = self._identity(token, digest)
            if identity is None:
                raise NotAuthenticated("the API server does not accept this bearer token")
            return Caller(identity.username, identity.groups)
        caller = Caller("")
        for verb in verbs:
            decision = self.cache.get((digest, verb))
            if decision is None:
                decision = self._decide(token, digest, verb)
                self.cache.put((digest, verb), decision)
                self._count("review")
            else:
                self._count("cache")
            if decision.identity is None:
                raise NotAuthenticated("the API server does not accept this bearer token")
            caller = Caller(decision.identity.username, decision.identity.groups)
            if not decision.allowed:
                raise refuse(caller, [verb], self.namespace)
        return caller

    def readiness_checks(self) -> Sequence[ReadinessCheck]:
        """The permission checks given at construction."""
        return self._readiness

    def _count(self, source: str) -> None:
        if self._decisions is not None:
            self._decisions.labels(source=source).inc()

    # -- the reviews -----------------------------------------------------------------------

    def _decide(self, token: str, digest: str, verb: str) -> _Decision:
        identity = self._identity(token, digest)
        if identity is None:
            return _Decision(None, allowed=False)
        return self._access(identity, verb)

    def _identity(self, token: str, digest: str) -> Identity | None:
        # One TokenReview per token and ttl, whatever the verbs asked for.
        known = self.identities.get(digest)
        if known is not None:
            return known.identity
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        }
        try:
            review = call(self._api, "POST", _TOKENREVIEWS, body=body)
        except Forbidden as e:
            raise _own_right("tokenreviews", e) from e
        status = review.get("status") or {}
        identity = (
            Identity.from_status(status.get("user") or {}) if status.get("authenticated") else None
        )
        self.identities.put(digest, _Authentication(identity))
        return identity

    def _access(self, identity: Identity, verb: str) -> _Decision:
        spec: dict[str, Any] = {
            "resourceAttributes": {
                "namespace": self.namespace,
                "verb": verb,
                "group": "",
                "resource": RESOURCE,
            },
            "user": identity.username,
            "groups": list(identity.groups),
            "extra": {k: list(v) for k, v in identity.extra},
        }
        if identity.uid:
            spec["uid"] = identity.uid
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": spec,
        }
        try:
            review = call(self._api, "POST", _SUBJECTACCESSREVIEWS, body=body)
        except Forbidden as e:
            raise _own_right("subjectaccessreviews", e) from e
        status = review.get("status") or {}
        allowed = bool(status.get("allowed")) and not status.get("denied")
        return _Decision(identity, allowed=allowed, reason=str(status.get("reason") or ""))
