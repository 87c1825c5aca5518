"""Run the chapter notebooks top to bottom without Jupyter, and report what each cell did.

Usage (from the repository root, with any Python that has torch, numpy and matplotlib):

    python scripts/run_chapters.py                         # every chapter, report to stdout
    python scripts/run_chapters.py 04 10 --json out.json   # chapters 04 and 10, also as JSON
    python scripts/run_chapters.py --threads 0             # let torch and the BLAS use every core

It needs nothing but the standard library and what the notebooks import, so it runs where
Jupyter is not installed: in the compatibility environments of `make test-compat` (the oldest
and the newest versions the book supports, scripts/test_compat.py) and on a GPU machine, where
a maintainer re-checks the book on the device the notebooks choose (`cuda` or `mps`).

Each chapter runs in a fresh interpreter (as in a fresh kernel), cell by cell, in one namespace,
as Jupyter runs it: the value of a cell's last expression is shown as its repr, figures go to
matplotlib's Agg backend and are closed after each cell. A chapter **fails** when

- a cell raises, unless it is tagged `raises-exception` (then it must raise the exception type
  its stored error names; a tagged cell that raises nothing fails too). An `AssertionError` is
  reported as a broken claim: the notebooks assert every claim their prose relies on;
- anything is written to stderr (a warning, a library's notice), by Python or below it.

Stored text outputs that differ from the re-run (streams and `text/plain` results; figures and
cells tagged `nbval-ignore-output`, the timings, are not compared) are counted and listed, but
are not failures: on another torch, NumPy, CPU or device the last digits legitimately move.
Exit status 0 when every chapter passed, 1 otherwise.
"""

import argparse
import ast
import difflib
import json
import linecache
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
IGNORE_OUTPUT = "nbval-ignore-output"
RAISES = "raises-exception"
CHAPTER_TIMEOUT = 900  # seconds; the slowest chapter takes about 15 s on one CPU thread
# The line each chapter prints with the versions it ran with: on another stack it differs by
# design, so it is not counted among the differing outputs.
ENVIRONMENT_LINE = re.compile(r"Python \d+\.\d+, (torch \S+, )?NumPy \S+, Matplotlib \S+")


# --- the worker: one chapter, in this interpreter -----------------------------------------------


def code_cells(nb):
    """(n, cell) for every code cell, n counted as nbval counts (all code cells, from 0)."""
    return list(enumerate(c for c in nb["cells"] if c["cell_type"] == "code"))


def joined(text):
    return "".join(text) if isinstance(text, list) else text


def stored_text(cell):
    """The text a cell stored: its streams and the text/plain of its result, in order."""
    parts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream" and output.get("name") == "stdout":
            parts.append(joined(output["text"]))
        elif output["output_type"] == "execute_result":
            parts.append(joined(output.get("data", {}).get("text/plain", "")) + "\n")
    return "".join(parts)


def stored_error(cell):
    for output in cell.get("outputs", []):
        if output["output_type"] == "error":
            return output["ename"]
    return None


class Sink:
    """A text stream that stays sys.stdout (or sys.stderr) for the whole run of a chapter.

    Each cell takes what was written while it ran. One object for the whole run, not one per
    cell, because a library may keep the stream it found at import: torch's logging handlers
    hold the sys.stderr of the cell that imported torch, and a warning logged in a later cell
    must still be seen, in that later cell.
    """

    def __init__(self):
        self.parts = []

    def write(self, text):
        self.parts.append(text)
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False

    def take(self):
        text, self.parts = "".join(self.parts), []
        return text


STDOUT, STDERR = Sink(), Sink()


class CapturedStderr:
    """Everything written to stderr while active: by Python (the STDERR sink) and below it
    (file descriptor 2: C libraries, subprocesses)."""

    def __enter__(self):
        STDERR.take()
        self.file = tempfile.TemporaryFile(mode="w+b")
        self.saved_fd = os.dup(2)
        os.dup2(self.file.fileno(), 2)
        return self

    def __exit__(self, *exc):
        os.dup2(self.saved_fd, 2)
        os.close(self.saved_fd)
        self.file.seek(0)
        self.value = STDERR.take() + self.file.read().decode("utf-8", "replace")
        self.file.close()
        return False


def run_cell(source, namespace, n):
    """Run one cell as Jupyter does; returns (stdout text, exception or None).

    The cell's source is registered with linecache under a name of its own, as IPython does,
    so that tracebacks and `inspect.getsource` on a function the notebook defined work.
    """
    filename = f"<cell {n}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    STDOUT.take()
    try:
        tree = ast.parse(source, filename)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, filename, "exec"), namespace)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), filename, "eval"), namespace)
            if value is not None and not source.rstrip().endswith(";"):
                print(repr(value))
        return STDOUT.take(), None
    except BaseException as exc:  # noqa: BLE001 - a cell may raise anything; it is reported
        return STDOUT.take(), exc


def run_notebook(path):
    """Run every code cell of one notebook; returns its report (a dict, JSON-ready)."""
    os.environ["MPLBACKEND"] = "Agg"  # figures are drawn, not shown; set before matplotlib loads
    sys.stdout, sys.stderr = STDOUT, STDERR  # for the whole run (see Sink)
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    cells, failures, differing, start = [], [], [], time.perf_counter()
    environment_lines = []
    for n, cell in code_cells(nb):
        source = joined(cell["source"])
        if not source.strip():
            continue
        tags = cell.get("metadata", {}).get("tags", [])
        with CapturedStderr() as err:
            text, exc = run_cell(source, namespace, n)
            if "matplotlib.pyplot" in sys.modules:
                sys.modules["matplotlib.pyplot"].close("all")
        record = {"cell": n, "stderr": err.value}
        expected = stored_error(cell) if RAISES in tags else None
        if exc is not None:
            record["exception"] = f"{type(exc).__name__}: {exc}"
            if RAISES not in tags:
                kind = "broken claim" if isinstance(exc, AssertionError) else "error"
                failures.append(f"Cell {n}: {kind}, {type(exc).__name__}: {str(exc)[:300]}")
                record["traceback"] = "".join(traceback.format_exception(exc))[-2000:]
            elif expected and type(exc).__name__ != expected:
                failures.append(f"Cell {n}: raised {type(exc).__name__}, stored {expected}")
        elif RAISES in tags:
            failures.append(f"Cell {n}: tagged raises-exception but raised nothing")
        if err.value.strip():
            failures.append(f"Cell {n}: wrote to stderr: {err.value.strip()[:300]!r}")
        if IGNORE_OUTPUT not in tags and RAISES not in tags and text != stored_text(cell):
            diff = list(difflib.unified_diff(stored_text(cell).splitlines(), text.splitlines(),
                                             "stored", "re-run", lineterm="", n=0))[2:]
            changed = [line for line in diff if line[:1] in "+-"]
            if all(ENVIRONMENT_LINE.match(line[1:]) for line in changed):
                environment_lines.append(n)  # the versions it ran with: differs by design
            else:
                differing.append({"cell": n, "diff": diff[:10]})
        cells.append(record)
        if exc is not None and RAISES not in tags:
            break  # Jupyter's "run all" stops at the first error too
    return {
        "notebook": Path(path).name,
        "passed": not failures,
        "failures": failures,
        "differing": differing,
        "environment_lines": environment_lines,
        "cells_run": len(cells),
        "seconds": round(time.perf_counter() - start, 1),
    }


# --- the controller: every chapter, each in a fresh interpreter --------------------------------


def environment():
    """The versions this interpreter runs the chapters with."""
    probe = ("import json, platform, numpy, matplotlib, torch; print(json.dumps({"
             "'python': platform.python_version(), 'torch': torch.__version__, "
             "'numpy': numpy.__version__, 'matplotlib': matplotlib.__version__, "
             "'cuda': torch.cuda.is_available(), "
             "'gpu': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if proc.returncode:
        return {"python": platform.python_version(), "error": proc.stderr.strip()[-500:]}
    return json.loads(proc.stdout)


def chapter_paths(prefixes):
    paths = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    chosen = [p for p in paths if not prefixes or p.stem.startswith(tuple(prefixes))]
    if not chosen:
        sys.exit(f"no chapter matches {prefixes}")
    return chosen


def worker_env(threads):
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONHASHSEED="0")
    if threads:
        n = str(threads)
        env.update(OMP_NUM_THREADS=n, MKL_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n)
    return env


def run_chapter(path, threads):
    """Run one chapter in a fresh interpreter; returns its report."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        try:
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", str(path), "--json", out.name],
                cwd=NOTEBOOK_DIR, env=worker_env(threads), capture_output=True, text=True,
                timeout=CHAPTER_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            return {"notebook": path.name, "passed": False, "differing": [], "cells_run": 0,
                    "failures": [f"did not finish in {CHAPTER_TIMEOUT} s"], "seconds": None}
        report = json.loads(Path(out.name).read_text() or "null")
    if report is None or proc.returncode not in (0, 1):
        tail = (proc.stdout + proc.stderr).strip()[-1500:]
        return {"notebook": path.name, "passed": False, "differing": [], "cells_run": 0,
                "failures": [f"the worker crashed (exit {proc.returncode}): {tail}"],
                "seconds": None}
    return report


def summary(env, reports, label):
    lines = [f"== {label}: Python {env.get('python')}, torch {env.get('torch')}, "
             f"NumPy {env.get('numpy')}, Matplotlib {env.get('matplotlib')}, "
             f"device {'cuda (' + str(env.get('gpu')) + ')' if env.get('cuda') else 'cpu'}"]
    if "error" in env:
        lines.append(f"   cannot import what the notebooks need: {env['error']}")
    for r in reports:
        status = "passed" if r["passed"] else "FAILED"
        seconds = f"{r['seconds']:.1f} s" if r["seconds"] is not None else "-"
        lines.append(f"{r['notebook']:<28} {status:<7} {r['cells_run']:3d} cells, {seconds:>7}, "
                     f"{len(r['differing'])} stored outputs differ"
                     + (" (besides the environment line)" if r.get("environment_lines") else ""))
        lines += [f"    ! {f}" for f in r["failures"]]
        for d in r["differing"]:
            shown = " | ".join(line for line in d["diff"] if line[:1] in "+-")[:160]
            lines.append(f"    ~ Cell {d['cell']}: {shown}")
    passed = sum(r["passed"] for r in reports)
    lines.append(f"{label}: {passed} of {len(reports)} chapters passed; "
                 f"{sum(len(r['differing']) for r in reports)} stored outputs differ")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", help="chapter prefixes (default: all)")
    parser.add_argument("--json", help="write the full report here as JSON")
    parser.add_argument("--text", help="write the summary here too")
    parser.add_argument("--label", default=f"Python {platform.python_version()}")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads per chapter (1, as the stored outputs; 0: all)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        streams = sys.stdout, sys.stderr
        try:
            report = run_notebook(args.worker)
        finally:
            sys.stdout, sys.stderr = streams
        Path(args.json).write_text(json.dumps(report), encoding="utf-8")
        sys.exit(0 if report["passed"] else 1)

    env = environment()
    reports = [run_chapter(path, args.threads) for path in chapter_paths(args.chapters)]
    text = summary(env, reports, args.label)
    print(text, flush=True)
    if args.text:
        Path(args.text).parent.mkdir(parents=True, exist_ok=True)
        Path(args.text).write_text(text + "\n", encoding="utf-8")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"environment": env, "label": args.label,
                                               "chapters": reports}, indent=1), encoding="utf-8")
    sys.exit(0 if all(r["passed"] for r in reports) and "error" not in env else 1)


if __name__ == "__main__":
    main()
