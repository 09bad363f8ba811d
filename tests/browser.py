"""The browser tests' tools: Debian's Chromium driven by Playwright, and a served store.

Playwright's own browser download is never used: the browser is the system's
``/usr/bin/chromium`` (``make test`` installs it from Debian's packages when it
is missing), launched headless with ``executable_path``. Screenshots go to
``.artifacts/dashboard/`` at the repository's root (gitignored), or to
``$REMSTATE_ARTIFACTS``, for a reviewer to look at after the run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

from tests.backends import StoreSpec

__all__ = ["ARTIFACTS", "CHROMIUM", "LAPTOP", "PHONE", "chromium", "screenshot", "store_url"]

CHROMIUM = "/usr/bin/chromium"
LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
ARTIFACTS = Path(
    os.environ.get("REMSTATE_ARTIFACTS")
    or Path(__file__).resolve().parent.parent / ".artifacts" / "dashboard"
)


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless (``--no-sandbox``: the tests may run as root in a container)."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Page, name: str) -> Path:
    """Save the whole page as ``ARTIFACTS/name.png``; its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def store_url(spec: StoreSpec) -> tuple[str, dict[str, str]]:
    """The ``--store`` URL of ``spec`` for ``remstate serve``, and the environment it needs."""
    if spec.kind == "embedded":
        return f"sqlite://{spec.path}", {}
    assert spec.kubeconfig is not None
    return f"kubernetes://{spec.namespace}", {"KUBECONFIG": spec.kubeconfig}
