# City OS developer commands: make dev | serve | test | lint | fmt | docs | bench
# CI runs `make test` through .ci/run, exactly as a contributor does.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall only when the dependencies may have changed.
INSTALLED := $(VENV)/.installed
PY_PATHS := cityos tests bench scripts

.PHONY: dev serve test lint fmt docs bench

dev: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[test]'
	touch $@

serve: dev
	$(BIN)/cityos serve $(ARGS)

test: dev
	$(BIN)/pytest
	$(BIN)/ruff check $(PY_PATHS)
	$(BIN)/python scripts/gen_reference.py --check

lint: dev
	$(BIN)/ruff check $(PY_PATHS)
	$(BIN)/ruff format --check $(PY_PATHS)
	$(BIN)/mypy --strict cityos

fmt: dev
	$(BIN)/ruff check --fix $(PY_PATHS)
	$(BIN)/ruff format $(PY_PATHS)

docs: dev
	$(BIN)/python scripts/gen_reference.py

bench: dev
	$(BIN)/python bench/run.py $(ARGS)
