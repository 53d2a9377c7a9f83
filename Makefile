# Posture Gateway — every target bootstraps what it needs, idempotently.
# `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help venv system-deps test lint demo bench bench-checkin bench-policy bench-decision bench-oidc-flow bench-scim format clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

venv: $(STAMP) ## create .venv and install the package with its dev tools

system-deps: ## install the Debian packages the tests need (PostgreSQL, Redis, slapd, chromium, node) when root
	@bash scripts/install-system-deps.sh

test: system-deps $(STAMP) ## install what is missing, then run every test against real services
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

lint: $(STAMP) ## ruff format check, ruff check, mypy (strict on the packages)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

format: $(STAMP) ## apply ruff formatting and safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

demo: $(STAMP) ## the end-to-end story on the embedded default (SQLite, in-process bus)
	$(VENV)/bin/posture demo

bench: $(STAMP) ## every benchmark; each prints its figures and its target (a missed target does not stop the others)
	-$(MAKE) --no-print-directory bench-policy
	-$(MAKE) --no-print-directory bench-checkin
	-$(MAKE) --no-print-directory bench-decision
	-$(MAKE) --no-print-directory bench-oidc-flow
	-$(MAKE) --no-print-directory bench-ldap
	-$(MAKE) --no-print-directory bench-scim

bench-checkin: system-deps $(STAMP) ## signed check-ins over HTTP on PostgreSQL (gunicorn vs granian) and in-process
	$(PY) bench/bench_checkin.py

bench-policy: $(STAMP) ## in-process policy evaluation (median and p99 per decision)
	$(PY) bench/bench_policy.py

bench-decision: system-deps $(STAMP) ## posture decision API over HTTP on PostgreSQL vs a bare ES256-verify endpoint (gunicorn, granian)
	$(PY) bench/bench_decision.py

bench-oidc-flow: system-deps $(STAMP) ## complete OIDC code flows/s: ours (device gate, PostgreSQL) vs npm oidc-provider
	$(PY) bench/bench_oidc_flow.py

bench-ldap: system-deps $(STAMP) ## LDAP sync of 50,000 users / 5,000 nested groups from a private slapd vs a bare ldap3 read
	$(PY) bench/bench_ldap.py
bench-scim: system-deps $(STAMP) ## SCIM user PATCHes/s over HTTP (posture serve, PostgreSQL); one JSON result line
	$(PY) bench/bench_scim.py

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
