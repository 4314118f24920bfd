# Two commands for a fresh machine:  make run   (set up and run the default job)
#                                    make test  (set up and pass the tests)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
# Extra pip flags for torch, e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=
CONFIG ?= testbed_configs/zmq-emulated-16.yaml
RUN_ARGS ?=
# The live view beside `make run` (hil serve: a page, /metrics); SERVE= turns it off.
SERVE ?= 127.0.0.1:8765
# Debian packages (installed only when missing, with root or sudo): a real sshd, which the
# default job reaches its emulated BBU host through and the SSH driver's tests use; iperf3
# for the traffic driver's tests; chromium and its driver for the test of hil serve's page.
DEB_RUN_PACKAGES ?= openssh-server
DEB_TEST_PACKAGES ?= openssh-server iperf3 chromium chromium-driver
# The local sshd of the emulated testbed (testbed_configs/zmq-emulated.yaml names this port).
SSHD_DIR  ?= .hil/sshd
SSHD_PORT ?= 2222

# The patched srsRAN (tools/srsran/build.py): `make srsran SRSRAN_SRC=~/srsRAN_4G`, or
# SRSRAN_SRC=clone to clone the upstream tag; SRSRAN_ARGS="--uhd --prefix DIR" for more.
SRSRAN_SRC ?=
SRSRAN_ARGS ?=

.PHONY: run test bench venv deb-run-deps deb-test-deps sshd stop-sshd lint clean srsran docs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch without byte-compiling its thousands of modules at install (a third of the set-up
# time); Python compiles what it imports on first use.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q --no-compile torch==$(TORCH_VERSION) $(TORCH_PIP_ARGS)
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install -q -e '.[dev,dask,rl,docs]'
	touch $@

venv: $(VENV)/.installed

run: $(VENV)/.installed sshd
	$(BIN)/hil run $(CONFIG) $(if $(SERVE),--serve $(SERVE)) $(RUN_ARGS)

# Installs the missing ones among $(1).
define deb_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
endef

deb-run-deps:
	$(call deb_install,$(DEB_RUN_PACKAGES))

deb-test-deps:
	$(call deb_install,$(DEB_TEST_PACKAGES))

# Starts it unless it runs; it keeps running for later runs (stop: make stop-sshd).
sshd: $(VENV)/.installed deb-run-deps
	$(BIN)/python -m drivers.emulated.sshd start $(SSHD_DIR) $(SSHD_PORT)

stop-sshd:
	-$(BIN)/python -m drivers.emulated.sshd stop $(SSHD_DIR)

# Two passes: every test but the real-srsRAN ones on TEST_WORKERS processes (pytest-xdist),
# then the real-srsRAN ones alone, whose ZMQ radio needs the CPU to itself (a pass with no
# build installed deselects them all: pytest's exit 5, "no tests ran", is not a failure).
TEST_WORKERS ?= 2
test: $(VENV)/.installed-dev deb-test-deps
	$(BIN)/python -m pytest -m "not srsran" -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m srsran $(PYTEST_ARGS) || [ $$? -eq 5 ]

bench: $(VENV)/.installed sshd
	$(BIN)/hil bench

srsran: $(VENV)/.installed
	@[ -n "$(SRSRAN_SRC)" ] || { echo "give SRSRAN_SRC=<a srsRAN_4G git checkout> (or SRSRAN_SRC=clone)"; exit 2; }
	$(BIN)/hil srsran build $(if $(filter clone,$(SRSRAN_SRC)),--clone,--source $(SRSRAN_SRC)) $(SRSRAN_ARGS)

# The docs site into site/ (mkdocs.yml; strict: a warning, such as a broken link, fails it).
docs: $(VENV)/.installed-dev
	$(BIN)/mkdocs build --strict

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check hil drivers agents tests tools

clean: stop-sshd
	rm -rf $(VENV) runs .pytest_cache .hil
