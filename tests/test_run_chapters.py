"""scripts/run_chapters.py, the runner of `make test-compat` (and of a GPU re-check).

It runs a notebook without Jupyter and must fail a chapter for each thing the supported stacks
must not do: a cell that raises, a broken claim (an assertion), a `raises-exception` cell that
raises another exception or none, anything on stderr. Stored outputs that differ are reported,
not failed on. Each behaviour is tried here on a small planted notebook.
"""

import json
import subprocess
import sys

import nbformat
import pytest

from conftest import ROOT

RUNNER = ROOT / "scripts" / "run_chapters.py"


def cell(source, output=None, tags=(), error=None):
    code = nbformat.v4.new_code_cell(source)
    code.metadata["tags"] = list(tags)
    if output is not None:
        code.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=output))
    if error is not None:
        code.outputs.append(nbformat.v4.new_output("error", ename=error, evalue="", traceback=[]))
    return code


def run_notebook(tmp_path, *cells):
    """The runner's report for a notebook of these cells (run as `make test-compat` runs it)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    path = tmp_path / "planted.ipynb"
    nbformat.write(nb, path)
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, str(RUNNER), "--worker", str(path), "--json", str(out)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert out.exists(), f"the runner wrote no report:\n{proc.stdout}{proc.stderr}"
    report = json.loads(out.read_text())
    assert proc.returncode == (0 if report["passed"] else 1), proc.stderr
    return report


def test_a_notebook_that_reproduces_passes(tmp_path):
    report = run_notebook(tmp_path, cell("x = 6 * 7\nprint(x)", "42\n"), cell("x", "42\n"))
    assert report["passed"] and not report["differing"], report


def test_a_broken_claim_fails_the_chapter_and_names_the_cell(tmp_path):
    report = run_notebook(tmp_path, cell("d = 3e-3"),
                          cell('assert d < 1e-6, f"difference {d:.1e}"\nprint("agree")', "agree\n"))
    assert not report["passed"]
    assert report["failures"] == ["Cell 1: broken claim, AssertionError: difference 3.0e-03"]


def test_an_unexpected_error_fails_and_stops_the_chapter(tmp_path):
    report = run_notebook(tmp_path, cell("1 / 0"), cell("print('never')", "never\n"))
    assert not report["passed"] and report["cells_run"] == 1
    assert report["failures"][0].startswith("Cell 0: error, ZeroDivisionError"), report


def test_a_raises_exception_cell_must_raise_the_stored_exception_type(tmp_path):
    tag = ["raises-exception"]
    passed = run_notebook(tmp_path, cell("1 / 0", tags=tag, error="ZeroDivisionError"))
    assert passed["passed"], passed
    other = run_notebook(tmp_path, cell("[][0]", tags=tag, error="ZeroDivisionError"))
    assert other["failures"] == ["Cell 0: raised IndexError, stored ZeroDivisionError"]
    nothing = run_notebook(tmp_path, cell("pass", tags=tag, error="ZeroDivisionError"))
    assert nothing["failures"] == ["Cell 0: tagged raises-exception but raised nothing"]


@pytest.mark.parametrize("source", [
    "import warnings\nwarnings.warn('deprecated')",
    "import sys\nprint('No CUDA runtime is found', file=sys.stderr)",
    "import os\nos.write(2, b'written below Python')",
], ids=["warning", "python-stderr", "fd-2"])
def test_anything_on_stderr_fails_the_chapter(tmp_path, source):
    report = run_notebook(tmp_path, cell(source))
    assert not report["passed"] and "wrote to stderr" in report["failures"][0], report


def test_outputs_that_differ_are_listed_not_failed(tmp_path):
    report = run_notebook(tmp_path, cell("print(f'{2/3:.4g}')", "0.6666\n"),
                          cell("print('timing 1.2 ms')", "timing 3.4 ms\n",
                               tags=["nbval-ignore-output"]))
    assert report["passed"], report
    assert [d["cell"] for d in report["differing"]] == [0], report
    assert report["differing"][0]["diff"][-2:] == ["-0.6666", "+0.6667"], report


def test_functions_defined_in_a_cell_have_their_source(tmp_path):
    # Chapter 09 prints the source of its training functions with inspect.getsource.
    report = run_notebook(tmp_path, cell("def f():\n    return 1"),
                          cell("import inspect\nprint(inspect.getsource(f))",
                               "def f():\n    return 1\n"))
    assert report["passed"] and not report["differing"], report


def test_the_environment_line_is_not_counted_as_a_differing_output(tmp_path):
    # Every chapter prints the versions it ran with; on another stack that line differs by design.
    source = 'print("Python 3.13, torch 2.15.0, NumPy 2.5.5, Matplotlib 3.11.2, device cpu")'
    stored = "Python 3.11, torch 2.13.0+cpu, NumPy 2.4.6, Matplotlib 3.11.2, device cpu\n"
    report = run_notebook(tmp_path, cell(source, stored))
    assert report["passed"] and not report["differing"], report
    assert report["environment_lines"] == [0], report


def test_a_warning_logged_through_a_handler_made_in_an_earlier_cell_fails(tmp_path):
    # torch's logging handlers keep the sys.stderr of the cell that imported torch; a warning
    # they log in a later cell (torch.utils.cpp_extension's notice) must not be lost.
    setup = ("import logging, sys\nlog = logging.getLogger('planted')\n"
             "log.addHandler(logging.StreamHandler(sys.stderr))\nlog.propagate = False")
    report = run_notebook(tmp_path, cell(setup), cell("log.warning('late notice')"))
    assert report["failures"] == ["Cell 1: wrote to stderr: 'late notice'"], report
