"""Shared paths and fixtures for the book's tests."""

import ast
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml
from IPython.core.inputtransformer2 import TransformerManager

from once import once_per_test_run

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
BOOK_DIR = ROOT / "book"
BUILD_DIR = ROOT / "_build"
HTML_DIR = BUILD_DIR / "html"

_IPYTHON = TransformerManager()

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


def numbered_code_cells(nb):
    """(n, cell) for each code cell that holds code, n numbered as nbval numbers it.

    nbval names its items `Cell 0`, `Cell 1`, ...: the index among *all* code cells of the
    notebook, empty ones included, markdown cells not counted. Every message of the project's
    tests uses the same numbering (`cell_ref`), so a failure here and one from nbval name the
    same cell the same way.
    """
    code = [c for c in nb.cells if c.cell_type == "code"]
    return [(n, c) for n, c in enumerate(code) if c.source.strip()]


def parse_cell(source):
    """A code cell's syntax tree, parsed as the kernel runs it (raises SyntaxError).

    IPython syntax (`!pip install ...`, `%time`, `%%capture`) is first rewritten by IPython's own
    input transformer into `get_ipython()` calls, as the kernel does, so one shell line neither
    hides the rest of the cell from the static checks nor makes each of them fail with a
    SyntaxError; test_notebook_has_no_shell_commands_or_magics reports the line once.
    """
    return ast.parse(_IPYTHON.transform_cell(source))


def parsed_code_cells(nb):
    """(n, tree) for each code cell that parses, n in nbval's numbering.

    A cell that does not parse is left out here and reported, once, by
    test_every_code_cell_is_valid_python.
    """
    parsed = []
    for n, cell in numbered_code_cells(nb):
        try:
            parsed.append((n, parse_cell(cell.source)))
        except SyntaxError:
            continue
    return parsed


def cell_ref(path, n):
    """How nbval names a cell in its report: `notebooks/05_nn.ipynb::Cell 7`."""
    return f"{rel(path)}::Cell {n}"


def twin_of(notebook_path):
    """The MyST Markdown twin of a chapter notebook (book/NN_slug.md)."""
    return BOOK_DIR / f"{Path(notebook_path).stem}.md"


def fix_hint(path):
    """Where a chapter is fixed: its twin, then a re-sync and re-execution."""
    return f"edit {rel(twin_of(path))}, then {refresh_hint(path)}"


def _load_refresh_script():
    spec = importlib.util.spec_from_file_location(
        "refresh_notebooks", ROOT / "scripts" / "refresh_notebooks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The script that executes the notebooks (`make notebooks`); the tests use its fingerprints.
refresh_notebooks = _load_refresh_script()


def chapter_params():
    return pytest.mark.parametrize("notebook_path", CHAPTER_NOTEBOOKS, ids=CHAPTER_IDS)


def build_book():
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
    return [proc.returncode, proc.stdout + proc.stderr]


@pytest.fixture(scope="session")
def built_book():
    """Build the HTML book from scratch, once per test run, as `make book` does.

    Returns the build's return code and its combined output; the site is in _build/html.
    """
    return tuple(once_per_test_run("book", build_book))
