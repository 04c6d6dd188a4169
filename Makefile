# channelstream: the few commands a developer (and CI) needs.
#
#   make serve   run the development server (pserve development.ini)
#   make demo-data   beside make serve: sample packets, a loom stream, a chat
#                bot, ZMQ images and G3 frames, so that every panel of
#                http://127.0.0.1:8000/demo moves
#   make test    lint, then run the whole test suite
#   make lint    ruff only
#   make bench   run every benchmark script under bench/
#
# Each target creates .venv if it is missing and installs the project
# (editable) with the extras it needs; a stamp file per extra makes that
# happen again only when setup.py changes.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# pyramid 2.1 imports pkg_resources, which warns on every start; hide only that.
export PYTHONWARNINGS ?= ignore:pkg_resources is deprecated:UserWarning

.PHONY: serve demo-data test lint bench clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.stamp-base: setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# Peers installed without their dependencies (setup.py cannot say --no-deps):
# psi-bsread, bsread's reference sender and receiver of bsr_m-1.1 for the mflow
# interop tests (none of its compression packages: bitshuffle builds from source);
# spt3g 1.0.2, the peer of the G3 interop tests (tests/g3), whose wheel also
# requires scipy and astropy, which spt3g.core does not use: numpy only.
SPT3G := spt3g==1.0.2

$(VENV)/.stamp-test: setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps psi-bsread==2.0.1 $(SPT3G) numpy
	touch $@

$(VENV)/.stamp-bench: setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m pip install --quiet --no-deps $(SPT3G) numpy  # bench/g3.py
	touch $@

# node's socket.io-client for tests/sio/test_node.py (skipped without it, except in CI).
SIO_NODE := tests/sio/node
$(SIO_NODE)/node_modules/.stamp: $(SIO_NODE)/package.json $(SIO_NODE)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix $(SIO_NODE) --no-audit --no-fund --loglevel=error && touch $@; \
	else \
		echo "npm not found: the node socket.io client tests will be skipped"; \
	fi

serve: $(VENV)/.stamp-base
	$(BIN)/pserve development.ini

# The server's address and secrets come from this ini (CHANNELSTREAM_* env overrides too).
DEMO_INI ?= development.ini
demo-data: $(VENV)/.stamp-base
	$(BIN)/python -m demo.data --ini $(DEMO_INI)

lint: $(VENV)/.stamp-test
	$(BIN)/ruff check .

test: lint $(SIO_NODE)/node_modules/.stamp
	$(BIN)/pytest

bench: $(VENV)/.stamp-bench
	@set -e; for script in bench/*.py; do \
		case "$$(basename "$$script")" in _*) continue;; esac; \
		echo "== $$script"; \
		$(BIN)/python "$$script"; \
	done

clean-venv:
	rm -rf $(VENV)
