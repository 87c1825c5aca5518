"""The take-away downloads (PDF, notebooks zip, offline site zip), built once per test session.

Not a test module: tests/test_pdf.py and tests/test_site.py import it. `build()` runs
scripts/build_downloads.py, as `make book` does after the HTML build, and caches the result, so
the PDF is built once however many modules ask for it.
"""

import functools
import subprocess
import sys
import time

from conftest import CONFIG, HTML_DIR, ROOT
from once import once_per_test_run

sys.path.insert(0, str(ROOT / "_ext"))

from offline_book import DOWNLOAD_LABELS, download_files, site_url  # noqa: E402

REPO_URL = CONFIG["repository"]["url"]
FILES = download_files(REPO_URL)  # key -> path relative to the HTML output
PATHS = {key: HTML_DIR / name for key, name in FILES.items()}
LABELS = DOWNLOAD_LABELS
SITE_URL = site_url(REPO_URL)
LATEX_DIR = ROOT / "_build" / "latex"


def build_downloads():
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_downloads.py")],
        cwd=ROOT, capture_output=True, text=True,
    )
    print(f"\nscripts/build_downloads.py (PDF + zips) took {time.perf_counter() - start:.1f} s")
    return [proc.returncode, proc.stdout + proc.stderr]


@functools.cache
def build():
    """Runs scripts/build_downloads.py once per test run (however many workers ask); returns
    (return code, output). Needs the HTML built (the `built_book` fixture)."""
    return tuple(once_per_test_run("downloads", build_downloads))
