"""Re-sync every notebook with its Markdown twin, then re-execute it in place.

Usage (from the repository root; `make notebooks` runs the first form):

    python scripts/refresh_notebooks.py              # every chapter
    python scripts/refresh_notebooks.py 03 04        # chapters whose name starts with 03 or 04

For each chapter: `jupytext --sync` brings the pair up to date (the newer file wins, as in
JupyterLab), then a fresh kernel runs the notebook from top to bottom and the outputs are
stored in notebooks/NN_slug.ipynb. The wall time of each run is printed.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

# One CPU thread for every kernel, here and in the tests (tests/conftest.py): the stored
# outputs must not depend on how many cores the machine has, and float32 reductions split
# over several threads round differently.
os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
BOOK_DIR = ROOT / "book"


def chapters(prefixes):
    """Chapter stems (e.g. '01_numpy_warmup') from the notebooks and their twins."""
    stems = {p.stem for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb")}
    stems |= {p.stem for p in BOOK_DIR.glob("[0-9][0-9]_*.md")}
    chosen = sorted(s for s in stems if not prefixes or s.startswith(tuple(prefixes)))
    if not chosen:
        sys.exit(f"no chapter matches {prefixes}")
    return chosen


def sync(stem):
    notebook = NOTEBOOK_DIR / f"{stem}.ipynb"
    source = notebook if notebook.exists() else BOOK_DIR / f"{stem}.md"
    subprocess.run(
        [sys.executable, "-m", "jupytext", "--sync", "--quiet", str(source.relative_to(ROOT))],
        cwd=ROOT,
        check=True,
    )


def merge_streams(outputs):
    """Join consecutive stdout (or stderr) chunks; how a kernel splits them depends on timing."""
    merged = []
    for output in outputs:
        previous = merged[-1] if merged else None
        if (
            output.output_type == "stream"
            and previous is not None
            and previous.output_type == "stream"
            and previous.name == output.name
        ):
            previous.text += output.text
        else:
            merged.append(output)
    return merged


def execute(stem):
    path = NOTEBOOK_DIR / f"{stem}.ipynb"
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = merge_streams(cell.outputs)
    nbformat.write(nb, path)
    return seconds


def main():
    total = 0.0
    for stem in chapters(sys.argv[1:]):
        sync(stem)
        seconds = execute(stem)
        sync(stem)  # the run rewrote the notebook; keep the twin's timestamp newer-or-equal
        total += seconds
        print(f"{stem:<28} executed in {seconds:6.1f} s", flush=True)
    print(f"{'total':<28}             {total:6.1f} s")


if __name__ == "__main__":
    main()
