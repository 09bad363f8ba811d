"""The dashboard's pages over HTTP (no browser): the API's auth, the actions by verb, the cost.

On both backends. The browser tests (``test_dashboard_browser.py``) drive the
same pages in Chromium; these check what the server renders and reads.
"""

from __future__ import annotations

import re

import pytest

from remstate.service.dashboard import pages
from remstate.store import Store
from tests.backends import CountingStore
from tests.service import Readers, build, problem

ADMIN = {"Authorization": "Bearer admin"}
READER = {"Authorization": "Bearer reader"}
NOBODY = {"Authorization": "Bearer nobody"}


def rows(html: str) -> list[str]:
    return re.findall(r'<tr data-task="([^"]+)"', html)


def test_permissions_name_each_verb_of_the_caller(store: Store) -> None:
    client, _ = build(store, authorizer=Readers())
    assert client.get("/api/v1/permissions", headers=READER).json() == {
        "get": True,
        "list": True,
        "create": False,
        "update": False,
        "delete": False,
    }
    assert all(client.get("/api/v1/permissions", headers=ADMIN).json().values())
    problem(client.get("/api/v1/permissions", headers=NOBODY), 403, "forbidden")
    problem(client.get("/api/v1/permissions"), 401, "unauthenticated")


def test_without_a_token_the_page_asks_for_one_and_shows_no_data(store: Store) -> None:
    client, m = build(store, authorizer=Readers())
    m.increment_iteration("secret-task")
    page = client.get("/")
    assert page.status_code == 200
    assert '<form id="token-form" class="panel token">' in page.text  # shown, not hidden
    assert "secret-task" not in page.text
    problem(client.get("/ui/loops"), 401, "unauthenticated")
    problem(client.get("/ui/tasks/secret-task"), 401, "unauthenticated")
    problem(client.get("/ui/loops", headers=NOBODY), 403, "forbidden")
    assert rows(client.get("/ui/loops", headers=READER).text) == ["secret-task"]


def test_only_the_actions_the_caller_may_do_are_rendered(store: Store) -> None:
    client, m = build(store, authorizer=Readers())
    m.append_feedback(
        "t1", author="rev", severity="high", issue_type="bug", description="x", id="fb-1"
    )
    admin = client.get("/ui/tasks/t1", headers=ADMIN).text
    assert 'data-url="/api/v1/tasks/t1/feedback/fb-1"' in admin
    assert 'data-url="/api/v1/tasks/t1/status"' in admin
    assert 'data-method="DELETE"' in admin
    reader = client.get("/ui/tasks/t1", headers=READER).text
    assert 'data-entry="fb-1"' in reader
    assert "data-action" not in reader
    assert "data-url" not in reader


def test_text_from_the_store_is_escaped(store: Store) -> None:
    client, m = build(store)
    m.append_feedback(
        "t1", author="<b>rev</b>", severity="low", issue_type="bug", description="<script>x()"
    )
    m.record_error("t1", "<img src=x onerror=alert(1)>")
    loops = client.get("/").text
    task = client.get("/tasks/t1").text
    assert "<img src=x" not in loops
    assert "&lt;img src=x onerror=alert(1)&gt;" in loops
    assert "<script>x()" not in task
    assert "&lt;b&gt;rev&lt;/b&gt;" in task


def test_a_missing_task_is_a_404_page(store: Store) -> None:
    client, _ = build(store)
    page = client.get("/tasks/none")
    assert page.status_code == 404
    assert "none" in page.text


def test_search_is_by_exact_id_and_the_status_filter_is_the_stores(store: Store) -> None:
    client, m = build(store)
    for task in ("a", "ab", "b"):
        m.increment_iteration(task)
    m.set_status("b", "failed")
    assert rows(client.get("/", params={"q": "a"}).text) == ["a"]
    assert rows(client.get("/", params={"status": "failed"}).text) == ["b"]
    assert rows(client.get("/", params={"q": "zz"}).text) == []


def test_pages_follow_the_cursor_and_read_only_their_own_heads(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page of 4 reads 4 heads and lists once, whatever the total; the pages cover all tasks."""
    monkeypatch.setattr(pages, "PAGE_SIZE", 4)
    counting = CountingStore(store)
    client, m = build(counting)  # type: ignore[arg-type]
    for n in range(10):
        m.set_status(f"t{n:02}", "pending")
    seen: list[str] = []
    url: str | None = "/"
    reads: list[int] = []
    while url is not None:
        counting.calls.clear()
        page = client.get(url)
        assert page.status_code == 200
        reads.append(counting.calls.count("get"))
        assert counting.calls.count("list") == 1, counting.calls
        seen += rows(page.text)
        found = re.search(r'<a href="(/\?cursor=[^"]+)" rel="next">', page.text)
        url = None if found is None else found.group(1).replace("&amp;", "&")
    assert sorted(seen) == [f"t{n:02}" for n in range(10)]
    assert reads == [4, 4, 2]


def test_the_feedback_table_pages_with_the_apis_cursor(store: Store) -> None:
    """The task page shows the newest page of feedback; the next comes by the API's cursor."""
    client, m = build(store)
    for n in range(pages.FEEDBACK_PAGE + 5):
        m.append_feedback(
            "t1", author="r", severity="low", issue_type="bug", description="d", id=f"f{n:02}"
        )
    first = client.get("/ui/tasks/t1").text
    shown = re.findall(r'data-entry="([^"]+)"', first)
    assert shown == [f"f{n:02}" for n in reversed(range(5, pages.FEEDBACK_PAGE + 5))]
    cursor = re.search(r'data-cursor="([^"]+)"', first)
    assert cursor is not None
    rest = client.get("/ui/tasks/t1/feedback", params={"cursor": cursor.group(1)})
    assert re.findall(r'data-entry="([^"]+)"', rest.text) == ["f04", "f03", "f02", "f01", "f00"]
    assert rest.headers["X-Next-Cursor"] == ""
