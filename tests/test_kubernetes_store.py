"""The Kubernetes store's own edges, against the real API server.

What the contract suite (both backends) cannot say: one request per replace,
a metadata-only list that transfers no data, compaction answering 410 Gone,
the request-size limit, and that no client exception ever leaves
``KubernetesStore`` (kopf ``test_aiohttp_is_not_leaked_outside``).
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from remstate.errors import (
    AlreadyExists,
    ApiStatus,
    Conflict,
    Forbidden,
    Gone,
    InvalidInput,
    InvalidObject,
    NotFound,
    StoreError,
    Unavailable,
)
from remstate.store import Store, StoredObject
from remstate.store.kubernetes import KubernetesStore, error_from_status, translate_error
from remstate.testing.controlplane import ControlPlane
from tests.backends import RecordingApiClient

pytestmark = pytest.mark.kubernetes


@pytest.fixture
def admin_store(
    controlplane_api_client: client.ApiClient, controlplane_namespace: str
) -> Iterator[KubernetesStore]:
    """The admin's store in this test's namespace."""
    with KubernetesStore(controlplane_namespace, api_client=controlplane_api_client) as store:
        yield store


class TestKubernetesStore:
    def test_replace_is_one_request(
        self, controlplane: ControlPlane, controlplane_namespace: str
    ) -> None:
        """An uncontended replace costs exactly one HTTP request."""
        with (
            RecordingApiClient.like(controlplane) as api,
            KubernetesStore(controlplane_namespace, api_client=api) as s,
        ):
            first = s.create(StoredObject(name="one", data={"n": "1"}))
            api.responses.clear()
            s.replace(
                StoredObject(name="one", data={"n": "2"}, resource_version=first.resource_version)
            )
            assert len(api.responses) == 1

    def test_metadata_only_list_transfers_no_data(
        self, controlplane: ControlPlane, controlplane_namespace: str
    ) -> None:
        """The metadata-only list's response body holds no data: it is a few hundred bytes."""
        marker = "DATA-MARKER-" + uuid.uuid4().hex
        with (
            RecordingApiClient.like(controlplane) as api,
            KubernetesStore(controlplane_namespace, api_client=api) as s,
        ):
            s.create(StoredObject(name="big", data={"blob": marker + "x" * 500_000}))
            api.responses.clear()
            page = s.list(metadata_only=True)
            [response] = api.responses
            assert page.items[0].data is None
            assert marker.encode() not in response.data
            assert b'"data"' not in response.data
            assert len(response.data) < 4_000
            assert b"PartialObjectMetadataList" in response.data

            api.responses.clear()
            full = s.list()
            assert full.items[0].data is not None
            assert marker.encode() in api.responses[0].data

    def test_owner_references_and_creation_time_round_trip(
        self, admin_store: KubernetesStore
    ) -> None:
        """Owner references are written and read back; the creation time is aware."""
        from remstate.store import OwnerReference

        head = admin_store.create(StoredObject(name="head", data={}))
        owner = OwnerReference(
            api_version="v1",
            kind="ConfigMap",
            name="head",
            uid=head.uid,
            controller=True,
            block_owner_deletion=False,
        )
        seg = admin_store.create(StoredObject(name="head-h1", data={}, owner_references=(owner,)))
        assert seg.owner_references == (owner,)
        assert admin_store.get("head-h1").owner_references == (owner,)
        assert seg.creation_timestamp is not None
        assert seg.creation_timestamp.utcoffset() is not None

    def test_watch_from_a_compacted_version_is_gone(
        self, controlplane: ControlPlane, admin_store: KubernetesStore
    ) -> None:
        """A watch from a resourceVersion that etcd has compacted away raises Gone."""
        old = admin_store.create(StoredObject(name="old", data={})).resource_version
        # A watch from `old` starts at old + 1: compaction must pass that too.
        admin_store.create(StoredObject(name="new", data={}))
        admin_store.create(StoredObject(name="newer", data={}))
        controlplane.compact()
        with pytest.raises(Gone) as caught:
            list(admin_store.watch(resource_version=old, timeout_seconds=5))
        assert caught.value.status.code == 410

    def test_continue_token_after_compaction_is_gone(
        self, controlplane: ControlPlane, admin_store: KubernetesStore
    ) -> None:
        """A continue token issued before a compaction raises Gone."""
        for i in range(3):
            admin_store.create(StoredObject(name=f"p-{i}", data={}))
        first = admin_store.list(limit=1)
        assert first.continue_token
        admin_store.create(StoredObject(name="p-9", data={}))
        controlplane.compact()
        with pytest.raises(Gone) as caught:
            admin_store.list(limit=1, continue_token=first.continue_token)
        assert caught.value.status.code == 410

    def test_a_body_over_the_request_limit_is_invalid(self, admin_store: KubernetesStore) -> None:
        """A body over the API server's 3 MiB request limit is InvalidObject (413), not a crash."""
        with pytest.raises(InvalidObject) as caught:
            admin_store.create(StoredObject(name="huge", data={"a": "x" * (4 * 1024 * 1024)}))
        assert caught.value.status.code == 413

    def test_writing_a_metadata_only_object_is_refused(self, admin_store: KubernetesStore) -> None:
        """Writing back an object without data would erase it: refused, nothing sent."""
        with pytest.raises(InvalidInput):
            admin_store.replace(StoredObject(name="x", data=None, resource_version="5"))

    def test_is_a_store(self, admin_store: KubernetesStore) -> None:
        """KubernetesStore satisfies the Store protocol."""
        assert isinstance(admin_store, Store)


# --- no client exception escapes ---------------------------------------------------------

OPERATIONS: list[tuple[str, Callable[[KubernetesStore], object]]] = [
    ("get", lambda s: s.get("x")),
    ("create", lambda s: s.create(StoredObject(name="x", data={"k": "v"}))),
    ("replace", lambda s: s.replace(StoredObject(name="x", data={}, resource_version="1"))),
    ("annotate", lambda s: s.annotate("x", {"a": "1"})),
    ("annotate with expect", lambda s: s.annotate("x", {"a": "1"}, expect={"a": None})),
    (
        "annotate labels at a version",
        lambda s: s.annotate("x", {}, labels={"l": None}, resource_version="7"),
    ),
    ("delete", lambda s: s.delete("x", uid="u", resource_version="1")),
    ("list", lambda s: s.list(label_selector="a=b", limit=5, metadata_only=True)),
    ("watch", lambda s: next(iter(s.watch(timeout_seconds=1)), None)),
]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and then closes them without a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stopping.set()
        listener.close()
        thread.join(timeout=5)


def store_at(server: str, token: str, ca_file: str | None) -> KubernetesStore:
    configuration = client.Configuration(
        host=server,
        api_key={"BearerToken": token},
        api_key_prefix={"BearerToken": "Bearer"},
        ssl_ca_cert=ca_file,
    )
    configuration.retries = 0
    return KubernetesStore("default", api_client=client.ApiClient(configuration), request_timeout=5)


@pytest.mark.parametrize(("op", "call"), OPERATIONS, ids=[name for name, _ in OPERATIONS])
class TestNoClientExceptionEscapes:
    def _run(self, store: KubernetesStore, call: Callable[[KubernetesStore], object]) -> StoreError:
        try:
            with pytest.raises(StoreError) as caught:
                call(store)
        finally:
            cast(Any, store.api_client).close()  # the store does not own it
        assert not isinstance(caught.value, ApiException)
        assert caught.value.status.code
        return caught.value

    def test_closed_port_is_unavailable(
        self, op: str, call: Callable[[KubernetesStore], object]
    ) -> None:
        """Nothing listens: Unavailable, chained from the urllib3 error."""
        error = self._run(store_at(f"https://127.0.0.1:{_closed_port()}", "t", None), call)
        assert isinstance(error, Unavailable)
        assert isinstance(error.__cause__, urllib3.exceptions.HTTPError | OSError | ApiException)

    def test_connection_closed_without_answer_is_unavailable(
        self, op: str, call: Callable[[KubernetesStore], object], silent_server: int
    ) -> None:
        """The peer hangs up mid-handshake: Unavailable."""
        error = self._run(store_at(f"https://127.0.0.1:{silent_server}", "t", None), call)
        assert isinstance(error, Unavailable)

    def test_untrusted_certificate_is_unavailable(
        self, op: str, call: Callable[[KubernetesStore], object], controlplane: ControlPlane
    ) -> None:
        """A server whose certificate we do not trust is never talked to: Unavailable."""
        error = self._run(store_at(controlplane.server, controlplane.admin_token, None), call)
        assert isinstance(error, Unavailable)

    def test_bad_token_is_forbidden(
        self, op: str, call: Callable[[KubernetesStore], object], controlplane: ControlPlane
    ) -> None:
        """An unknown bearer token: Forbidden, carrying the server's 401 Status."""
        store = store_at(controlplane.server, "not-a-token", str(controlplane.ca_file))
        error = self._run(store, call)
        assert isinstance(error, Forbidden)
        assert (error.status.code, error.status.reason) == (401, "Unauthorized")


class TestRecordEventNeverRaises:
    """The failures above, met by ``record_event``: logged, never raised."""

    def _record(self, store: KubernetesStore, caplog: pytest.LogCaptureFixture) -> None:
        try:
            with caplog.at_level(logging.WARNING, logger="remstate.events"):
                store.record_event(StoredObject(name="x", uid="u"), reason="Purged", message="m")
        finally:
            cast(Any, store.api_client).close()
        assert [r for r in caplog.records if r.name == "remstate.events"]

    def test_closed_port(self, caplog: pytest.LogCaptureFixture) -> None:
        """Nothing listens: a warning, no exception."""
        self._record(store_at(f"https://127.0.0.1:{_closed_port()}", "t", None), caplog)

    def test_connection_closed_without_answer(
        self, silent_server: int, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The peer hangs up mid-handshake: a warning, no exception."""
        self._record(store_at(f"https://127.0.0.1:{silent_server}", "t", None), caplog)

    def test_bad_token(self, controlplane: ControlPlane, caplog: pytest.LogCaptureFixture) -> None:
        """An unknown bearer token (401): a warning, no exception."""
        store = store_at(controlplane.server, "not-a-token", str(controlplane.ca_file))
        self._record(store, caplog)
        assert "401" in caplog.records[-1].getMessage()


# --- the translation table (no server) ----------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (400, "BadRequest", InvalidObject),
        (401, "Unauthorized", Forbidden),
        (403, "Forbidden", Forbidden),
        (404, "NotFound", NotFound),
        (409, "AlreadyExists", AlreadyExists),
        (409, "Conflict", Conflict),
        (410, "Expired", Gone),
        (413, "RequestEntityTooLarge", InvalidObject),
        (422, "Invalid", InvalidObject),
        (429, "TooManyRequests", Unavailable),
        (500, "InternalError", Unavailable),
        (503, "ServiceUnavailable", Unavailable),
        (504, "Timeout", Unavailable),
    ],
)
class TestErrorTranslation:
    def test_status_maps_to_our_error(self, code: int, reason: str, expected: type) -> None:
        """Each API status becomes our error and keeps the server's Status as data."""
        import json

        body = json.dumps(ApiStatus(code, reason, f"m{code}", {"name": "x"}).to_dict())
        error = translate_error(ApiException(status=code, reason=reason, body=body))
        assert type(error) is expected
        assert error.status == ApiStatus(code, reason, f"m{code}", {"name": "x"})

    def test_non_status_body_still_maps_by_code(
        self, code: int, reason: str, expected: type
    ) -> None:
        """A body that is not a Status (a proxy's HTML) still maps by the HTTP code."""
        error = error_from_status(code, b"<html>bad gateway</html>")
        # Without a Status there is no reason to tell AlreadyExists from Conflict.
        assert type(error) is (Conflict if code == 409 else expected)
        assert error.status.code == code
        assert "bad gateway" in error.status.message


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (urllib3.exceptions.MaxRetryError(None, "/", "refused"), Unavailable),  # type: ignore[arg-type]
        (urllib3.exceptions.ProtocolError("reset"), Unavailable),
        (urllib3.exceptions.ReadTimeoutError(None, "/", "slow"), Unavailable),  # type: ignore[arg-type]
        (ConnectionRefusedError(), Unavailable),
        (ApiException(status=0, reason="SSLError"), Unavailable),
        (ValueError("bad field"), InvalidObject),
    ],
)
def test_transport_errors_translate(exc: BaseException, expected: type) -> None:
    """Network and client-side failures become Unavailable or InvalidObject."""
    assert type(translate_error(exc)) is expected
