# Every target installs what it needs into .venv first (from requirements.txt).
#   make book        build the HTML book into _build/html (zero warnings allowed)
#   make test        run every test (nbval, freshness, pairing, build, links, browser, lint)
#                    (installs chromium + fonts-noto-cjk with apt-get when missing)
#   make lint        ruff over the tests, scripts and notebooks (also part of make test)
#   make notebooks   re-sync every notebook with its twin and re-execute it in place
#   make lab         open JupyterLab with jupytext pairing active
#   make clean       remove the build output

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: book test lint browser-deps notebooks lab clean

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going

test: $(STAMP) browser-deps
	$(BIN)/python -m pytest

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
