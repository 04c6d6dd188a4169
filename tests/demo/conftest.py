"""Fixtures of the demo tests: a server with the demo on, and headless Chromium.

Browser tests (marker ``browser``) drive Debian's ``chromium`` through
Playwright for Python, never a downloaded browser. Without Playwright or
chromium they are skipped, except in CI (``CI=true``), where they fail.

``open_page(url)`` opens the page in a fresh browser context and records its
console errors and uncaught exceptions; at the end of the test every page
must have none (a test that expects network errors, e.g. while the server is
down, lets those through with ``page.allow_network_errors()``). Screenshots go
to ``test-artifacts/demo/`` (gitignored).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.api import ADMIN_SECRET, SECRET
from tests.support.broker import in_ci
from tests.support.server import REPO, RunningServer

CHROMIUM = Path(os.environ.get("CHANNELSTREAM_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = REPO / "test-artifacts" / "demo"
#: [app:main] keys of the demo's test servers: the known test secrets (the other
#: timings stay development.ini's: a demo connection lives 30 s without a transport).
DEMO_APP = {"secret": SECRET, "admin_secret": ADMIN_SECRET}

#: How long a browser expectation waits (the machine is small and shared).
EXPECT_TIMEOUT_MS = 20_000

#: Console errors that are the browser reporting a network failure (the server
#: was down, a link was cut), not a fault of the page.
NETWORK_ERROR = re.compile(
    r"net::ERR_|Failed to load resource|WebSocket connection to .* failed|"
    r"WebSocket is closed before the connection is established"
)


def expect(locator: object) -> object:
    """Playwright's ``expect`` (imported late: the module loads without Playwright)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def message(page: object, text: str) -> object:
    """The chat messages of ``page`` that contain ``text``."""
    return page.locator("[data-test=message]", has_text=text)


def _missing_browser() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not CHROMIUM.exists():
        return f"chromium not found at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """One headless Chromium for the session (skipped without it, failed in CI)."""
    missing = _missing_browser()
    if missing:
        if in_ci():
            pytest.fail(f"{missing} (CI is set: browser tests must run)")
        pytest.skip(missing)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Page:
    """A demo page in its own browser context, with what its console said."""

    def __init__(self, context: object, url: str) -> None:
        self.context = context
        self.page = context.new_page()
        self.page.set_default_timeout(EXPECT_TIMEOUT_MS)
        self.errors: list[str] = []
        self.network_errors_allowed = False
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        self.page.goto(url + "/demo")

    def _console(self, message: object) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def allow_network_errors(self) -> None:
        """From now on, console errors that report a network failure are expected."""
        self.network_errors_allowed = True

    def faults(self) -> list[str]:
        if not self.network_errors_allowed:
            return list(self.errors)
        return [e for e in self.errors if not NETWORK_ERROR.search(e)]

    def sign_in(self, name: str) -> None:
        from playwright.sync_api import expect

        self.page.fill("[data-test=name]", name)
        self.page.click("[data-test=signin] button")
        expect(self.page.locator("[data-test=me] b")).to_have_text(name)

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """Keep each phase's report on the item (``open_page`` screenshots failures)."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def open_page(browser: object, request: pytest.FixtureRequest) -> Iterator[Callable[[str], Page]]:
    """``open_page(server_url)`` -> :class:`Page`; checks the consoles at the end.

    When the test failed, each page is saved as ``failed-<test>-<n>.png``.
    """
    pages: list[Page] = []

    def open_(url: str) -> Page:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = Page(context, url)
        pages.append(page)
        return page

    yield open_
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        for index, page in enumerate(pages):
            page.screenshot(f"failed-{request.node.name}-{index}")
    faults = {i: page.faults() for i, page in enumerate(pages)}
    for page in pages:
        page.context.close()
    assert not any(faults.values()), f"console errors: {faults}"


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A development.ini server (demo on) with the known test secrets, per module."""
    with start_server(tmp_path_factory.mktemp("demo")) as server:
        yield server


def start_server(folder: Path, **app: str | None) -> RunningServer:
    """A development.ini server with the test secrets and ``app`` keys (not started)."""
    return RunningServer(REPO / "development.ini", folder, app={**DEMO_APP, **app})
