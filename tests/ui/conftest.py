"""The dashboard tests: a real embedded server (`infoprune serve`) with a tiny LLaVA model, and Debian's
Chromium driven by Playwright with the network cut off (a dead proxy for everything but loopback, and any
request leaving the server's origin aborted and recorded). Screenshots go to tests/ui/screenshots/."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.service.helpers import create_key, env_for, start, stop, wait_until

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).parent / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--proxy-server=http://127.0.0.1:9",  # nothing listens there: only loopback (never proxied) is reachable
]


@dataclass
class Dashboard:
    base: str
    key: str
    data: Path  # the server's data dir: no page may show it
    log: Path
    client: httpx.Client

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass
class Traffic:
    """What the browser asked for: every request, and those that left the server's origin (aborted)."""

    requests: list[Any] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # console errors and uncaught page errors


# package scope: the server and the browser stop once tests/ui are done
@pytest.fixture(scope="package")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    from tests.core.tiny_models import FAMILIES, save_with_processor

    root = tmp_path_factory.mktemp("dashboard")
    data = root / "data"
    save_with_processor(FAMILIES["llava"](), data / "models" / "tiny-llava")
    env = env_for(data_dir=data)
    key = create_key(env, "platform")
    port = free_port()
    log = root / "serve.log"
    server = start(["serve", "--port", str(port)], env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            wait_until(lambda: _up(client), 120, "the server")
            yield Dashboard(base, key, data, log, client)
    finally:
        stop(server)


def _up(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/setup_ui.sh` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # launch() gives every run a fresh, temporary user-data-dir
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def traffic() -> Traffic:
    return Traffic()


@pytest.fixture
def page(browser: Any, dashboard: Dashboard, traffic: Traffic) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})

    def outside(route: Any) -> None:
        traffic.outside.append(route.request.url)
        route.abort()

    context.route(lambda url: not url.startswith(dashboard.base + "/"), outside)
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    tab.on("request", lambda r: traffic.requests.append(r))
    tab.on("console", lambda m: m.type == "error" and traffic.problems.append(m.text))
    tab.on("pageerror", lambda e: traffic.problems.append(str(e)))
    yield tab
    context.close()


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Any:
    """shot(page, "step") writes tests/ui/screenshots/<test>-<step>.png."""
    SCREENSHOTS.mkdir(exist_ok=True)
    for old in SCREENSHOTS.glob(f"{request.node.name}-*.png"):
        old.unlink()

    def take(tab: Any, step: str) -> Path:
        path = SCREENSHOTS / f"{request.node.name}-{step}.png"
        tab.screenshot(path=str(path), full_page=True)
        return path

    return take


def sign_in(tab: Any, dashboard: Dashboard, key: str | None = None) -> None:
    tab.goto(f"{dashboard.base}/ui")
    tab.fill("#api-key", key or dashboard.key)
    tab.click("#login button[type=submit]")
