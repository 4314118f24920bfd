# Two commands for a fresh machine:  make run   (set up and run the default job)
#                                    make test  (set up and pass the tests)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
# Extra pip flags for torch, e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=
CONFIG ?= testbed_configs/zmq-emulated.yaml
RUN_ARGS ?=
# Debian packages the tests use (installed only when missing, with root or sudo):
# a real sshd for the SSH driver's tests, iperf3 for the traffic driver's.
DEB_TEST_PACKAGES ?= openssh-server iperf3

.PHONY: run test bench venv dev-deps deb-deps lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch without byte-compiling its thousands of modules at install (a third of the set-up
# time); Python compiles what it imports on first use.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q --no-compile torch==$(TORCH_VERSION) $(TORCH_PIP_ARGS)
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/hil run $(CONFIG) $(RUN_ARGS)

deb-deps:
	@missing=""; for p in $(DEB_TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

test: $(VENV)/.installed-dev deb-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(BIN)/hil bench

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check hil drivers agents tests tools

clean:
	rm -rf $(VENV) runs .pytest_cache
