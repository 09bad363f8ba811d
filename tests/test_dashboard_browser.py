"""The dashboard in a real browser (Debian's Chromium, Playwright), against ``remstate serve``.

Each test starts ``remstate serve`` as a process of its own on the test's
store (the embedded one, and a namespace of the real API server), seeds it
from the test process (another process than the server), and drives the
pages as a person would. Screenshots of each page at laptop and phone width
are saved under ``.artifacts/dashboard/`` (see ``tests.browser``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from remstate import StateManager
from remstate.store import Store
from remstate.testing.controlplane import ControlPlane
from remstate.testing.processes import free_ports, kill, spawn
from tests.backends import StoreSpec
from tests.browser import LAPTOP, PHONE, chromium, screenshot, store_url
from tests.test_kube_auth import grant, service_account_token
from tests.test_serve_process import Served, serve

#: The live-update bound the issue sets: a write appears on an open page within it.
LIVE = 2.0


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def served(store_spec: StoreSpec, tmp_path: Path) -> Iterator[Served]:
    url, env = store_url(store_spec)
    with serve(tmp_path, "--store", url, "--no-cleanup", env=env) as s:
        yield s


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=LAPTOP)
    p = context.new_page()
    yield p
    context.close()


def seed(store: Store) -> StateManager:
    """Three loops (near the limit, at it, far from it) and one soft-deleted by the cleanup."""
    m = StateManager(store)
    m.set_policy("near", max_iterations=5)
    for i in range(4):
        m.increment_iteration("near", note=f"attempt {i + 1}", op_id=f"near-{i}")
    for n, severity in enumerate(("high", "high", "critical", "low")):
        m.append_feedback(
            "near",
            author="reviewer",
            severity=severity,
            issue_type="bug",
            description=f"finding {n}",
            id=f"fb-{n}",
        )
    m.resolve_feedback("near", "fb-3")
    m.record_error("near", "tests failed: 3 of 120")
    m.update_metadata("near", {"repo": "acme/api", "pr": 1234})
    m.set_policy("at", max_iterations=3)
    for i in range(3):
        m.increment_iteration("at", op_id=f"at-{i}")
    m.set_status("at", "failed")
    m.set_policy("far", max_iterations=10)
    m.increment_iteration("far", op_id="far-0")
    m.set_status("far", "in_progress")
    # A task last written ten days ago, soft-deleted by a cleanup run now.
    ten_days_ago = datetime.now(UTC) - timedelta(days=10)
    StateManager(store, clock=lambda: ten_days_ago).set_status("old", "completed")
    report = m.cleanup_old_states(ttl="7d", grace="24h", requests_per_second=None)
    assert report.soft_deleted == 1, report
    return m


def row(page: Page, task: str) -> object:
    return page.locator(f'tr[data-task="{task}"]')


class TestLoopsPage:
    def test_lists_the_seeded_tasks_with_their_counts_and_bars(
        self, store: Store, served: Served, page: Page, store_spec: StoreSpec, browser: Browser
    ) -> None:
        """Each row: status, the bar against the limit (coloured near and at it), counts, error."""
        seed(store)
        page.goto(served.url + "/")
        near = page.locator('tr[data-task="near"]')
        expect(near.locator('[role="meter"]')).to_have_attribute("aria-valuenow", "4")
        expect(near.locator('[role="meter"]')).to_have_attribute("aria-valuemax", "5")
        expect(near.locator(".bar")).to_have_class("bar bar-near")
        expect(near.locator("[data-open-high]")).to_have_text("high 2")
        expect(near.locator("[data-open-critical]")).to_have_text("critical 1")
        expect(near.locator("[data-resolved-low]")).to_have_text("low 1")
        expect(near.locator(".error")).to_contain_text("tests failed: 3 of 120")
        at = page.locator('tr[data-task="at"]')
        expect(at.locator(".bar")).to_have_class("bar bar-limit")
        expect(at.locator(".status")).to_have_text("failed")
        far = page.locator('tr[data-task="far"]')
        expect(far.locator(".bar")).to_have_class("bar bar-ok")
        expect(far.locator(".bar-text")).to_have_text("1/10")
        old = page.locator('tr[data-task="old"]')
        expect(old.locator(".cleanup")).to_have_text("soft-deleted, purged in 23 h")
        expect(page.locator("tbody tr")).to_have_count(4)
        # The status filter is the server's.
        page.select_option("#f-status", "failed")
        page.click("text=Filter")
        expect(page.locator("tbody tr")).to_have_count(1)
        expect(page.locator('tr[data-task="at"]')).to_be_visible()
        # And each page at both widths, for a reviewer.
        kind = store_spec.kind
        page.goto(served.url + "/")
        screenshot(page, f"loops-laptop-{kind}")
        page.goto(served.url + "/tasks/near")
        screenshot(page, f"task-laptop-{kind}")
        phone = browser.new_context(viewport=PHONE, is_mobile=True)
        small = phone.new_page()
        small.goto(served.url + "/")
        expect(small.locator('tr[data-task="near"]')).to_be_visible()
        screenshot(small, f"loops-phone-{kind}")
        wide = "document.documentElement.scrollWidth"
        assert small.evaluate(wide) <= PHONE["width"]  # nothing to scroll sideways
        small.goto(served.url + "/tasks/near")
        screenshot(small, f"task-phone-{kind}")
        assert small.evaluate(wide) <= PHONE["width"]
        phone.close()
        dark = browser.new_context(viewport=LAPTOP, color_scheme="dark")
        night = dark.new_page()
        night.goto(served.url + "/")
        expect(night.locator('tr[data-task="near"]')).to_be_visible()
        screenshot(night, f"loops-laptop-dark-{kind}")
        dark.close()

    def test_a_write_from_another_process_appears_without_a_reload(
        self, store: Store, served: Served, page: Page
    ) -> None:
        """An increment made by this process shows on the open page within 2 s; no navigation."""
        m = seed(store)
        page.goto(served.url + "/")
        expect(page.locator("#live")).to_have_text("live")
        navigations: list[str] = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url))
        meter = page.locator('tr[data-task="far"] [role="meter"]')
        expect(meter).to_have_attribute("aria-valuenow", "1")
        start = time.monotonic()
        m.increment_iteration("far", op_id="far-1")
        written = time.monotonic()
        expect(meter).to_have_attribute("aria-valuenow", "2", timeout=LIVE * 1000)
        latency = time.monotonic() - written
        print(f"live update latency: {latency * 1000:.0f} ms (write took {written - start:.3f} s)")
        assert latency < LIVE
        # A new task appears too, and a deleted one goes.
        m.set_status("brand-new", "pending")
        expect(page.locator('tr[data-task="brand-new"]')).to_be_visible(timeout=LIVE * 1000)
        m.delete_state("at")
        expect(page.locator('tr[data-task="at"]')).to_have_count(0, timeout=LIVE * 1000)
        assert navigations == []


class TestTaskPage:
    def test_resolving_a_feedback_entry_changes_the_stored_state(
        self, store: Store, served: Served, page: Page
    ) -> None:
        """The Resolve button of an entry calls the API; the store has it resolved."""
        m = seed(store)
        page.goto(served.url + "/tasks/near")
        entry = page.locator('tr[data-entry="fb-0"]')
        expect(entry.locator(".resolution")).to_have_text("no")
        expect(page.locator(".timeline li")).to_have_count(4)
        expect(page.locator(".timeline li").first).to_contain_text("attempt 4")
        # By keyboard, as anyone who does not use a mouse would.
        entry.get_by_role("button", name="Resolve").focus()
        page.keyboard.press("Enter")
        expect(entry.locator(".resolution")).to_have_text("yes")
        stored = {e.id: e.resolved for e in m.get_feedback_history("near").entries}
        assert stored == {"fb-0": True, "fb-1": False, "fb-2": False, "fb-3": True}

    def test_a_soft_deleted_task_is_restored_from_its_page(
        self, store: Store, served: Served, page: Page
    ) -> None:
        """The page says how long the grace period has left; Restore makes the task active."""
        m = seed(store)
        page.goto(served.url + "/tasks/old")
        expect(page.locator("#cleanup-state")).to_have_text("soft-deleted, purged in 23 h")
        page.get_by_role("button", name="Restore").click()
        expect(page.locator("#cleanup-state")).to_have_text("active")
        expect(page.get_by_role("button", name="Restore")).to_have_count(0)
        page_of_old = m.list_states(label_selector="remstate.io/task=old").summaries
        assert [s.lifecycle for s in page_of_old] == ["active"]

    def test_the_task_page_follows_its_task_live(
        self, store: Store, served: Served, page: Page
    ) -> None:
        """Feedback appended by another process shows in the open task page's table."""
        m = seed(store)
        page.goto(served.url + "/tasks/near")
        expect(page.locator("#live")).to_have_text("live")
        m.append_feedback(
            "near", author="bot", severity="medium", issue_type="test", description="new", id="n1"
        )
        expect(page.locator('tr[data-entry="n1"]')).to_be_visible(timeout=LIVE * 1000)

    def test_setting_the_status_asks_first(self, store: Store, served: Served, page: Page) -> None:
        """A status change is confirmed first: dismissed, nothing is written; accepted, it is."""
        m = seed(store)
        page.goto(served.url + "/tasks/far")
        page.select_option("#new-status", "cancelled")
        page.once("dialog", lambda d: d.dismiss())
        page.get_by_role("button", name="Set").click()
        page.wait_for_timeout(300)  # a request that is not sent has no event to wait for
        assert m.get_state("far").status == "in_progress"
        page.once("dialog", lambda d: d.accept())
        page.get_by_role("button", name="Set").click()
        expect(page.locator(".summary .status")).to_have_text("cancelled")
        assert m.get_state("far").status == "cancelled"


@pytest.mark.kubernetes
class TestClusterAccess:
    def test_a_reader_sees_no_actions_and_a_forged_request_is_refused(
        self,
        controlplane: ControlPlane,
        controlplane_namespace: str,
        tmp_path: Path,
        page: Page,
    ) -> None:
        """In a pod (RBAC decides): the page asks a token; a reader's shows no action, and the
        reader's token in a request made from the page is refused 403; an admin's shows them."""
        ns = controlplane_namespace
        with controlplane.api_client() as admin:
            reader = service_account_token(admin, ns, "reader")
            grant(admin, ns, "reader", ["get", "list", "watch"])
        spec = StoreSpec("kubernetes", ns, kubeconfig=str(controlplane.kubeconfig))
        with spec.open() as store:
            seed(store)
        env = {"KUBECONFIG": str(controlplane.kubeconfig), "KUBERNETES_SERVICE_HOST": "127.0.0.1"}
        url, _ = store_url(spec)
        with serve(tmp_path, "--store", url, "--no-cleanup", env=env) as served:
            page.goto(served.url + "/tasks/near")
            expect(page.locator("#token-form")).to_be_visible()
            page.fill("#token", reader)
            page.click("text=Use token")
            entry = page.locator('tr[data-entry="fb-0"]')
            expect(entry).to_be_visible(timeout=10_000)
            expect(page.get_by_role("button", name="Resolve")).to_have_count(0)
            expect(page.locator("#new-status")).to_have_count(0)
            expect(page.locator("[data-action]")).to_have_count(0)
            screenshot(page, "task-laptop-reader")
            forged = page.evaluate(
                """async () => {
                    const r = await fetch('/api/v1/tasks/near/feedback/fb-0', {
                        method: 'PATCH',
                        headers: {'Content-Type': 'application/json',
                                  'Authorization': 'Bearer ' + sessionStorage['remstate-token']},
                        body: JSON.stringify({resolved: true}),
                    });
                    return [r.status, await r.text()];
                }"""
            )
            assert forged[0] == 403, forged
            assert "may not update configmaps" in json.loads(forged[1])["detail"]
            permissions = page.evaluate(
                """async () => (await fetch('/api/v1/permissions', {headers: {
                    'Authorization': 'Bearer ' + sessionStorage['remstate-token']}})).json()"""
            )
            assert permissions == {
                "get": True,
                "list": True,
                "create": False,
                "update": False,
                "delete": False,
            }
            # The admin's token in the same tab: the actions are there.
            page.evaluate(
                "(token) => sessionStorage.setItem('remstate-token', token)",
                controlplane.admin_token,
            )
            page.reload()
            expect(page.get_by_role("button", name="Resolve").first).to_be_visible(timeout=10_000)
            expect(page.locator("#new-status")).to_be_visible()
        with spec.open() as store:
            unchanged = StateManager(store).get_feedback_history("near").entries
        assert [e.resolved for e in unchanged] == [False, False, False, True]


class TestReconnect:
    def test_the_page_reconnects_after_the_service_restarts(
        self, store: Store, store_spec: StoreSpec, tmp_path: Path, page: Page
    ) -> None:
        """The service stops: the page says it is reconnecting; it comes back on the same port:
        the page is live again and shows a write made while it was down, without a reload."""
        m = seed(store)
        url, env = store_url(store_spec)
        (port,) = free_ports(1)
        argv = ["--store", url, "--no-cleanup"]
        with serve_on(tmp_path / "first", port, argv, env) as first:
            page.goto(first.url + "/")
            expect(page.locator("#live")).to_have_text("live")
            first.proc.send_signal(signal.SIGTERM)
            assert first.proc.wait(timeout=30) == 0
        expect(page.locator("#live")).to_have_text("reconnecting…")
        m.increment_iteration("far", op_id="while-down")
        with serve_on(tmp_path / "second", port, argv, env):
            # EventSource retries every 2 s (the stream's retry field): 2 s, and the start's.
            expect(page.locator("#live")).to_have_text("live", timeout=15_000)
            meter = page.locator('tr[data-task="far"] [role="meter"]')
            expect(meter).to_have_attribute("aria-valuenow", "2", timeout=LIVE * 1000)


@contextlib.contextmanager
def serve_on(where: Path, port: int, argv: list[str], env: dict[str, str]) -> Iterator[Served]:
    """``remstate serve`` on a given port (a restart keeps its address)."""
    where.mkdir()
    log = where / "serve.log"
    command = [sys.executable, "-m", "remstate.cli", "serve", "--port", str(port), *argv]
    with log.open("wb") as out:
        proc = spawn(
            command, log=out, env={**os.environ, "PYTHONUNBUFFERED": "1", **env}, cwd=where
        )
        served = Served(proc, port, log)
        try:
            served.wait_until_up()
            yield served
        finally:
            kill(proc)
