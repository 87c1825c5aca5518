"""The site as readers meet it: the freshly built book, served on localhost, in headless Chromium.

Every test here depends on the `built_book` fixture, so it runs against the HTML that this
test session built. Chromium is Debian's (/usr/bin/chromium, or $CHROMIUM_PATH), driven by
Playwright; `.ci/install-browser` (run by `make test` and `.ci/run`) installs it together with
fonts-noto-cjk, without which the screenshots show boxes instead of Chinese.

External requests are blocked: the test machine has no internet, and a page must not depend on
one to work (offline, or in mainland China, where Google and jsDelivr are out of reach). Every
blocked URL is recorded, must be in EXPECTED_EXTERNAL below (which is empty: MathJax comes from
the build, _static/mathjax/), and is listed in _build/screenshots/external-resources.txt. A
blocked fetch logs "Failed to load resource" in the console; that message is not counted as a
script error of the site, every other console error and every uncaught exception is. Every page
with formulas must show them typeset by MathJax, not as raw TeX.

The take-away downloads (the PDF and the two zips, tests/takeaways.py) are linked from every
page's download menu; the offline site zip is unzipped and read from disk (file://) here too.

Screenshots of every page (and of the search results, the dark theme and every figure in it)
are saved under _build/screenshots/ for a maintainer to look at.
"""

import functools
import http.server
import os
import shutil
import threading
import time
import zipfile
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from urllib.parse import urljoin

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

import takeaways
from conftest import BUILD_DIR, CHAPTER_NOTEBOOKS, CONFIG, HTML_DIR, ROOT, TOC, rel, toc_files

SCREENSHOT_DIR = BUILD_DIR / "screenshots"

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

# External resources a page may ask for (blocked here, loaded by readers' browsers): none.
# MathJax used to come from cdn.jsdelivr.net, which mainland China cannot reach; it is served
# from the build now (_ext/offline_book.py). Anything here is a dependency on the network that
# breaks the offline site zip and readers behind a firewall; add one only deliberately.
EXPECTED_EXTERNAL = []

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
CHAPTERS = [(p.stem, chapter_page(p)) for p in CHAPTER_NOTEBOOKS]


def page_params(pages):
    return pytest.mark.parametrize("page_path", [p for _, p in pages], ids=[i for i, _ in pages])


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


@pytest.fixture(scope="session")
def site(built_book):
    """The freshly built book, served over HTTP on localhost; yields the base URL."""
    assert (HTML_DIR / "index.html").exists(), (
        f"the build left no {rel(HTML_DIR / 'index.html')}; see test_book_builds_without_warnings"
    )
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOT_DIR.iterdir():  # keep pdf/, the PDF pages tests/test_pdf.py rendered
        if old.name != "pdf":
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    handler = functools.partial(QuietHandler, directory=str(HTML_DIR))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
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
    asked = {}
    for seen in VISITS.values():
        for url in seen.external:
            asked.setdefault(url, set()).add(seen.path)
    lines = [f"{url}  <- {', '.join(sorted(pages))}" for url, pages in sorted(asked.items())]
    (SCREENSHOT_DIR / "external-resources.txt").write_text(
        "External resources the pages asked for (blocked during the tests):\n"
        + "\n".join(lines or ["(none)"]) + "\n",
        encoding="utf-8",
    )
    print(f"\nbrowser tests: {time.perf_counter() - start:.1f} s in Chromium, after the build; "
          f"screenshots in {rel(SCREENSHOT_DIR)}/")


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

    def open(self, path):
        self.page.goto(urljoin(self.base, path), wait_until="load")
        self.page.wait_for_load_state("networkidle")
        return self

    @property
    def path(self):
        return self.page.url.removeprefix(self.base).split("#")[0]

    def screenshot(self, name, full_page=True):
        target = SCREENSHOT_DIR / f"{name}.png"
        self.page.screenshot(path=str(target), full_page=full_page)
        return target


def offline_context(browser, base, color_scheme="light"):
    """A fresh browser context (empty storage) that lets through only requests below base."""
    context = browser.new_context(viewport=VIEWPORT, locale="zh-CN", color_scheme=color_scheme)

    def route(route_):
        if route_.request.url.startswith(base):
            route_.continue_()
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


def screenshot_name(page_path):
    if page_path == "index.html":
        return "home"
    return page_path.removesuffix(".html").replace("/", "__")


# --- one visit per page, shared by the checks on what it loaded -------------------------------


@dataclass
class Visit:
    path: str
    final_path: str
    errors: list
    failed_local: list
    external: list
    images: list
    math: dict


VISITS = {}


@pytest.fixture
def visit(new_tab):
    """Loads a page once per session (screenshot included) and returns what was seen."""

    def load(page_path):
        if page_path not in VISITS:
            assert (HTML_DIR / page_path).exists(), (
                f"{rel(HTML_DIR / page_path)} was not built; is its page listed in _toc.yml?"
            )
            tab = new_tab().open(page_path)
            math = math_state(tab)  # waits for MathJax, so the screenshot shows typeset math
            images = tab.page.eval_on_selector_all(
                "main img",
                """imgs => imgs.map(img => ({
                    src: img.getAttribute('src'), width: img.naturalWidth,
                    height: img.naturalHeight, complete: img.complete}))""",
            )
            tab.screenshot(screenshot_name(page_path))
            VISITS[page_path] = Visit(page_path, tab.path, list(tab.errors),
                                      list(tab.failed_local), list(tab.external), images, math)
        return VISITS[page_path]

    return load


@page_params(PAGES)
def test_page_runs_without_javascript_errors(visit, page_path):
    seen = visit(page_path)
    assert not seen.errors, (
        f"{page_path}: Chromium reported script errors:\n  " + "\n  ".join(seen.errors)
        + "\nFix the page's scripts (a duplicate inline script? see _config.yml's sphinx "
        "extensions) and look at " + rel(SCREENSHOT_DIR / f"{screenshot_name(page_path)}.png")
    )


def test_home_page_opens_the_preface(visit):
    seen = visit("index.html")
    assert seen.final_path == f"{TOC['root']}.html", (
        f"index.html leads to {seen.final_path!r}, not the book's root page {TOC['root']}.html"
    )


@page_params(PAGES)
def test_page_loads_every_local_resource(visit, page_path):
    seen = visit(page_path)
    assert not seen.failed_local, (
        f"{page_path}: local resources failed to load (a broken link to a script, style or "
        "image in the build):\n  " + "\n  ".join(seen.failed_local)
    )


@page_params(PAGES)
def test_page_asks_nothing_of_another_host(visit, page_path):
    seen = visit(page_path)
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
    seen = visit(page_path)
    assert_math_typeset(page_path, seen.math)


def test_the_pages_with_formulas_are_checked(visit):
    """The formula check above is not vacuous: the preface and stage 01 have formulas."""
    for page_path in ("book/intro.html", chapter_page(CHAPTER_NOTEBOOKS[0])):
        math = visit(page_path).math
        assert math["formulas"] > 0 and math["loaded"], f"{page_path}: {math}"


@page_params(PAGES)
def test_figures_are_rendered(visit, page_path):
    seen = visit(page_path)
    broken = [img["src"] for img in seen.images if not img["complete"] or img["width"] == 0]
    assert not broken, f"{page_path}: figures that did not render (zero natural size): {broken}"
    if page_path.startswith("notebooks/"):
        assert seen.images, (
            f"{page_path} shows no figure; every chapter plots its loss (is the notebook "
            "stored with its outputs?)"
        )


# --- launch and download buttons -----------------------------------------------------------


def repository():
    return CONFIG["repository"]["url"].removeprefix("https://github.com/"), CONFIG[
        "repository"
    ]["branch"]


def open_menu(tab, menu_class, page_path):
    toggle = tab.page.locator(f".{menu_class} button.dropdown-toggle")
    assert toggle.count() == 1, f"{page_path} has no {menu_class} menu in its header"
    toggle.click()
    return tab.page.locator(f".{menu_class} .dropdown-menu")


def click_external_link(new_tab, tab, link):
    """Clicks a link that opens an external site in a new tab; returns the URL it requests."""
    with new_tab.context.expect_event(
        "request", predicate=lambda request: not tab.local(request.url), timeout=10_000
    ) as request:
        link.click()
    return request.value.url


def notebook_of(page_path):
    """The chapter page's notebook, relative to the repository root."""
    return page_path.replace(".html", ".ipynb")


def repo_notebook(page_path):
    """`org/repo/blob/branch/notebooks/NN_slug.ipynb`: how the launch services name a notebook."""
    repo, branch = repository()
    return f"{repo}/blob/{branch}/{notebook_of(page_path)}"


def assert_launch_button_opens(new_tab, page_path, name, expected):
    tab = new_tab().open(page_path)
    menu = open_menu(tab, "dropdown-launch-buttons", page_path)
    link = menu.get_by_role("link", name=name)
    assert link.is_visible(), f"{page_path}: the launch (rocket) menu shows no {name} entry"
    url = click_external_link(new_tab, tab, link)
    assert url == expected, f"{page_path}: the {name} button opens {url}, expected {expected}"


@page_params(CHAPTERS)
def test_launch_menu_opens_this_notebook_on_colab(new_tab, page_path):
    expected = "https://colab.research.google.com/github/" + repo_notebook(page_path)
    assert_launch_button_opens(new_tab, page_path, "Colab", expected)


@page_params(CHAPTERS)
def test_launch_menu_opens_this_notebook_on_binder(new_tab, page_path):
    repo, branch = repository()
    hub = CONFIG["launch_buttons"]["binderhub_url"].rstrip("/")
    notebook = notebook_of(page_path)
    expected = f"{hub}/v2/gh/{repo}/{branch}?urlpath=lab/tree/{notebook}"
    assert_launch_button_opens(new_tab, page_path, "Binder", expected)


def github_notebook(page_path):
    return "https://github.com/" + repo_notebook(page_path)


@page_params(CHAPTERS)
def test_launch_menu_opens_this_notebook_on_kaggle(new_tab, page_path):
    # Kaggle needs no Google account and is reachable from mainland China, unlike Colab.
    expected = "https://kaggle.com/kernels/welcome?src=" + github_notebook(page_path)
    assert_launch_button_opens(new_tab, page_path, "Kaggle", expected)


@page_params(CHAPTERS)
def test_launch_menu_opens_this_notebook_on_sagemaker_studio_lab(new_tab, page_path):
    expected = "https://studiolab.sagemaker.aws/import/github/" + repo_notebook(page_path)
    assert_launch_button_opens(new_tab, page_path, "SageMaker Studio Lab", expected)


@page_params(PAGES)
def test_download_menu_offers_the_whole_book(new_tab, downloads, page_path):
    tab = new_tab().open(page_path)
    menu = open_menu(tab, "dropdown-download-buttons", page_path)
    for key, label in takeaways.LABELS.items():
        link = menu.get_by_role("link", name=label)
        assert link.is_visible(), f"{page_path}: the download menu offers no {label}"
        url = urljoin(tab.page.url, link.get_attribute("href"))
        assert url == urljoin(tab.base, takeaways.FILES[key]), (
            f"{page_path}: {label} links to {url}, not to {takeaways.FILES[key]}"
        )


def test_the_book_downloads_are_served(new_tab, downloads):
    magic = {"pdf": b"%PDF-", "notebooks": b"PK\x03\x04", "site": b"PK\x03\x04"}
    tab = new_tab()
    for key, name in takeaways.FILES.items():
        response = new_tab.context.request.get(urljoin(tab.base, name))
        assert response.ok and response.body()[:5].startswith(magic[key]), (
            f"{name}: HTTP {response.status}, not a {key} file"
        )


def test_preface_links_the_downloads(new_tab, downloads):
    tab = new_tab().open(f"{TOC['root']}.html")
    hrefs = tab.page.eval_on_selector_all("main article a[href]", "links => links.map(a => a.href)")
    for key, name in takeaways.FILES.items():
        assert urljoin(tab.base, name) in hrefs, (
            f"the preface does not link {name} ({takeaways.LABELS[key]}) in its text: use the "
            f"role {{takeaway}}`{key}` in book/intro.md"
        )


@page_params(CHAPTERS)
def test_download_menu_serves_this_notebook(new_tab, page_path):
    tab = new_tab().open(page_path)
    menu = open_menu(tab, "dropdown-download-buttons", page_path)
    link = menu.get_by_role("link", name=".ipynb")
    assert link.is_visible(), f"{page_path}: the download menu offers no .ipynb"
    url = urljoin(tab.page.url, link.get_attribute("href"))
    response = new_tab.context.request.get(url)
    notebook = ROOT / page_path.replace(".html", ".ipynb")
    assert response.ok and response.body() == notebook.read_bytes(), (
        f"{page_path}: the .ipynb download ({url}, HTTP {response.status}) is not "
        f"{rel(notebook)} as committed"
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


DARK_FIGURE_DIR = SCREENSHOT_DIR / "dark-figures"


@page_params(CHAPTERS)
def test_figures_read_in_the_dark_theme(browser, site, page_path):
    """Each figure, screenshotted on the dark page, must still be dark ink on a light ground.

    A figure stored with a transparent background would show its black axes and text on the dark
    page; _static/offline_book.css gives figures a white ground in the dark theme.
    """
    context = offline_context(browser, site, color_scheme="dark")
    tab = new_watched_tab(context, site).open(page_path)
    assert tab.page.evaluate("document.documentElement.dataset.theme") == "dark"
    DARK_FIGURE_DIR.mkdir(parents=True, exist_ok=True)
    figures = tab.page.locator("main .cell_output img")
    count = figures.count()
    unreadable = []
    for i in range(count):
        target = DARK_FIGURE_DIR / f"{screenshot_name(page_path)}__{i + 1}.png"
        shot = figures.nth(i).screenshot(path=str(target))
        luminance = np.asarray(Image.open(BytesIO(shot)).convert("L"), dtype=float)
        ground, ink = np.percentile(luminance, 50), np.percentile(luminance, 1)
        if ground < 200 or ink > 100:
            unreadable.append(f"{rel(target)} (ground {ground:.0f}, ink {ink:.0f} of 255)")
    context.close()
    assert count > 0, f"{page_path} shows no figure"
    assert not unreadable, (
        f"{page_path}: figures that do not read dark-on-light in the dark theme:\n  "
        + "\n  ".join(unreadable)
    )


def test_dark_theme_is_kept_on_the_next_page(new_tab):
    tab = new_tab().open(chapter_page(CHAPTER_NOTEBOOKS[0]))
    switch_theme_to(tab, "dark")
    tab.open("index.html")
    assert theme(tab)["theme"] == "dark", (
        f"after choosing dark, {tab.path} is {theme(tab)}; the choice should persist"
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


def test_offline_site_zip_works_from_disk(browser, offline_site):
    """file://, nothing but the unzipped folder: the preface, math, figures, search, the PDF."""
    base = offline_site.as_uri() + "/"
    context = offline_context(browser, base)
    tab = new_watched_tab(context, base).open("index.html")
    assert tab.path == f"{TOC['root']}.html", f"index.html (from disk) leads to {tab.path}"
    assert_math_typeset(f"offline {tab.path}", math_state(tab))
    tab.screenshot("offline__preface", full_page=False)

    chapter = chapter_page(CHAPTER_NOTEBOOKS[0])
    tab.open(chapter)
    assert_math_typeset(f"offline {chapter}", math_state(tab))
    broken = tab.page.eval_on_selector_all(
        "main img", "imgs => imgs.filter(i => !i.complete || !i.naturalWidth).map(i => i.src)")
    assert not broken, f"offline {chapter}: figures that do not load: {broken}"
    menu = open_menu(tab, "dropdown-download-buttons", chapter)
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
