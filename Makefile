# predserve: the two commands of the README's quickstart, and the steps they need.
#   make demo   the whole flow on generated data, then serve on http://127.0.0.1:8000
#   make test   the test suite (builds the Bigtable emulator, installs the BigQuery emulator the tests start and
#               Debian's chromium, which the web console's tests drive, and a Java runtime for the gcloud SDK's
#               Pub/Sub emulator, and builds the images the deploy tests run)
#   make image  the serve and export images as OCI archives under dist/, built without a daemon (docs/deploy.md)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
EMULATOR := .cache/bin/bigtable-emulator
BQ_VENV := .cache/bqemulator
BQ_EMULATOR := $(BQ_VENV)/.installed
GOPATH_DEBIAN := /usr/share/gocode
CHROMIUM := /usr/bin/chromium
JAVA := /usr/bin/java
DEMO_ARGS ?=
IMAGES := dist/predserve-serve.oci.tar dist/predserve-export.oci.tar

.PHONY: demo test install emulator bqemulator chromium java image bench clean

demo: $(STAMP)
	$(VENV)/bin/predserve demo $(DEMO_ARGS)

test: $(TEST_STAMP) $(EMULATOR) $(BQ_EMULATOR) $(CHROMIUM) $(JAVA) $(IMAGES)
	$(VENV)/bin/lint-imports  # the layers and no import circles (pyproject.toml's [tool.importlinter])
	PREDSERVE_BIGTABLE_EMULATOR=$(CURDIR)/$(EMULATOR) PREDSERVE_BQEMULATOR_PYTHON=$(CURDIR)/$(BQ_VENV)/bin/python \
		$(PY) -m pytest $(PYTEST_ARGS)

install: $(STAMP)

# The virtualenv with predserve and what it runs (all `make demo` needs), reinstalled whenever
# pyproject.toml changes; the test extras (Playwright, Schemathesis, the gcp and dask extras...)
# come on top for `make test` only, with their own stamp.
$(STAMP): pyproject.toml
	@if ! $(PYTHON) -c 'import venv, ensurepip' 2>/dev/null; then \
		echo "installing python3-venv (needed to create $(VENV))"; \
		apt-get update -q && apt-get install -y -q python3-venv; fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(TEST_STAMP): $(STAMP)
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

# A Java runtime: the gcloud SDK's Pub/Sub emulator (component pubsub-emulator), which the tests of
# `predserve stream` start with `gcloud beta emulators pubsub start`, is a Java program.
java: $(JAVA)
$(JAVA):
	@echo "installing a Java runtime (the Pub/Sub emulator's)"
	apt-get update -q && apt-get install -y -q openjdk-17-jre-headless

# The images (deploy/*.Containerfile), built daemonless: buildah with the vfs storage driver and
# chroot isolation, on a Debian bookworm base with Debian's python3.11 made by mmdebstrap (no
# registry is needed: a user with Docker builds the same files FROM python:3.11-slim).
# The host's CA bundle and a pip.conf naming it are mounted into the build steps only (pip reaches
# PyPI through this machine's TLS proxy); neither is part of an image. Everything cached is under .cache/.
BUILDAH := buildah --storage-driver vfs --root $(CURDIR)/.cache/buildah/root --runroot $(CURDIR)/.cache/buildah/run
IMAGE_BASE := localhost/predserve-base:bookworm
IMAGE_BASE_TAR := .cache/image/bookworm-python3.11.tar
IMAGE_BASE_STAMP := .cache/image/base.imported
HOST_CA := $(firstword $(PIP_CERT) /etc/ssl/certs/ca-certificates.crt)
IMAGE_SOURCES := pyproject.toml README.md .dockerignore $(shell find src -type f ! -name '*.pyc' ! -path '*.egg-info*' 2>/dev/null)
BUD = $(BUILDAH) bud --isolation chroot --build-arg BASE=$(IMAGE_BASE) \
	-v $(CURDIR)/.cache/image/pip.conf:/etc/pip.conf:ro -v $(HOST_CA):/etc/ssl/certs/ca-certificates.crt:ro
image: $(IMAGES)

IMAGE_TOOLS = command -v buildah >/dev/null && command -v mmdebstrap >/dev/null || { \
	echo "installing buildah and mmdebstrap (make image)"; apt-get update -q && apt-get install -y -q buildah mmdebstrap; }

$(IMAGE_BASE_TAR):
	@$(IMAGE_TOOLS)
	mkdir -p $(dir $@)
	mmdebstrap --variant=minbase --include=python3-venv,ca-certificates --aptopt='Acquire::Retries "3"' \
		--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
		bookworm $@.tmp.tar http://deb.debian.org/debian
	mv $@.tmp.tar $@

$(IMAGE_BASE_STAMP): $(IMAGE_BASE_TAR)
	@$(IMAGE_TOOLS)
	printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > .cache/image/pip.conf
	-$(BUILDAH) rmi -f $(IMAGE_BASE) >/dev/null 2>&1
	c=$$($(BUILDAH) from scratch) && $(BUILDAH) add $$c $(IMAGE_BASE_TAR) / >/dev/null \
		&& $(BUILDAH) config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 --cmd python3 $$c \
		&& $(BUILDAH) commit -q $$c $(IMAGE_BASE) >/dev/null && $(BUILDAH) rm $$c >/dev/null
	touch $@

dist/predserve-serve.oci.tar: deploy/serve.Containerfile deploy/requirements/serve.txt $(IMAGE_SOURCES) $(IMAGE_BASE_STAMP)
	$(BUD) -f deploy/serve.Containerfile -t localhost/predserve-serve:latest .
	mkdir -p dist && rm -f $@ && $(BUILDAH) push -q localhost/predserve-serve:latest oci-archive:$@:predserve-serve:latest
	-$(BUILDAH) rmi --prune >/dev/null 2>&1  # the replaced build (vfs keeps whole copies)

dist/predserve-export.oci.tar: deploy/export.Containerfile deploy/dataflow/main.py $(IMAGE_SOURCES) $(IMAGE_BASE_STAMP)
	$(BUD) --target export -f deploy/export.Containerfile -t localhost/predserve-export:latest .
	mkdir -p dist && rm -f $@ && $(BUILDAH) push -q localhost/predserve-export:latest oci-archive:$@:predserve-export:latest
	-$(BUILDAH) rmi --prune >/dev/null 2>&1  # the replaced build (vfs keeps whole copies)

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
	$(PY) bench/updates.py

$(FEAST_VENV):
	$(PYTHON) -m venv $@
	$@/bin/pip install -q feast

clean:
	-$(BUILDAH) rmi --all >/dev/null 2>&1
	rm -rf .cache demo-data .pytest_cache dist
