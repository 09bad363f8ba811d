"""Cleanup at scale: 2,000 states scanned in pages of 100, metadata only.

On Kubernetes, a recording client sees every request the run sends and
every response body: the scan is 20 list requests, each with a label
selector and a limit, and no response carries a data key. On the embedded
store, a recording store sees the same calls. The states are created with
raw store creates (the manager would take longer, for nothing tested here);
each carries a marker in its data, which must never cross the wire.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from remstate.cleanup import Cleaner
from remstate.schema import TaskState, state_object
from remstate.store import Store
from remstate.store.kubernetes import KubernetesStore
from remstate.testing.controlplane import ControlPlane
from tests.backends import RecordingApiClient

STATES = 2_000
EXPIRED = 10
PAGE = 100
RECENT = datetime(2026, 11, 20, tzinfo=UTC)
OLD = RECENT - timedelta(days=30)
NOW = RECENT + timedelta(days=1)
HEADS = "app.kubernetes.io/managed-by=remstate,remstate.io/role=state"


def fill(store: Store, marker: str) -> None:
    """2,000 heads, the first 10 last updated long ago, each holding ``marker`` in its data."""

    def create(i: int) -> None:
        when = OLD if i < EXPIRED else RECENT
        state = TaskState.new(f"s{i:04d}", clock=lambda: when, metadata={"marker": marker})
        store.create(state_object(state))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(STATES)))


def run(store: Store) -> Any:
    return Cleaner(store, clock=lambda: NOW, page_size=PAGE, rate=None).run(ttl="7d")


@pytest.fixture
def recorded(
    controlplane: ControlPlane, controlplane_namespace: str
) -> Iterator[tuple[RecordingApiClient, KubernetesStore]]:
    with (
        RecordingApiClient.like(controlplane) as api,
        KubernetesStore(controlplane_namespace, api_client=api) as store,
    ):
        yield api, store


def test_kubernetes_scan_is_twenty_metadata_pages(
    recorded: tuple[RecordingApiClient, KubernetesStore], record_property: Any
) -> None:
    """20 label-selected list requests of 100, no data in any response; 10 patches, 10 Events."""
    api, store = recorded
    marker = "MARKER-" + uuid.uuid4().hex
    fill(store, marker)
    api.requests.clear()
    api.responses.clear()

    report = run(store)

    assert (report.scanned, report.pages, report.soft_deleted) == (STATES, 20, EXPIRED)
    every_list = [
        (parse_qs(urlparse(url).query), response)
        for (method, url), response in zip(api.requests, api.responses, strict=True)
        if method == "GET" and urlparse(url).path.endswith("/configmaps")
    ]
    for query, response in every_list:
        assert query["labelSelector"][0].startswith("app.kubernetes.io/managed-by=remstate,")
        assert query["limit"] == [str(PAGE)]
        assert marker.encode() not in response.data
        assert b'"data"' not in response.data
        assert b"PartialObjectMetadataList" in response.data
    lists = [
        (query, response)
        for query, response in every_list
        if query["labelSelector"]
        == ["app.kubernetes.io/managed-by=remstate,remstate.io/role=state"]
    ]
    assert len(lists) == STATES // PAGE
    # The orphan scan (segments and snapshots, of which there are none): one page.
    assert len(every_list) == len(lists) + 1
    methods = sorted(method for method, _ in api.requests)
    assert methods.count("PATCH") == EXPIRED
    assert methods.count("POST") == EXPIRED  # the Events
    assert len(api.requests) == len(every_list) + 2 * EXPIRED
    scanned_bytes = sum(len(response.data) for _, response in lists)
    record_property("scan_requests", len(lists))
    record_property("scan_bytes", scanned_bytes)
    print(
        f"\nkubernetes: {len(api.requests)} requests ({len(lists)} list pages), "
        f"{scanned_bytes} bytes of list responses, {scanned_bytes / STATES:.0f} per state"
    )


class RecordingStore:
    """A real store that records each list call's arguments and what it returned."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.lists: list[dict[str, Any]] = []
        self.items_with_data = 0
        self.calls: list[str] = []

    @property
    def namespace(self) -> str:
        return self.inner.namespace

    def list(self, **kwargs: Any) -> Any:
        self.calls.append("list")
        self.lists.append(kwargs)
        page = self.inner.list(**kwargs)
        self.items_with_data += sum(item.data is not None for item in page.items)
        return page

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def recorded(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attr(*args, **kwargs)

        return recorded


def test_embedded_scan_is_twenty_metadata_pages(tmp_path: Any) -> None:
    """The same scan on the embedded store: 20 metadata-only pages of 100, no data read."""
    from remstate.store.embedded import EmbeddedStore

    with EmbeddedStore(str(tmp_path / "state.db")) as inner:
        fill(inner, "MARKER")
        store = RecordingStore(inner)
        report = run(store)  # type: ignore[arg-type]
    assert (report.scanned, report.pages, report.soft_deleted) == (STATES, 20, EXPIRED)
    heads = [call for call in store.lists if call["label_selector"].endswith("role=state")]
    assert len(heads) == 20
    assert len(store.lists) == 21  # and one page of the orphan scan, which finds none
    assert all(call["metadata_only"] and call["limit"] == PAGE for call in store.lists)
    assert store.items_with_data == 0
    assert sorted(store.calls) == sorted(
        ["list"] * 21 + ["annotate"] * EXPIRED + ["record_event"] * EXPIRED
    )
