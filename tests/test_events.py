"""``GET /api/v1/events``: one store watch per process, fanned out to every open stream.

Against a real ``remstate serve`` process on each backend (the Kubernetes one
on the real API server), with streams read by httpx's AsyncClient and writes
made by this test process, another process than the server. The hub's own
rules (a slow reader dropped, not blocking the others) are tested in process,
on a real store; the auth refusals on the app with the tests' authorizer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from remstate import StateManager
from remstate.service.events import Event, EventHub
from remstate.service.routes.events import event_stream
from remstate.store import Store
from tests.backends import StoreSpec
from tests.service import Readers, build, problem
from tests.test_serve_process import Served, metric, serve

EVENTS = "/api/v1/events"
#: How long a stream may wait for an event before the test calls it lost.
WAIT = 60.0
STREAMS = 50
#: Writes timed for the latency figure.
SAMPLES = 20


class Stream:
    """One open event stream, parsed: each event as its fields (event, id, data)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()

    async def next(self, timeout: float = WAIT) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        while True:
            line = await asyncio.wait_for(anext(self.lines), timeout)
            if line.startswith(":"):
                continue
            if line == "":
                if "event" in fields:
                    if "data" in fields:
                        fields["data"] = json.loads(fields["data"])
                    return fields
                fields = {}
                continue
            key, _, value = line.partition(":")
            fields[key] = value.removeprefix(" ")

    async def ready(self) -> dict[str, Any]:
        """Events up to ``ready`` (a replay first, if any); the replayed ones, then ready."""
        event = await self.next()
        assert event["event"] in {"ready", "resync", "added", "modified", "deleted"}, event
        return event


@contextlib.asynccontextmanager
async def streams(
    url: str, count: int, *, params: Any = None, headers: dict[str, str] | None = None
) -> AsyncIterator[list[Stream]]:
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(WAIT), limits=limits) as client,
        contextlib.AsyncExitStack() as stack,
    ):
        opened = []
        for _ in range(count):
            response = await stack.enter_async_context(
                client.stream("GET", url + EVENTS, params=params, headers=headers)
            )
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            opened.append(Stream(response))
        yield opened


@pytest.fixture
def served(store_spec: StoreSpec, tmp_path: Path) -> Iterator[Served]:
    """``remstate serve`` on this test's store, in a process of its own."""
    if store_spec.kind == "embedded":
        args = ("--store", f"sqlite://{store_spec.path}")
        env = None
    else:
        args = ("--store", f"kubernetes://{store_spec.namespace}")
        env = {"KUBECONFIG": str(store_spec.kubeconfig)}
    with store_spec.open() as store:
        StateManager(store).increment_iteration("seed")  # the file exists; the hub has a floor
    with serve(tmp_path, *args, "--no-cleanup", env=env) as process:
        yield process


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


class TestFanOut:
    def test_fifty_streams_cost_one_store_watch(
        self, served: Served, store: Store, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """50 open streams: one watch; each write reaches all 50; SIGTERM ends them, exit 0."""
        manager = StateManager(store, max_iterations=1000)
        latencies: list[float] = []

        async def scenario() -> None:
            async with streams(served.url, STREAMS) as opened:
                readies = await asyncio.gather(*(s.ready() for s in opened))
                assert {e["event"] for e in readies} == {"ready"}
                for n in range(1, SAMPLES + 1):
                    started = time.perf_counter()
                    await asyncio.to_thread(manager.increment_iteration, "t")
                    first = await opened[0].next()
                    latencies.append(time.perf_counter() - started)
                    rest = await asyncio.gather(*(s.next() for s in opened[1:]))
                    for event in (first, *rest):
                        assert event["event"] == ("added" if n == 1 else "modified"), event
                        assert event["data"]["task"]["task_id"] == "t"
                        assert event["data"]["task"]["iteration"] == n
                        assert event["id"] == event["data"]["resource_version"]
                    assert len({e["id"] for e in (first, *rest)}) == 1
                stats = await asyncio.to_thread(
                    lambda: (
                        metric(served, "remstate_store_watches_total"),
                        metric(served, "remstate_event_streams"),
                    )
                )
                assert stats == (1.0, float(STREAMS))
                served.proc.send_signal(signal.SIGTERM)
                ended = await asyncio.gather(*(drain(s) for s in opened))
                assert all(ended)

        run(scenario())
        # The graceful timeout is 60 s: the streams did not hold the stop that long.
        assert served.proc.wait(timeout=30) == 0
        with capsys.disabled():
            print(
                f"\nSSE latency, write to event, {SAMPLES} writes, {STREAMS} streams: "
                f"median {statistics.median(latencies) * 1000:.1f} ms, "
                f"max {max(latencies) * 1000:.1f} ms"
            )


async def drain(stream: Stream) -> bool:
    """Read the stream to its end; whether it ended (rather than timed out)."""
    try:
        while True:
            await asyncio.wait_for(anext(stream.lines), WAIT)
    except (StopAsyncIteration, httpx.TransportError):
        return True
    except TimeoutError:
        return False


class TestFilters:
    def test_task_and_status_select_the_changes(self, served: Served, store: Store) -> None:
        """``?task=`` and ``?status=`` (repeatable): only those changes, and a task leaving S."""
        manager = StateManager(store)

        async def scenario() -> None:
            params = [("task", "a"), ("task", "c"), ("status", "failed")]
            async with (
                streams(served.url, 1, params=params) as (failed_a,),
                streams(served.url, 1, params={"task": "b"}) as (only_b,),
            ):
                await failed_a.ready()
                await only_b.ready()
                for write in (
                    lambda: manager.increment_iteration("a"),  # pending: not for failed_a
                    lambda: manager.increment_iteration("b"),
                    lambda: manager.set_status("a", "failed"),
                    lambda: manager.set_status("b", "failed"),
                    lambda: manager.increment_iteration("a"),
                    lambda: manager.set_status("a", "completed"),  # leaves failed: still shown
                ):
                    await asyncio.to_thread(write)
                got = [await failed_a.next() for _ in range(3)]
                tasks = [(e["data"]["task"]["task_id"], e["data"]["task"]["status"]) for e in got]
                assert tasks == [("a", "failed"), ("a", "failed"), ("a", "completed")]
                assert [e["data"]["task"]["iteration"] for e in got] == [1, 2, 2]
                previous = [e["data"]["previous_status"] for e in got]
                assert previous == ["pending", "failed", "failed"]
                b = [await only_b.next(), await only_b.next()]
                assert [(e["event"], e["data"]["task"]["status"]) for e in b] == [
                    ("added", "pending"),
                    ("modified", "failed"),
                ]

        run(scenario())

    def test_an_unknown_status_is_400(self, served: Served) -> None:
        """A status that is not one is refused before any stream opens."""
        r = httpx.get(served.url + EVENTS, params={"status": "bored"}, timeout=WAIT)
        assert r.status_code == 400
        assert r.headers["content-type"] == "application/problem+json"


class TestResume:
    def test_last_event_id_replays_what_was_missed(self, served: Served, store: Store) -> None:
        """Reconnected with Last-Event-ID: the later changes, none twice; too old: resync."""
        manager = StateManager(store)

        async def scenario() -> None:
            async with streams(served.url, 1) as (first,):
                await first.ready()
                await asyncio.to_thread(manager.increment_iteration, "r")
                seen = await first.next()
                await asyncio.to_thread(manager.increment_iteration, "r")
                await asyncio.to_thread(manager.increment_iteration, "r")
                # Once this stream has them, the hub has them: the resume below
                # must replay them, however slowly the store's watch delivered.
                await first.next()
                await first.next()
            # The header wins over ?since= (an EventSource keeps its URL when it reconnects).
            headers = {"Last-Event-ID": seen["id"]}
            async with streams(served.url, 1, params={"since": "1"}, headers=headers) as (again,):
                replayed = [await again.next(), await again.next(), await again.next()]
                assert [e["event"] for e in replayed] == ["modified", "modified", "ready"]
                assert [e["data"]["task"]["iteration"] for e in replayed[:2]] == [2, 3]
                assert int(replayed[0]["id"]) > int(seen["id"])
                assert replayed[2]["data"]["replayed"] == 2
            async with streams(served.url, 1, params={"since": "1"}) as (old,):
                assert (await old.next())["event"] == "resync"
                assert (await old.next())["event"] == "ready"

        run(scenario())


class TestAuth:
    def test_refusals_come_before_the_stream(self, store: Store) -> None:
        """No token 401; no list right 403; ``?access_token=`` counts here, and only here."""
        client = build(store, authorizer=Readers())[0]
        problem(client.get(EVENTS), 401, "unauthenticated")
        problem(client.get(EVENTS, headers={"Authorization": "Bearer nobody"}), 403, "forbidden")
        problem(client.get(EVENTS, params={"access_token": "nobody"}), 403, "forbidden")
        problem(
            client.get("/api/v1/tasks", params={"access_token": "admin"}), 401, "unauthenticated"
        )

    def test_access_token_opens_a_stream_and_is_never_logged(self, tmp_path: Path) -> None:
        """With a token file: 401 without it; the query's token opens a stream; not in the log."""
        secret = "s3cret-token-for-events"
        (tmp_path / "token").write_text(secret)
        db = f"sqlite://{tmp_path / 'state.db'}"
        args = ("--store", db, "--no-cleanup", "--token-file", str(tmp_path / "token"))
        with serve(tmp_path, *args) as served:
            assert httpx.get(served.url + EVENTS, timeout=WAIT).status_code == 401

            async def scenario() -> None:
                params = {"access_token": secret}
                async with streams(served.url, 1, params=params) as (stream,):
                    assert (await stream.next())["event"] == "ready"
                bearer = {"Authorization": f"Bearer {secret}"}
                async with streams(served.url, 1, headers=bearer) as (stream,):
                    assert (await stream.next())["event"] == "ready"

            run(scenario())
            served.proc.send_signal(signal.SIGTERM)
            assert served.proc.wait(timeout=30) == 0
        log = served.log.read_text()
        assert "GET /api/v1/events" in log
        assert secret not in log


class TestHub:
    def test_a_slow_reader_is_dropped_with_resync_and_blocks_no_one(self, store: Store) -> None:
        """A reader that does not read: dropped after a resync; the other gets every change."""
        manager = StateManager(store)

        async def scenario() -> None:
            hub = EventHub(store, window=5)
            await hub.start()
            slow, fast = hub.subscribe(queue_size=3), hub.subscribe()
            assert (await fast.get(WAIT)) is not None  # ready

            async def read() -> list[Event | None]:
                return [await fast.get(WAIT) for _ in range(6)]

            reader = asyncio.create_task(read())
            for _ in range(6):
                await asyncio.to_thread(manager.increment_iteration, "s")
            got = await reader
            assert [e.data["task"]["iteration"] for e in got if e is not None] == [1, 2, 3, 4, 5, 6]
            left = [await slow.get(WAIT), await slow.get(WAIT)]
            assert left[0] is not None
            assert left[0].kind == "resync"
            assert left[0].data["reason"] == "slow"
            assert left[1] is None
            assert hub.subscribers == 1
            assert hub.watches == 1
            hub.close()
            assert await fast.get(WAIT) is None

        run(scenario())

    def test_an_idle_stream_gets_heartbeats_and_ends_when_the_hub_closes(
        self, store: Store
    ) -> None:
        """The stream's body: reconnect delay, ready, a heartbeat comment when idle, then end."""

        async def scenario() -> list[str]:
            hub = EventHub(store, window=5, heartbeat=0.2)
            await hub.start()
            body = event_stream(hub.subscribe(), hub.heartbeat)
            chunks = [await anext(body) for _ in range(3)]
            hub.close()
            chunks += [chunk async for chunk in body]
            assert hub.subscribers == 0
            return chunks

        chunks = run(scenario())
        assert chunks[0] == "retry: 2000\n\n"
        assert chunks[1].startswith("event: ready\n")
        assert chunks[2:] == [": heartbeat\n\n"]
