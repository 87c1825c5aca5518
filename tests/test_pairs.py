"""Every chapter notebook has a MyST Markdown twin in book/ holding exactly the same cells.

`jupytext --sync` decides by modification time, which a fresh clone scrambles, so the check
renders the notebook as MyST text and compares contents instead.
"""

import difflib

import jupytext
import pytest

from conftest import BOOK_DIR, NOTEBOOK_DIR, chapter_params, read_notebook, rel


def without_version_line(text):
    # The jupytext version in the header is not content.
    return [line for line in text.splitlines() if "jupytext_version:" not in line]


def twin_of(notebook_path):
    return BOOK_DIR / f"{notebook_path.stem}.md"


def test_every_markdown_chapter_has_a_notebook():
    orphans = [
        rel(md) for md in sorted(BOOK_DIR.glob("[0-9][0-9]_*.md"))
        if not (NOTEBOOK_DIR / f"{md.stem}.ipynb").exists()
    ]
    assert not orphans, (
        f"{orphans} have no notebook in notebooks/; create it with "
        "`jupytext --sync book/NN_slug.md`, then `make notebooks`"
    )


@chapter_params()
def test_notebook_has_a_markdown_twin(notebook_path):
    assert twin_of(notebook_path).exists(), (
        f"{rel(notebook_path)} has no twin {rel(twin_of(notebook_path))}; "
        f"create it with `jupytext --sync {rel(notebook_path)}`"
    )


@chapter_params()
def test_twin_holds_the_same_cells(notebook_path):
    twin = twin_of(notebook_path)
    if not twin.exists():
        pytest.skip("no twin (reported by test_notebook_has_a_markdown_twin)")
    expected = without_version_line(jupytext.writes(read_notebook(notebook_path), fmt="md:myst"))
    actual = without_version_line(twin.read_text(encoding="utf-8"))
    if expected != actual:
        diff_lines = difflib.unified_diff(
            actual, expected, rel(twin), rel(notebook_path), lineterm=""
        )
        diff = "\n".join(list(diff_lines)[:30])
        pytest.fail(
            f"{rel(twin)} and {rel(notebook_path)} differ. If you edited the Markdown, run "
            f"`make notebooks` (syncs and re-executes); if you edited the notebook, run "
            f"`jupytext --sync {rel(notebook_path)}`.\n{diff}"
        )
