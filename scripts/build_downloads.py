"""Builds the take-away downloads into _build/html/downloads/, after the HTML (make book).

    python scripts/build_downloads.py

1. the whole-book PDF: `jupyter-book build . --builder pdflatex -W -n --keep-going` (xelatex,
   Debian's TeX from .ci/install-tex), copied from _build/latex/book.pdf;
2. the ten chapter notebooks, with their stored outputs, in one zip, beside a requirements.txt
   with the three packages they import, at the versions the outputs were produced with;
3. the HTML site in one zip that works unzipped, from disk (file://): everything in
   _build/html except that zip itself, so it holds the PDF and the notebooks zip too.

The file names come from the repository name (_ext/offline_book.py, download_files), like the
links in the pages' download menu. Exits non-zero when the PDF build fails or warns.
"""

import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML_DIR = ROOT / "_build" / "html"
LATEX_PDF = ROOT / "_build" / "latex" / "book.pdf"  # latex.latex_documents.targetname
NOTEBOOK_PACKAGES = ("torch", "numpy", "matplotlib")  # what the notebooks import
sys.path.insert(0, str(ROOT / "_ext"))

from offline_book import download_files, repository_parts  # noqa: E402


def downloads():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    url = config["repository"]["url"]
    return {key: HTML_DIR / name for key, name in download_files(url).items()}, url


def build_pdf():
    """The PDF build; returns its log. Raises when it fails or warns."""
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    command = [str(jupyter_book), "build", ".", "--builder", "pdflatex", "-W", "-n", "--keep-going"]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    warnings = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
    if proc.returncode != 0 or warnings or not LATEX_PDF.exists():
        tail = "\n".join(warnings[:20] or log.splitlines()[-30:])
        raise SystemExit(f"the PDF build failed (exit {proc.returncode}):\n{tail}")
    return log


def write_zip(target, entries, top):
    """entries: {name in the zip, below top/: bytes}; fixed dates: same input, same zip."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, data in sorted(entries.items()):
            info = zipfile.ZipInfo(f"{top}/{name}", date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data, compresslevel=9)
    tmp.replace(target)


def pinned(path):
    """{package: version} of the `name==version` lines of a requirements file."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        pin = line.split("#")[0].strip()
        if "==" in pin:
            name, version = pin.split("==")
            found[name.lower()] = version
    return found


def supported_range():
    """{package: (oldest, newest)} the notebooks support, from compat/floor.txt and
    compat/newest.txt (what `make test-compat` runs every chapter with), Python included."""
    floor, newest = (ROOT / "compat" / "floor.txt", ROOT / "compat" / "newest.txt")
    versions = {}
    for path in (floor, newest):
        python = path.read_text(encoding="utf-8").split()[2]  # first line: `# python 3.X`
        for name, version in {"python": python, **pinned(path)}.items():
            versions.setdefault(name, []).append(version)
    return {name: tuple(pair) for name, pair in versions.items()}


def next_minor(version):
    major, minor = version.split(".")[:2]
    return f"{major}.{int(minor) + 1}"


def notebook_requirements():
    """The notebooks zip's requirements.txt: the supported range of what the notebooks import."""
    supported = supported_range()
    stored = pinned(ROOT / "requirements.txt")
    (low_py, high_py) = supported["python"]
    lines = [
        "# What the notebooks import, in the range they are tested with (`make test-compat` runs",
        f"# every chapter with the oldest versions on Python {low_py} and the newest on Python "
        f"{high_py}).",
        "# The stored outputs come from " + ", ".join(
            f"{name} {stored[name]}" for name in NOTEBOOK_PACKAGES) + "; other versions in",
        "# this range run the same code and pass the same checks, with possibly other last digits.",
    ]
    lines += [f"{name}>={supported[name][0]},<{next_minor(supported[name][1])}"
              for name in NOTEBOOK_PACKAGES]
    return "\n".join(lines) + "\n"


def main():
    files, url = downloads()
    _, repo = repository_parts(url)
    if not (HTML_DIR / "index.html").exists():
        raise SystemExit("no _build/html/index.html: build the HTML first (make book does)")

    start = time.perf_counter()
    build_pdf()
    files["pdf"].parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(LATEX_PDF, files["pdf"])
    pdf_seconds = time.perf_counter() - start

    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    entries = {p.name: p.read_bytes() for p in notebooks}
    entries["requirements.txt"] = notebook_requirements().encode()
    write_zip(files["notebooks"], entries, f"{repo}-notebooks")

    site = {p.relative_to(HTML_DIR).as_posix(): p.read_bytes() for p in HTML_DIR.rglob("*")
            if p.is_file() and p != files["site"] and p.name != ".buildinfo"}
    write_zip(files["site"], site, f"{repo}-html")

    print(f"PDF build: {pdf_seconds:.0f} s")
    for key, path in files.items():
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
