# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup influxd apt demo test lint fuzz bench clean

setup: $(VENV)/.installed influxd

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

influxd:
	bash src/powerview/install-influxd >/dev/null

# Debian's OpenSSH server and client: the end-to-end tests run a real sshd
# (internal-sftp, chroot per company) and need ssh-keygen and sftp. python3-venv
# and git: deploy/README.md's first steps, which tests/deploy runs as written.
# Pango (and HarfBuzz's subsetter, fonts): WeasyPrint draws the report's PDF with them.
# Chromium and poppler-utils (pdftoppm, pdftotext): the report tests open the HTML in
# a real browser and read the PDF back.
APT_PACKAGES := openssh-server openssh-client python3-venv git \
	libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
	chromium poppler-utils
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

apt:
	@if dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		echo "apt: $(APT_PACKAGES) already installed"; \
	else \
		$(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -q --no-install-recommends $(APT_PACKAGES); \
	fi

# A fresh copy of examples/data each time: ingestion moves files to parsed/ and error/.
DEMO_DATA := .powerview/demo-data

demo: setup
	$(BIN)/powerview stack up
	rm -rf $(DEMO_DATA) && mkdir -p $(DEMO_DATA) && cp -R examples/data/. $(DEMO_DATA)/
	@# Exit status 1 means "some files rejected": examples/data/faulty holds bad files on purpose.
	$(BIN)/powerview ingest $(DEMO_DATA) || [ $$? -eq 1 ]
	$(BIN)/powerview summary acme faulty
	$(BIN)/powerview report acme v003-tri --format html --out .powerview/demo-report.html
	@echo "campaign report: .powerview/demo-report.html (open it in a browser)"

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: setup apt lint
	$(BIN)/python -m pytest

# The hostile-tree fuzzer with a larger budget and fresh random trees (CI runs 12 fixed ones).
FUZZ_TREES ?= 200
fuzz: setup
	POWERVIEW_FUZZ_TREES=$(FUZZ_TREES) POWERVIEW_FUZZ_RANDOM=1 \
		$(BIN)/python -m pytest tests/security/test_fuzz_tree.py -q

clean:
	-$(BIN)/powerview stack down
	rm -rf $(VENV) .powerview
