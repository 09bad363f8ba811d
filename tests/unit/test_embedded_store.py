"""The embedded store: the Store contract on SQLite, answering as kube-apiserver does."""

from __future__ import annotations

import base64
import contextlib
import json
import multiprocessing
import os
import random
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from remstate.errors import (
    AlreadyExists,
    Conflict,
    CorruptStore,
    Forbidden,
    Gone,
    InvalidInput,
    InvalidObject,
    NotFound,
    StoreError,
    Unavailable,
)
from remstate.manager import StateManager
from remstate.retry import RetryPolicy
from remstate.store import apivalidation, embedded
from remstate.store.base import (
    OwnerReference,
    Store,
    StoredObject,
    WatchEvent,
    WatchEventType,
)
from remstate.store.embedded import EmbeddedStore
from remstate.store.embedded_compaction import COMPACT_EVERY
from tests.embedded_files import DAMAGES, as_nobody, filled_store, newer_layout, reachable_dir
from tests.helpers import cm

MiB = 1_048_576
NOW = datetime(2026, 1, 2, 3, 4, 5, 678_901, tzinfo=UTC)


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "state.db")


@pytest.fixture
def store(path: str) -> Iterator[EmbeddedStore]:
    with EmbeddedStore(path, clock=lambda: NOW) as opened:
        yield opened


def events(store: EmbeddedStore, **kwargs: object) -> list[tuple[str, str, str]]:
    """(type, name, resourceVersion) of every event until the watch times out."""
    kwargs.setdefault("timeout_seconds", 0.3)
    return [
        (e.type.value, e.object.name, e.object.resource_version)
        for e in store.watch(**kwargs)  # type: ignore[arg-type]
    ]


@contextlib.contextmanager
def raw(path: str) -> Iterator[sqlite3.Connection]:
    """A plain connection to the store's file, closed after."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


class TestOpening:
    def test_is_a_store(self, store: EmbeddedStore) -> None:
        """The embedded store satisfies the Store protocol and keeps its namespace."""
        assert isinstance(store, Store)
        assert store.namespace == "default"

    @pytest.mark.parametrize("namespace", ["", "Upper", "a.b", "x" * 64])
    def test_invalid_namespace_is_refused(self, path: str, namespace: str) -> None:
        """A namespace that is not a DNS-1123 label is refused before the file is opened."""
        with pytest.raises(InvalidInput):
            EmbeddedStore(path, namespace)

    def test_history_must_be_positive(self, path: str) -> None:
        """At least one revision of history is kept."""
        with pytest.raises(InvalidInput):
            EmbeddedStore(path, history=0)

    def test_unopenable_file_is_unavailable(self, tmp_path: Path) -> None:
        """A file in a missing directory raises Unavailable, not a sqlite3 error."""
        with pytest.raises(Unavailable) as caught:
            EmbeddedStore(tmp_path / "missing" / "state.db")
        assert caught.value.status.code == 503

    def test_a_file_that_is_not_a_database_is_a_store_error(self, tmp_path: Path) -> None:
        """A file of another kind raises our StoreError with a 500 Status."""
        bad = tmp_path / "not.db"
        bad.write_bytes(b"this is not a database" * 100)
        with pytest.raises(StoreError) as caught:
            EmbeddedStore(bad)
        assert caught.value.status.code in (500, 503)

    def test_memory_database_works_for_one_store(self) -> None:
        """ ":memory:" gives a private store to one store object."""
        with EmbeddedStore(":memory:") as store:
            store.create(cm("a"))
            assert store.get("a").data == {"k": "v"}

    def test_closed_store_refuses_calls(self, path: str) -> None:
        """After close, calls raise StoreError; closing twice is harmless."""
        store = EmbeddedStore(path)
        store.close()
        store.close()
        with pytest.raises(StoreError):
            store.get("a")

    def test_reopening_keeps_the_objects(self, path: str) -> None:
        """Objects and versions survive closing and reopening the file."""
        with EmbeddedStore(path) as store:
            created = store.create(cm("a"))
        with EmbeddedStore(path) as store:
            assert store.get("a") == created


@pytest.fixture
def open_dir() -> Iterator[Path]:
    with reachable_dir() as made:
        yield made


class TestReadOnly:
    @pytest.mark.parametrize(
        ("file_mode", "dir_mode"),
        [(0o444, 0o777), (0o666, 0o755)],
        ids=["read-only file", "read-only directory"],
    )
    def test_reader_without_write_access_reads_and_cannot_write(
        self, open_dir: Path, file_mode: int, dir_mode: int
    ) -> None:
        """A read-only file or directory (for a user, not root) is read; a write is Forbidden."""
        path = open_dir / "state.db"
        with EmbeddedStore(path) as store:
            created = store.create(cm("a"))
        path.chmod(file_mode)
        open_dir.chmod(dir_mode)

        def read() -> object:
            with EmbeddedStore(path) as store:
                return store.get("a") == created and [o.name for o in store.list().items]

        def write() -> object:
            with EmbeddedStore(path) as store:
                store.create(cm("b"))
            return "written"

        assert as_nobody(read) == ("ok", ["a"])
        kind, message = as_nobody(write)
        assert kind == "Forbidden"
        assert str(path) in str(message)
        assert "read-only" in str(message)
        with EmbeddedStore(path, mode="ro") as store:
            assert [o.name for o in store.list().items] == ["a"]

    def test_read_only_mode_reads_and_refuses_writes(self, path: str) -> None:
        """Mode "ro" reads the file, and a write raises Forbidden (403) and writes nothing."""
        with EmbeddedStore(path) as store:
            store.create(cm("a"))
        with EmbeddedStore(path, mode="ro") as store:
            assert store.get("a").data == {"k": "v"}
            with pytest.raises(Forbidden) as caught:
                store.create(cm("b"))
        assert caught.value.status.code == 403
        assert path in caught.value.status.message
        with EmbeddedStore(path) as store:
            assert [o.name for o in store.list().items] == ["a"]

    def test_opening_writes_nothing(self, path: str) -> None:
        """Opening an existing store, in any mode, leaves the file's bytes as they were."""
        with EmbeddedStore(path) as store:
            store.create(cm("a"))
        before = Path(path).read_bytes()
        for mode in ("rwc", "rw", "ro"):
            with raw(path) as conn:
                conn.execute("BEGIN EXCLUSIVE")  # any write on open would wait, then fail
                try:
                    with EmbeddedStore(path, mode=mode) as store:  # type: ignore[arg-type]
                        assert store.namespace == "default"
                finally:
                    conn.execute("ROLLBACK")
        assert Path(path).read_bytes() == before


class TestMissingFile:
    @pytest.mark.parametrize("mode", ["rw", "ro"])
    def test_is_not_created(self, tmp_path: Path, mode: str) -> None:
        """Modes "rw" and "ro" raise NotFound naming the file; they create no file or directory."""
        path = tmp_path / "typo" / "state.db"
        with pytest.raises(NotFound) as caught:
            EmbeddedStore(path, mode=mode)  # type: ignore[arg-type]
        assert str(path) in str(caught.value)
        assert "does not exist" in str(caught.value)
        assert list(tmp_path.iterdir()) == []

    def test_url_mode_reads_without_creating(self, tmp_path: Path) -> None:
        """``sqlite://...?mode=ro`` never creates the file, even if the option allows it."""
        path = tmp_path / "state.db"
        with pytest.raises(NotFound):
            StateManager.from_url(f"sqlite://{path}?mode=ro", mode="rwc")
        assert not path.exists()

    def test_empty_file_is_no_store_to_read(self, path: str) -> None:
        """An empty file is NotFound ("is empty") read-only; opened to write, it becomes a store."""
        Path(path).touch()
        with pytest.raises(NotFound, match="is empty"):
            EmbeddedStore(path, mode="ro")
        with EmbeddedStore(path, mode="rw") as store:
            store.create(cm("a"))


class TestDamagedFile:
    @pytest.mark.parametrize("damage", DAMAGES, ids=lambda f: f.__name__.strip("_"))
    def test_is_corrupt_store_naming_the_file(
        self, path: str, damage: Callable[[str], None]
    ) -> None:
        """A damaged file, a foreign one or a newer layout raises CorruptStore naming the file."""
        filled_store(path)
        damage(path)

        # Opening finds some damage, reading the rest.
        with pytest.raises(CorruptStore) as caught, EmbeddedStore(path) as store:  # noqa: PT012
            store.get("obj-1")
            store.list()
        assert path in str(caught.value)
        assert caught.value.status.code == 500
        assert not isinstance(caught.value.__cause__, CorruptStore)

    def test_newer_layout_says_so(self, path: str) -> None:
        """A layout newer than this remstate's is refused by name, before anything is read."""
        filled_store(path)
        newer_layout(path)
        with pytest.raises(CorruptStore, match="newer remstate"):
            EmbeddedStore(path, mode="ro")

    def test_unopenable_file_names_itself(self, tmp_path: Path) -> None:
        """A path SQLite cannot open raises Unavailable (503) whose message names the file."""
        path = tmp_path / "state.db"
        path.mkdir()
        with pytest.raises(Unavailable) as caught:
            EmbeddedStore(path)
        assert str(path) in caught.value.status.message
        assert caught.value.status.code == 503


class TestCreateAndGet:
    def test_round_trip(self, store: EmbeddedStore) -> None:
        """A created object reads back whole, with the identity the server would give it."""
        owner = OwnerReference("v1", "ConfigMap", "head", "u-1", controller=True)
        created = store.create(
            StoredObject(
                name="task-1-state",
                data={"unicode": "héllo ✓", "json": '{"a": [1]}'},
                labels={"app.kubernetes.io/managed-by": "remstate"},
                annotations={"remstate.io/task-id": "Task 1/α"},
                owner_references=(owner,),
            )
        )
        assert uuid.UUID(created.uid).version == 4
        assert created.resource_version.isdigit()
        assert created.creation_timestamp == NOW.replace(microsecond=0)
        assert store.get("task-1-state") == created
        assert created.owner_references == (owner,)

    @pytest.mark.parametrize(
        ("clock_time", "expected"),
        [
            (datetime(2026, 1, 2, 3, 4, 5, 999_999), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
            (
                datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))),
                datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            ),
        ],
    )
    def test_creation_time_is_utc_seconds(
        self, path: str, clock_time: datetime, expected: datetime
    ) -> None:
        """The clock's time is taken as UTC when naive, and truncated to the second."""
        with EmbeddedStore(path, clock=lambda: clock_time) as store:
            assert store.create(cm("a")).creation_timestamp == expected

    def test_server_set_fields_are_ignored_on_create(self, store: EmbeddedStore) -> None:
        """The given resourceVersion, uid and creation time are not used."""
        created = store.create(
            StoredObject(
                name="a",
                data={},
                resource_version="999",
                uid="mine",
                creation_timestamp=datetime(2000, 1, 1, tzinfo=UTC),
            )
        )
        assert created.uid != "mine"
        assert created.resource_version != "999"
        assert created.creation_timestamp == NOW.replace(microsecond=0)

    def test_maps_come_back_sorted(self, store: EmbeddedStore) -> None:
        """Data, labels and annotations come back in key order, as the server's JSON has them."""
        store.create(StoredObject(name="a", data={"b": "1", "a": "2"}, labels={"z": "1", "y": "2"}))
        got = store.get("a")
        assert list(got.data or {}) == ["a", "b"]
        assert list(got.labels) == ["y", "z"]

    def test_taken_name_raises_already_exists(self, store: EmbeddedStore) -> None:
        """Creating a taken name raises AlreadyExists with the server's Status."""
        store.create(cm("taken", {"v": "1"}))
        with pytest.raises(AlreadyExists) as caught:
            store.create(cm("taken", {"v": "2"}))
        status = caught.value.status
        assert (status.code, status.reason) == (409, "AlreadyExists")
        assert status.message == 'configmaps "taken" already exists'
        assert status.details == {"name": "taken", "kind": "configmaps"}
        assert store.get("taken").data == {"v": "1"}

    def test_invalid_wins_over_already_exists(self, store: EmbeddedStore) -> None:
        """As on the server, validation comes before the name is looked up."""
        store.create(cm("taken"))
        with pytest.raises(InvalidObject):
            store.create(StoredObject(name="taken", data={"bad key": "v"}))

    def test_missing_raises_not_found(self, store: EmbeddedStore) -> None:
        """Getting a missing name raises NotFound with the server's Status."""
        with pytest.raises(NotFound) as caught:
            store.get("missing")
        status = caught.value.status
        assert (status.code, status.reason) == (404, "NotFound")
        assert status.message == 'configmaps "missing" not found'
        assert status.details == {"name": "missing", "kind": "configmaps"}

    @pytest.mark.parametrize(
        ("name", "error", "code", "message"),
        [
            ("a/b", NotFound, 404, "the server could not find the requested resource"),
            ("a%b", InvalidObject, 400, "Name parameter invalid: \"a%b\": may not contain '%'"),
            ("", NotFound, 404, 'configmaps "" not found'),
            ("..", NotFound, 404, 'configmaps ".." not found'),
        ],
    )
    def test_names_that_are_not_path_segments(
        self, store: EmbeddedStore, name: str, error: type[StoreError], code: int, message: str
    ) -> None:
        """Names the server cannot route answer as the server (or our client) does."""
        for call in (
            lambda: store.get(name),
            lambda: store.delete(name),
            lambda: store.replace(StoredObject(name=name, data={})),
        ):
            with pytest.raises(error) as caught:
                call()
            assert (caught.value.status.code, caught.value.status.message) == (code, message)

    def test_object_without_data_cannot_be_written(self, store: EmbeddedStore) -> None:
        """An object from a metadata-only read cannot be written back."""
        with pytest.raises(InvalidInput):
            store.create(StoredObject(name="a", data=None))

    def test_invalid_create_writes_nothing(self, store: EmbeddedStore) -> None:
        """An InvalidObject create leaves no object and uses no resourceVersion."""
        before = store.list().resource_version
        with pytest.raises(InvalidObject) as caught:
            store.create(StoredObject(name="big", data={"a": "x" * (MiB + 1)}))
        assert caught.value.status.message == (
            'ConfigMap "big" is invalid: []: Too long: may not be more than 1048576 bytes'
        )
        with pytest.raises(NotFound):
            store.get("big")
        assert store.list().resource_version == before

    def test_surrogates_are_stored_as_the_server_stores_them(self, store: EmbeddedStore) -> None:
        """A lone surrogate becomes U+FFFD and a surrogate pair one character, as in Go."""
        store.create(StoredObject(name="s", data={"k": "a\ud800b\ud83d\ude00"}))
        assert store.get("s").data == {"k": "a\ufffdb\U0001f600"}

    @pytest.mark.parametrize(
        ("data", "kind"), [({"k": 5}, "number"), ({"k": [1]}, "array"), ({"k": True}, "bool")]
    )
    def test_values_that_are_not_strings_are_bad_requests(
        self, store: EmbeddedStore, data: dict[str, object], kind: str
    ) -> None:
        """A value JSON would not send as a string is refused as the server refuses it."""
        with pytest.raises(InvalidObject) as caught:
            store.create(StoredObject(name="a", data=data))  # type: ignore[arg-type]
        assert caught.value.status.code == 400
        assert caught.value.status.message == (
            'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal '
            f"{kind} into Go struct field ConfigMap.data of type string"
        )


class TestReplace:
    def test_current_version_writes(self, store: EmbeddedStore) -> None:
        """A replace at the current version writes, keeping uid and creation time."""
        first = store.create(cm("r", {"n": "1"}))
        second = store.replace(
            StoredObject(
                name="r",
                data={"n": "2"},
                resource_version=first.resource_version,
                uid="ignored",
                creation_timestamp=datetime(2000, 1, 1, tzinfo=UTC),
            )
        )
        assert int(second.resource_version) > int(first.resource_version)
        assert (second.uid, second.creation_timestamp) == (first.uid, first.creation_timestamp)
        assert store.get("r") == second

    def test_stale_version_raises_conflict(self, store: EmbeddedStore) -> None:
        """A replace at a stale version raises Conflict with the server's Status."""
        first = store.create(cm("r", {"n": "1"}))
        store.replace(
            StoredObject(name="r", data={"n": "2"}, resource_version=first.resource_version)
        )
        with pytest.raises(Conflict) as caught:
            store.replace(
                StoredObject(name="r", data={"n": "3"}, resource_version=first.resource_version)
            )
        status = caught.value.status
        assert (status.code, status.reason) == (409, "Conflict")
        assert status.message == (
            'Operation cannot be fulfilled on configmaps "r": the object has been modified; '
            "please apply your changes to the latest version and try again"
        )
        assert status.details == {"name": "r", "kind": "configmaps"}
        assert store.get("r").data == {"n": "2"}

    @pytest.mark.parametrize("version", ["", "0"])
    def test_no_version_replaces_unconditionally(self, store: EmbeddedStore, version: str) -> None:
        """As for ConfigMaps on the server, no resourceVersion (or "0") replaces anyway."""
        first = store.create(cm("r", {"n": "1"}))
        store.replace(
            StoredObject(name="r", data={"n": "2"}, resource_version=first.resource_version)
        )
        store.replace(StoredObject(name="r", data={"n": "3"}, resource_version=version))
        assert store.get("r").data == {"n": "3"}

    def test_unchanged_replace_writes_nothing(self, store: EmbeddedStore) -> None:
        """A replace that changes nothing keeps the version and makes no watch event."""
        first = store.create(cm("r", {"n": "1"}, a="b"))
        again = store.replace(
            StoredObject(name="r", data={"n": "1"}, labels={"a": "b"}, resource_version="")
        )
        assert again == first
        assert events(store, resource_version=first.resource_version) == []

    @pytest.mark.parametrize("gone", ["never", "deleted"])
    def test_missing_object_raises_not_found(self, store: EmbeddedStore, gone: str) -> None:
        """A replace of an object that does not exist (any more) raises NotFound."""
        if gone == "deleted":
            store.create(cm("r"))
            store.delete("r")
        with pytest.raises(NotFound):
            store.replace(StoredObject(name="r", data={}, resource_version="2"))

    def test_conflict_wins_over_invalid(self, store: EmbeddedStore) -> None:
        """As on the server, a stale version is a Conflict even if the object is also invalid."""
        first = store.create(cm("r"))
        store.replace(
            StoredObject(name="r", data={"n": "2"}, resource_version=first.resource_version)
        )
        with pytest.raises(Conflict):
            store.replace(
                StoredObject(
                    name="r", data={"bad key": "v"}, resource_version=first.resource_version
                )
            )

    def test_invalid_replace_writes_nothing(self, store: EmbeddedStore) -> None:
        """A replace over 1 MiB raises InvalidObject and leaves the object as it was."""
        first = store.create(cm("r", {"a": "x"}))
        with pytest.raises(InvalidObject):
            store.replace(
                StoredObject(
                    name="r",
                    data={"a": "x" * MiB, "b": "y"},
                    resource_version=first.resource_version,
                )
            )
        assert store.get("r") == first

    @pytest.mark.parametrize(
        ("version", "message"),
        [
            ("abc", 'strconv.ParseUint: parsing "abc": invalid syntax'),
            ("-1", 'strconv.ParseUint: parsing "-1": invalid syntax'),
            (
                "99999999999999999999999",
                'strconv.ParseUint: parsing "99999999999999999999999": value out of range',
            ),
        ],
    )
    def test_unparsable_version_is_the_servers_internal_error(
        self, store: EmbeddedStore, version: str, message: str
    ) -> None:
        """A version that is not a number gets the server's 500, so our tree's Unavailable."""
        store.create(cm("r"))
        with pytest.raises(Unavailable) as caught:
            store.replace(StoredObject(name="r", data={}, resource_version=version))
        assert (caught.value.status.code, caught.value.status.message) == (500, message)


class TestDelete:
    """The embedded store's own wording; plain deletes are in the contract suite (both backends)."""

    def test_uid_precondition(self, store: EmbeddedStore) -> None:
        """A uid of an earlier incarnation is a Conflict, worded as rest.BeforeDelete words it."""
        old = store.create(cm("d", {"gen": "1"}))
        store.delete("d")
        new = store.create(cm("d", {"gen": "2"}))
        assert new.uid != old.uid
        with pytest.raises(Conflict) as caught:
            store.delete("d", uid=old.uid)
        status = caught.value.status
        assert status.message == (
            f'Operation cannot be fulfilled on ConfigMap "d": the UID in the precondition '
            f"({old.uid}) does not match the UID in record ({new.uid}). "
            "The object might have been deleted and then recreated"
        )
        assert status.details == {"name": "d", "kind": "ConfigMap"}
        assert store.get("d").data == {"gen": "2"}

    def test_resource_version_precondition(self, store: EmbeddedStore) -> None:
        """A stale resourceVersion is a Conflict and deletes nothing."""
        obj = store.create(cm("d", {"n": "1"}))
        new = store.replace(
            StoredObject(name="d", data={"n": "2"}, resource_version=obj.resource_version)
        )
        with pytest.raises(Conflict) as caught:
            store.delete("d", resource_version=obj.resource_version)
        assert caught.value.status.message == (
            'Operation cannot be fulfilled on ConfigMap "d": the ResourceVersion in the '
            f"precondition ({obj.resource_version}) does not match the ResourceVersion in "
            f"record ({new.resource_version}). The object might have been modified"
        )
        assert store.get("d").data == {"n": "2"}


class TestVersionsAndNamespaces:
    def test_versions_are_one_global_counter(self, path: str) -> None:
        """Every write, on any object of any namespace, gets a larger resourceVersion."""
        with EmbeddedStore(path, "one") as one, EmbeddedStore(path, "two") as two:
            versions = [
                one.create(cm("a")).resource_version,
                two.create(cm("a")).resource_version,
                one.replace(StoredObject(name="a", data={"n": "2"})).resource_version,
                two.create(cm("b")).resource_version,
            ]
            numbers = [int(v) for v in versions]
            assert numbers == sorted(set(numbers))
            assert int(one.list().resource_version) >= numbers[-1]

    def test_empty_store_lists_at_version_one(self, store: EmbeddedStore) -> None:
        """An empty store answers resourceVersion "1", never "0" (which means "any")."""
        assert store.list().resource_version == "1"

    def test_namespaces_do_not_see_each_other(self, path: str) -> None:
        """Stores of two namespaces on one file keep separate objects of the same name."""
        with EmbeddedStore(path, "one") as one, EmbeddedStore(path, "two") as two:
            one.create(cm("same", {"ns": "one"}))
            two.create(cm("same", {"ns": "two"}))
            one.create(cm("only-one"))
            assert one.get("same").data == {"ns": "one"}
            assert [o.name for o in two.list().items] == ["same"]
            with pytest.raises(NotFound):
                two.get("only-one")
            two.delete("same")
            assert one.get("same").data == {"ns": "one"}


class TestList:
    def test_items_come_in_byte_order_of_names(self, store: EmbeddedStore) -> None:
        """Items come in etcd's key order: names compared as bytes."""
        names = ["b", "a.b", "a-b", "a0", "ab", "a"]
        for name in names:
            store.create(cm(name))
        assert [o.name for o in store.list().items] == sorted(names)

    @pytest.mark.parametrize(
        ("selector", "expected"),
        [
            ("", ["a", "b", "c", "d"]),
            ("role=state", ["a", "b"]),
            ("role!=state", ["c", "d"]),
            ("status in (active,failed)", ["a", "b"]),
            ("role,status notin (active)", ["b", "c"]),
            ("!status", ["c", "d"]),
        ],
    )
    def test_label_selectors(
        self, store: EmbeddedStore, selector: str, expected: list[str]
    ) -> None:
        """Selectors pick the objects the server would pick."""
        store.create(cm("a", role="state", status="active"))
        store.create(cm("b", role="state", status="failed"))
        store.create(cm("c", role="segment"))
        store.create(cm("d"))
        assert [o.name for o in store.list(label_selector=selector).items] == expected

    def test_invalid_selector_is_a_bad_request(self, store: EmbeddedStore) -> None:
        """An unparsable selector raises InvalidObject with the server's 400 Status."""
        with pytest.raises(InvalidObject) as caught:
            store.list(label_selector="role in (a")
        assert (caught.value.status.code, caught.value.status.reason) == (400, "BadRequest")

    @pytest.mark.parametrize("limit", [None, 0, -1])
    def test_no_positive_limit_lists_everything(
        self, store: EmbeddedStore, limit: int | None
    ) -> None:
        """A limit of None, 0 or less lists everything on one page."""
        for i in range(3):
            store.create(cm(f"o-{i}"))
        page = store.list(limit=limit)
        assert (len(page.items), page.continue_token, page.remaining_item_count) == (3, None, None)

    def test_pages_cover_everything_once(self, store: EmbeddedStore) -> None:
        """Pages of `limit` matching items cover each object exactly once, in order."""
        for i in range(23):
            store.create(cm(f"obj-{i:02d}", sel="yes"))
            store.create(cm(f"obj-{i:02d}-no", sel="no"))
        seen: list[str] = []
        token: str | None = None
        while True:
            page = store.list(label_selector="sel=yes", limit=5, continue_token=token)
            assert len(page.items) == 5 or page.continue_token is None
            seen.extend(o.name for o in page.items)
            token = page.continue_token
            if token is None:
                break
        assert seen == [f"obj-{i:02d}" for i in range(23)]

    def test_pages_read_the_first_pages_snapshot(self, store: EmbeddedStore) -> None:
        """Writes after the first page do not show in later pages: they read its snapshot."""
        for i in range(6):
            store.create(cm(f"p-{i}", {"v": "old"}))
        first = store.list(limit=3)
        store.delete("p-4")
        store.replace(StoredObject(name="p-5", data={"v": "new"}))
        store.create(cm("p-3a"))
        store.create(cm("p-9"))
        assert first.continue_token is not None
        rest = store.list(limit=10, continue_token=first.continue_token)
        assert [(o.name, (o.data or {})["v"]) for o in rest.items] == [
            ("p-3", "old"),
            ("p-4", "old"),
            ("p-5", "old"),
        ]
        assert rest.resource_version == first.resource_version
        assert rest.continue_token is None

    def test_remaining_item_count_only_without_selector(self, store: EmbeddedStore) -> None:
        """The count of items left is given without a selector, as the server gives it."""
        for i in range(5):
            store.create(cm(f"o-{i}", sel="yes"))
        assert store.list(limit=2).remaining_item_count == 3
        assert store.list(limit=2, label_selector="sel=yes").remaining_item_count is None
        assert store.list(limit=5).remaining_item_count is None

    def test_next_page_is_offered_if_any_object_follows(self, store: EmbeddedStore) -> None:
        """As the server does, a full page gets a token when any object follows, matching or not."""
        store.create(cm("a", sel="yes"))
        store.create(cm("b", sel="no"))
        page = store.list(label_selector="sel=yes", limit=1)
        assert page.continue_token is not None
        rest = store.list(label_selector="sel=yes", limit=1, continue_token=page.continue_token)
        assert (rest.items, rest.continue_token) == ([], None)

    def test_continue_token_is_the_servers_format(self, store: EmbeddedStore) -> None:
        """The token is the API server's: base64url JSON of version, revision and start key."""
        store.create(cm("a"))
        store.create(cm("b"))
        page = store.list(limit=1)
        assert page.continue_token is not None
        padded = page.continue_token + "=" * (-len(page.continue_token) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded))
        assert decoded == {
            "v": "meta.k8s.io/v1",
            "rv": int(page.resource_version),
            "start": "a\x00",
        }

    @pytest.mark.parametrize(
        ("token", "message"),
        [
            ("garbage!", "illegal base64 data at input byte 7"),
            ("abc", "invalid character 'i' looking for beginning of value"),
            ("e30", "server does not recognize this encoded version "),
            (
                "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MX0",
                "encoded start key empty (version meta.k8s.io/v1)",
            ),
            (
                "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJzdGFydCI6ImEifQ",
                "incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
            ),
            ("MTIz", "json: cannot unmarshal number into Go value of type storage.continueToken"),
        ],
    )
    def test_garbled_token_is_a_bad_request(
        self, store: EmbeddedStore, token: str, message: str
    ) -> None:
        """A token the server would not accept is InvalidObject with its 400 and message."""
        with pytest.raises(InvalidObject) as caught:
            store.list(continue_token=token)
        status = caught.value.status
        assert (status.code, status.reason) == (400, "BadRequest")
        assert status.message == f"invalid continue token: continue key is not valid: {message}"

    def test_token_from_before_compaction_is_gone(self, path: str) -> None:
        """A token whose snapshot was compacted away raises Gone (410 Expired)."""
        with EmbeddedStore(path, history=1) as store:
            store.create(cm("a"))
            store.create(cm("b"))
            token = store.list(limit=1).continue_token
            for i in range(COMPACT_EVERY):
                store.replace(StoredObject(name="a", data={"n": str(i)}))
            with pytest.raises(Gone) as caught:
                store.list(limit=1, continue_token=token)
        status = caught.value.status
        assert (status.code, status.reason) == (410, "Expired")
        assert status.message.startswith("The provided continue parameter is too old")

    def test_future_token_is_a_timeout(self, store: EmbeddedStore) -> None:
        """A token at a revision not reached yet gets etcd's 504 'Too large resource version'."""
        token = base64.urlsafe_b64encode(
            json.dumps({"v": "meta.k8s.io/v1", "rv": 99, "start": "a\x00"}).encode()
        ).decode()
        with pytest.raises(Unavailable) as caught:
            store.list(continue_token=token.rstrip("="))
        assert caught.value.status.code == 504
        assert caught.value.status.message == "Timeout: Too large resource version: 99, current: 1"

    def test_metadata_only_list_never_reads_data(self, store: EmbeddedStore) -> None:
        """A metadata-only list returns no data and does not read the data column at all."""
        created = store.create(
            StoredObject(
                name="m", data={"blob": "x" * 200_000}, labels={"k": "v"}, annotations={"a": "b"}
            )
        )
        columns: set[tuple[str, str]] = set()

        def authorizer(action: int, arg1: str | None, arg2: str | None, *_: object) -> int:
            if action == sqlite3.SQLITE_READ and arg1 and arg2:
                columns.add((arg1, arg2))
            return sqlite3.SQLITE_OK

        # The connection is the store's own: the authorizer sees every column it reads.
        store._connection.get().set_authorizer(authorizer)
        try:
            page = store.list(label_selector="k=v", metadata_only=True)
        finally:
            store._connection.get().set_authorizer(None)
        [item] = page.items
        assert item == StoredObject(
            name="m",
            data=None,
            labels={"k": "v"},
            annotations={"a": "b"},
            resource_version=created.resource_version,
            uid=created.uid,
            creation_timestamp=created.creation_timestamp,
        )
        assert ("revisions", "labels") in columns
        assert ("revisions", "data") not in columns
        assert store.list(label_selector="k=v").items == [created]


class TestWatch:
    def test_changes_after_a_version(self, store: EmbeddedStore) -> None:
        """From a version: ADDED, MODIFIED, DELETED, each at the version of its write."""
        start = store.list().resource_version
        a = store.create(cm("w", {"n": "1"}))
        b = store.replace(
            StoredObject(name="w", data={"n": "2"}, resource_version=a.resource_version)
        )
        store.delete("w")
        got = list(store.watch(resource_version=start, timeout_seconds=0.2))
        assert [(e.type, e.object.resource_version) for e in got] == [
            (WatchEventType.ADDED, a.resource_version),
            (WatchEventType.MODIFIED, b.resource_version),
            (WatchEventType.DELETED, str(int(b.resource_version) + 1)),
        ]
        # The DELETED event carries the last state.
        assert got[2].object.data == {"n": "2"}

    @pytest.mark.parametrize("version", [None, "", "0"])
    def test_without_version_starts_with_existing_objects(
        self, store: EmbeddedStore, version: str | None
    ) -> None:
        """Without a version, each object that exists comes first as ADDED, in name order."""
        store.create(cm("b"))
        store.create(cm("a"))

        def later() -> None:
            time.sleep(0.2)
            store.create(cm("c"))

        writer = threading.Thread(target=later)
        writer.start()
        try:
            got: list[WatchEvent] = []
            for event in store.watch(resource_version=version, timeout_seconds=10):
                got.append(event)
                if len(got) == 3:
                    break
        finally:
            writer.join()
        assert [(e.type, e.object.name) for e in got] == [
            (WatchEventType.ADDED, "a"),
            (WatchEventType.ADDED, "b"),
            (WatchEventType.ADDED, "c"),
        ]

    def test_selector_turns_transitions_into_added_and_deleted(self, store: EmbeddedStore) -> None:
        """Entering the selection is ADDED; leaving it is DELETED, in the old state."""
        start = store.list().resource_version
        a = store.create(cm("w", {"n": "1"}, sel="a"))
        b = store.replace(StoredObject(name="w", data={"n": "2"}, labels={"sel": "b"}))
        c = store.replace(StoredObject(name="w", data={"n": "3"}, labels={"sel": "a"}))
        d = store.replace(StoredObject(name="w", data={"n": "4"}, labels={"sel": "a"}))
        store.create(cm("other", sel="b"))
        got = list(store.watch(label_selector="sel=a", resource_version=start, timeout_seconds=0.2))
        assert [
            (e.type.value, (e.object.data or {})["n"], e.object.resource_version) for e in got
        ] == [
            ("ADDED", "1", a.resource_version),
            ("DELETED", "1", b.resource_version),
            ("ADDED", "3", c.resource_version),
            ("MODIFIED", "4", d.resource_version),
        ]

    def test_other_namespaces_are_not_seen(self, path: str) -> None:
        """A watch sees only its namespace."""
        with EmbeddedStore(path, "one") as one, EmbeddedStore(path, "two") as two:
            start = one.list().resource_version
            two.create(cm("theirs"))
            one.create(cm("mine"))
            assert [name for _, name, _ in events(one, resource_version=start)] == ["mine"]

    def test_too_old_version_is_gone(self, path: str) -> None:
        """A version older than the compacted history raises Gone, as etcd's watch does."""
        with EmbeddedStore(path, history=1) as store:
            start = store.list().resource_version
            store.create(cm("a"))
            for i in range(COMPACT_EVERY):
                store.replace(StoredObject(name="a", data={"n": str(i)}))
            with pytest.raises(Gone) as caught:
                events(store, resource_version=start)
        status = caught.value.status
        assert (status.code, status.reason) == (410, "Expired")
        assert status.message == "The resourceVersion for the provided watch is too old."

    @pytest.mark.parametrize(
        ("kwargs", "error", "code"),
        [
            ({"resource_version": "abc"}, Unavailable, 500),
            ({"label_selector": "a in ("}, InvalidObject, 400),
        ],
    )
    def test_bad_arguments_fail_on_first_event(
        self, store: EmbeddedStore, kwargs: dict[str, str], error: type[StoreError], code: int
    ) -> None:
        """As over HTTP, nothing is checked until the first event is asked for."""
        watch = store.watch(timeout_seconds=0.1, **kwargs)  # type: ignore[arg-type]
        with pytest.raises(error) as caught:
            next(iter(watch))
        assert caught.value.status.code == code

    def test_timeout_ends_the_watch(self, store: EmbeddedStore) -> None:
        """With nothing happening, the watch ends after its timeout."""
        started = time.monotonic()
        assert (
            events(store, resource_version=store.list().resource_version, timeout_seconds=0.2) == []
        )
        assert time.monotonic() - started < 5


class TestCompaction:
    def test_history_is_bounded(self, path: str) -> None:
        """Superseded revisions beyond the history are removed; the objects stay whole."""
        with EmbeddedStore(path, history=10) as store:
            store.create(cm("a", {"n": "0"}))
            for i in range(3 * COMPACT_EVERY):
                store.replace(StoredObject(name="a", data={"n": str(i)}))
            store.create(cm("gone"))
            store.delete("gone")
            for i in range(COMPACT_EVERY):
                store.replace(StoredObject(name="a", data={"n": f"x{i}"}))
            assert store.get("a").data == {"n": f"x{COMPACT_EVERY - 1}"}
            with pytest.raises(NotFound):
                store.get("gone")
        with raw(path) as conn:
            (rows,) = conn.execute("SELECT COUNT(*) FROM revisions").fetchone()
        assert rows <= 10 + COMPACT_EVERY + 1


class Clock:
    """A clock the test moves by hand: compaction by age is tested without sleeping."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def on_disk(path: str) -> int:
    """Bytes of the database file and its write-ahead log."""
    wal = Path(f"{path}-wal")
    return Path(path).stat().st_size + (wal.stat().st_size if wal.exists() else 0)


class TestWatchWindow:
    def test_revisions_before_the_previous_tick_are_gone(self, path: str) -> None:
        """As the API server's compactor: every 5 minutes, to the previous tick's revision."""
        clock = Clock()
        with EmbeddedStore(path, clock=clock) as store:
            start = store.list().resource_version
            first = store.create(cm("a")).resource_version
            clock.advance(minutes=5)
            second = store.replace(cm("a", {"n": "1"})).resource_version
            with pytest.raises(Gone) as caught:
                events(store, resource_version=start)
            assert caught.value.status.reason == "Expired"
            assert [rv for _, _, rv in events(store, resource_version=first)] == [second]
            clock.advance(minutes=4)
            store.replace(cm("a", {"n": "2"}))
            assert len(events(store, resource_version=first)) == 2
            clock.advance(minutes=1)
            store.replace(cm("a", {"n": "3"}))
            with pytest.raises(Gone):
                events(store, resource_version=first)
            assert len(events(store, resource_version=second)) == 2

    def test_window_is_bounded_in_bytes(self, path: str) -> None:
        """Past ``history_bytes`` of revisions, the oldest are compacted; the newest stay."""
        with EmbeddedStore(path, history_bytes=MiB) as store:
            start = store.list().resource_version
            versions = [store.create(cm("a")).resource_version]
            for i in range(12):
                data = {"blob": f"{i}" * 200_000}
                versions.append(store.replace(cm("a", data)).resource_version)
            with pytest.raises(Gone):
                events(store, resource_version=start)
            assert len(events(store, resource_version=versions[-4])) == 3
            assert store.get("a").data == {"blob": "11" * 200_000}

    def test_revision_never_goes_back_when_a_delete_crosses_the_byte_bound(self, path: str) -> None:
        """A delete whose window cut reaches its own tombstone keeps the revision it made."""
        with EmbeddedStore(path, history_bytes=3000) as store:
            store.create(cm("a"))
            store.create(cm("b", {"blob": "x" * 2500}))
            before = int(store.list().resource_version)
            store.delete("b")
            listed = store.list()
            assert int(listed.resource_version) > before
            assert events(store, resource_version=listed.resource_version) == []
            # The write just made stays in the window: one revision behind sees it.
            assert events(store, resource_version=str(before)) == [
                ("DELETED", "b", listed.resource_version)
            ]
            created = store.create(cm("c"))
            assert int(created.resource_version) > int(listed.resource_version)
            assert [e[1:] for e in events(store, resource_version=listed.resource_version)] == [
                ("c", created.resource_version)
            ]

    def test_revision_goes_on_from_a_compaction_past_the_newest_row(self, path: str) -> None:
        """A file an older remstate compacted past its newest row goes on from there."""
        with EmbeddedStore(path) as store:
            store.create(cm("a"))
            with raw(path) as conn:
                conn.execute("UPDATE meta SET value = 10 WHERE key = 'compacted'")
            listed = store.list()
            assert listed.resource_version == "10"
            assert events(store, resource_version="10") == []
            assert store.create(cm("b")).resource_version == "11"

    def test_revision_never_goes_back_when_the_age_tick_reaches_a_delete(self, path: str) -> None:
        """Compaction by age to a tick that was a delete keeps the revision it made."""
        clock = Clock()
        with EmbeddedStore(path, clock=clock) as store:
            store.create(cm("a"))
            clock.advance(minutes=5)
            store.delete("a")
            deleted = int(store.list().resource_version)
            clock.advance(minutes=5)
            created = store.create(cm("b"))
            assert int(created.resource_version) > deleted
            listed = store.list()
            assert listed.resource_version == created.resource_version
            assert events(store, resource_version=listed.resource_version) == []
            assert int(store.create(cm("c")).resource_version) > int(listed.resource_version)

    def test_bounds_must_be_positive(self, path: str) -> None:
        """A window of no bytes or no time is refused before the file is opened."""
        with pytest.raises(InvalidInput):
            EmbeddedStore(path, history_bytes=0)
        with pytest.raises(InvalidInput):
            EmbeddedStore(path, history_age=timedelta(0))
        assert not Path(path).exists()


class TestDiskBound:
    #: The bound the README states: the file and its WAL stay within
    #: 2 x live data + 1.5 x history_bytes + 8 MiB.
    @staticmethod
    def bound(live: int, history_bytes: int = 32 * MiB) -> float:
        return 2 * live + 1.5 * history_bytes + 8 * MiB

    def test_12000_appends_stay_within_the_stated_bound(self, path: str) -> None:
        """12,000 feedback appends (2.4 MB of descriptions) keep the file within its bound."""
        rnd = random.Random(6)
        worst = 0.0
        with EmbeddedStore(path) as store:
            manager = StateManager(store)
            for i in range(12_000):
                manager.append_feedback(
                    "t",
                    author="reviewer",
                    severity="low",
                    issue_type="bug",
                    description=rnd.randbytes(100).hex(),
                    id=f"n{i}",
                )
                if i % 500 == 499:
                    live = sum(apivalidation.data_size(o.data or {}) for o in store.list().items)
                    worst = max(worst, on_disk(path) / self.bound(live))
            assert manager.get_feedback_history("t", limit=1).total == 12_000
        assert worst <= 1.0

    def test_space_is_given_back(self, path: str) -> None:
        """Deleted objects' pages return to the file system once compaction passes them."""
        clock = Clock()
        with EmbeddedStore(path, clock=clock) as store:
            for i in range(40):
                store.create(cm(f"big-{i}", {"blob": "x" * 512 * 1024}))
            filled = on_disk(path)
            for i in range(40):
                store.delete(f"big-{i}")
            for _ in range(2):
                clock.advance(minutes=5)
                store.create(cm(f"small-{clock.now.minute}"))
            assert on_disk(path) < filled / 4
            assert [o.name for o in store.list().items] == ["small-14", "small-9"]


class TestNoSqliteErrorEscapes:
    def test_locked_database_is_unavailable(
        self, path: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A write that waits past the busy timeout raises Unavailable (503), never sqlite3's."""
        monkeypatch.setattr(embedded, "_BUSY_TIMEOUT_S", 0.05)
        with EmbeddedStore(path) as store, raw(path) as other:
            other.execute("BEGIN EXCLUSIVE")
            try:
                with pytest.raises(Unavailable) as caught:
                    store.create(cm("a"))
            finally:
                other.execute("ROLLBACK")
            assert caught.value.status.code == 503
            assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
            store.create(cm("a"))

    def test_busy_wait_ends_at_the_retry_deadline(self, path: str) -> None:
        """Another process's long write makes a write give up by its deadline, unapplied."""
        held, stop, released = threading.Event(), threading.Event(), threading.Event()

        def hold() -> None:
            with raw(path) as other:
                other.execute("BEGIN IMMEDIATE")
                held.set()
                stop.wait(timeout=10)
                released.set()
                other.execute("ROLLBACK")

        with EmbeddedStore(path) as store:
            holder = threading.Thread(target=hold)
            holder.start()
            try:
                held.wait()
                with pytest.raises(Unavailable) as caught:
                    RetryPolicy(deadline=1).call(lambda: store.create(cm("a")))
                # Given up while the lock was still held: the deadline, not the
                # 30 s busy timeout nor the holder's release, ended the wait.
                assert not released.is_set()
            finally:
                stop.set()
                holder.join()
            assert caught.value.maybe_applied is False
            with pytest.raises(NotFound):
                store.get("a")
            store.create(cm("a"))

    def test_damaged_row_is_a_store_error(self, path: str) -> None:
        """A row that cannot be decoded raises StoreError (500), not a JSON error."""
        with EmbeddedStore(path) as store:
            store.create(cm("a"))
            with raw(path) as conn:
                conn.execute("UPDATE revisions SET labels = '{not json'")
            with pytest.raises(StoreError) as caught:
                store.get("a")
        assert caught.value.status.code == 500


class TestConcurrency:
    def test_threads_may_share_one_store(self, store: EmbeddedStore) -> None:
        """8 threads x 25 increments through one store object lose nothing."""
        store.create(StoredObject(name="counter", data={"n": "0"}))

        def work() -> None:
            done = 0
            while done < 25:
                current = store.get("counter")
                try:
                    store.replace(
                        StoredObject(
                            name="counter",
                            data={"n": str(int((current.data or {})["n"]) + 1)},
                            resource_version=current.resource_version,
                        )
                    )
                except Conflict:
                    continue
                done += 1

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.get("counter").data == {"n": "200"}


def _write_then_die(path: str, results: Any) -> None:
    """A child process: one write, report it, and be killed before anything else runs."""
    store = EmbeddedStore(path)
    written = store.create(cm("survivor"))
    results.send(written.resource_version)  # a pipe: sent before this returns
    # No close, no checkpoint, no exit handlers: as a crash leaves it.
    os.kill(os.getpid(), signal.SIGKILL)


class TestDurability:
    """What a write that returned survives: the promise the README states."""

    def test_commits_go_to_a_write_ahead_log_synced_at_checkpoints(
        self, store: EmbeddedStore, path: str
    ) -> None:
        """WAL journal, synchronous=NORMAL: each commit is in the log; fsync at checkpoints."""
        store.create(cm("a"))
        with raw(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        # synchronous is per connection: the store's own (NORMAL is 1).
        assert store._connection.get().execute("PRAGMA synchronous").fetchone() == (1,)

    def test_a_returned_write_survives_the_process_being_killed(self, path: str) -> None:
        """A write that returned is there after its process is killed (SIGKILL) right after."""
        EmbeddedStore(path).close()
        ctx = multiprocessing.get_context("spawn")
        received, results = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_write_then_die, args=(path, results))
        child.start()
        assert received.poll(60)
        version = received.recv()
        child.join(timeout=60)
        assert child.exitcode == -signal.SIGKILL
        with EmbeddedStore(path, mode="rw") as store:
            survivor = store.get("survivor")
        assert survivor.resource_version == version
        assert survivor.data == {"k": "v"}
