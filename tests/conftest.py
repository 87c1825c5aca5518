"""Shared paths and fixtures for the book's tests."""

import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
BOOK_DIR = ROOT / "book"
BUILD_DIR = ROOT / "_build"
HTML_DIR = BUILD_DIR / "html"

CHAPTER_NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
CHAPTER_IDS = [p.stem for p in CHAPTER_NOTEBOOKS]

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))


def toc_files(node=TOC):
    """Every `file:` entry of the TOC (root included), as written there (no suffix)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("file", "root"):
                yield value
            else:
                yield from toc_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from toc_files(item)


REFRESH_HINT = "run `make notebooks` (or `python scripts/refresh_notebooks.py {prefix}`)"


def refresh_hint(path):
    return REFRESH_HINT.format(prefix=Path(path).stem[:2])


def rel(path):
    return Path(path).relative_to(ROOT).as_posix()


def read_notebook(path):
    return nbformat.read(path, as_version=4)


def code_cells(nb):
    """Code cells that hold code (an empty trailing cell is ignored)."""
    return [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]


def chapter_params():
    return pytest.mark.parametrize("notebook_path", CHAPTER_NOTEBOOKS, ids=CHAPTER_IDS)


@pytest.fixture(scope="session")
def built_book():
    """Build the HTML book from scratch, once per test session, as `make book` does.

    Returns the build's return code and its combined output; the site is in _build/html.
    """
    start = time.perf_counter()
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "jupyter-book"),
            "build", ".", "--all", "-W", "-n", "--keep-going",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    print(f"\njupyter-book build took {seconds:.1f} s")
    return proc.returncode, proc.stdout + proc.stderr
