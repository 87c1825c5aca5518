"""Re-sync every notebook with its Markdown twin, then re-execute it in place.

Usage (from the repository root; `make notebooks` runs the first form):

    python scripts/refresh_notebooks.py              # every chapter
    python scripts/refresh_notebooks.py 03 04        # chapters whose name starts with 03 or 04
    python scripts/refresh_notebooks.py --alt-only 05  # sync, copy alt texts; execute nothing

For each chapter: `jupytext --sync` brings the pair up to date (the newer file wins, as in
JupyterLab), then a fresh kernel runs the notebook from top to bottom and the outputs are
stored in notebooks/NN_slug.ipynb. The wall time of each run is printed.

Every figure the run stores is stamped with the code that drew it: each image output gets
`metadata["code_sha256"]`, the fingerprint (`code_fingerprints`) of the sources of all code
cells up to and including its own, in order (a figure depends on the state the earlier cells
left). nbval compares text outputs only (a figure's text is `<Figure size 600x350 with 1 Axes>`,
and it skips output metadata), and the jupytext twin stores no outputs, so a figure whose code
was edited but not re-executed would pass everything; tests/test_notebooks.py recomputes the
fingerprint and fails naming the cell and `make notebooks`. The fingerprint depends only on the
source text, so it is the same on every CPU, kernel path, device and thread count.

Every figure also carries its alt text for Jupyter: the cell's `mystnb.image.alt` (the one source
of a figure's alt text; MyST-NB puts it on the book's <img>) is copied into each image output's
`metadata["image/png"]["alt"]`, where nbconvert and the Jupyter accessibility proposals (JEP
pre-proposal #120) look for it. tests/test_accessibility.py checks that the copy matches the cell.
Changing only an alt text needs no re-execution: `--alt-only` syncs the pair and copies them.
"""

import hashlib
import os
import subprocess
import sys
import tempfile
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

FINGERPRINT_KEY = "code_sha256"  # in the metadata of every image output
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")
ALT_KEY = "alt"  # in an image output's metadata[<its image type>]


def code_fingerprints(nb):
    """One sha256 hex digest per code cell, in order (nbval's `Cell N` is the list index).

    Digest N covers the sources of code cells 0..N, each followed by a NUL byte, so editing
    any earlier code cell (or this one) changes it; markdown cells and metadata do not count.
    """
    digest = hashlib.sha256()
    fingerprints = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            digest.update(cell.source.encode("utf-8") + b"\0")
            fingerprints.append(digest.hexdigest())
    return fingerprints


def image_outputs(cell):
    """The outputs of a code cell that hold a figure (PNG, JPEG or SVG)."""
    return [
        output
        for output in cell.get("outputs", [])
        if output.output_type in ("display_data", "execute_result")
        and any(kind in output.get("data", {}) for kind in IMAGE_TYPES)
    ]


def stamp_figures(nb):
    """Record in each image output the fingerprint of the code that produced it."""
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    for cell, fingerprint in zip(code, code_fingerprints(nb)):
        for output in image_outputs(cell):
            output.setdefault("metadata", {})[FINGERPRINT_KEY] = fingerprint


def cell_alt_text(cell):
    """The figure's alt text in the cell's metadata (mystnb.image.alt), or None."""
    alt = cell.get("metadata", {}).get("mystnb", {}).get("image", {}).get("alt")
    return alt.strip() if isinstance(alt, str) and alt.strip() else None


def stamp_alt_text(nb):
    """Copy each figure cell's alt text into the metadata of its image outputs (or remove it)."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        alt = cell_alt_text(cell)
        for output in image_outputs(cell):
            metadata = output.setdefault("metadata", {})
            for kind in IMAGE_TYPES:
                if kind not in output.get("data", {}):
                    continue
                if alt:
                    metadata.setdefault(kind, {})[ALT_KEY] = alt
                elif ALT_KEY in metadata.get(kind, {}):
                    del metadata[kind][ALT_KEY]
                    if not metadata[kind]:
                        del metadata[kind]


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


def write_atomically(nb, path):
    """Write the notebook to a temporary file beside it, then rename it over the old one.

    A test or an editor reading the notebook meanwhile sees the old file or the new one, never
    a half-written one; a failed run leaves the old file in place.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".ipynb.tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            nbformat.write(nb, handle)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    stamp_figures(nb)
    stamp_alt_text(nb)
    write_atomically(nb, path)
    return seconds


def copy_alt_texts(stem):
    """--alt-only: the stored outputs stay; only their alt texts follow the cells' metadata."""
    path = NOTEBOOK_DIR / f"{stem}.ipynb"
    nb = nbformat.read(path, as_version=4)
    stamp_alt_text(nb)
    write_atomically(nb, path)


def main():
    args = sys.argv[1:]
    if "--alt-only" in args:
        for stem in chapters([a for a in args if a != "--alt-only"]):
            sync(stem)
            copy_alt_texts(stem)
            sync(stem)
            print(f"{stem:<28} alt texts copied into the figure outputs", flush=True)
        return
    total = 0.0
    for stem in chapters(args):
        sync(stem)
        seconds = execute(stem)
        sync(stem)  # the run rewrote the notebook; keep the twin's timestamp newer-or-equal
        total += seconds
        print(f"{stem:<28} executed in {seconds:6.1f} s", flush=True)
    print(f"{'total':<28}             {total:6.1f} s")


if __name__ == "__main__":
    main()
