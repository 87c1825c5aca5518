"""The test harness itself: what `make test` relies on to run on several workers."""

import os
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
