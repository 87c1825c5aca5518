"""The test harness itself: what `make test` relies on to run on several workers."""

import os
import shutil
import subprocess
import sys
import uuid

from conftest import BUILD_DIR, ROOT

# A worker's view: import tests/conftest.py and ask for a piece of work done once per run.
WORKER = """
import sys, time
sys.path.insert(0, {tests!r})
from once import once_per_test_run

def work():
    with open({log!r}, "a") as log:
        log.write("built\\n")
    time.sleep(1)  # long enough for the other workers to arrive while it runs
    return [0, "log"]

print(once_per_test_run({name!r}, work))
"""


def run_workers(count, name, log, run_id):
    source = WORKER.format(tests=str(ROOT / "tests"), log=str(log), name=name)
    env = dict(os.environ, TEST_RUN_ID=run_id)
    workers = [subprocess.Popen([sys.executable, "-c", source], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, text=True) for _ in range(count)]
    return [worker.communicate()[0].strip() for worker in workers]


def test_the_book_is_built_once_per_run_however_many_workers_ask(tmp_path):
    name = f"probe-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "work.log"
    try:
        results = run_workers(3, name, log, run_id="run-1")
        assert results == ["[0, 'log']"] * 3, results
        assert log.read_text().count("built") == 1, (
            f"3 workers of one run did the work {log.read_text().count('built')} times, not "
            "once: tests/conftest.py's once_per_test_run does not share it"
        )
        run_workers(1, name, log, run_id="run-2")
        assert log.read_text().count("built") == 2, "a later run reused an earlier run's result"
    finally:
        for suffix in ("json", "lock"):
            (BUILD_DIR / f".once-{name}.{suffix}").unlink(missing_ok=True)


GROUPED_TESTS = """
import os
import pytest

@pytest.mark.xdist_group("one-kernel")
@pytest.mark.parametrize("cell", range(6))
def test_cell(cell):
    with open({log!r}, "a") as log:
        log.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")

@pytest.mark.parametrize("other", range(6))
def test_other(other):
    pass
"""


def test_tests_of_one_xdist_group_run_on_one_worker(tmp_path):
    """`make test` relies on --dist loadgroup to keep a notebook's nbval cells on one worker.

    pytest-xdist 3.8 with pytest 9.2 silently stopped grouping (pytest-dev/pytest-xdist#1386):
    each cell then ran on whichever worker was free, in a kernel that had not run the cells
    before it. Six grouped tests must run on one worker, however the other tests spread.
    """
    log = tmp_path / "workers.log"
    (tmp_path / "test_grouped.py").write_text(GROUPED_TESTS.format(log=str(log)))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "3", "--dist", "loadgroup",
                           "-p", "no:cacheprovider", "-p", "no:nbval", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    workers = log.read_text().split()
    assert len(workers) == 6 and len(set(workers)) == 1, (
        f"the six tests of one xdist_group ran on workers {workers}: --dist loadgroup does not "
        "group with this pytest/pytest-xdist pair (requirements.txt), so nbval's cells of one "
        "notebook would run in different kernels"
    )


def test_a_notebooks_nbval_cells_run_on_one_worker_in_order(tmp_path):
    """The project's conftest.py keeps a notebook's cells together under --dist loadgroup.

    Each cell uses what the cell before it defined, as the chapters do; a cell sent to another
    worker runs in another kernel and fails with a NameError. (A first version of the grouping
    hook ran after pytest-xdist's own and grouped nothing: 525 nbval cells failed.)
    """
    import nbformat

    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("total = 0")]
    for n in range(1, 9):
        cell = nbformat.v4.new_code_cell(f"total += {n}\nprint(total)")
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout",
                                               text=f"{n * (n + 1) // 2}\n")]
        nb.cells.append(cell)
    for count, cell in enumerate(nb.cells, start=1):
        cell.execution_count = count
    nbformat.write(nb, tmp_path / "planted.ipynb")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "3", "--dist", "loadgroup",
                           "-p", "no:cacheprovider", "planted.ipynb"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0 and "9 passed" in proc.stdout, (
        "nbval's cells of one notebook did not all pass under `pytest -n 3 --dist loadgroup` "
        "(are they grouped on one worker? see conftest.py's pytest_collection_modifyitems):\n"
        + proc.stdout[-3000:]
    )
