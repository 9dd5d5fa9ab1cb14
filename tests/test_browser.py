"""Every page of a sample run, opened from its file in headless Chromium, offline, as a stakeholder would.

Chromium is the Debian package (``apt-get install chromium``), driven through its DevTools protocol over
a websocket (websocket-client): no browser download. The page is loaded with the network switched off;
the test fails on a console error, an uncaught exception, a failed load (a missing image or linked
file) and on any request that is not ``file://`` or ``data:``. Full-page screenshots of every page are
saved in a folder the test prints, with each page's size in bytes (under pytest's temp folder, or in
``$CRM_SCREENSHOTS_DIR`` when set).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.pipeline

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "/usr/bin/chromium")
WINDOW = (1400, 900)
#: How long to wait for Chromium to start or a page to load before calling it broken (not a timing test).
PATIENCE_S = 60


def _chromium() -> str:
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("Chromium is not installed; the browser test needs it: apt-get install chromium "
                "(the Debian package; .ci/run installs it when missing)", pytrace=False)


class DevTools:
    """A minimal Chrome DevTools protocol client: one websocket to the browser, flat page sessions."""

    def __init__(self, ws_url: str) -> None:
        import websocket  # websocket-client, in the dev extra

        self._ws = websocket.create_connection(ws_url, timeout=PATIENCE_S, suppress_origin=True)
        self._next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._ws.send(json.dumps(message))
        while True:
            reply = json.loads(self._ws.recv())
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str) -> dict:
        deadline = time.monotonic() + PATIENCE_S
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            seen = len(self.events)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {PATIENCE_S} s")
            self.events.append(json.loads(self._ws.recv()))

    def close(self) -> None:
        self._ws.close()


@pytest.fixture(scope="module", params=["en", "zh-CN"])
def sample_run(tmp_path_factory, request) -> Path:
    """A small sample (300 customers) run through the whole pipeline once per report language, with params/ci.yaml."""
    base = tmp_path_factory.mktemp(f"browser_run_{request.param}")
    (base / "params").mkdir()
    params = yaml.safe_load((ROOT / "params" / "ci.yaml").read_text(encoding="utf-8"))
    params["run"]["language"] = request.param
    (base / "params" / "ci.yaml").write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False),
                                             encoding="utf-8")
    sample = subprocess.run([sys.executable, "-m", "crmlib", "sample", "--out", str(base / "data" / "ci"),
                             "--customers", "300"], capture_output=True, text=True, cwd=base)
    assert sample.returncode == 0, sample.stdout + sample.stderr
    proc = subprocess.run([sys.executable, "-m", "crmlib", "run", "--params", str(base / "params" / "ci.yaml"),
                           "--run-id", "browser-run"], capture_output=True, text=True, cwd=base)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium with a DevTools websocket; stopped (its whole process group) afterwards."""
    chromium = _chromium()
    profile = tmp_path_factory.mktemp("chromium_profile")
    log = (profile.parent / "chromium.log").open("wb")  # a file, not a pipe nobody reads: a full pipe blocks it
    proc = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
         f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--remote-allow-origins=*", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        active_port = profile / "DevToolsActivePort"  # Chromium writes "<port>\n<browser path>" here
        deadline = time.monotonic() + PATIENCE_S
        while not (active_port.exists() and len(active_port.read_text().splitlines()) >= 2):
            if proc.poll() is not None:
                log.flush()
                output = (profile.parent / "chromium.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"Chromium exited with {proc.returncode}: {output}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail("Chromium did not open its DevTools port", pytrace=False)
            time.sleep(0.1)
        port, path = active_port.read_text().splitlines()[:2]
        tools = DevTools(f"ws://127.0.0.1:{port}{path}")
        yield tools
        tools.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=PATIENCE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _open(browser: DevTools, path: Path, screenshot: Path) -> dict:
    """Load ``path`` offline in a fresh tab; return what went wrong, its links and its images."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.send(f"{domain}.enable", session=session)
    browser.send("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1,
                                                      "uploadThroughput": -1}, session=session)
    browser.send("Emulation.setDeviceMetricsOverride", {"width": WINDOW[0], "height": WINDOW[1],
                                                        "deviceScaleFactor": 1, "mobile": False}, session=session)
    first_event = len(browser.events)
    navigation = browser.send("Page.navigate", {"url": path.as_uri()}, session=session)
    browser.wait_for("Page.loadEventFired", session)
    facts = browser.send("Runtime.evaluate", {"returnByValue": True, "expression": """({
        links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
        nav: Array.from(document.querySelectorAll('nav.crm-nav a[href]')).map(a => a.getAttribute('href')),
        images: Array.from(document.images).map(i => ({ok: i.complete && i.naturalWidth > 0,
            alt: i.getAttribute('alt') || '', figure: !!i.closest('figure'),
            caption: (i.closest('figure')?.querySelector('figcaption')?.innerText || '').trim()})),
        scripts: Array.from(document.scripts).map(s => s.src).filter(Boolean),
        sheets: Array.from(document.querySelectorAll('link[rel~=stylesheet]')).map(l => l.href),
        lang: document.documentElement.lang,
        page_width: document.documentElement.scrollWidth,
        clipped_tables: Array.from(document.querySelectorAll('table')).filter(t =>
            t.getBoundingClientRect().right > document.documentElement.clientWidth + 1
            || (t.parentElement && t.parentElement.scrollWidth > t.parentElement.clientWidth + 1)).length,
    })"""}, session=session)["result"]["value"]
    metrics = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
    shot = browser.send("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": max(metrics["width"], WINDOW[0]), "height": metrics["height"],
                 "scale": 1}}, session=session)
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    events = [e for e in browser.events[first_event:] if e.get("sessionId") == session]
    browser.send("Target.closeTarget", {"targetId": target})

    problems = [f"page did not open: {navigation['errorText']}"] if navigation.get("errorText") else []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            problems.append(f"uncaught exception: {details.get('exception', {}).get('description') or details['text']}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            problems.append("console error: " + " ".join(str(a.get("value", a.get("description", "")))
                                                         for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            problems.append(f"browser error: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not url.startswith(("file://", "data:")):
                problems.append(f"network request: {url}")
        elif method == "Network.loadingFailed":
            problems.append(f"failed to load: {params.get('errorText')} ({params.get('type')})")
    return {"problems": problems, "screenshot": screenshot, **facts}


@pytest.fixture(scope="module")
def pages(sample_run: Path, browser: DevTools, tmp_path_factory, request) -> dict[Path, dict]:
    """Every page of the run (the reports index, the run page, each stage page), opened once."""
    # pytest keeps its last three temp folders only; CRM_SCREENSHOTS_DIR keeps the screenshots for longer
    keep = os.environ.get("CRM_SCREENSHOTS_DIR")
    language = json.loads((sample_run / "manifest.json").read_text(encoding="utf-8"))["params"]["run"]["language"]
    shots = (Path(keep) / language) if keep else tmp_path_factory.mktemp(f"screenshots_{language}")
    shots.mkdir(parents=True, exist_ok=True)
    paths = [sample_run.parent / "index.html", sample_run / "index.html",
             *sorted(p for p in sample_run.glob("*.html") if p.name != "index.html")]
    opened = {}
    for number, path in enumerate(paths):
        name = "reports_index" if number == 0 else path.stem
        opened[path] = _open(browser, path, shots / f"{number:02d}_{name}.png")
    lines = [f"screenshots of {len(paths)} pages in {shots}"]
    lines += [f"  {path.relative_to(sample_run.parent)}: {path.stat().st_size:,} bytes -> "
              f"{info['screenshot'].name}" for path, info in opened.items()]
    (shots / "pages.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # shown whatever pytest's capture mode (what capsys.disabled does)
        print("\n" + "\n".join(lines), flush=True)
    return opened


def test_every_page_loads_offline_without_errors(pages):
    assert len(pages) >= 6  # reports index, run page and four stage pages
    broken = {str(path): info["problems"] for path, info in pages.items() if info["problems"]}
    assert not broken, json.dumps(broken, indent=1)
    for path, info in pages.items():
        assert not info["scripts"], f"{path} loads scripts {info['scripts']}"
        assert all(href.startswith("file://") for href in info["sheets"]), f"{path}: {info['sheets']}"
        assert info["screenshot"].stat().st_size > 0


def test_every_image_is_embedded_and_loads(pages):
    for path, info in pages.items():
        broken = [image for image in info["images"] if not image["ok"]]
        assert not broken, f"{path}: {len(broken)} image(s) did not load"


def test_every_chart_has_alt_text_and_a_caption(pages):
    for path, info in pages.items():
        bare = [image for image in info["images"] if not (image["alt"].strip() and image["figure"]
                                                           and image["caption"])]
        assert not bare, f"{path.name}: {len(bare)} of {len(info['images'])} chart(s) without alt text and caption"


def test_every_table_fits_a_laptop_screen(pages):
    for path, info in pages.items():
        assert info["page_width"] <= WINDOW[0], f"{path.name} is wider than the screen: {info['page_width']} px"
        assert info["clipped_tables"] == 0, (f"{path.name}: {info['clipped_tables']} table(s) wider than "
                                             f"{WINDOW[0]} px (show the columns a decision needs, link the rest)")


def test_every_local_link_opens_a_file_and_section_of_the_run(pages, sample_run):
    for path, info in pages.items():
        for href in info["links"]:
            url = urlparse(href)
            if url.scheme != "file":
                continue
            target = Path(unquote(url.path))
            assert target.exists(), f"{path.name} links to {target}, which does not exist"
            if url.fragment and target.suffix == ".html":  # a finding's link to the section that backs it
                # a browser matches the fragment as written first, then percent-decoded (nbconvert writes
                # the id of a Chinese heading percent-encoded)
                text = target.read_text(encoding="utf-8")
                anchors = {url.fragment, unquote(url.fragment)}
                assert any(f'id="{a}"' in text or f"id='{a}'" in text for a in anchors), \
                    f"{path.name}: no section #{unquote(url.fragment)} in {target.name}"


def test_stage_pages_link_to_the_run_page_and_each_other(pages, sample_run):
    manifest = json.loads((sample_run / "manifest.json").read_text(encoding="utf-8"))
    stage_pages = [s["html"] for s in manifest["stages"] if s.get("html")]
    assert len(stage_pages) == 4
    for name in stage_pages:
        nav = pages[sample_run / name]["nav"]
        assert nav[0] == "index.html", f"{name}: the bar must start with the run page, got {nav}"
        assert nav[1:] == [other for other in stage_pages if other != name], f"{name}: {nav}"
    run_page_links = {Path(urlparse(h).path).name for h in pages[sample_run / "index.html"]["links"]}
    assert set(stage_pages) <= run_page_links


def test_pages_are_in_the_run_language(pages, sample_run):
    from tests.i18n_support import data_words, english_left

    language = json.loads((sample_run / "manifest.json").read_text(encoding="utf-8"))["params"]["run"]["language"]
    allowed = data_words(sample_run)
    for path, info in pages.items():
        assert info["lang"] == language, f"{path.name}: <html lang={info['lang']!r}>, the run is in {language}"
        if language != "en":
            left = english_left(path, allowed)
            assert not left, f"{path.name}: {len(left)} piece(s) of English on a {language} page: {left[:10]}"


def test_missing_chromium_fails_with_the_install_command(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="apt-get install chromium"):
        _chromium()
