"""The service's authorization in a cluster: TokenReview and SubjectAccessReview, for real.

Identities are ServiceAccounts of the test's namespace with a Role each
(a reader: get and list ConfigMaps; a writer: also create, update and
delete), their tokens obtained with TokenRequest from the real API server;
the users ``nobody`` and ``admin`` are the control plane's static tokens.
The service reviews with the admin's client, as a service with its
ClusterRole would. The cache is driven by a fake clock, never a sleep; only
RBAC's own propagation inside the API server is waited for (polled).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client
from prometheus_client import CollectorRegistry

from remstate.errors import InvalidInput, Unavailable
from remstate.service.auth import Verb
from remstate.service.kube_auth import KubernetesAuthorizer
from remstate.service.kube_readiness import can_i, permission_checks
from remstate.service.lease import LeaseElection, LeaseTiming
from remstate.service.permissions import ALL, Permission
from remstate.service.problems import NotAuthenticated, NotAuthorized
from remstate.service.replicas import authorizer_for, leadership_for
from remstate.store.kubernetes import KubernetesStore
from remstate.testing.controlplane import ControlPlane
from tests.service import build, problem

READER_VERBS = ["get", "list"]
WRITER_VERBS = ["get", "list", "create", "update", "delete"]
POD = {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Identities:
    namespace: str
    reader: str
    writer: str
    unbound: str


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """RBAC reaches the API server's authorizer through an informer: poll, briefly."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout:.0f}s")
        time.sleep(0.05)


def service_account_token(api: client.ApiClient, namespace: str, name: str) -> str:
    core = client.CoreV1Api(api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    )
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    issued = core.create_namespaced_service_account_token(name, namespace, request)
    return str(issued.status.token)


def grant(api: client.ApiClient, namespace: str, account: str, verbs: list[str]) -> None:
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name=account),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=verbs)],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=account),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name=account
            ),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name=account, namespace=namespace)
            ],
        ),
    )


def authorizer(api: client.ApiClient, namespace: str, **options: object) -> KubernetesAuthorizer:
    return KubernetesAuthorizer(api, namespace, **options)  # type: ignore[arg-type]


@pytest.fixture
def admin(controlplane: ControlPlane) -> Iterator[client.ApiClient]:
    with controlplane.api_client() as api:
        yield api


@pytest.fixture
def identities(admin: client.ApiClient, controlplane_namespace: str) -> Identities:
    ns = controlplane_namespace
    found = Identities(
        ns,
        reader=service_account_token(admin, ns, "reader"),
        writer=service_account_token(admin, ns, "writer"),
        unbound=service_account_token(admin, ns, "unbound"),
    )
    grant(admin, ns, "reader", READER_VERBS)
    grant(admin, ns, "writer", WRITER_VERBS)
    fresh = authorizer(admin, ns, ttl=0)
    wait_until(lambda: allowed(fresh, found.writer, "delete"), "the writer's Role in force")
    wait_until(lambda: allowed(fresh, found.reader, "list"), "the reader's Role in force")
    return found


def allowed(auth: KubernetesAuthorizer, token: str, verb: Verb) -> bool:
    try:
        auth.check(token, [verb])
    except NotAuthorized:
        return False
    return True


class TestKubernetesAuthorizer:
    @pytest.mark.parametrize("verb", WRITER_VERBS)
    def test_the_writer_may_use_every_verb(
        self, admin: client.ApiClient, identities: Identities, verb: Verb
    ) -> None:
        """A ServiceAccount bound to every verb gets through, named as the API server names it."""
        caller = authorizer(admin, identities.namespace).check(identities.writer, [verb])
        assert caller.name == f"system:serviceaccount:{identities.namespace}:writer"
        assert "system:serviceaccounts" in caller.groups

    @pytest.mark.parametrize("verb", ["create", "update", "delete"])
    def test_the_reader_is_refused_writes_naming_the_verb(
        self, admin: client.ApiClient, identities: Identities, verb: Verb
    ) -> None:
        """403 naming the verb refused, the resource and the namespace."""
        auth = authorizer(admin, identities.namespace)
        assert auth.check(identities.reader, ["get", "list"]).name.endswith(":reader")
        with pytest.raises(NotAuthorized) as refused:
            auth.check(identities.reader, ["get", verb])
        assert refused.value.verb == verb
        assert refused.value.resource == f"configmaps in namespace {identities.namespace}"
        assert f"may not {verb} configmaps" in str(refused.value)

    def test_a_token_bound_to_nothing_is_authenticated_but_refused(
        self, admin: client.ApiClient, identities: Identities
    ) -> None:
        """A valid token without a RoleBinding: 403, not 401."""
        with pytest.raises(NotAuthorized, match="unbound may not get configmaps"):
            authorizer(admin, identities.namespace).check(identities.unbound, ["get"])

    def test_rights_elsewhere_do_not_count_here(
        self, admin: client.ApiClient, identities: Identities, controlplane: ControlPlane
    ) -> None:
        """The writer's Role is in its namespace: a store in another namespace refuses it."""
        other = controlplane.create_namespace("elsewhere")
        with pytest.raises(NotAuthorized, match=f"in namespace {other}"):
            authorizer(admin, other).check(identities.writer, ["get"])

    @pytest.mark.parametrize("token", [None, "not-a-token", "a.b.c"])
    def test_no_token_or_a_bad_one_is_401(
        self, admin: client.ApiClient, controlplane_namespace: str, token: str | None
    ) -> None:
        """Missing or unknown to the API server: NotAuthenticated."""
        with pytest.raises(NotAuthenticated):
            authorizer(admin, controlplane_namespace).check(token, ["get"])

    def test_no_verbs_still_authenticates(
        self, admin: client.ApiClient, identities: Identities
    ) -> None:
        """A route that needs no verb still needs a token the API server accepts."""
        auth = authorizer(admin, identities.namespace)
        assert auth.check(identities.unbound, []).name.endswith(":unbound")
        with pytest.raises(NotAuthenticated):
            auth.check("not-a-token", [])
        with pytest.raises(NotAuthenticated):
            auth.check(None, [])

    def test_the_control_planes_static_users_are_reviewed_too(
        self, admin: client.ApiClient, controlplane: ControlPlane, controlplane_namespace: str
    ) -> None:
        """The admin (system:masters) may; nobody may not: any authenticator the server has."""
        auth = authorizer(admin, controlplane_namespace)
        assert auth.check(controlplane.admin_token, ["delete"]).name == "admin"
        with pytest.raises(NotAuthorized, match="nobody may not update"):
            auth.check(controlplane.tokens["nobody"], ["update"])

    def test_decisions_are_cached_and_a_revoked_binding_bites_after_the_ttl(
        self, admin: client.ApiClient, identities: Identities
    ) -> None:
        """Within the ttl the cached decision stands; once it passes, the revocation holds."""
        clock = Clock()
        auth = authorizer(admin, identities.namespace, ttl=1.0, clock=clock)
        assert auth.check(identities.writer, ["update"]).name.endswith(":writer")
        assert (auth.cache.hits, auth.cache.misses) == (0, 1)
        client.RbacAuthorizationV1Api(admin).delete_namespaced_role_binding(
            "writer", identities.namespace
        )
        fresh = authorizer(admin, identities.namespace, ttl=0)
        wait_until(lambda: not allowed(fresh, identities.writer, "update"), "revoked")
        clock.now += 0.9
        assert auth.check(identities.writer, ["update"]).name.endswith(":writer")  # cached
        assert auth.cache.hits == 1
        clock.now += 0.1
        with pytest.raises(NotAuthorized, match="may not update"):
            auth.check(identities.writer, ["update"])

    def test_one_token_review_serves_every_verb(
        self, admin: client.ApiClient, identities: Identities
    ) -> None:
        """Two verbs: one TokenReview (cached by token hash), one SubjectAccessReview each;
        the decisions' sources are counted for /metrics."""
        registry = CollectorRegistry()
        auth = authorizer(admin, identities.namespace, registry=registry)
        auth.check(identities.writer, ["create", "update"])
        assert (auth.identities.hits, auth.identities.misses) == (1, 1)
        assert auth.cache.misses == 2
        auth.check(identities.writer, ["create", "update"])
        assert auth.cache.hits == 2
        counted = registry.get_sample_value
        assert counted("remstate_auth_decisions_total", {"source": "review"}) == 2
        assert counted("remstate_auth_decisions_total", {"source": "cache"}) == 2
        assert identities.writer not in repr(auth.cache._entries)

    def test_the_service_without_review_rights_is_unavailable_not_forbidden(
        self, controlplane: ControlPlane, identities: Identities
    ) -> None:
        """The service's own ClusterRole missing: 503 naming tokenreviews, not the caller's 403."""
        with controlplane.api_client(controlplane.tokens["nobody"]) as api:
            auth = authorizer(api, identities.namespace)
            with pytest.raises(Unavailable, match="may not create tokenreviews"):
                auth.check(identities.writer, ["get"])
            assert len(auth.cache) == 0  # failures are never cached


class TestOverHttp:
    @pytest.fixture
    def http(self, admin: client.ApiClient, identities: Identities) -> Iterator[object]:
        store = KubernetesStore(identities.namespace, api_client=admin)
        test_client, manager = build(store, authorizer=authorizer(admin, identities.namespace))
        manager.increment_iteration("42")
        with test_client:
            yield test_client

    def test_no_token_is_401_with_www_authenticate(self, http: object) -> None:
        """No Authorization header: 401 and a Bearer challenge."""
        response = http.get("/api/v1/tasks/42")  # type: ignore[attr-defined]
        problem(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"].startswith("Bearer")

    def test_a_bad_token_is_401(self, http: object) -> None:
        """A token the API server does not know: 401."""
        response = http.get("/api/v1/tasks/42", headers={"Authorization": "Bearer nope"})  # type: ignore[attr-defined]
        problem(response, 401, "unauthenticated")

    def test_a_reader_reads_but_may_not_write(self, http: object, identities: Identities) -> None:
        """The reader's GET is 200; its increment is 403 naming the verb; nothing is written."""
        headers = {"Authorization": f"Bearer {identities.reader}"}
        assert http.get("/api/v1/tasks/42", headers=headers).status_code == 200  # type: ignore[attr-defined]
        refused = http.post("/api/v1/tasks/42/iterations", json={}, headers=headers)  # type: ignore[attr-defined]
        body = problem(refused, 403, "forbidden")
        assert "may not create configmaps" in body["detail"]
        state = http.get("/api/v1/tasks/42", headers=headers).json()  # type: ignore[attr-defined]
        assert state["iteration"] == 1

    def test_the_writer_writes(self, http: object, identities: Identities) -> None:
        """The writer's increment goes through."""
        headers = {"Authorization": f"Bearer {identities.writer}"}
        response = http.post("/api/v1/tasks/42/iterations", json={}, headers=headers)  # type: ignore[attr-defined]
        assert response.status_code in (200, 201), response.text
        assert response.json()["iteration"] == 2


class TestReadiness:
    def test_each_permission_is_a_named_check(self, admin: client.ApiClient) -> None:
        """One check per permission the service uses, named for it."""
        names = [c.name for c in permission_checks(admin, "default")]
        assert names == [f"permission: {p}" for p in ALL]
        assert "permission: update leases.coordination.k8s.io" in names

    def test_the_admin_has_every_permission(
        self, admin: client.ApiClient, controlplane_namespace: str
    ) -> None:
        """system:masters: every check passes."""
        for check in permission_checks(admin, controlplane_namespace):
            check.probe()

    def test_a_missing_permission_is_named(
        self, admin: client.ApiClient, controlplane: ControlPlane, identities: Identities
    ) -> None:
        """The reader has get and list only: the update check fails, naming it; get passes."""
        wanted = [
            Permission("", "configmaps", "get", True),
            Permission("", "configmaps", "update", True, "CAS"),
        ]
        with controlplane.api_client(identities.reader) as api:
            assert can_i(api, wanted[0], identities.namespace)[0]
            now = [0.0]
            get_check, update_check = permission_checks(
                api, identities.namespace, wanted, clock=lambda: now[0]
            )
            get_check.probe()
            with pytest.raises(
                Exception, match=f"may not update configmaps in namespace {identities.namespace}"
            ):
                update_check.probe()
            # /readyz is open: within the cache's 10 s, no review is sent again.
            calls: list[object] = []
            original = api.call_api

            def counted(*args: object, **kwargs: object) -> object:
                calls.append(args)
                return original(*args, **kwargs)

            api.call_api = counted
            now[0] = 9.0
            get_check.probe()
            assert calls == []
            now[0] = 10.5
            get_check.probe()
            assert len(calls) == 1

    def test_readyz_names_the_failing_permission(
        self, admin: client.ApiClient, controlplane: ControlPlane, identities: Identities
    ) -> None:
        """Over HTTP: 503, the failing checks listed by name, the passing ones not."""
        with controlplane.api_client(identities.reader) as api:
            store = KubernetesStore(identities.namespace, api_client=api)
            auth = KubernetesAuthorizer(
                admin, identities.namespace, readiness=permission_checks(api, identities.namespace)
            )
            test_client, _ = build(store, authorizer=auth)
            with test_client:
                response = test_client.get("/readyz")
        assert response.status_code == 503
        failed = response.json()["failed"]
        assert "permission: update configmaps" in failed
        assert "permission: create tokenreviews.authentication.k8s.io" in failed
        assert "permission: get configmaps" not in failed
        assert "permission: list configmaps" not in failed


class TestServeChoosesForKubernetes:
    def test_in_a_pod_rbac_decides_and_a_lease_elects(
        self, admin: client.ApiClient, controlplane_namespace: str, tmp_path: Path
    ) -> None:
        """A Kubernetes store in a pod: the Kubernetes authorizer (with every permission's
        check) and a Lease with the environment's timings; a token file is refused."""
        store = KubernetesStore(controlplane_namespace, api_client=admin)
        chosen = authorizer_for(store, host="127.0.0.1", token_file=None, environ=POD)
        assert isinstance(chosen, KubernetesAuthorizer)
        assert chosen.namespace == controlplane_namespace
        assert len(chosen.readiness_checks()) == len(ALL)
        token = tmp_path / "token"
        token.write_text("s3cret")
        with pytest.raises(InvalidInput, match="RBAC decides"):
            authorizer_for(store, host="127.0.0.1", token_file=token, environ=POD)
        timings = {
            "REMSTATE_LEASE_DURATION": "6",
            "REMSTATE_RENEW_DEADLINE": "4",
            "REMSTATE_RETRY_PERIOD": "1",
        }
        lease = leadership_for(store, identity="pod-1", environ=timings)
        assert isinstance(lease, LeaseElection)
        assert lease.timing == LeaseTiming(6, 4, 1)
        assert lease.try_acquire_or_renew()
        assert lease.holder() == "pod-1"
        lease.release()


@pytest.fixture(scope="module")
def own_plane() -> Iterator[ControlPlane]:
    """A control plane of this module's own: its outage touches no other test."""
    with ControlPlane.start() as started:
        yield started


class TestApiServerDown:
    def test_a_stopped_api_server_is_503_and_nothing_is_cached(
        self, own_plane: ControlPlane, tmp_path: Path
    ) -> None:
        """Down: Unavailable (HTTP 503 with Retry-After), never a 401/403; back up: allowed."""
        namespace = own_plane.create_namespace("auth-outage")
        with own_plane.api_client() as admin:
            auth = authorizer(admin, namespace)
            store = KubernetesStore(namespace, api_client=admin)
            test_client, _ = build(store, authorizer=auth)
            token = own_plane.admin_token
            own_plane.stop_apiserver()
            try:
                with pytest.raises(Unavailable, match="cannot reach the API server"):
                    auth.check(token, ["get"])
                with test_client:
                    response = test_client.get(
                        "/api/v1/tasks/42", headers={"Authorization": f"Bearer {token}"}
                    )
                problem(response, 503, "unavailable")
                assert response.headers["retry-after"]
                assert len(auth.cache) == 0
            finally:
                own_plane.start_apiserver()
            assert auth.check(token, ["get"]).name == "admin"
