"""Every chapter notebook has a MyST Markdown twin in book/ holding exactly the same cells.

`jupytext --sync` decides by modification time, which a fresh clone scrambles, so the check
renders the notebook as MyST text and compares contents instead.
"""

import asyncio
import difflib
import json
import shutil
import sys
from pathlib import Path

import jupytext
import pytest
from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from jupytext.async_contentsmanager import build_async_jupytext_contents_manager_class

from conftest import (
    BOOK_DIR,
    CHAPTER_NOTEBOOKS,
    NOTEBOOK_DIR,
    ROOT,
    chapter_params,
    read_notebook,
    rel,
    twin_of,
)


def without_version_line(text):
    # The jupytext version in the header is not content.
    return [line for line in text.splitlines() if "jupytext_version:" not in line]


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


def test_saving_a_notebook_in_jupyter_updates_its_twin(tmp_path):
    # What JupyterLab does on save: jupytext's contents manager (a server extension installed
    # with requirements.txt) reads jupytext.toml and writes the paired Markdown file too.
    extension = Path(sys.prefix) / "etc/jupyter/jupyter_server_config.d/jupytext.json"
    assert json.loads(extension.read_text())["ServerApp"]["jpserver_extensions"], (
        "jupytext's JupyterLab extension is not enabled in this environment"
    )
    notebook = CHAPTER_NOTEBOOKS[0]
    shutil.copy(ROOT / "jupytext.toml", tmp_path)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "book").mkdir()
    shutil.copy(notebook, tmp_path / "notebooks")

    manager = build_async_jupytext_contents_manager_class(AsyncLargeFileManager)(
        root_dir=str(tmp_path)
    )
    path = f"notebooks/{notebook.name}"

    async def edit_and_save():
        model = await manager.get(path)
        model["content"].cells[0].source += "\n\n一句新加的话。"
        await manager.save(model, path)

    asyncio.run(edit_and_save())
    twin = tmp_path / "book" / f"{notebook.stem}.md"
    assert twin.exists() and "一句新加的话。" in twin.read_text(encoding="utf-8"), (
        "saving a notebook through Jupyter did not write its twin in book/; "
        "check jupytext.toml (formats = notebooks///ipynb,book///md:myst)"
    )
