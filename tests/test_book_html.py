"""Browser test of the built book: sliders move, math renders, nothing needs the network.

Serves ``_build/html`` on 127.0.0.1 from a thread, opens every page of ``_toc.yml`` in headless
Debian Chromium (never a downloaded browser: ``playwright install`` is not used), aborts every
request that is not to 127.0.0.1, and checks on each page:

* no JavaScript error and no failed request (a missing vendored file shows up here);
* every frame slider (``dc.frame_slider``) stored in the page was rendered, and
  moving it with the keyboard changes both its t label and the image shown;
* every math element was typeset by the vendored MathJax, with no MathJax error and no raw TeX
  (``$$``, ``$\\alpha``) left in the prose.

Chapter pages are checked again from ``file://``. Build the book first (``make test`` and
``make book`` do); a missing build is a failure, never a skip. Environment variables:
``DDPM_BOOK_ROOT`` (a book folder other than the repository, holding ``_toc.yml`` and
``_build/html``) and ``DDPM_BOOK_SCREENSHOTS`` (a folder to save a full-page PNG of each page).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import threading
from pathlib import Path

import pytest
import yaml

ROOT = Path(os.environ.get("DDPM_BOOK_ROOT", Path(__file__).resolve().parents[1]))
HTML = ROOT / "_build" / "html"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # no DNS for anything else either
]
BUILD_HINT = "build the book first: `make test` or `make book` (or `jupyter-book build . -W -n --keep-going`)"
RENDER_TIMEOUT_MS = 30_000
FRAME_SLIDER_CLASS = "ddpm-frame-slider"
RAW_TEX = re.compile(r"\$\$|\$\\[A-Za-z]+")  # display delimiters or $\command: TeX MathJax did not render


def toc_pages(toc_path: Path = ROOT / "_toc.yml") -> list[str]:
    """Every document of the table of contents, in order (root first), without extension."""
    toc = yaml.safe_load(toc_path.read_text())
    pages = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                pages.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []) or []:
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(toc)
    return [str(Path(p).with_suffix("")) if p.endswith((".md", ".ipynb")) else p for p in pages]


PAGES = toc_pages()
CHAPTER_PAGES = [p for p in PAGES if p.startswith("chapters/")]


def page_file(page: str) -> Path:
    path = HTML / f"{page}.html"
    if not HTML.joinpath("index.html").exists():
        pytest.fail(f"no built book in {HTML}: {BUILD_HINT}", pytrace=False)
    if not path.exists():
        pytest.fail(f"{path} is missing although _toc.yml lists {page!r}: {BUILD_HINT}", pytrace=False)
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output clean
        pass


@pytest.fixture(scope="module")
def server():
    """Base URL of _build/html served on 127.0.0.1 by a thread."""
    if not HTML.joinpath("index.html").exists():
        pytest.fail(f"no built book in {HTML}: {BUILD_HINT}", pytrace=False)
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(HTML))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: run `make setup` (installs Debian's chromium)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class PageProbe:
    """A page with every non-local request aborted and its errors recorded."""

    def __init__(self, browser, allowed_prefixes: tuple[str, ...]):
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.allowed = allowed_prefixes + ("data:", "blob:")
        self.page.route("**/*", self._route)
        self.page.on("pageerror", lambda err: self.errors.append(f"uncaught: {err}"))
        self.page.on("console", self._console)
        self.page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url}"))
        self.page.on("response", lambda r: r.status >= 400 and self.errors.append(f"HTTP {r.status}: {r.url}"))

    def _route(self, route):
        url = route.request.url
        if url.startswith(self.allowed):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def _console(self, msg):
        if msg.type == "error" and "Failed to load resource" not in msg.text:  # those come via response
            self.errors.append(f"console: {msg.text}")

    def close(self):
        self.context.close()


def embedded_frame_sliders(page) -> list[dict]:
    """The frame sliders a page embeds: widget views whose model is a frame_slider box.

    Returns, for each, the slider's option labels (from the stored widget state).
    """
    state_text = page.evaluate(
        """() => Array.from(document.querySelectorAll(
              'script[type="application/vnd.jupyter.widget-state+json"]')).map(s => s.textContent)"""
    )
    views = page.evaluate(
        """() => Array.from(document.querySelectorAll(
              'script[type="application/vnd.jupyter.widget-view+json"]')).map(s => s.textContent)"""
    )
    models = {}
    for text in state_text:
        models.update(json.loads(text)["state"])
    sliders = []
    for text in views:
        model = models.get(json.loads(text)["model_id"], {})
        st = model.get("state", {})
        if FRAME_SLIDER_CLASS in st.get("_dom_classes", []):
            slider_id = st["children"][0].removeprefix("IPY_MODEL_")
            sliders.append({"labels": models[slider_id]["state"]["_options_labels"]})
    return sliders


def check_sliders(page, where: str) -> int:
    """Move every frame slider on the page; return how many were checked."""
    expected = embedded_frame_sliders(page)
    boxes = page.locator(f".{FRAME_SLIDER_CLASS}")
    try:
        page.wait_for_function(
            "n => document.querySelectorAll('.%s img').length >= n" % FRAME_SLIDER_CLASS,
            arg=len(expected), timeout=RENDER_TIMEOUT_MS,
        )
    except Exception:
        pass  # reported below with the counts
    assert boxes.count() == len(expected), (
        f"{where}: {len(expected)} frame slider(s) stored in the page but {boxes.count()} rendered "
        "(is the widget JS in _static/vendor/? run `make setup`)"
    )
    for i, info in enumerate(expected):
        box = boxes.nth(i)
        labels = info["labels"]
        handle = box.locator(".noUi-handle")
        readout = box.locator(".widget-readout")
        image = box.locator("img:visible")
        assert handle.count() == 1, f"{where}: slider {i} has no handle"
        assert image.count() == 1, f"{where}: slider {i} shows {image.count()} images, expected 1"
        first_src, first_label = image.get_attribute("src"), readout.inner_text().strip()
        assert first_label in labels, f"{where}: slider {i} label {first_label!r} is not one of {labels}"
        if len(labels) < 2:
            continue
        handle.focus()
        start = labels.index(first_label)
        key, target = ("ArrowRight", labels[start + 1]) if start + 1 < len(labels) else ("ArrowLeft", labels[start - 1])
        handle.press(key)
        page.wait_for_function(
            "([el, label]) => el.textContent.trim() === label", arg=[readout.element_handle(), target],
            timeout=5_000,
        )
        page.wait_for_function(
            "([box, src]) => { const im = Array.from(box.querySelectorAll('img'))"
            ".find(e => e.offsetParent !== null); return im && im.src !== src; }",
            arg=[box.element_handle(), first_src], timeout=5_000,
        )
        handle.press("End")
        page.wait_for_function(
            "([el, label]) => el.textContent.trim() === label", arg=[readout.element_handle(), labels[-1]],
            timeout=5_000,
        )
        assert image.get_attribute("src") != first_src or start == len(labels) - 1, (
            f"{where}: slider {i} at t={labels[-1]} still shows the first frame"
        )
    return len(expected)


def check_math(page, where: str) -> int:
    """Assert every math element was typeset by MathJax; return how many there are."""
    n_math = page.locator(".math").count()
    if n_math:
        try:
            page.wait_for_function(
                "() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=RENDER_TIMEOUT_MS
            )
            page.evaluate("() => MathJax.startup.promise")
        except Exception as err:  # playwright's TimeoutError or a script error
            pytest.fail(f"{where}: MathJax did not start ({type(err).__name__}); is _static/vendor/mathjax/ "
                        "in the build? run `make setup` and rebuild", pytrace=False)
        untypeset = page.evaluate(
            "() => Array.from(document.querySelectorAll('.math'))"
            ".filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 60))"
        )
        assert not untypeset, f"{where}: {len(untypeset)} of {n_math} math elements not typeset: {untypeset[:5]}"
        errors = page.locator("mjx-merror").all_inner_texts()
        assert not errors, f"{where}: MathJax errors: {errors[:5]}"
    prose = page.evaluate(
        """() => { const main = document.querySelector('main') || document.body;
                   const copy = main.cloneNode(true);
                   copy.querySelectorAll('pre, code, script, style, mjx-container, .math')
                       .forEach(e => e.remove());
                   return copy.innerText; }"""
    )
    raw = sorted(set(RAW_TEX.findall(prose)))
    assert not raw, f"{where}: raw TeX left in the text: {raw[:5]}"
    return n_math


def screenshot(page, page_name: str, tag: str) -> None:
    folder = os.environ.get("DDPM_BOOK_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{page_name.replace('/', '_')}-{tag}.png"), full_page=True)


def test_vendored_js_is_offline():
    """The build carries the vendored bundles, not the CDN shims written when npm was missing."""
    versions = HTML / "_static" / "vendor" / "VERSIONS.txt"
    if not versions.exists():
        pytest.fail(f"{versions} is missing: run `make setup`, then rebuild ({BUILD_HINT})", pytrace=False)
    assert "mode=offline" in versions.read_text(), (
        "the book was built with CDN loader shims (npm was missing during `make setup`): sliders and "
        "math need the network. Install npm, run `make setup` and rebuild."
    )


@pytest.mark.parametrize("page_name", PAGES)
def test_page_over_localhost(browser, server, page_name):
    page_file(page_name)
    probe = PageProbe(browser, allowed_prefixes=(server + "/",))
    try:
        probe.page.goto(f"{server}/{page_name}.html", wait_until="load")
        n_math = check_math(probe.page, page_name)
        n_sliders = check_sliders(probe.page, page_name)
        screenshot(probe.page, page_name, "http")
        assert not probe.errors, f"{page_name}: errors in the browser: {probe.errors[:8]}"
        # Nothing on a page may need the network (everything is vendored or local).
        assert not probe.blocked, f"{page_name}: requests to the network were attempted: {probe.blocked[:8]}"
        if page_name in CHAPTER_PAGES:
            print(f"{page_name}: {n_sliders} slider(s), {n_math} math element(s)")
    finally:
        probe.close()


@pytest.mark.parametrize("page_name", CHAPTER_PAGES)
def test_chapter_from_file_url(browser, page_name):
    """Opened straight from disk (file://), sliders and math still work with no network."""
    path = page_file(page_name)
    probe = PageProbe(browser, allowed_prefixes=("file://",))
    try:
        probe.page.goto(path.as_uri(), wait_until="load")
        check_math(probe.page, f"{page_name} (file://)")
        check_sliders(probe.page, f"{page_name} (file://)")
        assert not probe.blocked, f"{page_name}: requests to the network were attempted: {probe.blocked[:8]}"
    finally:
        probe.close()
