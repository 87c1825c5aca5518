"""Work done once per test run, however many pytest-xdist workers ask for it.

Standard library only, so that a process can use it without loading the test suite's imports.
"""

import fcntl
import json
import os
from pathlib import Path

BUILD_DIR = Path(__file__).resolve().parents[1] / "_build"


def once_per_test_run(name, work):
    """`work()` done once per test run, however many pytest-xdist workers ask for it.

    `make test` runs pytest with several workers (pytest-xdist), and each worker is a process
    with its own session fixtures; the book must still be built once, not once per worker. The
    first worker to ask takes a lock (_build/.once-NAME.lock), does the work and leaves its
    JSON-able result in _build/.once-NAME.json, stamped with the run's id (TEST_RUN_ID, set by
    the root conftest.py before the workers start); the others wait on the lock, then read it.
    A result left by an earlier run carries another id and is done again.
    """
    BUILD_DIR.mkdir(exist_ok=True)
    run_id = os.environ.get("TEST_RUN_ID", "")
    result_file = BUILD_DIR / f".once-{name}.json"
    with open(BUILD_DIR / f".once-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if run_id and result_file.exists():
                stored = json.loads(result_file.read_text(encoding="utf-8"))
                if stored.get("run") == run_id:
                    return stored["result"]
            result = work()
            result_file.write_text(json.dumps({"run": run_id, "result": result}),
                                   encoding="utf-8")
            return result
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
