# predserve: the two commands of the README's quickstart, and the steps they need.
#   make demo   the whole flow on generated data, then serve on http://127.0.0.1:8000
#   make test   the test suite (builds the Bigtable emulator, installs the BigQuery emulator the tests start and
#               Debian's chromium, which the web console's tests drive)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EMULATOR := .cache/bin/bigtable-emulator
BQ_VENV := .cache/bqemulator
BQ_EMULATOR := $(BQ_VENV)/.installed
GOPATH_DEBIAN := /usr/share/gocode
CHROMIUM := /usr/bin/chromium
DEMO_ARGS ?=

.PHONY: demo test install emulator bqemulator chromium bench clean

demo: $(STAMP)
	$(VENV)/bin/predserve demo $(DEMO_ARGS)

test: $(STAMP) $(EMULATOR) $(BQ_EMULATOR) $(CHROMIUM)
	PREDSERVE_BIGTABLE_EMULATOR=$(CURDIR)/$(EMULATOR) PREDSERVE_BQEMULATOR_PYTHON=$(CURDIR)/$(BQ_VENV)/bin/python \
		$(PY) -m pytest $(PYTEST_ARGS)

install: $(STAMP)

# The virtualenv, reinstalled whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	@if ! $(PYTHON) -c 'import venv, ensurepip' 2>/dev/null; then \
		echo "installing python3-venv (needed to create $(VENV))"; \
		apt-get update -q && apt-get install -y -q python3-venv; fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Google's in-memory Bigtable server (the one `gcloud beta emulators bigtable start` runs),
# built from Debian's Go packages. A gcloud SDK emulator is used instead when present.
emulator: $(EMULATOR)
$(EMULATOR): tools/bigtable-emulator/main.go
	@if ! command -v go >/dev/null || [ ! -d $(GOPATH_DEBIAN)/src/cloud.google.com/go/bigtable/bttest ]; then \
		echo "installing golang-go and golang-google-cloud-dev (Bigtable emulator)"; \
		apt-get update -q && apt-get install -y -q golang-go golang-google-cloud-dev; fi
	mkdir -p $(dir $@)
	cd tools/bigtable-emulator && GO111MODULE=off GOPATH=$(GOPATH_DEBIAN) GOCACHE=$(CURDIR)/.cache/go-build \
		go build -o $(CURDIR)/$@ main.go

# The BigQuery emulator (PyPI's bqemulator), in its own virtualenv because it pins another
# sqlglot; tools/bqemulator/launch.py starts it offline.
bqemulator: $(BQ_EMULATOR)
$(BQ_EMULATOR): tools/bqemulator/requirements.txt | $(STAMP)
	test -x $(BQ_VENV)/bin/python || $(PYTHON) -m venv $(BQ_VENV)
	$(BQ_VENV)/bin/python -m pip install -q --upgrade pip
	$(BQ_VENV)/bin/python -m pip install -q -r tools/bqemulator/requirements.txt
	touch $@

# Debian's Chromium: the web console's tests drive it headless with Playwright (the `test` extra),
# launched by its path; Playwright's own browser download is never used.
chromium: $(CHROMIUM)
$(CHROMIUM):
	@echo "installing Debian's chromium (the web console's browser tests)"
	apt-get update -q && apt-get install -y -q chromium

# Every benchmark (about 50 minutes on 2 cores); figures go to docs/benchmarks.md by hand.
# bench/serve.py also runs uvicorn (the `bench` extra) and Feast, in its own virtualenv.
FEAST_VENV := bench/out/feast-venv
bench: $(STAMP) $(EMULATOR) $(BQ_EMULATOR) $(FEAST_VENV) $(CHROMIUM)
	@command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk; }
	$(PY) -m pip install -q -e '.[test,bench]'
	PREDSERVE_BIGTABLE_EMULATOR=$(CURDIR)/$(EMULATOR) $(PY) bench/train.py
	PREDSERVE_BIGTABLE_EMULATOR=$(CURDIR)/$(EMULATOR) $(PY) bench/store.py
	PREDSERVE_BIGTABLE_EMULATOR=$(CURDIR)/$(EMULATOR) PREDSERVE_BQEMULATOR_PYTHON=$(CURDIR)/$(BQ_VENV)/bin/python \
		$(PY) bench/export.py --big 10000000
	PREDSERVE_BIGTABLE_EMULATOR=$(CURDIR)/$(EMULATOR) $(PY) bench/serve.py
	$(PY) bench/console.py

$(FEAST_VENV):
	$(PYTHON) -m venv $@
	$@/bin/pip install -q feast

clean:
	rm -rf .cache demo-data .pytest_cache
