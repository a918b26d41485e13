# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup influxd demo test lint bench clean

setup: $(VENV)/.installed influxd

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

influxd:
	scripts/install-influxd >/dev/null

demo: setup
	$(BIN)/powerview stack up

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup lint
	$(BIN)/python -m pytest

clean:
	-$(BIN)/powerview stack down
	rm -rf $(VENV) .powerview
