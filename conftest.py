"""Loaded by pytest for every run, including `pytest notebooks/` alone.

nbval's kernels inherit this environment. The stored outputs were produced with one CPU thread
(scripts/refresh_notebooks.py sets the same), so they do not depend on the number of cores of
the machine that re-runs them: float32 reductions split over several threads round differently.
"""

import os

os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
