"""The HTML book: table of contents, a warning-free build, Chinese search, launch links."""

import json
import re
import sys

import pytest

from conftest import (
    BOOK_DIR,
    CHAPTER_NOTEBOOKS,
    CONFIG,
    HTML_DIR,
    NOTEBOOK_DIR,
    ROOT,
    TOC,
    chapter_params,
    rel,
    toc_files,
)


def resolve(entry):
    """The source file a TOC entry names (entries omit the suffix)."""
    matches = [p for p in (ROOT / f"{entry}.ipynb", ROOT / f"{entry}.md") if p.exists()]
    return matches[0] if len(matches) == 1 else None


def pages_that_must_be_listed():
    pages = list(CHAPTER_NOTEBOOKS)
    twins = {f"{p.stem}.md" for p in CHAPTER_NOTEBOOKS}
    pages += [p for p in sorted(BOOK_DIR.glob("*.md")) if p.name not in twins]
    return pages


def test_every_toc_entry_names_one_existing_file():
    for entry in toc_files(TOC):
        assert resolve(entry), (
            f"_toc.yml lists {entry!r}, but there is no {entry}.ipynb or {entry}.md "
            "(or there are both); fix the entry or add the page"
        )


def test_every_page_is_in_the_toc():
    listed = {resolve(entry) for entry in toc_files(TOC)}
    missing = [rel(p) for p in pages_that_must_be_listed() if p not in listed]
    assert not missing, (
        f"{missing} are not in _toc.yml, so the book silently leaves them out "
        "(only_build_toc_files); add them to _toc.yml (chapters by their notebooks/ path)"
    )


def test_chapters_are_listed_by_their_notebook_so_colab_can_open_them():
    for entry in toc_files(TOC):
        path = resolve(entry)
        if path is not None and re.match(r"\d\d_", path.name):
            assert path.suffix == ".ipynb", (
                f"_toc.yml lists chapter {entry!r} as Markdown; list notebooks/{path.stem} "
                "so the Colab button opens a notebook"
            )


def test_book_builds_without_warnings(built_book):
    returncode, log = built_book
    warnings = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
    assert returncode == 0 and not warnings, (
        "`make book` (jupyter-book build . -W -n --keep-going) failed or warned:\n"
        + "\n".join(warnings[:20] or log.splitlines()[-20:])
    )


def load_search_index():
    text = (HTML_DIR / "searchindex.js").read_text(encoding="utf-8")
    return json.loads(text[text.index("(") + 1 : text.rindex(")")])


@pytest.mark.parametrize("word", ["张量", "梯度", "反向传播", "学习率"])
def test_search_index_holds_chinese_words(built_book, word):
    index = load_search_index()
    # Sphinx files a word that appears in a heading under titleterms, not terms.
    assert word in index["terms"] or word in index["titleterms"], (
        f"the search index has no entry for {word!r}; Chinese search needs "
        "`language: zh_CN` in _config.yml and the jieba package"
    )


def colab_links(html):
    return re.findall(r'href="(https://colab\.research\.google\.com/[^"]+)"', html)


@chapter_params()
def test_chapter_page_links_to_its_notebook_on_colab(built_book, notebook_path):
    page = HTML_DIR / "notebooks" / f"{notebook_path.stem}.html"
    assert page.exists(), f"{rel(page)} was not built"
    links = colab_links(page.read_text(encoding="utf-8"))
    assert links, f"{rel(page)} has no Colab link (launch_buttons.colab_url in _config.yml?)"
    repo = CONFIG["repository"]["url"].removeprefix("https://github.com/")
    branch = CONFIG["repository"]["branch"]
    prefix = f"https://colab.research.google.com/github/{repo}/blob/{branch}/"
    for link in links:
        assert link.startswith(prefix), (
            f"{rel(page)}: Colab link {link} does not start with {prefix}"
        )
        target = ROOT / link.removeprefix(prefix)
        assert target.suffix == ".ipynb" and target.exists(), (
            f"{rel(page)}: Colab link {link} names {link.removeprefix(prefix)}, "
            "which is not a notebook in this repository"
        )


def test_notebook_dir_holds_only_chapters():
    strays = [
        p.name for p in NOTEBOOK_DIR.glob("*.ipynb") if not re.match(r"\d\d_\w+\.ipynb$", p.name)
    ]
    assert not strays, f"notebooks/ holds {strays}; chapters are named NN_slug.ipynb"



# --- offline and in mainland China (issue 12) ------------------------------------------------


def built_pages():
    return sorted(HTML_DIR.rglob("*.html"))


def test_no_page_loads_a_script_style_or_font_from_another_host(built_book):
    """Static check of every built page; tests/test_site.py checks what Chromium requests."""
    pattern = re.compile(r'<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)="(https?:)?//[^"]*"')
    found = {}
    for page in built_pages():
        for tag in pattern.finditer(page.read_text(encoding="utf-8")):
            if "<link" in tag.group(0) and 'rel="canonical"' in tag.group(0):
                continue
            found.setdefault(rel(page), []).append(tag.group(0)[:120])
    assert not found, (
        f"pages load resources from other hosts (offline and in mainland China they fail): {found}"
    )


def test_mathjax_is_served_from_the_build(built_book):
    pinned = json.loads((ROOT / "package.json").read_text())["dependencies"]["mathjax"]
    script = HTML_DIR / "_static" / "mathjax" / "tex-mml-chtml.js"
    assert script.exists(), f"{rel(script)} is missing (_ext/offline_book.py copies it)"
    assert f'VERSION="{pinned}"' in script.read_text(encoding="utf-8"), (
        f"{rel(script)} is not MathJax {pinned}, the version package.json pins (run `make book`)"
    )
    local = re.compile(r'<script[^>]+src="(\.\./)*_static/mathjax/tex-mml-chtml\.js(\?[^"]*)?"')
    for page in built_pages():
        html = page.read_text(encoding="utf-8")
        if 'class="math' in html:
            assert local.search(html), (
                f"{rel(page)} has formulas but does not load MathJax from _static/mathjax/"
            )


def kaggle_links(html):
    return re.findall(r'href="(https://kaggle\.com/kernels/welcome\?src=[^"]+)"', html)


@chapter_params()
def test_chapter_page_offers_kaggle_beside_colab(built_book, notebook_path):
    page = HTML_DIR / "notebooks" / f"{notebook_path.stem}.html"
    repo = CONFIG["repository"]["url"].removeprefix("https://github.com/")
    branch = CONFIG["repository"]["branch"]
    expected = (f"https://kaggle.com/kernels/welcome?src=https://github.com/{repo}/blob/{branch}/"
                f"notebooks/{notebook_path.name}")
    assert kaggle_links(page.read_text(encoding="utf-8")) == [expected], (
        f"{rel(page)} has no Kaggle launch link {expected} (_ext/offline_book.py adds it)"
    )


def test_preface_says_which_launch_to_use_from_where():
    intro = (ROOT / f"{TOC['root']}.md").read_text(encoding="utf-8")
    section = intro.split("## 三种读法", 1)[1].split("\n## ", 1)[0]
    for words in ("Kaggle", "Binder", "Colab", "中国大陆", "不需要下载任何数据", "{takeaway}`pdf`"):
        assert words in section, f"the preface's 三种读法 does not mention {words!r}"


def test_readme_links_the_downloads():
    sys.path.insert(0, str(ROOT / "_ext"))
    from offline_book import download_files, site_url

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    url = CONFIG["repository"]["url"]
    for name in download_files(url).values():
        assert site_url(url) + name in readme, f"README.md does not link {site_url(url)}{name}"
