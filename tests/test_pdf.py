"""The whole-book PDF and the notebooks zip, as `make book` builds them (build_downloads.py).

The PDF is `jupyter-book build . --builder pdflatex` with xelatex (Debian's TeX and fonts,
.ci/install-tex). Checked here: it builds without warnings; it is in Chinese (目录, 第 N 章, no
"Contents"/"CHAPTER"); the preface is front matter, so stage 01 is chapter 1; every chapter title
is in its text (pdftotext); xelatex found every character and every reference; every figure of
the notebooks is in it; the exercise solutions come after the exercise list under 参考答案. A few
pages are rendered to PNG (pdftoppm) into _build/screenshots/pdf/ for a person to look at.
"""

import json
import re
import shutil
import subprocess
import zipfile

import pytest

import takeaways
from conftest import BUILD_DIR, CHAPTER_NOTEBOOKS, ROOT, TOC, rel

PDF = takeaways.PATHS["pdf"]
LATEX_LOG = takeaways.LATEX_DIR / "book.log"
LATEX_TEX = takeaways.LATEX_DIR / "book.tex"
PAGE_PNG_DIR = BUILD_DIR / "screenshots" / "pdf"


@pytest.fixture(scope="module")
def downloads(built_book):
    returncode, log = takeaways.build()
    warnings = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
    assert returncode == 0 and not warnings, (
        "scripts/build_downloads.py (the PDF and the zips, part of `make book`) failed:\n"
        + "\n".join(warnings[:20] or log.splitlines()[-20:])
    )
    return log


def poppler(tool, *args):
    assert shutil.which(tool), f"{tool} is missing: run .ci/install-tex (poppler-utils)"
    return subprocess.run([tool, *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def pdf_text(downloads):
    """The PDF's text without any whitespace (pdftotext breaks lines anywhere in Chinese)."""
    assert PDF.exists(), f"{rel(PDF)} was not built"
    return re.sub(r"\s+", "", poppler("pdftotext", str(PDF), "-"))


def source_title(entry):
    """A TOC entry's H1, as plain text (no Markdown backticks)."""
    for suffix in (".ipynb", ".md"):
        path = ROOT / f"{entry}{suffix}"
        if path.exists():
            break
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    else:
        text = path.read_text(encoding="utf-8")
    title = re.search(r"^# (.+)$", text, re.MULTILINE).group(1)
    return re.sub(r"[`*]", "", title)


def toc_chapters():
    """(number or None, title) of every chapter, numbered like the book's own numbering."""
    chapters, number = [], 0
    for part in TOC["parts"]:
        for chapter in part["chapters"]:
            numbered = bool(part.get("numbered"))
            number += numbered
            chapters.append((number if numbered else None, source_title(chapter["file"])))
    return chapters


def squeeze(text):
    return re.sub(r"\s+", "", text)


def test_pdf_is_built_and_linked_for_download(downloads):
    assert PDF.exists() and PDF.read_bytes()[:5] == b"%PDF-", f"{rel(PDF)} is not a PDF"
    pages = int(re.search(r"Pages:\s+(\d+)", poppler("pdfinfo", str(PDF))).group(1))
    print(f"\n{rel(PDF)}: {pages} pages, {PDF.stat().st_size / 1e6:.1f} MB")
    assert pages > 100, f"{rel(PDF)} has only {pages} pages; is the whole book in it?"


def test_pdf_is_in_chinese(downloads, pdf_text):
    front = squeeze(poppler("pdftotext", "-f", "1", "-l", "4", str(PDF), "-"))
    assert "目录前言" in front, (
        "the PDF's contents are not headed 目录 (with the preface first); see "
        "_latex/pytorchbook.sty and _ext/offline_book.py"
    )
    for english in ("Contents", "CHAPTER", "Bibliography"):
        assert english not in pdf_text, (
            f"the PDF still says {english!r}: name it in Chinese in _latex/pytorchbook.sty"
        )


@pytest.mark.parametrize("number,title", toc_chapters(), ids=[t for _, t in toc_chapters()])
def test_pdf_holds_every_chapter_under_its_number(pdf_text, number, title):
    heading = squeeze(f"第{number}章{title}" if number else title)
    assert heading in pdf_text, (
        f"the PDF has no chapter {heading!r}: every chapter of _toc.yml must be in it, the "
        "numbered ones as 第 N 章 counted from stage 01 (the preface is front matter)"
    )


def test_preface_is_unnumbered_front_matter(pdf_text):
    preface = squeeze(source_title(TOC["root"]))
    assert "前言" in pdf_text, "the PDF has no 前言: _ext/offline_book.py makes the root page one"
    first = pdf_text.index(squeeze(f"第1章{toc_chapters()[0][1]}"))
    assert pdf_text.find("前言") < first, "the preface must come before chapter 1"
    assert squeeze(f"第1章{preface}") not in pdf_text


def test_latex_log_has_no_missing_characters_or_references(downloads):
    log = LATEX_LOG.read_text(encoding="utf-8", errors="replace")
    problems = [line for line in log.splitlines() if re.search(
        r"Missing character|undefined|Font shape .* not available|There were .* references",
        line)]
    assert not problems, (
        f"xelatex ({rel(LATEX_LOG)}) could not typeset everything (a glyph no font has, a "
        "reference to nothing, a font shape substituted):\n  " + "\n  ".join(problems[:20])
    )


def test_every_font_is_embedded(downloads):
    lines = poppler("pdffonts", str(PDF)).splitlines()[2:]
    not_embedded = [line for line in lines if line.split()[-5] != "yes"]
    assert lines and not not_embedded, f"fonts not embedded in the PDF: {not_embedded}"


def notebook_figures(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return sum("image/png" in output.get("data", {})
               for cell in cells if cell["cell_type"] == "code" for output in cell["outputs"])


def test_every_figure_is_in_the_pdf(downloads):
    expected = sum(notebook_figures(p) for p in CHAPTER_NOTEBOOKS)
    images = poppler("pdfimages", "-list", str(PDF)).splitlines()[2:]
    images = [line for line in images if line.split()[2] == "image"]  # not their soft masks
    assert len(images) >= expected, (
        f"the PDF holds {len(images)} images, the notebooks {expected} figures"
    )


def test_solutions_follow_the_exercises_under_one_heading(downloads):
    """In the LaTeX, per chapter: 练习 section, its list, then \\pbesolutions, then the answers."""
    tex = LATEX_TEX.read_text(encoding="utf-8")
    chapters = re.split(r"\\chapter\{", tex)[1:]
    checked = 0
    for chapter in chapters:
        title = chapter.split("}", 1)[0]
        answers = [m.start() for m in re.finditer(r"练习\s*\d+\s*参考答案", chapter)]
        if not answers:
            continue
        checked += 1
        exercises = chapter.find(r"\section{练习}")
        heading = chapter.find(r"\pbesolutions")
        assert 0 <= exercises < heading, (
            f"chapter {title!r}: its solutions are not under the 参考答案 heading after the "
            "exercise list (_ext/offline_book.py puts it before the first folded answer)"
        )
        assert min(answers) > heading, (
            f"chapter {title!r}: a solution comes before the exercise list ends; solutions follow "
            "the whole list at the chapter end"
        )
    assert checked >= len(CHAPTER_NOTEBOOKS) - 1, f"only {checked} chapters have solutions"


def test_pdf_pages_render(downloads):
    """Renders a few pages for a person to judge (code, outputs, a figure, a solution)."""
    shutil.rmtree(PAGE_PNG_DIR, ignore_errors=True)
    PAGE_PNG_DIR.mkdir(parents=True)
    text_pages = poppler("pdftotext", "-layout", str(PDF), "-").split("\f")
    marks = {"contents": "目录", "chapter-1": squeeze(f"第1章{toc_chapters()[0][1]}"),
             "figure-1.1": "图1.1:", "solutions": "以下是本章练习的参考答案"}
    wanted = {}
    for number, page in enumerate(text_pages, start=1):
        for name, mark in marks.items():
            if mark in squeeze(page):
                wanted.setdefault(name, number)
    assert set(wanted) == set(marks), f"pages not found in the PDF: {set(marks) - set(wanted)}"
    for name, number in wanted.items():
        poppler("pdftoppm", "-r", "80", "-png", "-singlefile", "-f", str(number), "-l",
                str(number), str(PDF), str(PAGE_PNG_DIR / name))
    assert all((PAGE_PNG_DIR / f"{name}.png").exists() for name in wanted)


# --- the notebooks zip -------------------------------------------------------------------------


def test_notebooks_zip_holds_the_ten_notebooks_with_outputs(downloads):
    path = takeaways.PATHS["notebooks"]
    with zipfile.ZipFile(path) as archive:
        names = sorted(archive.namelist())
        assert [n.split("/", 1)[1] for n in names] == [
            p.name for p in CHAPTER_NOTEBOOKS
        ] + ["requirements.txt"], f"{rel(path)} holds {names}"
        (requirements,) = [n for n in names if n.endswith("/requirements.txt")]
        text = archive.read(requirements).decode()
        ranges = [line for line in text.splitlines() if line and not line.startswith("#")]
        assert [re.split("[<>=]", line)[0] for line in ranges] == [
            "torch", "numpy", "matplotlib"], text
        assert all(">=" in line and ",<" in line for line in ranges), (
            f"{requirements} must give the supported range (>=oldest,<next), not pins:\n{text}")
        for notebook in CHAPTER_NOTEBOOKS:
            (name,) = [n for n in names if n.endswith("/" + notebook.name)]
            assert archive.read(name) == notebook.read_bytes(), (
                f"{name} in {rel(path)} is not {rel(notebook)} as committed"
            )
    print(f"\n{rel(path)}: {path.stat().st_size / 1e6:.1f} MB")
