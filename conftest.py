"""Loaded by pytest for every run, including `pytest notebooks/` alone.

nbval's kernels inherit this environment. The stored outputs were produced with one CPU thread
(scripts/refresh_notebooks.py sets the same), so they do not depend on the number of cores of
the machine that re-runs them: float32 reductions split over several threads round differently.

nbval runs strict (every stored output compared) in the kernel of this environment whenever it
is loaded; `-p no:nbval` leaves it out, for a quick run of tests/ alone. (The options are set
here rather than in pyproject.toml's addopts, where `-p no:nbval` would make them unknown.)
A failing nbval cell is told how to fix it: see pytest_runtest_makereport.
"""

import os
import uuid
from pathlib import Path

import pytest

os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")


def pytest_configure(config):
    # One id per test run, shared with the pytest-xdist workers (they inherit the environment
    # of the process that starts them): tests/conftest.py's `once_per_test_run` builds the book
    # once per run, not once per worker, and knows a leftover of an earlier run by its id.
    if not hasattr(config, "workerinput"):
        os.environ["TEST_RUN_ID"] = uuid.uuid4().hex
    if config.pluginmanager.hasplugin("nbval") and not config.option.nbval_lax:
        config.option.nbval = True
        if not config.option.nbval_kernel_name:
            config.option.nbval_current_env = True


def nbval_hint(item, failure):
    """What a contributor does when nbval cannot reproduce a stored output of `item`."""
    path = Path(str(item.fspath))
    where = f"{path.parent.name}/{path.name}::Cell {item.cell_num}"
    twin = f"book/{path.stem}.md"
    if "Missing output fields from running code" in failure:
        what = ("the stored outputs hold fields the re-run did not produce (`ename` and "
                "`evalue` are those of an error: a stored error that the cell no longer raises)")
    elif "Unexpected output fields from running code" in failure:
        what = ("the re-run produced fields the stored outputs lack (`ename` and `evalue` are "
                "those of an error: the cell now raises one)")
    else:
        what = "this cell did not give its stored output"
    return (
        f"{where}: nbval re-ran the notebook and {what}.\n"
        f"- If you edited the chapter ({twin} or the notebook), re-execute it: run "
        f"`make notebooks` (or `python scripts/refresh_notebooks.py {path.stem[:2]}`), "
        "check the new outputs and the numbers quoted in the prose, and commit both files.\n"
        "- If you changed nothing, the output is not reproducible (another CPU, kernel path or "
        "library version): print fewer digits (float32 with `:.4g`; a converged tail as a "
        "bound, an oscillating phase as a range), as CONTRIBUTING.md explains; then "
        "`make notebooks`."
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    # Under pytest-xdist (`make test`: --dist loadgroup), a notebook's cells must run in order in
    # one kernel, so nbval's items of one notebook form one group, sent to one worker. First,
    # before the worker's own hook turns the group marks into the node ids it schedules by.
    for item in items:
        if type(item).__name__ == "IPyNbCell":
            item.add_marker(pytest.mark.xdist_group(f"nbval-{Path(str(item.fspath)).name}"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # nbval's own messages (`Missing output fields from running code: {'evalue', 'ename'}`,
    # `Cell outputs differ`) say what differs, not what to do; add that.
    outcome = yield
    report = outcome.get_result()
    if not (report.failed and type(item).__name__ == "IPyNbCell"):
        return
    hint = nbval_hint(item, str(report.longrepr))
    if isinstance(report.longrepr, str):
        report.longrepr = f"{report.longrepr}\n\nHow to fix it:\n{hint}"
    elif hasattr(report.longrepr, "addsection"):
        report.longrepr.addsection("How to fix it", hint)
    else:
        report.sections.append(("How to fix it", hint))
