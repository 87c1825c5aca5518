"""A book for every reader: one who cannot see the figures, and one who finds an error.

Figures. Every figure has a Chinese caption *and* real alt text in Chinese that says what the
plot shows (what is plotted, the scale, the point it makes). One source: the notebook cell's
metadata, next to the caption (in the twin, book/NN_slug.md):

    mystnb:
      figure:
        caption: 例 P 的损失曲线（对数纵轴）。
        name: fig-01-loss-p
      image:
        alt: 折线图：横轴是迭代次数 0 到 2000，纵轴是对数刻度的损失。……

MyST-NB puts it on the site's <img>; scripts/refresh_notebooks.py copies it into the image
output's metadata (`metadata["image/png"]["alt"]`, where Jupyter's nbconvert reads it);
_ext/offline_book.py passes it to graphicx's `alt` key in the PDF's LaTeX (the PDF shows the
caption from the same cell). Before, every figure's alt on the site was its file path, so a
screen reader first read out a 64-character hash. The browser tests (tests/test_site.py) run
axe-core on every page.

Reporting an error. Every page has a 报告问题 link (chapters also 报告运行失败), made by
_ext/offline_book.py from _config.yml's repository URL, that opens a new issue from one of the
issue forms in .github/ISSUE_TEMPLATE/ with the chapter and the page's URL filled in; the forms
are checked here, the links in tests/test_site.py. Corrections that changed a printed result
or a claim are listed, newest first, on the errata page (book/errata.md), linked from the
preface.
"""

import re
import subprocess
import sys
from datetime import date
from html.parser import HTMLParser
from importlib import metadata
from pathlib import Path

import pytest
import yaml

import takeaways
from conftest import (
    BOOK_DIR,
    CHAPTER_NOTEBOOKS,
    HTML_DIR,
    ROOT,
    TOC,
    cell_ref,
    chapter_params,
    numbered_code_cells,
    read_notebook,
    rel,
    toc_files,
    twin_of,
)

sys.path.insert(0, str(ROOT / "_ext"))

from offline_book import ISSUE_FORMS, REPORT_FIELDS  # noqa: E402

BIN = Path(sys.executable).parent
IMAGE_TYPES = ("image/png", "image/jpeg")
CJK = re.compile(r"[\u4e00-\u9fff]")
# "折线图：损失随迭代下降。" says too little; a real alt text names the axes and the scale
MIN_ALT_CHARACTERS = 20
ISSUE_TEMPLATE_DIR = ROOT / ".github" / "ISSUE_TEMPLATE"
ISSUE_CONFIG = ISSUE_TEMPLATE_DIR / "config.yml"
ERRATA = BOOK_DIR / "errata.md"
ERRATA_LABEL = "errata"
ENVIRONMENT_LINE = re.compile(
    r"^Python (?P<python>\d+\.\d+), torch (?P<torch>\S+), NumPy (?P<numpy>\S+), "
    r"Matplotlib (?P<matplotlib>\S+), device (?P<device>\S+)$"
)


# --- figures: caption and alt text -------------------------------------------------------------


def figure_cells(nb):
    """(n, cell) of each code cell that stores a figure, n numbered as nbval numbers it."""
    return [(n, cell) for n, cell in numbered_code_cells(nb)
            if any(kind in output.get("data", {}) for output in cell.get("outputs", [])
                   for kind in IMAGE_TYPES)]


def cell_caption(cell):
    return (cell.metadata.get("mystnb", {}).get("figure", {}).get("caption") or "").strip()


def cell_alt(cell):
    alt = cell.metadata.get("mystnb", {}).get("image", {}).get("alt")
    return alt.strip() if isinstance(alt, str) else ""


def squeeze(text):
    return re.sub(r"[\s。．.，,：:；;（）()]+", "", text)


def alt_text_problem(alt, caption):
    """Why an alt text is not one (None when it is)."""
    if not alt:
        return "no alt text"
    if re.search(r"\.(png|jpe?g|svg)\b", alt) or re.fullmatch(r"[\w./-]+", alt):
        return f"alt text {alt!r} is a file name"
    if not CJK.search(alt):
        return f"alt text {alt!r} is not in Chinese"
    if caption and squeeze(alt) == squeeze(caption):
        return "alt text repeats the caption"
    if len(squeeze(alt)) < MIN_ALT_CHARACTERS:
        return f"alt text {alt!r} is too short to say what is plotted, its scale and its point"
    return None


ALT_TEXT_HOW = (
    "give the figure cell, next to its caption, `mystnb: image: alt: <Chinese alt text: what "
    "is plotted, the scale, the point it makes>` in {twin}, then "
    "`python scripts/refresh_notebooks.py --alt-only {prefix}`"
)


@chapter_params()
def test_every_figure_has_a_caption_and_alt_text(notebook_path):
    nb = read_notebook(notebook_path)
    problems = []
    for n, cell in figure_cells(nb):
        caption, alt = cell_caption(cell), cell_alt(cell)
        if not caption:
            problems.append(f"{cell_ref(notebook_path, n)}: no caption (mystnb.figure.caption)")
        why = alt_text_problem(alt, caption)
        if why:
            problems.append(f"{cell_ref(notebook_path, n)}: {why} (mystnb.image.alt)")
    if problems:
        pytest.fail(
            f"{len(problems)} figure problem(s) in {rel(notebook_path)}:\n  "
            + "\n  ".join(problems) + "\nA figure needs both a Chinese caption and alt text: "
            + ALT_TEXT_HOW.format(twin=rel(twin_of(notebook_path)), prefix=notebook_path.stem[:2]),
            pytrace=False,
        )


@chapter_params()
def test_every_figure_output_carries_its_cells_alt_text_for_jupyter(notebook_path):
    """The image output's `metadata["image/png"]["alt"]` is the cell's mystnb.image.alt."""
    nb = read_notebook(notebook_path)
    stale = []
    for n, cell in figure_cells(nb):
        for output in cell.outputs:
            for kind in IMAGE_TYPES:
                if kind not in output.get("data", {}):
                    continue
                stored = (output.get("metadata", {}).get(kind, {}).get("alt") or "").strip()
                wanted = cell_alt(cell)
                if stored != wanted:
                    same = next((i for i, (a, b) in enumerate(zip(stored, wanted)) if a != b),
                                min(len(stored), len(wanted)))
                    start = max(0, same - 10)
                    stale.append(f"{cell_ref(notebook_path, n)}: the {kind} output's alt has "
                                 f"{'…' * bool(start)}{stored[start:start + 40]!r} where the "
                                 f"cell's has {'…' * bool(start)}{wanted[start:start + 40]!r}")
    if stale:
        pytest.fail(
            f"{rel(notebook_path)}: figures whose stored alt text (read by Jupyter's "
            "nbconvert) is not the cell's mystnb.image.alt:\n  " + "\n  ".join(stale)
            + f"\nCopy them: `python scripts/refresh_notebooks.py --alt-only "
            f"{notebook_path.stem[:2]}` (or `make notebooks`)",
            pytrace=False,
        )


class PageImages(HTMLParser):
    """The images of an HTML page: [src, alt or None, caption text of its <figure> or None]."""

    def __init__(self):
        super().__init__()
        self.images = []
        self.figure = None  # the images of the open <figure>
        self.caption = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure":
            self.figure = []
        elif tag == "figcaption" and self.figure is not None:
            self.caption = []
        elif tag == "img":
            image = [attrs.get("src", ""), attrs.get("alt"), None]
            self.images.append(image)
            if self.figure is not None:
                self.figure.append(image)

    def handle_data(self, data):
        if self.caption is not None:
            self.caption.append(data)

    def handle_endtag(self, tag):
        if tag == "figcaption" and self.caption is not None:
            for image in self.figure:
                image[2] = "".join(self.caption).strip()
            self.caption = None
        elif tag == "figure":
            self.figure = None


def built_pages():
    return sorted(p for p in HTML_DIR.rglob("*.html") if "_static" not in p.parts)


def test_every_image_on_the_site_has_alt_text_and_every_figure_a_caption(built_book):
    problems = []
    for page in built_pages():
        parser = PageImages()
        parser.feed(page.read_text(encoding="utf-8"))
        for src, alt, caption in parser.images:
            name = src.rsplit("/", 1)[-1]
            if "_images" in src:  # a notebook figure: a caption and real alt text
                why = ("no caption (a <figure> with <figcaption>)" if not caption
                       else alt_text_problem(alt or "", caption)
                       or ("alt text is the file path" if name in (alt or "") else None))
            else:  # the theme's icons
                why = None if alt and name not in alt else f"alt={alt!r}"
            if why:
                problems.append(f"{rel(page)}: {name}: {why}")
    assert not problems, (
        f"{len(problems)} image(s) on the site without real alt text or caption (a screen "
        "reader reads a figure's file path out instead):\n  " + "\n  ".join(problems[:40])
        + ("\n  ..." if len(problems) > 40 else "")
        + "\nGive each figure cell a caption and alt text in its metadata (tests in this "
        "module name the cells)"
    )


def braced(text, start):
    """The contents of the TeX group opening at text[start] ('{'), and the index after it."""
    depth, i = 0, start
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1:i], i + 1
        i += 1
    raise ValueError(f"unbalanced braces after {text[start:start + 60]!r}")


def latex_alt_texts():
    """{figure file stem: its alt key or None} of the figures in _build/latex/book.tex."""
    tex = (takeaways.LATEX_DIR / "book.tex").read_text(encoding="utf-8")
    found = {}
    command = r"\sphinxincludegraphics"
    for match in re.finditer(re.escape(command), tex):
        i, alt = match.end(), None
        if tex.startswith("[alt=", i):
            alt, i = braced(tex, i + len("[alt="))
        i = tex.index("{", i)
        name, _ = braced(tex, i)
        stem = re.fullmatch(r"\{(\w+)\}\.png", name)
        if stem:
            found[stem.group(1)] = alt
    return found


@pytest.fixture(scope="module")
def downloads(built_book):
    returncode, log = takeaways.build()
    assert returncode == 0, "scripts/build_downloads.py failed (see tests/test_pdf.py)"


def test_the_pdf_gives_every_figure_its_alt_text(downloads):
    """In the LaTeX, each figure's \\sphinxincludegraphics carries alt={the cell's alt text}."""
    import hashlib
    from base64 import b64decode

    from sphinx.util import texescape

    texescape.init()  # fills the escape tables, as Sphinx does when it starts
    in_latex = latex_alt_texts()
    problems = []
    for path in CHAPTER_NOTEBOOKS:
        nb = read_notebook(path)
        for n, cell in figure_cells(nb):
            alt = cell_alt(cell)
            for output in cell.outputs:
                if "image/png" not in output.get("data", {}) or not alt:
                    continue
                stem = hashlib.sha256(b64decode(output.data["image/png"])).hexdigest()
                expected = texescape.escape(" ".join(alt.split()), "xelatex")
                if stem not in in_latex:
                    problems.append(f"{cell_ref(path, n)}: its figure is not in the LaTeX")
                elif in_latex[stem] != expected:
                    problems.append(f"{cell_ref(path, n)}: alt key {in_latex[stem]!r}")
    assert not problems, (
        "figures of the PDF's LaTeX (_build/latex/book.tex) without the cell's alt text as "
        "graphicx's alt key (_ext/offline_book.py, visit_image_with_alt):\n  "
        + "\n  ".join(problems)
    )


# --- reporting an error: the issue forms -------------------------------------------------------


def issue_forms():
    return sorted(p for p in ISSUE_TEMPLATE_DIR.glob("*.yml") if p != ISSUE_CONFIG)


def load(path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def fields(form):
    """{id: field} of an issue form's fields."""
    return {item["id"]: item for item in load(form)["body"] if "id" in item}


def test_issue_forms_are_valid_github_issue_forms():
    forms = issue_forms()
    assert forms and ISSUE_CONFIG.exists(), (
        f"no issue forms and config.yml in {rel(ISSUE_TEMPLATE_DIR)}"
    )
    for schema, files in [("vendor.github-issue-forms", forms),
                          ("vendor.github-issue-config", [ISSUE_CONFIG])]:
        proc = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", schema,
                               *map(str, files)], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, (
            f"{', '.join(rel(f) for f in files)} do not match GitHub's schema ({schema}):\n"
            + proc.stdout + proc.stderr
        )


@pytest.mark.parametrize("form", sorted(ISSUE_FORMS.values()))
def test_report_links_fill_fields_the_issue_form_has(form):
    """The page's links fill `chapter` and `page` (_ext/offline_book.py): the form must ask them."""
    path = ISSUE_TEMPLATE_DIR / form
    assert path.exists(), f"_ext/offline_book.py links the issue form {rel(path)}, which is missing"
    have = fields(path)
    missing = [key for key in REPORT_FIELDS if have.get(key, {}).get("type") != "input"]
    assert not missing, (
        f"{rel(path)} has no input field with the id(s) {missing}, which the report links fill "
        "in (GitHub fills a form's fields from the query string by their ids)"
    )
    assert have["chapter"].get("validations", {}).get("required"), (
        f"{rel(path)}: the chapter must be required: a report without it cannot be acted on"
    )


def options(field):
    return " | ".join(field.get("attributes", {}).get("options", []))


def test_run_failure_form_asks_platform_device_and_versions():
    form = ISSUE_TEMPLATE_DIR / ISSUE_FORMS["run"]
    have = fields(form)
    wanted = {"platform": ["Kaggle", "Colab", "Binder", "本地", "其他"],
              "device": ["CPU", "CUDA", "MPS"]}
    for key, choices in wanted.items():
        field = have.get(key, {})
        assert field.get("type") == "dropdown" and all(c in options(field) for c in choices), (
            f"{rel(form)}: no dropdown `{key}` offering {choices} (it offers {options(field)!r})"
        )
    versions = have.get("versions", {})
    label = versions.get("attributes", {}).get("label", "")
    assert all(name in label for name in ("Python", "torch", "NumPy")), (
        f"{rel(form)}: no field `versions` asking for the Python, torch and NumPy versions"
    )
    required = [key for key in ("chapter", "platform", "device", "versions", "error")
                if not have.get(key, {}).get("validations", {}).get("required")]
    assert not required, (
        f"{rel(form)}: {required} must be required; without them no one can rerun the chapter"
    )


def test_run_failure_form_shows_the_environment_line_of_the_pinned_stack():
    """The placeholder is the line every chapter prints near its top, at today's pins."""
    versions = fields(ISSUE_TEMPLATE_DIR / ISSUE_FORMS["run"])["versions"]["attributes"]
    line = ENVIRONMENT_LINE.match(versions.get("placeholder", ""))
    assert line, (
        f"the `versions` placeholder {versions.get('placeholder')!r} is not the environment line "
        "the chapters print (`Python 3.11, torch ..., NumPy ..., Matplotlib ..., device cpu`)"
    )
    pins = {}
    for text in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        match = re.match(r"(torch|numpy|matplotlib)==(\S+)", text)
        if match:
            pins[match.group(1)] = match.group(2)
    shown = {key: line[key].split("+")[0] for key in pins}
    assert shown == pins, (
        f"the `versions` placeholder shows {shown}, requirements.txt pins {pins}: update "
        f"{rel(ISSUE_TEMPLATE_DIR / ISSUE_FORMS['run'])}"
    )


def test_run_failure_form_tells_how_to_print_the_versions():
    """The command the form gives (in backticks) prints the Python, torch and NumPy versions."""
    description = fields(ISSUE_TEMPLATE_DIR / ISSUE_FORMS["run"])["versions"]["attributes"].get(
        "description", "")
    commands = [c for c in re.findall(r"`([^`]+)`", description) if "print" in c]
    assert commands, "the `versions` field does not tell the reader how to print the versions"
    proc = subprocess.run([sys.executable, "-c", commands[0]], capture_output=True, text=True,
                          timeout=120)
    expected = [f"{sys.version_info.major}.{sys.version_info.minor}",
                metadata.version("torch"), metadata.version("numpy")]
    assert proc.returncode == 0 and all(v in proc.stdout for v in expected), (
        f"the form's command `{commands[0]}` printed {proc.stdout!r}{proc.stderr[-300:]!r}, "
        f"not the versions {expected}"
    )


def test_issue_templates_name_only_this_repository_and_its_site():
    """Every URL in the forms derives from _config.yml's repository.url (as the links do)."""
    allowed = (takeaways.REPO_URL.rstrip("/") + "/", takeaways.SITE_URL)
    foreign = [f"{rel(path)}: {url}" for path in sorted(ISSUE_TEMPLATE_DIR.glob("*.yml"))
               for url in re.findall(r"https?://[^\s\"'<>)]+", path.read_text(encoding="utf-8"))
               if not url.startswith(allowed)]
    assert not foreign, (
        f"URLs in the issue templates that are not on {allowed[0]} or {allowed[1]} "
        "(_config.yml repository.url changed? update them):\n  " + "\n  ".join(foreign)
    )


def test_new_issue_page_links_the_errata_page():
    links = load(ISSUE_CONFIG).get("contact_links", [])
    errata = takeaways.SITE_URL + "book/errata.html"
    assert any(link.get("url") == errata for link in links), (
        f"{rel(ISSUE_CONFIG)} does not link the errata page {errata} (contact_links), so a "
        f"reader cannot check it before reporting; it links {[lk.get('url') for lk in links]}"
    )


# --- the errata page -----------------------------------------------------------------------


def test_errata_page_is_in_the_book_under_its_label():
    text = ERRATA.read_text(encoding="utf-8") if ERRATA.exists() else ""
    assert text.startswith(f"({ERRATA_LABEL})="), (
        f"{rel(ERRATA)} must exist and start with its label ({ERRATA_LABEL})=, which the "
        "preface and every page's report links point to"
    )
    assert "book/errata" in set(toc_files(TOC)), "_toc.yml does not list book/errata"


def test_preface_links_the_errata_page():
    preface = (ROOT / f"{TOC['root']}.md").read_text(encoding="utf-8")
    assert re.search(r"\{ref\}`([^`<]*<)?errata>?`", preface), (
        f"{TOC['root']}.md does not link the errata page: write {{ref}}`errata` in its text"
    )


ENTRY = re.compile(r"^### (\d{4}-\d{2}-\d{2})\s+(.+)$")


def errata_entries(text):
    """[(date, heading, body)] of the `###` entries under `## 更正列表`."""
    listing = text.split("## 更正列表", 1)[1] if "## 更正列表" in text else ""
    entries, current = [], None
    for line in listing.splitlines():
        if line.startswith("%"):
            continue  # the commented-out model entry
        match = ENTRY.match(line)
        if line.startswith("### "):
            current = [match.group(1) if match else None, line[4:].strip(), []]
            entries.append(current)
        elif line.startswith("## "):
            current = None
        elif current is not None:
            current[2].append(line)
    return [(day, heading, "\n".join(body)) for day, heading, body in entries]


def test_errata_entries_are_dated_newest_first_with_what_changed():
    text = ERRATA.read_text(encoding="utf-8")
    assert "## 更正列表" in text, f"{rel(ERRATA)} has no section `## 更正列表` for the entries"
    entries = errata_entries(text)
    problems = []
    days = []
    for day, heading, body in entries:
        try:
            days.append(date.fromisoformat(day or ""))
        except ValueError:
            problems.append(f"`### {heading}`: the heading must start with the date, YYYY-MM-DD")
            continue
        said = [re.search(rf"^{term}[ \t]*\n:", body, re.MULTILINE) for term in ("原来", "现在")]
        if not all(said):
            problems.append(f"`### {heading}`: say what it said (原来) and says now (现在)")
    if days != sorted(days, reverse=True):
        problems.append(f"entries are not newest first: {[d.isoformat() for d in days]}")
    if not entries and "目前还没有更正" not in text:
        problems.append("no entries and no sentence saying there are none yet")
    assert not problems, (
        f"{rel(ERRATA)}: each correction is a `### YYYY-MM-DD chapter · section` entry with "
        "definitions 原来 / 现在, newest first (see the model in the page's comments):\n  "
        + "\n  ".join(problems)
    )
