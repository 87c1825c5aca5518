# Every target installs what it needs into .venv first (from requirements.txt).
#   make book        build the HTML book into _build/html (zero warnings allowed), then the
#                    whole-book PDF and the notebooks/site zips into _build/html/downloads/
#                    (installs TeX, fonts and npm with apt-get when missing: .ci/install-tex;
#                    MathJax and axe-core from npm at the versions package-lock.json pins)
#   make book-deps   just those installs (TeX, fonts, MathJax), as .ci/run does before testing
#   make test        run every test (nbval, freshness, pairing, build, links, browser, lint)
#                    (installs chromium + fonts-noto-cjk with apt-get when missing)
#   make test-kernels  nbval again, twice, with the kernels other x86-64 CPUs take (timed)
#   make test-compat   every chapter on the oldest and newest supported torch/NumPy/Matplotlib/
#                    Python (compat/*.txt; report in _build/test-compat.txt)
#   make lint        ruff over the tests, scripts and notebooks (also part of make test)
#   make notebooks   re-sync every notebook with its twin and re-execute it in place
#   make lab         open JupyterLab with jupytext pairing active
#   make clean       remove the build output

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: book book-deps test test-kernels test-compat compat-envs lint browser-deps notebooks lab clean

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

MATHJAX := node_modules/mathjax/package.json

book: $(STAMP) book-deps
	$(BIN)/jupyter-book build . -W -n --keep-going
	$(BIN)/python scripts/build_downloads.py

book-deps: $(STAMP) $(MATHJAX)
	.ci/install-tex

# MathJax, served from the built site (_ext/offline_book.py copies it into _static/mathjax/),
# and axe-core, which the browser tests run on every page: both pinned in package-lock.json
$(MATHJAX): package.json package-lock.json
	.ci/install-tex
	npm ci --no-audit --no-fund
	touch $(MATHJAX)

# The tests run on TEST_WORKERS pytest-xdist workers: much of the run waits (on a page to load,
# on a kernel), so more workers than cores pays. --dist loadgroup keeps each notebook's nbval
# cells on one worker, in order, in one kernel (conftest.py groups them); the book and the PDF
# are built once per run, by whichever worker asks first (tests/conftest.py).
TEST_WORKERS ?= 4

test: $(STAMP) browser-deps book-deps
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

# The stored outputs must reproduce on any x86-64 CPU, not only on this one: re-run nbval over
# notebooks/ with ATen's and MKL's kernel paths forced to those of older CPUs (one thread, as
# conftest.py sets). Each pass's wall time goes to the terminal and to _build/test-kernels.txt.
# The two passes are independent, so they run side by side (each on one CPU thread, as
# conftest.py sets); each pass's log goes to _build/test-kernels-<capability>.log.
test-kernels: $(STAMP)
	@mkdir -p _build; : > _build/test-kernels.txt; \
	for kernels in "ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE" \
	               "ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2"; do \
	  ( log=_build/test-kernels-$$(echo $$kernels | sed 's/ATEN_CPU_CAPABILITY=//; s/ .*//').log; \
	    echo "== nbval over notebooks/ with $$kernels (log: $$log)"; start=$$(date +%s); \
	    if env $$kernels $(BIN)/python -m pytest -q -p no:xdist notebooks > $$log 2>&1; \
	    then result=passed; else result=FAILED; tail -n 40 $$log; fi; \
	    echo "$$kernels: $$result in $$(( $$(date +%s) - start )) s" \
	      | tee -a _build/test-kernels.txt ) & \
	done; wait; ! grep -q FAILED _build/test-kernels.txt

# The notebooks must run, with every claim they assert holding, on every stack the book supports,
# not only on the pinned one: every chapter, top to bottom, in .venv-compat/floor (the oldest
# supported versions on the oldest Python) and .venv-compat/newest (the newest releases on the
# newest Python), side by side. Stored outputs that differ are counted, not failed on.
test-compat: $(STAMP)
	$(BIN)/python scripts/test_compat.py

# Just make those environments (about 3 GB of wheels each, cached): .ci/run does it while the
# other tests run.
compat-envs: $(STAMP)
	$(BIN)/python scripts/test_compat.py --prepare

lint: $(STAMP)
	$(BIN)/ruff check tests notebooks scripts conftest.py

browser-deps:
	.ci/install-browser

notebooks: $(STAMP)
	$(BIN)/python scripts/refresh_notebooks.py

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf _build
