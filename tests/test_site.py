"""The site as readers meet it: the freshly built book, served on localhost, in headless Chromium.

Every test here depends on the `built_book` fixture, so it runs against the HTML that this
test run built. Chromium is Debian's (/usr/bin/chromium, or $CHROMIUM_PATH), driven by
Playwright; `.ci/install-browser` (run by `make test` and `.ci/run`) installs it together with
fonts-noto-cjk, without which the screenshots show boxes instead of Chinese.

One visit per page and window. Each page is loaded once on a desktop window (1280 px) and once
on a phone (390 px wide, device scale 2, touch), per test worker; everything the checks need is
recorded during that visit (`Visit`), and each test then checks one promise on the record. The
tests of one page carry `xdist_group(<page>)`, so under `make test` (pytest-xdist, --dist
loadgroup) one worker loads the page and runs all of its checks, while the pages spread over
the workers. A visit waits for the `load` event and then for what it reads (MathJax's first
typesetting, a redirect, a menu), never for the network to fall idle.

External requests are blocked: the test machine has no internet, and a page must not depend on
one to work (offline, or in mainland China, where Google and jsDelivr are out of reach). Every
blocked URL is recorded, must be in EXPECTED_EXTERNAL below (which is empty: MathJax comes from
the build, _static/mathjax/), and is listed in _build/screenshots/external-resources.txt. A
blocked fetch logs "Failed to load resource" in the console; that message is not counted as a
script error of the site, every other console error and every uncaught exception is. Every page
with formulas must show them typeset by MathJax, not as raw TeX.

Phones: at 390 px no page may be wider than the screen (the browser would zoom the whole page
out); wide code, outputs, tables and formulas scroll inside their own box. Accessibility:
axe-core, pinned in package.json like MathJax and injected by the test from node_modules/ (no
request leaves the machine), runs on every page: no violation of impact serious or critical;
every finding, of any impact, is listed in _build/screenshots/axe-findings.txt. Reporting: every
page has a 报告问题 link (chapters also 报告运行失败) that opens a new issue on the book's
repository from one of the issue forms in .github/ISSUE_TEMPLATE/, with the chapter and the
page's URL filled in; the test clicks it and checks the URL the new tab asks for.

The take-away downloads (the PDF and the two zips, tests/takeaways.py) are linked from every
page's download menu; the offline site zip is unzipped and read from disk (file://) here too.

Screenshots of every page (desktop: the whole page, as JPEG; phone: the first screen, and the
first element too wide for it when there is one), of the search results, the dark theme and
every figure in it are saved under _build/screenshots/ for a maintainer to look at.
"""

import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import sys
import threading
import time
import zipfile
from dataclasses import asdict, dataclass, field
from io import BytesIO
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import numpy as np
import pytest
import yaml
from PIL import Image
from playwright.sync_api import sync_playwright

import takeaways
from conftest import BUILD_DIR, CHAPTER_NOTEBOOKS, CONFIG, HTML_DIR, ROOT, TOC, rel, toc_files
from once import once_per_test_run

SCREENSHOT_DIR = BUILD_DIR / "screenshots"
DARK_FIGURE_DIR = SCREENSHOT_DIR / "dark-figures"
EXTERNAL_LOG = SCREENSHOT_DIR / "external-resources.txt"
AXE_LOG = SCREENSHOT_DIR / "axe-findings.txt"

# The flags that work on these machines. Playwright adds --headless and a fresh temporary
# --user-data-dir itself (it refuses a --user-data-dir in args).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}
PHONE_WIDTH = 390  # a common phone (iPhone 12-15), in CSS pixels
WINDOWS = {
    "desktop": {"viewport": VIEWPORT},
    "phone": {"viewport": {"width": PHONE_WIDTH, "height": 844}, "device_scale_factor": 2,
              "is_mobile": True, "has_touch": True},
}

# External resources a page may ask for (blocked here, loaded by readers' browsers): none.
# MathJax used to come from cdn.jsdelivr.net, which mainland China cannot reach; it is served
# from the build now (_ext/offline_book.py). Anything here is a dependency on the network that
# breaks the offline site zip and readers behind a firewall; add one only deliberately.
EXPECTED_EXTERNAL = []

# axe-core, from the npm registry at the version package.json pins (`make book-deps` runs
# `npm ci`), injected into each page by the test. Violations of these impacts fail a page.
AXE_PACKAGE = ROOT / "node_modules" / "axe-core"
AXE_FAILING = ("serious", "critical")

# The report links under each page's title (_ext/offline_book.py) and the issue forms they open.
ISSUE_TEMPLATE_DIR = ROOT / ".github" / "ISSUE_TEMPLATE"
REPORT_LINKS = {"报告问题": "content.yml", "报告运行失败": "fails-to-run.yml"}
ERRATA_LINK = "勘误"

# Chinese words a reader searches for, each with the stage whose chapter must be among the
# results. A word is tested once its stage's notebook exists (before that, no chapter may use
# the word: 优化器 appears first in stage 06).
SEARCH_WORDS = {"反向传播": "01", "张量": "02", "自动求导": "03", "优化器": "06"}

# For each stage, what a reader might type to find that stage's chapter; at least one query
# must list the chapter first. How Sphinx ranks (measured on this book): an exact glossary term
# (张量, 优化器, 控制流) lists the glossary first, since a glossary entry outscores any page;
# pages that tie are listed by title, so "3. ..." comes before "4. ...". Hence the fallbacks:
# two words, or a term only that chapter puts in its headings. Stages whose notebook does not
# exist yet are not tested (the chapter is still being written); every existing chapter is, and
# a chapter without an entry here fails, asking for one.
STAGE_QUERIES = {
    "01": ["热身", "NumPy 手写"],
    "02": ["张量", "张量 设备"],
    "03": ["自动求导", "requires_grad"],
    "04": ["自定义", "ctx"],
    "05": ["nn 模块", "Sequential"],
    "06": ["优化器", "optim 优化器", "Adam"],
    "07": ["自定义 Module", "nn.Module"],
    "08": ["控制流", "控制流 权重共享"],
    "09": ["回顾", "七个阶段 对比"],
    "10": ["性能", "GPU 性能"],
}


# --- which pages exist --------------------------------------------------------------------


def chapter_page(notebook_path):
    return f"notebooks/{notebook_path.stem}.html"


def site_pages():
    """(id, path) of every page: the home page, each chapter, each other page in the TOC."""
    pages = [("home", "index.html")]
    pages += [(p.stem, chapter_page(p)) for p in CHAPTER_NOTEBOOKS]
    for entry in toc_files(TOC):
        if entry != TOC["root"] and not entry.startswith("notebooks/"):
            pages.append((Path(entry).name, f"{entry}.html"))
    return pages


PAGES = site_pages()
CONTENT_PAGES = [(i, p) for i, p in PAGES if p != "index.html"]  # index.html redirects
CHAPTERS = [(p.stem, chapter_page(p)) for p in CHAPTER_NOTEBOOKS]


def page_params(pages):
    """One test per page, each in the page's xdist group (its visits are cached per worker)."""
    return pytest.mark.parametrize("page_path", [
        pytest.param(path, id=page_id, marks=pytest.mark.xdist_group(path))
        for page_id, path in pages
    ])


# --- serving the build and driving Chromium ---------------------------------------------------


def chromium_path():
    candidates = [os.environ.get("CHROMIUM_PATH"), "/usr/bin/chromium"]
    candidates += [shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail(
        "no Chromium found for the browser tests: run `.ci/install-browser` (apt-get install "
        "chromium fonts-noto-cjk) or set CHROMIUM_PATH to a Chromium/Chrome executable"
    )


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".ipynb": "application/x-ipynb+json"}

    def log_message(self, *args):
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)  # a tab closed mid-transfer is not


def clear_screenshots():
    """Empties _build/screenshots/ (but pdf/, the PDF pages tests/test_pdf.py renders)."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOT_DIR.iterdir():
        if old.name != "pdf":
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    return True


@pytest.fixture(scope="session")
def site(built_book):
    """The freshly built book, served over HTTP on localhost; yields the base URL."""
    assert (HTML_DIR / "index.html").exists(), (
        f"the build left no {rel(HTML_DIR / 'index.html')}; see test_book_builds_without_warnings"
    )
    once_per_test_run("screenshots", clear_screenshots)  # not once per worker
    handler = functools.partial(QuietHandler, directory=str(HTML_DIR))
    server = QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(site):
    """Chromium for this module's tests (closed before nbval runs), and their wall time."""
    start = time.perf_counter()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()
    print(f"\nbrowser tests: {time.perf_counter() - start:.1f} s in Chromium, after the build; "
          f"screenshots in {rel(SCREENSHOT_DIR)}/")


def append_line(path, line):
    """Appends one line (workers append to the same file: one write each, O_APPEND)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


@dataclass
class Tab:
    """One browser tab on the local site, recording what went wrong while it was used."""

    page: object
    base: str
    errors: list = field(default_factory=list)
    failed_local: list = field(default_factory=list)
    external: list = field(default_factory=list)

    def local(self, url):
        return url.startswith(self.base)

    def watch(self):
        self.page.on("pageerror", self.on_page_error)
        self.page.on("console", self.on_console)
        self.page.on("request", self.on_request)
        self.page.on("response", self.on_response)
        self.page.on("requestfailed", self.on_request_failed)

    def on_page_error(self, exc):
        self.errors.append(f"uncaught {exc.name}: {exc.message}")

    def on_request(self, request):
        if not self.local(request.url):
            self.external.append(request.url)

    def on_console(self, message):
        if message.type != "error":
            return
        source = message.location.get("url", "")
        if message.text.startswith("Failed to load resource") and not self.local(source):
            return  # a blocked external fetch (see Tab.external), not a script error
        self.errors.append(f"console error: {message.text} ({source})")

    def on_response(self, response):
        if self.local(response.url) and response.status >= 400:
            self.failed_local.append(f"{response.url} -> HTTP {response.status}")

    def on_request_failed(self, request):
        if self.local(request.url):
            self.failed_local.append(f"{request.url} -> {request.failure}")

    def open(self, path, lands_on=None):
        """Loads a page (until `load`); `lands_on`: the page a redirect must end on."""
        self.page.goto(urljoin(self.base, path), wait_until="load")
        if lands_on:
            self.page.wait_for_url(urljoin(self.base, lands_on), wait_until="load",
                                   timeout=10_000)
        return self

    @property
    def path(self):
        return self.page.url.removeprefix(self.base).split("#")[0]

    def site_path(self, href):
        """A link's target: relative to the site for a local one (each worker serves the site
        on a port of its own, and shares its visits), else the absolute URL."""
        url = urljoin(self.page.url, href)
        return url.removeprefix(self.base) if self.local(url) else url

    def screenshot(self, name, full_page=True):
        """A PNG of the window; of the whole page, a JPEG (a chapter is ~27000 px tall, and a
        full-page PNG of it took a visit's longest second or two to encode)."""
        if full_page:
            target = SCREENSHOT_DIR / f"{name}.jpg"
            self.page.screenshot(path=str(target), full_page=True, type="jpeg", quality=80)
        else:
            target = SCREENSHOT_DIR / f"{name}.png"
            self.page.screenshot(path=str(target))
        return target


def offline_context(browser, base, color_scheme="light", window="desktop"):
    """A fresh browser context (empty storage) that lets through only requests below base."""
    context = browser.new_context(locale="zh-CN", color_scheme=color_scheme, **WINDOWS[window])

    def route(route_):
        request = route_.request
        if request.url.startswith(base):
            route_.continue_()
        elif request.is_navigation_request() and request.resource_type == "document":
            # a link that opens another site (launch, report): the new tab gets a stand-in
            # page from here, so its URL is the one the link opened (opened_url)
            route_.fulfill(status=200, content_type="text/plain", body="not fetched by the test")
        else:
            route_.abort()  # no internet here; each Tab records what its page asked for

    context.route("**/*", route)
    return context


def new_watched_tab(context, base):
    tab = Tab(context.new_page(), base)
    tab.watch()
    return tab


@pytest.fixture
def new_tab(browser, site):
    """Opens tabs in a fresh browser context (empty storage, light system theme)."""
    context = offline_context(browser, site)

    def make():
        return new_watched_tab(context, site)

    make.context = context
    yield make
    context.close()


@pytest.fixture(scope="module")
def downloads(built_book):
    """The PDF and the zips (scripts/build_downloads.py, as `make book`), in _build/html."""
    returncode, log = takeaways.build()
    assert returncode == 0, (
        "scripts/build_downloads.py failed (see tests/test_pdf.py):\n"
        + "\n".join(log.splitlines()[-20:])
    )


# After MathJax has run: how many formulas the page has, how many are typeset, and any raw TeX
# left in the text (outside code, where TeX may be shown on purpose).
MATH_STATE_JS = r"""async () => {
    const mathjax = window.MathJax && window.MathJax.startup;
    if (mathjax) await window.MathJax.startup.promise;
    const main = document.querySelector("main") || document.body;
    const formulas = [...main.querySelectorAll(".math")];
    const skip = "pre, code, script, style, textarea, mjx-container";
    const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
    const raw = [];
    while (walker.nextNode()) {
        const node = walker.currentNode;
        if (node.parentElement.closest(skip)) continue;
        const m = node.nodeValue.match(/\\\(|\\\[|\\begin\{/);
        if (m) raw.push(node.nodeValue.trim().slice(0, 60));
    }
    return {loaded: Boolean(mathjax), formulas: formulas.length,
            typeset: formulas.filter(f => f.querySelector("mjx-container")).length, raw: raw};
}"""


def math_state(tab):
    return tab.page.evaluate(MATH_STATE_JS)


# How wide the page lays out, and the outermost elements that stick out of a `limit` px screen
# without a box around them that scrolls sideways and fits the screen. Left out: what nobody
# sees (MathJax's MathML copy for screen readers, clipped to 1 px), and the skip link, which is
# as wide as the page. Each offender gets data-pbe-too-wide, for a screenshot of the first.
LAYOUT_JS = r"""(limit) => {
    const within = r => r.left >= -1 && r.right <= limit + 1;
    const scrolls = el => ["auto", "scroll"].includes(getComputedStyle(el).overflowX);
    const offenders = [];
    for (const el of document.body.querySelectorAll("*")) {
        const r = el.getBoundingClientRect();
        if (!r.width || !r.height || within(r)) continue;
        if (el.closest("mjx-assistive-mml, .skip-link, .visually-hidden")) continue;
        if (getComputedStyle(el).visibility === "hidden") continue;
        let contained = false;
        for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
            if (scrolls(a) && within(a.getBoundingClientRect())) { contained = true; break; }
        }
        if (!contained) offenders.push(el);
    }
    const outer = offenders.filter(el => !offenders.includes(el.parentElement));
    const describe = el => {
        const parts = [];
        for (let a = el; a && a !== document.body && parts.length < 4; a = a.parentElement) {
            let d = a.tagName.toLowerCase() + (a.id ? "#" + a.id : "");
            const cls = typeof a.className === "string" ? a.className.trim().split(/\s+/) : [];
            if (cls[0]) d += "." + cls.slice(0, 2).join(".");
            parts.unshift(d);
        }
        const r = el.getBoundingClientRect();
        const text = (el.textContent || "").trim().replace(/\s+/g, " ").slice(0, 50);
        return `${parts.join(" > ")} (${Math.round(r.left)}..${Math.round(r.right)} px) "${text}"`;
    };
    outer.forEach(el => el.setAttribute("data-pbe-too-wide", ""));
    return {page: document.documentElement.scrollWidth, window: window.innerWidth,
            offenders: outer.slice(0, 8).map(describe), count: outer.length};
}"""

AXE_RUN_JS = """async () => {
    const results = await axe.run(document, {resultTypes: ["violations"]});
    return results.violations.map(v => ({
        id: v.id, impact: v.impact, help: v.help, url: v.helpUrl, count: v.nodes.length,
        nodes: v.nodes.slice(0, 5).map(n => `${n.target.join(" ")} ${n.html.slice(0, 120)}`),
    }));
}"""


def screenshot_name(page_path):
    if page_path == "index.html":
        return "home"
    return page_path.removesuffix(".html").replace("/", "__")


@functools.cache
def axe_source():
    """axe.min.js of the pinned axe-core (package.json), as installed by `npm ci`."""
    pinned = json.loads((ROOT / "package.json").read_text())["dependencies"]["axe-core"]
    installed = AXE_PACKAGE / "package.json"
    version = json.loads(installed.read_text())["version"] if installed.exists() else None
    assert version == pinned, (
        f"axe-core {pinned} (package.json) is not installed in {rel(AXE_PACKAGE)} (found "
        f"{version}); run `make book-deps` (or `npm ci`)"
    )
    return (AXE_PACKAGE / "axe.min.js").read_text(encoding="utf-8")


# --- one visit per page and window, shared by the checks on what it recorded ------------------


@dataclass
class Visit:
    path: str
    window: str
    final_path: str = ""
    errors: list = field(default_factory=list)
    failed_local: list = field(default_factory=list)
    external: list = field(default_factory=list)
    math: dict = field(default_factory=dict)
    images: list = field(default_factory=list)
    title: str = ""
    layout: dict = field(default_factory=dict)
    axe: list = field(default_factory=list)
    links: list = field(default_factory=list)         # hrefs in the article's text
    report: dict = field(default_factory=dict)        # link text -> {visible, href, opens}
    downloads: dict = field(default_factory=dict)     # label -> {visible, href}
    notebook: dict = field(default_factory=dict)      # the .ipynb download: status, sha256
    launch: dict = field(default_factory=dict)        # service -> URL its button opens
    dark_figures: list = field(default_factory=list)  # [screenshot, ground, ink]
    broken: dict = field(default_factory=dict)        # what could not be recorded, and why
    seconds: dict = field(default_factory=dict)       # how long each part took
    screenshot: str = ""                              # relative to the repository

    def require(self, *parts):
        """Fails the test when a part of the record it needs could not be recorded."""
        missing = {p: self.broken[p] for p in parts if p in self.broken}
        assert not missing, (
            f"{self.path} ({self.window}): the visit could not record "
            + "; ".join(f"{p}: {why}" for p, why in missing.items())
            + (f"; look at {self.screenshot}" if self.screenshot else "")
        )
        return self


def record(seen, part, work):
    """Runs one part of a visit; a failure is kept for the tests that need that part."""
    start = time.perf_counter()
    try:
        return work()
    except Exception as exc:  # reported by the test that needs the part
        seen.broken[part] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        return None
    finally:
        seen.seconds[part] = round(time.perf_counter() - start, 2)


def open_menu(tab, menu_class):
    toggle = tab.page.locator(f".{menu_class} button.dropdown-toggle")
    assert toggle.count() == 1, f"no {menu_class} menu in the page's header"
    menu = tab.page.locator(f".{menu_class} .dropdown-menu")
    toggle.click()
    if not menu.is_visible():  # it was open already, and the click closed it
        toggle.click()
    return menu


def close_menus(tab):
    tab.page.keyboard.press("Escape")


def opened_url(tab, link):
    """Clicks a link that opens another site in a new tab; returns the URL the new tab opens.

    Nothing leaves the machine: offline_context answers the new tab's request itself.
    """
    with tab.page.expect_popup(timeout=10_000) as new_tab:
        link.click()
    popup = new_tab.value
    popup.wait_for_load_state("load")
    url = popup.url
    popup.close()
    return url


LAUNCH_SERVICES = ("Colab", "Binder", "Kaggle", "SageMaker Studio Lab")


def record_launch_buttons(seen, tab):
    for name in LAUNCH_SERVICES:
        menu = open_menu(tab, "dropdown-launch-buttons")
        link = menu.get_by_role("link", name=name)
        if link.count() == 1 and link.is_visible():
            seen.launch[name] = opened_url(tab, link)
        else:
            seen.launch[name] = None
            close_menus(tab)


def record_download_menu(seen, context, tab):
    menu = open_menu(tab, "dropdown-download-buttons")
    for label in [*takeaways.LABELS.values(), ".ipynb"]:
        link = menu.get_by_role("link", name=label)
        if link.count() != 1:
            continue
        href = tab.site_path(link.get_attribute("href"))
        seen.downloads[label] = {"visible": link.is_visible(), "href": href}
    close_menus(tab)
    notebook = seen.downloads.get(".ipynb")
    if notebook:
        response = context.request.get(urljoin(tab.base, notebook["href"]))
        seen.notebook = {"status": response.status,
                         "sha256": hashlib.sha256(response.body()).hexdigest()}


def record_report_links(seen, tab, click=True):
    article = tab.page.locator("main article")
    for text in [*REPORT_LINKS, ERRATA_LINK]:
        link = article.get_by_role("link", name=text, exact=True)
        if link.count() == 0:
            continue
        link = link.first
        entry = {"visible": link.is_visible(), "href": tab.site_path(link.get_attribute("href"))}
        if click and text in REPORT_LINKS and entry["visible"]:
            entry["opens"] = opened_url(tab, link)
        seen.report[text] = entry


def record_dark_figures(seen, tab):
    """Switches the system theme to dark (the book follows it) and screenshots each figure."""
    tab.page.emulate_media(color_scheme="dark")
    tab.page.wait_for_function("document.documentElement.dataset.theme === 'dark'",
                               timeout=5_000)
    DARK_FIGURE_DIR.mkdir(parents=True, exist_ok=True)
    figures = tab.page.locator("main .cell_output img")
    for i in range(figures.count()):
        target = DARK_FIGURE_DIR / f"{screenshot_name(seen.path)}__{i + 1}.png"
        shot = figures.nth(i).screenshot(path=str(target))
        luminance = np.asarray(Image.open(BytesIO(shot)).convert("L"), dtype=float)
        seen.dark_figures.append(
            [rel(target), float(np.percentile(luminance, 50)), float(np.percentile(luminance, 1))])


def record_axe(seen, tab):
    tab.page.add_script_tag(content=axe_source())
    seen.axe = tab.page.evaluate(AXE_RUN_JS)
    for v in seen.axe:
        append_line(AXE_LOG, f"{seen.path} ({seen.window}): {v['id']} [{v['impact']}] "
                             f"x{v['count']}: {v['help']} -- {', '.join(v['nodes'][:3])}")
    if not seen.axe:
        append_line(AXE_LOG, f"{seen.path} ({seen.window}): no violations")


def record_layout(seen, tab, limit):
    seen.layout = tab.page.evaluate(LAYOUT_JS, limit)
    if seen.layout["page"] > limit or seen.layout["offenders"]:
        first = tab.page.locator("[data-pbe-too-wide]").first
        first.scroll_into_view_if_needed()
        seen.layout["shot"] = rel(tab.screenshot(
            f"{screenshot_name(seen.path)}__{seen.window}-too-wide", full_page=False))


def read_page(seen, tab):
    seen.final_path = tab.path
    seen.images = tab.page.eval_on_selector_all(
        "main img",
        """imgs => imgs.map(img => ({
            src: img.getAttribute('src'), alt: img.getAttribute('alt'),
            width: img.naturalWidth, height: img.naturalHeight, complete: img.complete}))""",
    )
    seen.title = tab.page.evaluate(
        "document.querySelector('main article h1')?.innerText.replace(/#$/, '').trim() || ''")
    seen.links = [tab.site_path(href) for href in tab.page.eval_on_selector_all(
        "main article a[href]", "links => links.map(a => a.getAttribute('href'))")]
    return True


def visit_desktop(tab, context, seen):
    page_path = seen.path
    lands_on = f"{TOC['root']}.html" if page_path == "index.html" else None
    if record(seen, "load", lambda: tab.open(page_path, lands_on) and read_page(seen, tab)) is None:
        return
    seen.math = record(seen, "math", lambda: math_state(tab)) or {}  # waits for MathJax
    seen.screenshot = record(seen, "screenshot",
                             lambda: rel(tab.screenshot(screenshot_name(page_path)))) or ""
    if lands_on:
        return  # a redirect: the page it lands on has visits of its own
    record(seen, "layout", lambda: record_layout(seen, tab, VIEWPORT["width"]))
    record(seen, "axe", lambda: record_axe(seen, tab))
    record(seen, "download menu", lambda: record_download_menu(seen, context, tab))
    record(seen, "report links", lambda: record_report_links(seen, tab))
    if page_path.startswith("notebooks/"):
        record(seen, "launch menu", lambda: record_launch_buttons(seen, tab))
        record(seen, "dark figures", lambda: record_dark_figures(seen, tab))


def visit_phone(tab, seen):
    if record(seen, "load", lambda: tab.open(seen.path) and read_page(seen, tab)) is None:
        return
    seen.math = record(seen, "math", lambda: math_state(tab)) or {}  # formulas change widths
    seen.screenshot = record(seen, "screenshot", lambda: rel(tab.screenshot(
        f"{screenshot_name(seen.path)}__phone", full_page=False))) or ""
    record(seen, "layout", lambda: record_layout(seen, tab, PHONE_WIDTH))
    record(seen, "report links", lambda: record_report_links(seen, tab, click=False))


def make_visit(browser, site, page_path, window):
    """Loads the page in a fresh context and records everything its checks need."""
    context = offline_context(browser, site, window=window)
    tab = new_watched_tab(context, site)
    seen = Visit(page_path, window)
    if window == "desktop":
        visit_desktop(tab, context, seen)
    else:
        visit_phone(tab, seen)
    seen.errors, seen.failed_local = list(tab.errors), list(tab.failed_local)
    seen.external = list(tab.external)
    context.close()
    append_line(EXTERNAL_LOG, f"{page_path} ({window}): "
                              + (" ".join(sorted(set(seen.external))) or "(none)"))
    return asdict(seen)


VISITS = {}


@pytest.fixture
def visit(browser, site):
    """Loads a page once per test run and window, records what the checks need, returns it.

    Once per run, not once per worker: the record is shared through _build/ (tests/once.py),
    so a page's tests find its visit whichever worker they run on (pytest-xdist 3.8's
    loadgroup does not group tests under pytest 9.2: pytest-dev/pytest-xdist#1386).
    """

    def load(page_path, window="desktop"):
        key = (page_path, window)
        if key not in VISITS:
            assert (HTML_DIR / page_path).exists(), (
                f"{rel(HTML_DIR / page_path)} was not built; is its page listed in _toc.yml?"
            )
            record_ = once_per_test_run(f"visit-{window}-{screenshot_name(page_path)}",
                                        lambda: make_visit(browser, site, page_path, window))
            VISITS[key] = Visit(**record_)
        return VISITS[key]

    return load


def look_at(seen):
    return f"look at {seen.screenshot}" if seen.screenshot else "(no screenshot)"


@page_params(PAGES)
def test_page_runs_without_javascript_errors(visit, page_path):
    seen = visit(page_path).require("load")
    assert not seen.errors, (
        f"{page_path}: Chromium reported script errors:\n  " + "\n  ".join(seen.errors)
        + "\nFix the page's scripts (a duplicate inline script? see _config.yml's sphinx "
        "extensions) and " + look_at(seen)
    )


@pytest.mark.xdist_group("index.html")
def test_home_page_opens_the_preface(visit):
    seen = visit("index.html")
    assert "load" not in seen.broken and seen.final_path == f"{TOC['root']}.html", (
        f"index.html leads to {seen.final_path!r}, not the book's root page "
        f"{TOC['root']}.html ({seen.broken.get('load', 'no redirect')})"
    )


@page_params(PAGES)
def test_page_loads_every_local_resource(visit, page_path):
    seen = visit(page_path).require("load")
    assert not seen.failed_local, (
        f"{page_path}: local resources failed to load (a broken link to a script, style or "
        "image in the build):\n  " + "\n  ".join(seen.failed_local)
    )


@page_params(PAGES)
def test_page_asks_nothing_of_another_host(visit, page_path):
    seen = visit(page_path).require("load")
    unexpected = [u for u in seen.external if not any(p.match(u) for p in EXPECTED_EXTERNAL)]
    assert not unexpected, (
        f"{page_path} fetches {unexpected} from the internet; a page must work offline and "
        "behind a firewall. Serve it from the build (as _ext/offline_book.py does MathJax), or "
        "add it to EXPECTED_EXTERNAL in tests/test_site.py if it is deliberate"
    )


def assert_math_typeset(where, math):
    assert not math["raw"], (
        f"{where} shows raw TeX instead of formulas: {math['raw'][:5]} (did MathJax load? it "
        "must come from _static/mathjax/, see _ext/offline_book.py)"
    )
    assert math["typeset"] == math["formulas"], (
        f"{where}: MathJax typeset {math['typeset']} of {math['formulas']} formulas "
        f"(MathJax loaded: {math['loaded']})"
    )


@page_params(PAGES)
def test_page_typesets_its_formulas_without_the_network(visit, page_path):
    seen = visit(page_path).require("load", "math")
    assert_math_typeset(page_path, seen.math)


@page_params([("intro", f"{TOC['root']}.html"), CHAPTERS[0]])
def test_the_pages_with_formulas_are_checked(visit, page_path):
    """The formula check above is not vacuous: the preface and stage 01 have formulas."""
    math = visit(page_path).require("load", "math").math
    assert math["formulas"] > 0 and math["loaded"], f"{page_path}: {math}"


@page_params(PAGES)
def test_figures_are_rendered(visit, page_path):
    seen = visit(page_path).require("load")
    broken = [img["src"] for img in seen.images if not img["complete"] or img["width"] == 0]
    assert not broken, f"{page_path}: figures that did not render (zero natural size): {broken}"
    if page_path.startswith("notebooks/"):
        assert seen.images, (
            f"{page_path} shows no figure; every chapter plots its loss (is the notebook "
            "stored with its outputs?)"
        )


# --- phones --------------------------------------------------------------------------------------


def assert_fits(seen, limit, screen):
    layout = seen.require("load", "layout").layout
    too_wide = {"phone": ", so the browser zooms the whole page out",
                "desktop": ", so the reader scrolls the whole page sideways"}
    assert layout["page"] <= limit and not layout["offenders"], (
        f"{seen.path}: on {screen} ({limit} px wide) the page lays out {layout['page']} px wide"
        + (too_wide[seen.window] if layout["page"] > limit else "")
        + f"; {layout['count']} element(s) stick out of the screen with no box around them "
        "that scrolls sideways:\n  " + "\n  ".join(layout["offenders"])
        + "\nLet long text wrap, or put wide code, outputs, tables and formulas in a box that "
        "scrolls (overflow-x: auto; see _static/offline_book.css); look at "
        + (layout.get("shot") or seen.screenshot)
    )


@page_params(CONTENT_PAGES)
def test_page_fits_a_phone_screen(visit, page_path):
    assert_fits(visit(page_path, "phone"), PHONE_WIDTH, "a phone")


@page_params(CONTENT_PAGES)
def test_page_fits_a_desktop_window(visit, page_path):
    assert_fits(visit(page_path), VIEWPORT["width"], "a desktop window")


@page_params(CONTENT_PAGES)
def test_page_shows_its_report_link_on_a_phone(visit, page_path):
    seen = visit(page_path, "phone").require("load", "report links")
    link = seen.report.get("报告问题")
    assert link and link["visible"], (
        f"{page_path}: on a phone the page shows no 报告问题 link under its title; "
        + look_at(seen)
    )


# --- accessibility ---------------------------------------------------------------------------


@page_params(CONTENT_PAGES)
def test_page_has_no_serious_or_critical_accessibility_violation(visit, page_path):
    seen = visit(page_path).require("load", "axe")
    failing = [v for v in seen.axe if v["impact"] in AXE_FAILING]
    assert not failing, (
        f"{page_path}: axe-core finds accessibility violations of impact "
        f"{' or '.join(AXE_FAILING)}:\n  "
        + "\n  ".join(f"{v['id']} [{v['impact']}] x{v['count']}: {v['help']} ({v['url']})\n"
                      f"    at {'; '.join(v['nodes'])}" for v in failing)
        + "\nFix the page's source (a figure's alt text: the cell's mystnb.image.alt), or the "
        "theme's markup in _ext/offline_book.py (A11Y_FIXES); every finding of this run is in "
        + rel(AXE_LOG)
    )


# --- reporting a problem ---------------------------------------------------------------------


def issue_form_fields(form):
    """The ids of an issue form's fields (.github/ISSUE_TEMPLATE/<form>)."""
    path = ISSUE_TEMPLATE_DIR / form
    assert path.exists(), f"the issue form {rel(path)} does not exist"
    body = yaml.safe_load(path.read_text(encoding="utf-8"))["body"]
    return {item["id"] for item in body if "id" in item}


def chapter_name(title):
    """How a report names a page: `5. nn 模块` -> `第 5 章 nn 模块`; others by their title."""
    numbered = re.match(r"(\d+)\.\s+(.*)", title)
    return f"第 {numbered.group(1)} 章 {numbered.group(2)}" if numbered else title


def assert_report_link_opens(seen, text, form):
    report = seen.require("load", "report links").report
    link = report.get(text)
    assert link and link["visible"], (
        f"{seen.path} shows no {text} link under its title (_ext/offline_book.py, "
        f"add_report_links); {look_at(seen)}"
    )
    assert link.get("opens") == link["href"], (
        f"{seen.path}: clicking {text} opens {link.get('opens')}, not its link {link['href']}"
    )
    url = urlsplit(link["opens"])
    query = {key: values[0] for key, values in parse_qs(url.query).items()}
    repo = CONFIG["repository"]["url"].removesuffix("/")
    expected = {"template": form, "title": f"[{chapter_name(seen.title)}] ",
                "chapter": chapter_name(seen.title), "page": takeaways.SITE_URL + seen.path}
    problems = []
    if f"{url.scheme}://{url.netloc}{url.path}" != f"{repo}/issues/new":
        problems.append(f"it does not open a new issue on {repo} (_config.yml repository.url)")
    problems += [f"{key}={query.get(key)!r}, expected {value!r}"
                 for key, value in expected.items() if query.get(key) != value]
    unknown = set(query) - {"template", "title", "labels"} - issue_form_fields(form)
    if unknown:
        problems.append(f"it fills {sorted(unknown)}, which are no field ids of {form}")
    assert not problems, (
        f"{seen.path}: the {text} link ({link['opens']}):\n  " + "\n  ".join(problems)
    )


@page_params(CONTENT_PAGES)
def test_report_link_opens_a_new_issue_about_this_page(visit, page_path):
    assert_report_link_opens(visit(page_path), "报告问题", REPORT_LINKS["报告问题"])


@page_params(CHAPTERS)
def test_run_failure_link_opens_a_new_issue_about_this_chapter(visit, page_path):
    assert_report_link_opens(visit(page_path), "报告运行失败", REPORT_LINKS["报告运行失败"])


@page_params([(i, p) for i, p in CONTENT_PAGES if not p.startswith("book/errata")])
def test_page_links_the_errata_page(visit, page_path):
    seen = visit(page_path).require("load", "report links")
    link = seen.report.get(ERRATA_LINK)
    assert link and link["visible"] and link["href"] == "book/errata.html", (
        f"{page_path}: no visible {ERRATA_LINK} link to book/errata.html beside 报告问题 "
        f"({link}); the errata page must carry the label (errata)="
    )


# --- launch and download buttons -----------------------------------------------------------


def repository():
    return CONFIG["repository"]["url"].removeprefix("https://github.com/"), CONFIG[
        "repository"
    ]["branch"]


def notebook_of(page_path):
    """The chapter page's notebook, relative to the repository root."""
    return page_path.replace(".html", ".ipynb")


def repo_notebook(page_path):
    """`org/repo/blob/branch/notebooks/NN_slug.ipynb`: how the launch services name a notebook."""
    repo, branch = repository()
    return f"{repo}/blob/{branch}/{notebook_of(page_path)}"


def assert_launch_button_opens(visit, page_path, name, expected):
    seen = visit(page_path).require("load", "launch menu")
    url = seen.launch.get(name)
    assert url, f"{page_path}: the launch (rocket) menu shows no {name} entry"
    assert url == expected, f"{page_path}: the {name} button opens {url}, expected {expected}"


@page_params(CHAPTERS)
def test_launch_menu_opens_this_notebook_on_colab(visit, page_path):
    expected = "https://colab.research.google.com/github/" + repo_notebook(page_path)
    assert_launch_button_opens(visit, page_path, "Colab", expected)


@page_params(CHAPTERS)
def test_launch_menu_opens_this_notebook_on_binder(visit, page_path):
    repo, branch = repository()
    hub = CONFIG["launch_buttons"]["binderhub_url"].rstrip("/")
    notebook = notebook_of(page_path)
    expected = f"{hub}/v2/gh/{repo}/{branch}?urlpath=lab/tree/{notebook}"
    assert_launch_button_opens(visit, page_path, "Binder", expected)


def github_notebook(page_path):
    return "https://github.com/" + repo_notebook(page_path)


@page_params(CHAPTERS)
def test_launch_menu_opens_this_notebook_on_kaggle(visit, page_path):
    # Kaggle needs no Google account and is reachable from mainland China, unlike Colab.
    expected = "https://kaggle.com/kernels/welcome?src=" + github_notebook(page_path)
    assert_launch_button_opens(visit, page_path, "Kaggle", expected)


@page_params(CHAPTERS)
def test_launch_menu_opens_this_notebook_on_sagemaker_studio_lab(visit, page_path):
    expected = "https://studiolab.sagemaker.aws/import/github/" + repo_notebook(page_path)
    assert_launch_button_opens(visit, page_path, "SageMaker Studio Lab", expected)


@page_params(CONTENT_PAGES)
def test_download_menu_offers_the_whole_book(visit, page_path):
    seen = visit(page_path).require("load", "download menu")
    for key, label in takeaways.LABELS.items():
        link = seen.downloads.get(label)
        assert link and link["visible"], f"{page_path}: the download menu offers no {label}"
        assert link["href"] == takeaways.FILES[key], (
            f"{page_path}: {label} links to {link['href']}, not to {takeaways.FILES[key]}"
        )


@pytest.mark.xdist_group("downloads")
def test_the_book_downloads_are_served(new_tab, downloads):
    magic = {"pdf": b"%PDF-", "notebooks": b"PK\x03\x04", "site": b"PK\x03\x04"}
    tab = new_tab()
    for key, name in takeaways.FILES.items():
        response = new_tab.context.request.get(urljoin(tab.base, name))
        assert response.ok and response.body()[:5].startswith(magic[key]), (
            f"{name}: HTTP {response.status}, not a {key} file"
        )


@pytest.mark.xdist_group(f"{TOC['root']}.html")
def test_preface_links_the_downloads(visit):
    seen = visit(f"{TOC['root']}.html").require("load")
    for key, name in takeaways.FILES.items():
        assert name in seen.links, (
            f"the preface does not link {name} ({takeaways.LABELS[key]}) in its text: use the "
            f"role {{takeaway}}`{key}` in book/intro.md"
        )


@page_params(CHAPTERS)
def test_download_menu_serves_this_notebook(visit, page_path):
    seen = visit(page_path).require("load", "download menu")
    link = seen.downloads.get(".ipynb")
    assert link and link["visible"], f"{page_path}: the download menu offers no .ipynb"
    notebook = ROOT / notebook_of(page_path)
    assert seen.notebook == {"status": 200,
                             "sha256": hashlib.sha256(notebook.read_bytes()).hexdigest()}, (
        f"{page_path}: the .ipynb download ({link['href']}, HTTP {seen.notebook.get('status')})"
        f" is not {rel(notebook)} as committed"
    )


# --- search ------------------------------------------------------------------------------------


def search(tab, query):
    """Types the query into the search page's box, as a reader does; returns result paths."""
    tab.open("search.html")
    box = tab.page.locator("#main-content form.bd-search input[name='q']")
    box.fill(query)
    box.press("Enter")
    tab.page.wait_for_function(
        "() => document.querySelector('#search-results .search-summary')?.innerText",
        timeout=15_000,
    )
    hrefs = tab.page.eval_on_selector_all(
        "#search-results ul.search li > a", "links => links.map(a => a.href)"
    )
    return [h.removeprefix(tab.base).split("?")[0].split("#")[0] for h in hrefs]


def stage_chapter(stage):
    (notebook,) = [p for p in CHAPTER_NOTEBOOKS if p.stem.startswith(stage)]
    return chapter_page(notebook)


STAGES = {p.stem[:2] for p in CHAPTER_NOTEBOOKS}


@pytest.mark.parametrize("word", [w for w, stage in SEARCH_WORDS.items() if stage in STAGES])
def test_search_finds_the_chapter_for_a_chinese_word(new_tab, word):
    expected = stage_chapter(SEARCH_WORDS[word])
    tab = new_tab()
    results = search(tab, word)
    tab.screenshot(f"search__{word}", full_page=False)
    assert expected in results, (
        f"searching {word!r} does not find {expected} (it finds {results}); Chinese search "
        "needs language zh_CN, jieba, and the term in book/jieba_dict.txt"
    )
    assert not tab.errors, f"search for {word!r}: script errors {tab.errors}"


@pytest.mark.parametrize("stage", [p.stem[:2] for p in CHAPTER_NOTEBOOKS],
                         ids=[p.stem for p in CHAPTER_NOTEBOOKS])
def test_search_lists_the_stage_chapter_first(new_tab, stage):
    queries = STAGE_QUERIES.get(stage)
    assert queries, f"add search queries for stage {stage} to STAGE_QUERIES in tests/test_site.py"
    expected = stage_chapter(stage)
    tab = new_tab()
    firsts = {}
    for query in queries:
        results = search(tab, query)
        firsts[query] = results[0] if results else None
        if firsts[query] == expected:
            return
    pytest.fail(
        f"no query of stage {stage} lists {expected} first: {firsts}. Put the stage's key term "
        "in the chapter title, or change STAGE_QUERIES in tests/test_site.py"
    )


# --- light and dark theme -------------------------------------------------------------------


def theme(tab):
    return tab.page.evaluate(
        """() => {
            const rgb = getComputedStyle(document.body).backgroundColor.match(/\\d+/g).map(Number);
            const luminance = (0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]) / 255;
            return {theme: document.documentElement.dataset.theme, luminance: luminance};
        }"""
    )


def switch_theme_to(tab, wanted):
    button = tab.page.locator(".theme-switch-button").first
    for _ in range(3):  # the button cycles auto -> dark -> light
        if theme(tab)["theme"] == wanted:
            return theme(tab)
        button.click()
    return theme(tab)


def test_theme_switch_turns_the_page_dark_and_back(new_tab):
    page_path = chapter_page(CHAPTER_NOTEBOOKS[0])
    tab = new_tab().open(page_path)
    assert theme(tab)["luminance"] > 0.8, f"{page_path} does not start light: {theme(tab)}"
    dark = switch_theme_to(tab, "dark")
    tab.screenshot(f"{screenshot_name(page_path)}__dark", full_page=False)
    assert dark["theme"] == "dark" and dark["luminance"] < 0.3, (
        f"{page_path}: the theme switch did not make the page dark: {dark}"
    )
    light = switch_theme_to(tab, "light")
    assert light["theme"] == "light" and light["luminance"] > 0.8, (
        f"{page_path}: the theme switch did not bring the light theme back: {light}"
    )
    assert not tab.errors, f"{page_path}: switching the theme raised {tab.errors}"


def test_dark_theme_is_kept_on_the_next_page(new_tab):
    tab = new_tab().open(chapter_page(CHAPTER_NOTEBOOKS[0]))
    switch_theme_to(tab, "dark")
    tab.open("index.html", lands_on=f"{TOC['root']}.html")
    assert theme(tab)["theme"] == "dark", (
        f"after choosing dark, {tab.path} is {theme(tab)}; the choice should persist"
    )


@page_params(CHAPTERS)
def test_figures_read_in_the_dark_theme(visit, page_path):
    """Each figure, screenshotted on the dark page, must still be dark ink on a light ground.

    A figure stored with a transparent background would show its black axes and text on the dark
    page; _static/offline_book.css gives figures a white ground in the dark theme. The visit
    turns the reader's system theme dark (the book follows it) after its other checks.
    """
    seen = visit(page_path).require("load", "dark figures")
    assert seen.dark_figures, f"{page_path} shows no figure"
    unreadable = [f"{shot} (ground {ground:.0f}, ink {ink:.0f} of 255)"
                  for shot, ground, ink in seen.dark_figures if ground < 200 or ink > 100]
    assert not unreadable, (
        f"{page_path}: figures that do not read dark-on-light in the dark theme:\n  "
        + "\n  ".join(unreadable)
    )


# --- the offline site zip, read from disk ----------------------------------------------------


@pytest.fixture(scope="module")
def offline_site(downloads, tmp_path_factory):
    """The offline site zip, unzipped as a reader would; returns its top folder."""
    root = tmp_path_factory.mktemp("offline-site")
    with zipfile.ZipFile(takeaways.PATHS["site"]) as archive:
        archive.extractall(root)
    (top,) = root.iterdir()
    return top


@pytest.mark.xdist_group("downloads")
def test_offline_site_zip_works_from_disk(browser, offline_site):
    """file://, nothing but the unzipped folder: the preface, math, figures, search, the PDF."""
    base = offline_site.as_uri() + "/"
    context = offline_context(browser, base)
    tab = new_watched_tab(context, base).open("index.html", lands_on=f"{TOC['root']}.html")
    assert tab.path == f"{TOC['root']}.html", f"index.html (from disk) leads to {tab.path}"
    assert_math_typeset(f"offline {tab.path}", math_state(tab))
    tab.screenshot("offline__preface", full_page=False)

    chapter = chapter_page(CHAPTER_NOTEBOOKS[0])
    tab.open(chapter)
    assert_math_typeset(f"offline {chapter}", math_state(tab))
    broken = tab.page.eval_on_selector_all(
        "main img", "imgs => imgs.filter(i => !i.complete || !i.naturalWidth).map(i => i.src)")
    assert not broken, f"offline {chapter}: figures that do not load: {broken}"
    menu = open_menu(tab, "dropdown-download-buttons")
    for key in ("pdf", "notebooks"):  # the site zip does not hold itself
        href = menu.get_by_role("link", name=takeaways.LABELS[key]).get_attribute("href")
        target = (offline_site / chapter).parent / href
        assert target.resolve().is_file(), f"offline {chapter}: {href} is not in the zip"

    word, stage = "张量", "02"
    results = search(tab, word)
    tab.screenshot("offline__search", full_page=False)
    assert stage_chapter(stage) in results, (
        f"searching {word!r} from disk finds {results}, not {stage_chapter(stage)}"
    )
    assert not tab.errors, f"the offline site reported script errors: {tab.errors}"
    assert not tab.failed_local, f"the offline site misses files: {tab.failed_local}"
    assert not tab.external, f"the offline site asked the internet for {tab.external}"
    context.close()
