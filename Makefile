# outdial: every target sets up what it needs on a fresh Debian/Ubuntu machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: all venv sysdeps npm-peers demo test test-quick lint format bench clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the integration tests and the demo drive: SIPp as the carrier,
# espeak-ng and sox for test audio, node and npm for the test SMSC, Kannel (bearerbox,
# smsbox, and fakesmsc from kannel-extras) for the HTTP SMS adapter, Postfix for its
# smtp-sink (a test SMTP relay; the package's own mail system is left unconfigured:
# "No configuration" is preseeded, so nothing listens on port 25). Installed only
# when a tool is missing.
sysdeps:
	@missing=""; \
	command -v sipp >/dev/null 2>&1 || missing="$$missing sip-tester"; \
	command -v espeak-ng >/dev/null 2>&1 || missing="$$missing espeak-ng"; \
	command -v sox >/dev/null 2>&1 || missing="$$missing sox libsox-fmt-all"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	command -v bearerbox >/dev/null 2>&1 || missing="$$missing kannel"; \
	[ -x /usr/lib/kannel/test/fakesmsc ] || missing="$$missing kannel-extras"; \
	[ -f /usr/share/asterisk/sounds/en/hello.wav ] || missing="$$missing asterisk-core-sounds-en-wav"; \
	[ -x /usr/sbin/smtp-sink ] || missing="$$missing postfix"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO="sudo"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | $$SUDO debconf-set-selections; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# Test peers from the npm registry, each pinned by its committed lock file:
# tests/peers/sms-segments (npm sms-segments-calculator, the second counter the
# SMS encoding tests cross-check against) and tests/peers/smsc (npm smpp's
# createServer: a real SMSC for the SMPP tests). Node and npm come from Debian
# when missing (sysdeps); npm ci runs again only when a lock file changes.
NPM_PEERS := tests/peers/sms-segments tests/peers/smsc
npm-peers: $(addsuffix /node_modules/.installed,$(NPM_PEERS))

%/node_modules/.installed: %/package-lock.json | sysdeps
	cd $* && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# A real campaign on the embedded store against a local SIPp carrier.
demo: venv sysdeps
	$(PY) config/demo/demo.py

test: venv sysdeps npm-peers
	$(PY) -m pytest -q -p no:cacheprovider --durations=25 tests

# Pure cores only: no SIPp, no sockets to peers.
test-quick: venv npm-peers
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
