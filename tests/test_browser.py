"""The dashboard in Debian's headless Chromium (driven by Playwright), served by an Oculus subprocess."""

from __future__ import annotations

import os
import re
import shutil
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.servers import OculusProcess, ProbeTargetServer, closed_port, free_port, http_get, wait_for

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    pytest.skip(f"{CHROMIUM} is missing; install Debian's chromium package to run the browser tests",
                allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402

# The proxy on the discard port makes any request that is not to loopback fail instead of leaving the host.
CHROMIUM_ARGS = ["--no-sandbox", "--proxy-server=http://127.0.0.1:9", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
SHARED_SCREENSHOT = Path("/tmp/oculus-dashboard.png")
# A zone with a half-hour offset and no daylight saving time, so local and UTC times always differ.
BROWSER_ZONE = "Asia/Kolkata"
BROWSER_OFFSET = timedelta(hours=5, minutes=30)
WAIT_MS = 15_000
OK_ROW = '[data-symbol="net.http.ok_site"]'


@pytest.fixture(scope="module")
def oculus(tmp_path_factory):
    """Oculus from this checkout with collectors that run every second, enough rows to scroll."""
    target = ProbeTargetServer().start()
    workdir = tmp_path_factory.mktemp("browser")
    collectors = [
        {"type": "http", "name": "ok_site", "url": f"{target.url}/ok", "interval": "1s", "timeout": "2s"},
        {"type": "http", "name": "error_site", "url": f"{target.url}/error", "interval": "1s", "timeout": "2s"},
        {"type": "tcp", "name": "closed_port", "host": "127.0.0.1", "port": closed_port(), "interval": "1s",
         "timeout": "1s"},
        {"type": "ping", "name": "loopback", "host": "127.0.0.1", "count": 1, "interval": "1s", "timeout": "1s"},
        # A long URL and a long name must not widen the page on a phone.
        {"type": "http", "name": "a_service_with_a_rather_long_name_for_a_small_screen",
         "url": f"{target.url}/ok?{'query=' + 'x' * 150}", "interval": "1s", "timeout": "2s"},
    ]
    collectors += [{"type": "http", "name": f"service_{index}", "url": f"{target.url}/ok", "interval": "1s",
                    "timeout": "2s"} for index in range(1, 9)]
    (workdir / "oculus.yaml").write_text(yaml.safe_dump({"collectors": collectors}), encoding="utf-8")

    env = {key: value for key, value in os.environ.items() if not key.startswith("OCULUS_")}
    port = free_port()
    process = OculusProcess([sys.executable, "-m", "oculus", "run", "-c", "oculus.yaml", "--port", str(port)],
                            cwd=workdir, port=port, env=env)
    process.start(timeout=30.0)
    try:
        wait_for(lambda: http_get(f"{process.url}/api/metrics?symbol=net.http.service_8.status").json()["count"],
                 timeout=20.0, what="samples of every collector")
        yield process
    finally:
        process.stop()
        target.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_page(browser, url: str, width: int = 1280, height: int = 900):
    """Open `url` in a new context using BROWSER_ZONE, after its rows have rendered."""
    context = browser.new_context(viewport={"width": width, "height": height}, locale="en-US",
                                  timezone_id=BROWSER_ZONE)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector(f"{OK_ROW} time")
    return page


def body_rgba(page, css_property: str) -> list[int]:
    """Return [r, g, b, a] of a color property of <body>, painted on a canvas because Chromium reports oklch."""
    return page.evaluate("""(property) => {
        const canvas = document.createElement("canvas");
        canvas.width = canvas.height = 1;
        const context = canvas.getContext("2d");
        context.fillStyle = getComputedStyle(document.body)[property];
        context.fillRect(0, 0, 1, 1);
        return Array.from(context.getImageData(0, 0, 1, 1).data);
    }""", css_property)


def test_page_requests_only_loopback(browser, oculus):
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    requested, failed = [], []
    page.on("request", lambda request: requested.append(request.url))
    page.on("requestfailed", lambda request: failed.append(request.url))

    page.goto(oculus.url + "/")
    # One HTMX refresh, so the polling requests are recorded too.
    with page.expect_request(lambda request: "/partials/metrics" in request.url):
        pass
    context.close()

    assert requested, "the page made no requests"
    for url in requested:
        assert urlsplit(url).hostname == "127.0.0.1", f"request left loopback: {url}"
    assert failed == [], f"requests failed: {failed}"


def test_htmx_loaded(browser, oculus):
    page = open_page(browser, oculus.url + "/")
    assert page.evaluate("typeof htmx") == "object"
    page.context.close()


def test_css_dark_background(browser, oculus):
    page = open_page(browser, oculus.url + "/")
    red, green, blue, alpha = body_rgba(page, "backgroundColor")
    page.context.close()
    assert alpha == 255, "the body has no opaque background, so oculus.css did not apply"
    assert max(red, green, blue) < 60, f"body background is not dark: rgb({red}, {green}, {blue})"


def test_css_light_text(browser, oculus):
    page = open_page(browser, oculus.url + "/")
    red, green, blue, _ = body_rgba(page, "color")
    page.context.close()
    assert min(red, green, blue) > 150, f"body text is not light: rgb({red}, {green}, {blue})"


def test_time_local_format(browser, oculus):
    page = open_page(browser, oculus.url + "/")
    element = page.locator(f"{OK_ROW} time")
    stamp, text = element.get_attribute("datetime"), element.inner_text()
    page.context.close()

    local = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(timezone(BROWSER_OFFSET))
    hour = local.hour % 12 or 12
    expected = rf"^{hour}:{local.minute:02d}:{local.second:02d}\s?{'AM' if local.hour < 12 else 'PM'}$"
    assert text != stamp, "the <time> still shows the UTC ISO string"
    assert re.match(expected, text), f"{text!r} is not {stamp} as en-US time in {BROWSER_ZONE}"


def test_htmx_swap_updates_time(browser, oculus):
    # A short window, so the page scrolls and a kept scroll position can be seen.
    page = open_page(browser, oculus.url + "/", width=1280, height=400)
    before = page.locator(f"{OK_ROW} time").get_attribute("datetime")
    page.evaluate("""() => {
        document.getElementById("metrics").dataset.testMarker = "kept";
        document.querySelector('[data-symbol="net.http.ok_site"] time').dataset.testMarker = "old";
        window.scrollTo(0, 150);
    }""")
    scroll_before = page.evaluate("window.scrollY")

    page.wait_for_function("""(before) => {
        const time = document.querySelector('[data-symbol="net.http.ok_site"] time');
        return time && time.getAttribute("datetime") !== before;
    }""", arg=before, timeout=WAIT_MS, polling=100)
    after = page.evaluate("""() => {
        const time = document.querySelector('[data-symbol="net.http.ok_site"] time');
        return {marker: document.getElementById("metrics").dataset.testMarker || null,
                timeMarker: time.dataset.testMarker || null, text: time.textContent,
                stamp: time.getAttribute("datetime"), scrollY: window.scrollY};
    }""")
    page.context.close()

    assert scroll_before == 150, "the page is too short to scroll; the scroll check would prove nothing"
    assert after["stamp"] > before
    assert after["timeMarker"] is None, "the row was not replaced"
    assert after["marker"] == "kept", "the #metrics container was replaced instead of its content"
    assert after["scrollY"] == scroll_before
    assert after["text"] != after["stamp"], "the swapped <time> shows the UTC ISO string"


def test_phone_width_no_horizontal_scroll(browser, oculus, tmp_path):
    page = open_page(browser, oculus.url + "/", width=375, height=812)
    widths = page.evaluate("({scroll: document.documentElement.scrollWidth, view: window.innerWidth})")
    page.screenshot(path=str(tmp_path / "dashboard-phone.png"), full_page=True)
    page.context.close()
    assert widths["view"] == 375
    assert widths["scroll"] <= widths["view"], f"page is {widths['scroll']} px wide at 375 px"


def test_desktop_screenshot(browser, oculus, tmp_path):
    page = open_page(browser, oculus.url + "/")
    path = tmp_path / "dashboard-desktop.png"
    page.screenshot(path=str(path), full_page=True)
    page.context.close()
    shutil.copyfile(path, SHARED_SCREENSHOT)
    assert path.stat().st_size > 10_000


def test_phone_error_phrase_visible(browser, oculus):
    page = open_page(browser, oculus.url + "/", width=375, height=812)
    phrase = page.locator('[data-symbol="net.http.error_site"]').get_by_text("expected status 200-299, got 500")
    widths = phrase.evaluate("(element) => ({scroll: element.scrollWidth, client: element.clientWidth})")
    page.context.close()
    assert widths["scroll"] <= widths["client"], f"the error phrase needs {widths['scroll']} px, " \
                                                 f"has {widths['client']} px"


# -- every page, on seeded data of every category ------------------------------------

TOKEN = "browser-token-7c1"
# (name, path, selector that shows the page has rendered its data)
PAGES = [
    ("dashboard", "/", '[data-symbol="crypto.price.btc_usd"] time'),
    ("symbol", "/metrics/crypto.price.btc_usd?range=24h", "#chart canvas"),
    ("collector", "/collectors/http/shop", "[data-config]"),
    ("collectors", "/collectors", '[data-collector="http:shop"]'),
    # The rule engine may re-evaluate the seeded alerts, so these wait for what any state shows.
    ("alerts", "/alerts", "main h1"),
    ("rules", "/rules", '[data-rule="aapl_below_100"]'),
    ("query", "/query", "#sql"),
]


@pytest.fixture(scope="module")
def showcase(tmp_path_factory):
    """Oculus on a DuckDB file seeded with every category, alert states and events, with an API token."""
    from tests.web_support import SHOWCASE_RULES, seed_file

    target = ProbeTargetServer().start()
    workdir = tmp_path_factory.mktemp("showcase")
    seed_file(str(workdir / "oculus.duckdb"))
    config = {
        "server": {"api_token": TOKEN},
        "collectors": [{"type": "http", "name": "shop", "url": f"{target.url}/ok", "interval": "2s",
                        "timeout": "2s", "tags": {"team": "web"}}],
        "rules": SHOWCASE_RULES,
    }
    (workdir / "oculus.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("OCULUS_")}
    port = free_port()
    process = OculusProcess([sys.executable, "-m", "oculus", "run", "-c", "oculus.yaml", "--port", str(port),
                             "--db-path", "oculus.duckdb"], cwd=workdir, port=port, env=env)
    process.start(timeout=30.0)
    try:
        yield process
    finally:
        process.stop()
        target.stop()


def open_showcase(browser, url: str, selector: str, width: int = 1280, height: int = 900):
    context = browser.new_context(viewport={"width": width, "height": height}, locale="en-US",
                                  timezone_id=BROWSER_ZONE)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.wait_for_selector(selector)
    return page, errors


@pytest.mark.parametrize("name, path, selector", PAGES, ids=[p[0] for p in PAGES])
def test_page_screenshot(browser, showcase, tmp_path, name, path, selector):
    page, errors = open_showcase(browser, showcase.url + path, selector)
    screenshot = tmp_path / f"{name}.png"
    page.screenshot(path=str(screenshot), full_page=True)
    page.context.close()
    shutil.copyfile(screenshot, f"/tmp/oculus-{name}.png")
    assert errors == [], f"script errors on {path}: {errors}"
    assert screenshot.stat().st_size > 10_000


@pytest.mark.parametrize("name, path, selector", PAGES, ids=[p[0] for p in PAGES])
def test_page_fits_phone(browser, showcase, tmp_path, name, path, selector):
    page, _ = open_showcase(browser, showcase.url + path, selector, width=375, height=812)
    widths = page.evaluate("({scroll: document.documentElement.scrollWidth, view: window.innerWidth})")
    page.screenshot(path=str(tmp_path / f"{name}-phone.png"), full_page=True)
    page.context.close()
    assert widths["scroll"] <= widths["view"], f"{path} is {widths['scroll']} px wide at 375 px"


@pytest.mark.parametrize("name, path, selector", PAGES, ids=[p[0] for p in PAGES])
def test_page_requests_stay_local(browser, showcase, name, path, selector):
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    requested, failed = [], []
    page.on("request", lambda request: requested.append(request.url))
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto(showcase.url + path)
    page.wait_for_selector(selector)
    context.close()
    assert [url for url in requested if urlsplit(url).hostname != "127.0.0.1"] == []
    assert failed == []


def test_chart_draws_series(browser, showcase):
    page, errors = open_showcase(browser, showcase.url + "/metrics/crypto.price.btc_usd?range=24h", "#chart canvas")
    drawn = page.evaluate("""() => ({points: window.oculusChart.data[0].length,
                                     width: document.querySelector('#chart canvas').width})""")
    page.context.close()
    assert errors == []
    assert drawn["points"] > 200
    assert drawn["width"] > 300


def test_chart_range_switch(browser, showcase):
    page, _ = open_showcase(browser, showcase.url + "/metrics/crypto.price.btc_usd", "#chart canvas")
    hour = page.evaluate("window.oculusChart.data[0].length")
    page.click('[data-range="7d"]')
    page.wait_for_url("**range=7d")
    page.wait_for_selector("#chart canvas")
    week = page.evaluate("window.oculusChart.data[0].length")
    page.context.close()
    assert hour <= 13
    assert week > hour


def test_dashboard_row_opens_symbol_page(browser, showcase):
    page, _ = open_showcase(browser, showcase.url + "/", '[data-symbol="crypto.price.btc_usd"] time')
    page.click('[data-symbol="crypto.price.btc_usd"] a[href="/metrics/crypto.price.btc_usd"]')
    page.wait_for_selector("#chart canvas")
    title = page.inner_text("[data-symbol-title]")
    page.context.close()
    assert title == "crypto.price.btc_usd"


def test_sql_console_runs_query(browser, showcase, tmp_path):
    page, errors = open_showcase(browser, showcase.url + "/query", "#sql")
    page.fill("#sql", "SELECT symbol, value FROM latest ORDER BY symbol")
    page.fill("#token", TOKEN)
    page.click("#run")
    page.wait_for_selector("#result table tbody tr")
    rows = page.locator("#result tbody tr").count()
    status = page.inner_text("#status")
    link = page.get_attribute("#json-link", "href")
    page.screenshot(path=str(tmp_path / "query-result.png"), full_page=True)
    shutil.copyfile(tmp_path / "query-result.png", "/tmp/oculus-query.png")
    page.context.close()
    assert errors == []
    assert rows >= 13
    assert status.startswith(f"{rows} row(s)")
    assert link.startswith("blob:")


def test_sql_console_wrong_token(browser, showcase):
    page, _ = open_showcase(browser, showcase.url + "/query", "#sql")
    page.fill("#token", "not-the-token")
    page.click("#run")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('401')")
    result_hidden = page.evaluate("document.getElementById('result').hidden")
    page.context.close()
    assert result_hidden


def test_sql_console_shows_rejection(browser, showcase):
    page, _ = open_showcase(browser, showcase.url + "/query", "#sql")
    page.fill("#sql", "SELECT * FROM read_csv('/etc/passwd')")
    page.fill("#token", TOKEN)
    page.click("#run")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('400')")
    status = page.inner_text("#status")
    page.context.close()
    assert "read_csv() is not allowed" in status
