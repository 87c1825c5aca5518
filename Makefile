# Every target installs what it needs into .venv first (from requirements.txt).
#   make book        build the HTML book into _build/html (zero warnings allowed)
#   make test        run every test (nbval, freshness, pairing, build, links, ...)
#   make notebooks   re-sync every notebook with its twin and re-execute it in place
#   make lab         open JupyterLab with jupytext pairing active
#   make clean       remove the build output

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: book test notebooks lab clean

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going

test: $(STAMP)
	$(BIN)/python -m pytest

notebooks: $(STAMP)
	$(BIN)/python scripts/refresh_notebooks.py

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf _build
