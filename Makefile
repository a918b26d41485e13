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

# A fresh copy of examples/data each time: ingestion moves files to parsed/ and error/.
DEMO_DATA := .powerview/demo-data

demo: setup
	$(BIN)/powerview stack up
	rm -rf $(DEMO_DATA) && mkdir -p $(DEMO_DATA) && cp -R examples/data/. $(DEMO_DATA)/
	@# Exit status 1 means "some files rejected": examples/data/faulty holds bad files on purpose.
	$(BIN)/powerview ingest $(DEMO_DATA) || [ $$? -eq 1 ]
	$(BIN)/powerview summary acme faulty

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup lint
	$(BIN)/python -m pytest

clean:
	-$(BIN)/powerview stack down
	rm -rf $(VENV) .powerview
