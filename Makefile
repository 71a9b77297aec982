# outdial: every target sets up what it needs on a fresh Debian/Ubuntu machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: all venv sysdeps smsc-peer demo test test-quick lint format bench clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the integration tests and the demo drive: SIPp as the carrier,
# espeak-ng and sox for test audio, node and npm for the test SMSC. Installed only
# when a tool is missing.
sysdeps:
	@missing=""; \
	command -v sipp >/dev/null 2>&1 || missing="$$missing sip-tester"; \
	command -v espeak-ng >/dev/null 2>&1 || missing="$$missing espeak-ng"; \
	command -v sox >/dev/null 2>&1 || missing="$$missing sox libsox-fmt-all"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	[ -f /usr/share/asterisk/sounds/en/hello.wav ] || missing="$$missing asterisk-core-sounds-en-wav"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO="sudo"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# The npm `smpp` SMSC the SMPP integration tests run (tests/peers/smsc), from its
# committed lock file; npm ci runs again only when the lock file changes.
SMSC_PEER := tests/peers/smsc
$(SMSC_PEER)/node_modules/.package-lock.json: $(SMSC_PEER)/package-lock.json
	cd $(SMSC_PEER) && npm ci --no-audit --no-fund --silent

smsc-peer: sysdeps $(SMSC_PEER)/node_modules/.package-lock.json

# A real campaign on the embedded store against a local SIPp carrier.
demo: venv sysdeps
	$(PY) config/demo/demo.py

test: venv sysdeps smsc-peer
	$(PY) -m pytest -q -p no:cacheprovider tests

# Pure cores only: no SIPp, no sockets to peers.
test-quick: venv
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: venv sysdeps
	mkdir -p var
	$(PY) -m benchmarks.sip_load --steps 500,750,1000,1250,1500,2000 --hold 10 --rates 50,100,150,200,300 --json var/sip_load.json

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
