"""Make ``docs/dashboard.png``, the README's picture of the loops page.

``.venv/bin/python hack/dashboard_screenshot.py``: seeds a temporary embedded
store with a few loops, serves it with ``remstate serve``, and screenshots the
loops page in Debian's Chromium (as the browser tests do), 1100 px wide;
then ``pngquant`` (Debian's package) shrinks it to a palette, when installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.sync_api import sync_playwright

from remstate import StateManager
from remstate.store.embedded import EmbeddedStore
from remstate.testing.processes import free_ports

ROOT = Path(__file__).resolve().parent.parent
FINDINGS = [
    ("critical", "security", "token logged in plain text"),
    ("high", "bug", "retry loop never backs off"),
    ("medium", "test", "no test for the 409 path"),
    ("low", "style", "long function"),
]


def seed(db: Path) -> None:
    store = EmbeddedStore(str(db))
    now = datetime.now(UTC)
    loops = [
        ("fix-flaky-login-test", 9, 10, "in_progress", 3, 1, "pytest: 2 failed, 118 passed"),
        ("bump-openssl-cve-2026", 10, 10, "failed", 2, 0, "max iterations reached"),
        ("refactor-billing-retry", 4, 10, "awaiting_review", 2, 2, None),
        ("docs-api-pagination", 2, 8, "completed", 0, 4, None),
        ("migrate-config-v2", 6, 8, "in_progress", 1, 0, "kubectl apply: conflict"),
    ]
    for age, (task, done, limit, status, opened, resolved, error) in enumerate(loops):
        at = now - timedelta(minutes=7 * age + 1)
        m = StateManager(store, clock=lambda at=at: at)
        m.set_policy(task, max_iterations=limit)
        for i in range(done):
            m.increment_iteration(task, note=f"attempt {i + 1}")
        for n in range(opened + resolved):
            severity, kind, text = FINDINGS[n % len(FINDINGS)]
            m.append_feedback(
                task, author="reviewer", severity=severity, issue_type=kind, description=text
            )
            if n >= opened:
                m.resolve_feedback(task, m.get_state(task).feedback_history[-1].id)
        if error:
            m.record_error(task, error)
        m.set_status(task, status)
    old = StateManager(store, clock=lambda: now - timedelta(days=9))
    old.set_status("cleanup-stale-branches", "completed")
    StateManager(store).cleanup_old_states(ttl="7d", grace="24h", requests_per_second=None)
    store.close()


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "state.db"
        seed(db)
        (port,) = free_ports(1)
        argv = [sys.executable, "-m", "remstate.cli", "--store", f"sqlite://{db}", "serve"]
        proc = subprocess.Popen(
            [*argv, "--port", str(port), "--no-cleanup"], stderr=subprocess.DEVNULL
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(url + "/healthz", timeout=1)  # noqa: S310
                    break
                except OSError:
                    time.sleep(0.1)
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path="/usr/bin/chromium", args=["--no-sandbox"]
                )
                page = browser.new_page(viewport={"width": 1100, "height": 400})
                page.goto(url + "/")
                page.wait_for_selector("#live[data-state=on]")
                out = ROOT / "docs" / "dashboard.png"
                page.screenshot(path=str(out), full_page=True)
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    if shutil.which("pngquant"):
        subprocess.run(["pngquant", "--force", "--ext", ".png", "64", str(out)], check=True)
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
