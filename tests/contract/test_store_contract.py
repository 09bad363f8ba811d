"""The Store contract, run unchanged against both backends.

The Kubernetes run goes against the real kube-apiserver of the session; the
embedded run against a SQLite file. A difference between the two is a bug in
the embedded store.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from remstate.errors import (
    AlreadyExists,
    ApiStatus,
    Conflict,
    InvalidInput,
    InvalidObject,
    NotFound,
    RemstateError,
    StoreError,
)
from remstate.retry import RetryPolicy
from remstate.store import Store, StoredObject, WatchEvent, WatchEventType
from remstate.store.kubernetes import KubernetesStore
from remstate.store.kubernetes_events import EVENT_TIMEOUT
from remstate.testing.controlplane import ControlPlane
from tests.backends import StoreSpec, new_namespace
from tests.faults import hung_server
from tests.helpers import cm

MiB = 1_048_576


class TestCreateAndGet:
    def test_create_then_get_returns_the_object(self, store: Store) -> None:
        """A created object reads back with its data, labels, annotations and identity."""
        created = store.create(
            StoredObject(
                name="task-1-state",
                data={"iteration": "0", "json": '{"a": [1, 2]}', "unicode": "héllo ✓"},
                labels={"app.kubernetes.io/managed-by": "remstate"},
                annotations={"remstate.io/task-id": "Task 1/α"},
            )
        )
        assert created.resource_version
        assert created.uid
        assert created.creation_timestamp is not None
        assert created.creation_timestamp.tzinfo is not None

        got = store.get("task-1-state")
        assert got.data == {"iteration": "0", "json": '{"a": [1, 2]}', "unicode": "héllo ✓"}
        assert got.labels == {"app.kubernetes.io/managed-by": "remstate"}
        assert got.annotations == {"remstate.io/task-id": "Task 1/α"}
        assert got.uid == created.uid
        assert got.resource_version == created.resource_version

    def test_get_missing_raises_not_found(self, store: Store) -> None:
        """Getting a name that does not exist raises NotFound with the server's Status."""
        with pytest.raises(NotFound) as caught:
            store.get("no-such-object")
        assert caught.value.status.code == 404
        assert caught.value.status.reason == "NotFound"
        assert "no-such-object" in caught.value.status.message

    def test_create_taken_name_raises_already_exists(self, store: Store) -> None:
        """Creating a name that is taken raises AlreadyExists and changes nothing."""
        store.create(cm("taken", {"v": "first"}))
        with pytest.raises(AlreadyExists) as caught:
            store.create(cm("taken", {"v": "second"}))
        assert caught.value.status.code == 409
        assert caught.value.status.reason == "AlreadyExists"
        assert store.get("taken").data == {"v": "first"}

    def test_empty_data_round_trips(self, store: Store) -> None:
        """An object with no data reads back with empty data, not None."""
        store.create(StoredObject(name="empty", data={}))
        assert store.get("empty").data == {}


class TestReplace:
    def test_replace_with_current_version_succeeds(self, store: Store) -> None:
        """Replace at the current resourceVersion writes and returns a new version."""
        first = store.create(cm("r", {"n": "1"}))
        second = store.replace(
            StoredObject(name="r", data={"n": "2"}, resource_version=first.resource_version)
        )
        assert second.resource_version != first.resource_version
        assert second.uid == first.uid
        assert store.get("r").data == {"n": "2"}

    def test_replace_with_stale_version_raises_conflict(self, store: Store) -> None:
        """Replace at a stale resourceVersion raises Conflict and writes nothing."""
        first = store.create(cm("r", {"n": "1"}))
        store.replace(
            StoredObject(name="r", data={"n": "2"}, resource_version=first.resource_version)
        )
        with pytest.raises(Conflict) as caught:
            store.replace(
                StoredObject(name="r", data={"n": "3"}, resource_version=first.resource_version)
            )
        assert caught.value.status.code == 409
        assert caught.value.status.reason == "Conflict"
        assert store.get("r").data == {"n": "2"}

    def test_replace_missing_object_raises_not_found(self, store: Store) -> None:
        """Replace of an object that does not exist raises NotFound."""
        first = store.create(cm("gone"))
        store.delete("gone")
        with pytest.raises(NotFound):
            store.replace(
                StoredObject(name="gone", data={"k": "v"}, resource_version=first.resource_version)
            )

    def test_resource_versions_increase_across_objects(self, store: Store) -> None:
        """Every write gets a resourceVersion newer than any before it, on any object."""
        a = store.create(cm("a"))
        b = store.create(cm("b"))
        a2 = store.replace(
            StoredObject(name="a", data={"k": "2"}, resource_version=a.resource_version)
        )
        versions = [int(a.resource_version), int(b.resource_version), int(a2.resource_version)]
        assert versions == sorted(versions)
        assert len(set(versions)) == 3


class TestDelete:
    def test_delete_removes_the_object(self, store: Store) -> None:
        """Delete removes the object; a second delete raises NotFound, worded as the server does."""
        store.create(cm("d"))
        store.delete("d")
        with pytest.raises(NotFound):
            store.get("d")
        with pytest.raises(NotFound) as caught:
            store.delete("d")
        assert caught.value.status.message == 'configmaps "d" not found'

    def test_delete_with_matching_preconditions(self, store: Store) -> None:
        """Delete with the current uid and resourceVersion removes the object."""
        obj = store.create(cm("d"))
        store.delete("d", uid=obj.uid, resource_version=obj.resource_version)
        with pytest.raises(NotFound):
            store.get("d")

    def test_delete_with_stale_resource_version_raises_conflict(self, store: Store) -> None:
        """A delete whose resourceVersion precondition is stale deletes nothing."""
        obj = store.create(cm("d", {"n": "1"}))
        store.replace(
            StoredObject(name="d", data={"n": "2"}, resource_version=obj.resource_version)
        )
        with pytest.raises(Conflict) as caught:
            store.delete("d", resource_version=obj.resource_version)
        assert caught.value.status.code == 409
        assert store.get("d").data == {"n": "2"}

    def test_delete_with_other_uid_raises_conflict(self, store: Store) -> None:
        """A delete whose uid precondition names an earlier incarnation deletes nothing."""
        old = store.create(cm("d", {"gen": "1"}))
        store.delete("d")
        store.create(cm("d", {"gen": "2"}))
        with pytest.raises(Conflict):
            store.delete("d", uid=old.uid)
        assert store.get("d").data == {"gen": "2"}


class TestList:
    def test_label_selectors(self, store: Store) -> None:
        """Equality, inequality, set and existence selectors pick the right objects."""
        store.create(cm("a", role="state", status="active"))
        store.create(cm("b", role="state", status="failed"))
        store.create(cm("c", role="segment"))
        store.create(cm("d"))

        def names(selector: str) -> list[str]:
            return sorted(o.name for o in store.list(label_selector=selector).items)

        assert names("") == ["a", "b", "c", "d"]
        assert names("role=state") == ["a", "b"]
        assert names("role==state,status=failed") == ["b"]
        assert names("role!=state") == ["c", "d"]
        assert names("status in (active,failed)") == ["a", "b"]
        assert names("role,status notin (active)") == ["b", "c"]
        assert names("!status") == ["c", "d"]
        assert names("role=none") == []

    def test_invalid_selector_raises_invalid(self, store: Store) -> None:
        """A selector that cannot be parsed is refused with a client error."""
        with pytest.raises(InvalidObject):
            store.list(label_selector="role in (a")

    def test_pagination_across_several_pages(self, store: Store) -> None:
        """Pages of `limit` items cover every object exactly once, in name order."""
        for i in range(23):
            store.create(cm(f"obj-{i:02d}", sel="yes"))
        store.create(cm("other", sel="no"))

        seen: list[str] = []
        token: str | None = None
        pages = 0
        while True:
            page = store.list(label_selector="sel=yes", limit=5, continue_token=token)
            pages += 1
            assert len(page.items) <= 5
            seen.extend(o.name for o in page.items)
            token = page.continue_token
            if not token:
                break
        assert pages == 5
        assert seen == [f"obj-{i:02d}" for i in range(23)]

    def test_pagination_is_a_snapshot(self, store: Store) -> None:
        """Objects created after the first page do not appear in later pages."""
        for i in range(6):
            store.create(cm(f"p-{i}"))
        first = store.list(limit=3)
        store.create(cm("p-9"))
        assert first.continue_token
        rest = store.list(limit=10, continue_token=first.continue_token)
        names = [o.name for o in first.items + rest.items]
        assert names == [f"p-{i}" for i in range(6)]

    def test_metadata_only_list_transfers_no_data(self, store: Store) -> None:
        """A metadata-only list returns names, labels and versions but no data at all."""
        big = "x" * 200_000
        created = store.create(
            StoredObject(name="m", data={"blob": big}, labels={"k": "v"}, annotations={"a": "b"})
        )
        page = store.list(label_selector="k=v", metadata_only=True)
        [item] = page.items
        assert item.data is None
        assert item.name == "m"
        assert item.labels == {"k": "v"}
        assert item.annotations == {"a": "b"}
        assert item.resource_version == created.resource_version
        assert item.uid == created.uid
        full = store.list(label_selector="k=v")
        assert full.items[0].data == {"blob": big}


class TestLimits:
    def test_one_mebibyte_of_data_is_accepted(self, store: Store) -> None:
        """Exactly 1 MiB of data values (keys not counted) is accepted."""
        data = {"a": "x" * (MiB // 2), "b": "y" * (MiB - MiB // 2)}
        store.create(StoredObject(name="big", data=data))
        assert store.get("big").data == data

    def test_one_byte_over_the_limit_is_invalid(self, store: Store) -> None:
        """One byte over 1 MiB is refused as InvalidObject, on create and on replace."""
        with pytest.raises(InvalidObject) as caught:
            store.create(StoredObject(name="big", data={"a": "x" * (MiB + 1)}))
        assert caught.value.status.code == 422
        with pytest.raises(NotFound):
            store.get("big")

        obj = store.create(StoredObject(name="big", data={"a": "x"}))
        with pytest.raises(InvalidObject):
            store.replace(
                StoredObject(
                    name="big",
                    data={"a": "x" * MiB, "b": "y"},
                    resource_version=obj.resource_version,
                )
            )
        assert store.get("big").data == {"a": "x"}

    def test_multibyte_characters_count_as_bytes(self, store: Store) -> None:
        """The limit counts UTF-8 bytes, so 2-byte characters reach it at half the length."""
        with pytest.raises(InvalidObject):
            store.create(StoredObject(name="wide", data={"a": "é" * (MiB // 2 + 1)}))

    @pytest.mark.parametrize(
        "name",
        ["", "UPPER", "under_score", "-leading", "trailing-", "a/b", "sp ace", "é", "a" * 254],
    )
    def test_invalid_names_are_rejected(self, store: Store, name: str) -> None:
        """Names that are not DNS-1123 subdomains are refused as InvalidObject."""
        with pytest.raises(InvalidObject):
            store.create(StoredObject(name=name, data={"k": "v"}))

    @pytest.mark.parametrize("name", ["a", "a.b-c", "0-9", "a" * 253])
    def test_valid_names_are_accepted(self, store: Store, name: str) -> None:
        """DNS-1123 subdomains of up to 253 characters are accepted."""
        assert store.create(StoredObject(name=name, data={})).name == name

    @pytest.mark.parametrize("key", ["bad/key", "bad key", "", "a" * 254])
    def test_invalid_data_keys_are_rejected(self, store: Store, key: str) -> None:
        """Data keys outside [-._a-zA-Z0-9]{1,253} are refused as InvalidObject."""
        with pytest.raises(InvalidObject):
            store.create(StoredObject(name="k", data={key: "v"}))

    @pytest.mark.parametrize(
        "labels",
        [{"k": "x" * 64}, {"k": "bad value"}, {"bad key!": "v"}, {"k": "-x"}],
    )
    def test_invalid_labels_are_rejected(self, store: Store, labels: dict[str, str]) -> None:
        """Label values over 63 characters or outside the label syntax are refused."""
        with pytest.raises(InvalidObject):
            store.create(StoredObject(name="l", data={}, labels=labels))

    def test_label_value_of_63_characters_is_accepted(self, store: Store) -> None:
        """A label value of exactly 63 characters is accepted, and read back whole."""
        created = store.create(StoredObject(name="l", data={}, labels={"k": "x" * 63}))
        assert created.labels == {"k": "x" * 63}
        assert store.get("l").labels == {"k": "x" * 63}

    def test_annotations_over_256_kib_are_rejected(self, store: Store) -> None:
        """Annotations totalling more than 256 KiB are refused; exactly 256 KiB is accepted."""
        limit = 256 * 1024
        store.create(StoredObject(name="ok", data={}, annotations={"a": "x" * (limit - 1)}))
        with pytest.raises(InvalidObject):
            store.create(StoredObject(name="no", data={}, annotations={"a": "x" * limit}))


class TestWatch:
    def test_watch_sees_create_update_and_delete(self, store: Store) -> None:
        """A watch from a resourceVersion yields ADDED, MODIFIED and DELETED in order."""
        start = store.list(limit=1).resource_version
        obj = store.create(cm("w", {"n": "1"}, watched="yes"))
        store.create(cm("unwatched", {"n": "1"}))
        obj = store.replace(
            StoredObject(
                name="w",
                data={"n": "2"},
                labels={"watched": "yes"},
                resource_version=obj.resource_version,
            )
        )
        store.delete("w")

        events: list[WatchEvent] = []
        for event in store.watch(
            label_selector="watched=yes", resource_version=start, timeout_seconds=10
        ):
            events.append(event)
            if event.type is WatchEventType.DELETED:
                break
        assert [(e.type, e.object.name) for e in events] == [
            (WatchEventType.ADDED, "w"),
            (WatchEventType.MODIFIED, "w"),
            (WatchEventType.DELETED, "w"),
        ]
        assert events[1].object.data == {"n": "2"}

    def test_watch_from_now_sees_later_writes(self, store: Store) -> None:
        """A watch with no resourceVersion sees writes made after it started."""

        def writer() -> None:
            time.sleep(0.5)
            store.create(cm("later"))

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            got = next(iter(store.watch(timeout_seconds=15)))
        finally:
            thread.join()
        assert (got.type, got.object.name) == (WatchEventType.ADDED, "later")


def _cas_increments(spec: StoreSpec, name: str, count: int) -> None:
    """In a child process: `count` compare-and-swap increments, retrying each Conflict."""
    with spec.open() as store:
        done = 0
        while done < count:
            current = store.get(name)
            assert current.data is not None
            value = int(current.data["n"])
            try:
                store.replace(
                    StoredObject(
                        name=name,
                        data={"n": str(value + 1)},
                        resource_version=current.resource_version,
                    )
                )
            except Conflict:
                continue
            done += 1


class TestConcurrency:
    def test_eight_processes_of_fifty_cas_increments_make_four_hundred(
        self, store: Store, store_spec: StoreSpec
    ) -> None:
        """8 real processes x 50 compare-and-swap increments of one key end at exactly 400."""
        store.create(StoredObject(name="counter", data={"n": "0"}))
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(8) as pool:
            pool.starmap(_cas_increments, [(store_spec, "counter", 50)] * 8)
        final = store.get("counter")
        assert final.data == {"n": "400"}


class TestErrors:
    def test_every_error_is_ours_and_carries_a_status(self, store: Store) -> None:
        """Failures raise our StoreError subclasses, each with a Status body."""
        failures: list[tuple[type[StoreError], Callable[[], object]]] = [
            (NotFound, lambda: store.get("missing")),
            (InvalidObject, lambda: store.create(StoredObject(name="Bad_Name"))),
            (NotFound, lambda: store.delete("missing")),
        ]
        for expected, call in failures:
            with pytest.raises(expected) as caught:
                call()
            assert isinstance(caught.value, RemstateError)
            assert caught.value.status.code >= 400
            assert caught.value.status.message


# --- the same Status from both backends ------------------------------------------------------

#: Each error case of this suite, as a function that sets up and then makes the
#: failing call last. Both backends run it, in namespaces of the same name with
#: objects of the same names, so that names in messages and details agree.
ERROR_CASES: dict[str, Callable[[Store], object]] = {}


def _case(name: str) -> Callable[[Callable[[Store], object]], Callable[[Store], object]]:
    def register(case: Callable[[Store], object]) -> Callable[[Store], object]:
        ERROR_CASES[name] = case
        return case

    return register


@_case("get-missing")
def _get_missing(store: Store) -> object:
    return store.get("no-such-object")


@_case("create-taken-name")
def _create_taken(store: Store) -> object:
    store.create(cm("taken", {"v": "first"}))
    return store.create(cm("taken", {"v": "second"}))


@_case("replace-stale-version")
def _replace_stale(store: Store) -> object:
    first = store.create(cm("r", {"n": "1"}))
    store.replace(StoredObject(name="r", data={"n": "2"}, resource_version=first.resource_version))
    return store.replace(
        StoredObject(name="r", data={"n": "3"}, resource_version=first.resource_version)
    )


@_case("replace-deleted-object")
def _replace_deleted(store: Store) -> object:
    first = store.create(cm("gone"))
    store.delete("gone")
    return store.replace(
        StoredObject(name="gone", data={"k": "v"}, resource_version=first.resource_version)
    )


@_case("delete-missing")
def _delete_missing(store: Store) -> object:
    store.create(cm("d"))
    store.delete("d")
    store.delete("d")
    return None


@_case("delete-stale-resource-version")
def _delete_stale(store: Store) -> object:
    obj = store.create(cm("d", {"n": "1"}))
    store.replace(StoredObject(name="d", data={"n": "2"}, resource_version=obj.resource_version))
    store.delete("d", resource_version=obj.resource_version)
    return None


@_case("delete-other-uid")
def _delete_other_uid(store: Store) -> object:
    old = store.create(cm("d", {"gen": "1"}))
    store.delete("d")
    store.create(cm("d", {"gen": "2"}))
    store.delete("d", uid=old.uid)
    return None


@_case("unparsable-selector")
def _bad_selector(store: Store) -> object:
    return store.list(label_selector="role in (a")


@_case("create-over-1-mib")
def _create_too_big(store: Store) -> object:
    return store.create(StoredObject(name="big", data={"a": "x" * (MiB + 1)}))


@_case("replace-over-1-mib")
def _replace_too_big(store: Store) -> object:
    obj = store.create(StoredObject(name="big", data={"a": "x"}))
    return store.replace(
        StoredObject(
            name="big", data={"a": "x" * MiB, "b": "y"}, resource_version=obj.resource_version
        )
    )


@_case("multibyte-over-1-mib")
def _multibyte_too_big(store: Store) -> object:
    return store.create(StoredObject(name="wide", data={"a": "é" * (MiB // 2 + 1)}))


@_case("one-mib-of-escaped-characters")
def _escaped_too_big(store: Store) -> object:
    # 1 MiB of UTF-8 (within the data limit), but the client escapes each "é" as
    # six bytes of JSON: the request body passes the server's 3 MiB limit (413).
    return store.create(StoredObject(name="wide", data={"a": "é" * (MiB // 2)}))


for _name in ["", "UPPER", "under_score", "-leading", "trailing-", "a/b", "sp ace", "é", "a" * 254]:

    @_case(f"invalid-name-{_name[:12] or 'empty'}")
    def _invalid_name(store: Store, name: str = _name) -> object:
        return store.create(StoredObject(name=name, data={"k": "v"}))


for _key in ["bad/key", "bad key", "", "a" * 254]:

    @_case(f"invalid-data-key-{_key[:12] or 'empty'}")
    def _invalid_key(store: Store, key: str = _key) -> object:
        return store.create(StoredObject(name="k", data={key: "v"}))


for _index, _labels in enumerate(
    [{"k": "x" * 64}, {"k": "bad value"}, {"bad key!": "v"}, {"k": "-x"}]
):

    @_case(f"invalid-labels-{_index}")
    def _invalid_labels(store: Store, labels: dict[str, str] = _labels) -> object:
        return store.create(StoredObject(name="l", data={}, labels=labels))


@_case("annotations-over-256-kib")
def _annotations_too_big(store: Store) -> object:
    return store.create(StoredObject(name="no", data={}, annotations={"a": "x" * 256 * 1024}))


@_case("create-bad-name-no-data")
def _bad_name_default_data(store: Store) -> object:
    return store.create(StoredObject(name="Bad_Name"))


# The cases below are the embedded store's own tests of the server's messages
# (tests/unit/test_embedded_store.py); here they are checked against the server.
for _name in ["a/b", "a%b", ".."]:
    _label = {"a/b": "slash", "a%b": "percent", "..": "dotdot"}[_name]

    @_case(f"get-name-with-{_label}")
    def _get_unroutable(store: Store, name: str = _name) -> object:
        return store.get(name)

    @_case(f"delete-name-with-{_label}")
    def _delete_unroutable(store: Store, name: str = _name) -> object:
        store.delete(name)
        return None

    @_case(f"replace-name-with-{_label}")
    def _replace_unroutable(store: Store, name: str = _name) -> object:
        return store.replace(StoredObject(name=name, data={}))


for _version in ["abc", "-1", "99999999999999999999999"]:

    @_case(f"replace-unparsable-version-{_version[:6]}")
    def _replace_bad_version(store: Store, version: str = _version) -> object:
        store.create(cm("r"))
        return store.replace(StoredObject(name="r", data={}, resource_version=version))


@_case("annotate-stale-version")
def _annotate_stale(store: Store) -> object:
    first = store.create(cm("a", managed="yes"))
    store.annotate("a", {"x": "1"})
    return store.annotate("a", {"y": "1"}, resource_version=first.resource_version)


@_case("annotate-stale-version-changing-nothing")
def _annotate_stale_noop(store: Store) -> object:
    first = store.create(cm("a", managed="yes"))
    store.annotate("a", {"x": "1"})
    return store.annotate(
        "a", {}, labels={"managed": "yes"}, resource_version=first.resource_version
    )


@_case("annotate-stale-version-expectations-met")
def _annotate_stale_expecting(store: Store) -> object:
    first = store.create(StoredObject(name="a", data={}, labels={"l": "1"}, annotations={"t": "1"}))
    store.annotate("a", {"x": "1"})
    return store.annotate(
        "a",
        {"t": "2"},
        labels={"l": None},
        expect={"t": "1"},
        resource_version=first.resource_version,
    )


@_case("annotate-missing-at-a-version")
def _annotate_missing(store: Store) -> object:
    return store.annotate("absent", {"a": "1"}, labels={"b": "2"}, resource_version="12")


for _index, _labels in enumerate([{"k": "x" * 64}, {"k": "bad value"}, {"bad key!": "v"}]):

    @_case(f"annotate-invalid-labels-{_index}")
    def _annotate_invalid_labels(store: Store, labels: dict[str, str] = _labels) -> object:
        store.create(cm("l"))
        return store.annotate("l", {}, labels=dict(labels))


for _version in ["abc", "-1", "99999999999999999999999"]:

    @_case(f"annotate-unparsable-version-{_version[:6]}")
    def _annotate_bad_version(store: Store, version: str = _version) -> object:
        store.create(cm("r"))
        return store.annotate("r", {"a": "1"}, resource_version=version)


_GARBLED_TOKENS = [
    "garbage!",
    "abc",
    "e30",
    "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MX0",
    "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJzdGFydCI6ImEifQ",
    "MTIz",
]
for _index, _token in enumerate(_GARBLED_TOKENS):

    @_case(f"garbled-continue-token-{_index}")
    def _garbled_token(store: Store, token: str = _token) -> object:
        return store.list(continue_token=token)


_UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_PRECONDITION_RV = re.compile(r"(ResourceVersion in (?:the precondition|record)) \(\d+\)")


def _comparable(status: ApiStatus) -> dict[str, object]:
    """The Status as the server sent it, less what must differ between two stores.

    Only the uid and the resourceVersion differ, and only in the delete
    preconditions' messages: each store makes its own uids, and counts its
    own revisions (the API server's come from etcd, shared by the whole
    control plane). Everything else, word for word, must be the same.
    """
    body = status.to_dict()
    message = _UID.sub("<uid>", body["message"])
    body["message"] = _PRECONDITION_RV.sub(r"\1 (<rv>)", message)
    return body


@pytest.fixture
def both_backends(controlplane: ControlPlane, tmp_path: Path) -> Iterator[dict[str, Store]]:
    """The real API server and the embedded store, in namespaces of the same name."""
    namespace = new_namespace(controlplane)
    server = StoreSpec("kubernetes", namespace, kubeconfig=str(controlplane.kubeconfig))
    embedded = StoreSpec("embedded", namespace, path=str(tmp_path / "state.db"))
    with server.open() as kubernetes, embedded.open() as sqlite:
        yield {"kubernetes": kubernetes, "embedded": sqlite}


@pytest.mark.kubernetes
class TestSameStatusAsTheServer:
    @pytest.mark.parametrize("case", list(ERROR_CASES))
    def test_the_embedded_store_answers_as_the_server(
        self, both_backends: dict[str, Store], case: str
    ) -> None:
        """Each error case gives the same class and the same whole Status on both backends."""
        answers: dict[str, tuple[type[StoreError], dict[str, object]]] = {}
        for backend, store in both_backends.items():
            with pytest.raises(StoreError) as caught:
                ERROR_CASES[case](store)
            answers[backend] = (type(caught.value), _comparable(caught.value.status))
        assert answers["embedded"] == answers["kubernetes"]


class TestAnnotate:
    """The store operation that taking a turn needs: a write that cannot conflict."""

    def test_merges_annotations_at_any_version(self, store: Store) -> None:
        """Adds, replaces and removes keys; data and other metadata stay; the version moves."""
        created = store.create(
            StoredObject(name="cm", data={"k": "v"}, labels={"l": "1"}, annotations={"a": "1"})
        )
        store.replace(dataclasses.replace(created, data={"k": "w"}))  # `created` is stale now

        patched = store.annotate("cm", {"b": "2", "a": None})
        assert patched.annotations == {"b": "2"}
        assert patched.data == {"k": "w"}
        assert patched.labels == {"l": "1"}
        assert patched.uid == created.uid
        assert store.get("cm") == patched
        with pytest.raises(Conflict):
            store.replace(dataclasses.replace(created, data={"k": "x"}))

    def test_a_patch_that_changes_nothing_keeps_the_version(self, store: Store) -> None:
        """Removing a key that is not there writes nothing."""
        created = store.create(StoredObject(name="cm", data={"k": "v"}))
        assert store.annotate("cm", {"a": None}).resource_version == created.resource_version

    def test_expected_values_are_tested_first(self, store: Store) -> None:
        """With ``expect``, the patch applies only if those annotations are as given."""
        store.create(StoredObject(name="cm", data={"k": "v"}, annotations={"a": "1"}))
        taken = store.annotate("cm", {"turn": "me"}, expect={"turn": None, "a": "1"})
        assert taken.annotations == {"a": "1", "turn": "me"}

        with pytest.raises(Conflict):  # present, where absent was expected
            store.annotate("cm", {"turn": "you"}, expect={"turn": None})
        with pytest.raises(Conflict):  # another value
            store.annotate("cm", {"turn": "you"}, expect={"turn": "someone"})
        assert store.get("cm") == taken

        given_back = store.annotate("cm", {"turn": None}, expect={"turn": "me"})
        assert given_back.annotations == {"a": "1"}

    def test_removing_a_key_not_expected_present_is_refused(self, store: Store) -> None:
        """A conditional patch may remove only a key it expects present (JSON patch's rule)."""
        created = store.create(StoredObject(name="cm", data={"k": "v"}, annotations={"a": "1"}))
        with pytest.raises(InvalidInput):
            store.annotate("cm", {"a": None}, expect={"b": None})
        assert store.get("cm").resource_version == created.resource_version

    def test_a_missing_object_is_not_found(self, store: Store) -> None:
        """Annotating an object that does not exist raises NotFound and creates nothing."""
        with pytest.raises(NotFound):
            store.annotate("absent", {"a": "1"})
        with pytest.raises(NotFound):
            store.get("absent")

    def test_a_bad_key_is_invalid(self, store: Store) -> None:
        """An annotation key the API refuses raises Invalid; nothing changes."""
        created = store.create(StoredObject(name="cm", data={"k": "v"}))
        with pytest.raises(InvalidObject):
            store.annotate("cm", {"not a key!": "1"})
        assert store.get("cm").resource_version == created.resource_version


class TestAnnotateLabelsAndVersion:
    """What cleanup needs: marks and labels written without the data, at a known version."""

    def test_merges_labels_and_removes_with_none(self, store: Store) -> None:
        """Labels are merged as annotations are; ``None`` removes one; data stays."""
        store.create(StoredObject(name="cm", data={"k": "v"}, labels={"keep": "1", "drop": "1"}))
        patched = store.annotate(
            "cm",
            {"remstate.io/soft-deleted-at": "2026-01-01T00:00:00Z"},
            labels={"remstate.io/lifecycle": "soft-deleted", "drop": None, "absent": None},
        )
        assert patched.labels == {"keep": "1", "remstate.io/lifecycle": "soft-deleted"}
        assert patched.annotations == {"remstate.io/soft-deleted-at": "2026-01-01T00:00:00Z"}
        assert patched.data == {"k": "v"}
        assert store.get("cm") == patched
        selected = store.list(label_selector="remstate.io/lifecycle=soft-deleted").items
        assert [o.name for o in selected] == ["cm"]

    def test_at_the_current_version_it_writes(self, store: Store) -> None:
        """With the object's current resourceVersion, the patch applies and the version moves."""
        created = store.create(cm("cm", keep="1"))
        patched = store.annotate(
            "cm", {"a": "1"}, labels={"l": "2"}, resource_version=created.resource_version
        )
        assert (patched.labels, patched.annotations) == ({"keep": "1", "l": "2"}, {"a": "1"})
        assert patched.resource_version != created.resource_version
        assert store.get("cm") == patched

    def test_a_stale_version_conflicts_and_writes_nothing(self, store: Store) -> None:
        """A resourceVersion the object has moved past raises Conflict; nothing changes."""
        created = store.create(cm("cm", keep="1"))
        moved = store.replace(dataclasses.replace(created, data={"k": "touched"}))
        with pytest.raises(Conflict):
            store.annotate(
                "cm", {"a": "1"}, labels={"keep": None}, resource_version=created.resource_version
            )
        assert store.get("cm") == moved

    def test_a_stale_version_conflicts_even_when_nothing_would_change(self, store: Store) -> None:
        """The precondition is checked before the server notices the patch is empty."""
        created = store.create(cm("cm", keep="1"))
        moved = store.annotate("cm", {"a": "1"})
        with pytest.raises(Conflict):
            store.annotate(
                "cm", {}, labels={"keep": "1"}, resource_version=created.resource_version
            )
        assert store.get("cm") == moved

    def test_version_and_expectations_together(self, store: Store) -> None:
        """With ``expect`` too, both must hold; either failing is a Conflict, nothing written."""
        created = store.create(
            StoredObject(name="cm", data={"k": "v"}, labels={"l": "1"}, annotations={"t": "1"})
        )
        with pytest.raises(Conflict):  # the version holds, the expectation does not
            store.annotate(
                "cm",
                {"t": "2"},
                labels={"l": "2"},
                expect={"t": "0"},
                resource_version=created.resource_version,
            )
        assert store.get("cm") == created
        patched = store.annotate(
            "cm",
            {"t": "2"},
            labels={"l": None, "new": "1", "absent": None},
            expect={"t": "1"},
            resource_version=created.resource_version,
        )
        assert (patched.labels, patched.annotations) == ({"new": "1"}, {"t": "2"})
        with pytest.raises(Conflict):  # the expectation holds, the version does not
            store.annotate(
                "cm",
                {"t": "3"},
                labels={"new": None},
                expect={"t": "2"},
                resource_version=created.resource_version,
            )
        assert store.get("cm") == patched

    def test_with_expectations_the_object_needs_labels_to_change(self, store: Store) -> None:
        """As a JSON patch: labels cannot be added to an object that has none; nothing written."""
        created = store.create(StoredObject(name="cm", data={"k": "v"}, annotations={"t": "1"}))
        with pytest.raises(Conflict):
            store.annotate("cm", {"t": "2"}, labels={"l": "1"}, expect={"t": "1"})
        assert store.get("cm") == created

    @pytest.mark.parametrize(
        "labels", [{"k": "x" * 64}, {"k": "bad value"}, {"bad key!": "v"}, {"k": "-x"}]
    )
    def test_a_bad_label_is_invalid(self, store: Store, labels: dict[str, str]) -> None:
        """A label the API refuses raises InvalidObject; nothing changes."""
        created = store.create(cm("cm"))
        with pytest.raises(InvalidObject):
            store.annotate("cm", {}, labels=dict(labels), resource_version=created.resource_version)
        assert store.get("cm") == created


# --- Events ------------------------------------------------------------------------------------


def _events_regarding(plane: ControlPlane, namespace: str, name: str) -> list[Any]:
    """The events.k8s.io/v1 Events about ``name``, read back by the admin."""
    with plane.api_client() as api:
        events = client.EventsV1Api(api).list_namespaced_event(
            namespace, field_selector=f"regarding.name={name}"
        )
    return list(events.items)


class TestRecordEvent:
    def test_the_event_is_recorded(
        self,
        store: Store,
        store_spec: StoreSpec,
        request: pytest.FixtureRequest,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """An Event on the ConfigMap (Kubernetes), a ``remstate.events`` record (embedded)."""
        obj = store.create(cm("task-42-state"))
        with caplog.at_level(logging.INFO, logger="remstate.events"):
            store.record_event(
                obj,
                reason="SoftDeleted",
                message="idle for 8d, over its ttl of 7d",
                action="SoftDelete",
            )
        if store_spec.kind == "kubernetes":
            plane: ControlPlane = request.getfixturevalue("controlplane")
            (event,) = _events_regarding(plane, store.namespace, obj.name)
            assert (event.reason, event.note, event.action, event.type) == (
                "SoftDeleted",
                "idle for 8d, over its ttl of 7d",
                "SoftDelete",
                "Normal",
            )
            regarding = event.regarding
            assert (regarding.kind, regarding.api_version, regarding.name) == (
                "ConfigMap",
                "v1",
                obj.name,
            )
            assert (regarding.namespace, regarding.uid) == (store.namespace, obj.uid)
            assert event.reporting_controller == "remstate.io/remstate"
            assert event.reporting_instance == socket.gethostname()[:128]
            assert event.event_time is not None
        else:
            (record,) = [r for r in caplog.records if r.name == "remstate.events"]
            assert record.levelno == logging.INFO
            fields = {k: getattr(record, k) for k in ("reason", "note", "action", "event_type")}
            assert fields == {
                "reason": "SoftDeleted",
                "note": "idle for 8d, over its ttl of 7d",
                "action": "SoftDelete",
                "event_type": "Normal",
            }
            assert (record.object, record.uid, record.namespace) == (  # type: ignore[attr-defined]
                obj.name,
                obj.uid,
                store.namespace,
            )

    def test_a_warning_and_the_default_action(
        self,
        store: Store,
        store_spec: StoreSpec,
        request: pytest.FixtureRequest,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """``type="Warning"`` is kept; with no action, the reason is the action."""
        obj = store.create(cm("task-43-state"))
        with caplog.at_level(logging.INFO, logger="remstate.events"):
            store.record_event(obj, reason="RepairFailed", message="x", type="Warning")
        if store_spec.kind == "kubernetes":
            plane: ControlPlane = request.getfixturevalue("controlplane")
            (event,) = _events_regarding(plane, store.namespace, obj.name)
            assert (event.type, event.action) == ("Warning", "RepairFailed")
        else:
            (record,) = [r for r in caplog.records if r.name == "remstate.events"]
            assert record.levelno == logging.WARNING
            assert record.action == "RepairFailed"  # type: ignore[attr-defined]


@pytest.mark.kubernetes
class TestEventFailuresNeverRaise:
    def test_forbidden_events_are_logged_not_raised(
        self,
        controlplane: ControlPlane,
        controlplane_namespace: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A caller without the right to create Events: no exception, a warning, no Event."""
        with controlplane.api_client() as admin:
            obj = KubernetesStore(controlplane_namespace, api_client=admin).create(cm("cm"))
        with (
            controlplane.api_client(controlplane.tokens["nobody"]) as api,
            KubernetesStore(controlplane_namespace, api_client=api) as store,
            caplog.at_level(logging.WARNING, logger="remstate.events"),
        ):
            store.record_event(obj, reason="Purged", message="gone")
        (record,) = [r for r in caplog.records if r.name == "remstate.events"]
        assert "403" in record.getMessage()
        assert _events_regarding(controlplane, controlplane_namespace, "cm") == []

    def test_a_hung_server_costs_a_few_seconds_at_most(
        self, controlplane: ControlPlane, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A server that never answers: the call returns within the Event's own timeout."""
        with hung_server() as hung:
            configuration = client.Configuration(
                host=f"https://127.0.0.1:{hung.port}", ssl_ca_cert=str(controlplane.ca_file)
            )
            with client.ApiClient(configuration) as api:
                store = KubernetesStore("default", api_client=api)
                began = time.monotonic()
                with caplog.at_level(logging.WARNING, logger="remstate.events"):
                    store.record_event(cm("cm"), reason="Purged", message="gone")
                elapsed = time.monotonic() - began
        assert elapsed < sum(EVENT_TIMEOUT) + 2, f"took {elapsed:.1f}s"
        assert [r for r in caplog.records if r.name == "remstate.events"]

    def test_a_hung_server_holds_no_longer_than_the_retry_deadline(
        self, controlplane: ControlPlane, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Inside an operation with a 0.3 s deadline, the Event gives up with it.

        Uncapped, the TLS handshake alone would wait the Event's 2 s connect timeout.
        """
        with hung_server() as hung:
            configuration = client.Configuration(
                host=f"https://127.0.0.1:{hung.port}", ssl_ca_cert=str(controlplane.ca_file)
            )
            with client.ApiClient(configuration) as api:
                store = KubernetesStore("default", api_client=api)
                began = time.monotonic()
                with caplog.at_level(logging.WARNING, logger="remstate.events"):
                    RetryPolicy(deadline=0.3).call(
                        lambda: store.record_event(cm("cm"), reason="Purged", message="gone")
                    )
                elapsed = time.monotonic() - began
        assert elapsed < 1.5 < EVENT_TIMEOUT[0], f"took {elapsed:.1f}s"
        assert [r for r in caplog.records if r.name == "remstate.events"]
