"""The dashboard in a real browser: ``streamlit run`` + Playwright driving Debian's Chromium.

Install the browser with ``apt-get install -y chromium`` (never ``playwright install``). The test opens
every page and checks that no exception element appears, moves the temperature slider with the keyboard
and sees the numbers change, then starts a tiny run from the Train page and waits until it is finished.
Set KDLAB_UPDATE_SCREENSHOT=1 to refresh docs/screenshot.png from the Train page.
"""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGES = ["Setup", "Layer mapping", "Temperature lab", "Train", "Compare runs", "Out of domain", "Inspect", "Deploy",
         "Ranking", "Studies"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian Chromium is not installed (apt-get install -y chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(runs: Path, **env_extra):
    """``streamlit run app/main.py`` on a free local port with the tiny preset and the run store ``runs``; yields
    the URL."""
    port = free_port()
    env = dict(os.environ, KDLAB_RUNS=str(runs), KDLAB_APP_PRESET="tiny", **env_extra)  # kdlab is installed
    log = open(runs / "streamlit.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py"),
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail("streamlit did not start:\n" + (runs / "streamlit.log").read_text()[-3000:])
            time.sleep(0.5)
    try:
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    runs = tmp_path_factory.mktemp("browser-runs")
    with serve(runs) as url:
        yield url, runs


@contextmanager
def browser_page():
    """A Playwright page in Debian's Chromium that records every request leaving the machine."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1500, "height": 1000})
        pg.set_default_timeout(120_000)
        # offline: every request the pages make goes to the local server (no CDN, fonts or telemetry)
        pg.external_requests = []
        pg.on("request", lambda r: r.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:"))
              or pg.external_requests.append(r.url))
        try:
            yield pg
        finally:
            browser.close()


@pytest.fixture(scope="module")
def page(server):
    with browser_page() as pg:
        yield pg


def wait_idle(pg):
    """Wait until the script run is over (no running indicator) and the main block has content."""
    pg.wait_for_selector('[data-testid="stMain"]')
    pg.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
                         " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
                         timeout=180_000)
    pg.wait_for_timeout(500)


def open_page(pg, url, title):
    """Open a page through the sidebar navigation and wait until its script run is over."""
    if not pg.url.startswith(url):
        pg.goto(url)
        pg.wait_for_selector('[data-testid="stSidebarNav"]', timeout=180_000)
    pg.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    pg.locator("h1", has_text=title).first.wait_for(timeout=180_000)
    wait_idle(pg)
    assert pg.locator('[data-testid="stException"]').count() == 0, pg.locator('[data-testid="stException"]').first.inner_text()


def test_every_page_opens_without_exception(server, page):
    url, _ = server
    for path in PAGES:
        open_page(page, url, path)
    # the Setup page shows the tiny data
    open_page(page, url, "Setup")
    assert "96 train" in page.inner_text('[data-testid="stMain"]')
    assert page.external_requests == [], sorted(set(page.external_requests))


def test_start_tiny_run_and_see_it_finish(server, page):
    url, runs = server
    open_page(page, url, "Train")
    box = page.locator('[data-testid="stSelectbox"]').first
    box.click()
    page.keyboard.type("hidden")
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Start run").click()
    page.get_by_text("status: finished").first.wait_for(timeout=420_000)
    page.wait_for_timeout(2500)  # one more fragment refresh draws the final curves
    assert page.locator('[data-testid="stException"]').count() == 0
    from kdlab.runs.store import Store
    done = [r for r in Store(runs).runs() if r["kind"] != "teacher"]
    assert done and done[0]["status"] == "finished" and done[0]["method"] == "hidden"
    shot = runs / "train.png"
    page.set_viewport_size({"width": 1500, "height": 1750})  # loss, W and the per-layer small multiples
    page.wait_for_timeout(2500)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("KDLAB_UPDATE_SCREENSHOT") == "1":
        shutil.copy(shot, ROOT / "docs" / "screenshot.png")


def test_temperature_slider_changes_numbers_after_the_run(server, page):
    url, _ = server
    open_page(page, url, "Temperature lab")
    page.wait_for_selector('[data-testid="stMetricValue"]')

    def values():
        return [e.inner_text() for e in page.query_selector_all('[data-testid="stMetricValue"]')]

    before = values()
    slider = page.locator('[data-testid="stSlider"] input[type="range"], [data-testid="stSlider"] [role="slider"]').first
    slider.focus()
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    page.wait_for_function("(b) => Array.from(document.querySelectorAll('[data-testid=\"stMetricValue\"]'))"
                           ".map(e => e.innerText).join('|') !== b", arg="|".join(before), timeout=60_000)
    wait_idle(page)
    after = values()
    assert after != before
    thumb = page.locator('[data-testid="stSliderThumbValue"]').first.inner_text()
    assert float(thumb) == 4.0  # 2.0 + 4 x 0.5
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.external_requests == [], sorted(set(page.external_requests))  # the whole session stayed local
