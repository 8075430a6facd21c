# The README's two commands: `make run` and `make test`. Both bootstrap .venv when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: run test test-fast lint bench device-wheels clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,sweep,tracking]'
	touch $(STAMP)

## run: train the default CNN on MNIST-1D (jaxconv-train with no arguments)
run: $(STAMP)
	$(BIN)/jaxconv-train

## test: the whole suite, slow property runs included (what CI runs)
test: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -n 2 -q $(PYTEST_ARGS)

## test-fast: skip tests marked slow
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/conv_backends.py

## device-wheels: the pure-Python wheels benchmarks/device_check.sh installs on a GPU
## machine without network (the versions this .venv has), into benchmarks/.whl/
device-wheels: $(STAMP)
	$(BIN)/python -m pip wheel --no-deps -w benchmarks/.whl $$($(BIN)/python -c "from importlib.metadata import version as v; print(' '.join(f'{p}=={v(p)}' for p in ('hydra-core', 'omegaconf', 'antlr4-python3-runtime', 'mnist1d')))") 'setuptools>=77'

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .hypothesis
