# Two commands do all the set-up (see README.md):
#   make train   install tinyconv in .venv, find Fashion-MNIST, train the default model
#                with one worker per core (MPI, the `mpi` extra)
#   make test    install the test dependencies (PyTorch CPU included) and run every test
# and, after make train, for the README:
#   make explore-screenshots   the two pictures of `tinyconv explore` in docs/ (needs Chromium)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: train test explore-screenshots

$(BIN)/tinyconv: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[images,mpi]"
	touch $@

$(VENV)/.test-deps: $(BIN)/tinyconv
	$(BIN)/python -m pip install -q -e ".[test,onnx,mpi]" torch==2.13.0
	touch $@

train: $(BIN)/tinyconv
	$(BIN)/tinyconv train --out runs/default

test: $(VENV)/.test-deps
	$(BIN)/python -m pytest

explore-screenshots: $(VENV)/.test-deps runs/default/model.npz
	$(BIN)/python docs/make_explore_screenshots.py runs/default/model.npz
