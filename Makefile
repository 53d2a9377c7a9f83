# Posture Gateway — every target bootstraps what it needs, idempotently.
# `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PYTEST_ARGS ?=
BENCH_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv system-deps test lint demo bench bench-quick bench-checkin bench-policy bench-decision bench-oidc-flow bench-saml-login bench-ldap bench-scim bench-overhead bench-saml-sign bench-propagation bench-stale-sweep bench-offboarding format clean

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

bench: $(STAMP) ## every benchmark; each ends with one JSON line {"bench", "metrics", "targets", "met"} (a missed target does not stop the others)
	-$(MAKE) --no-print-directory bench-policy
	-$(MAKE) --no-print-directory bench-checkin
	-$(MAKE) --no-print-directory bench-decision
	-$(MAKE) --no-print-directory bench-oidc-flow
	-$(MAKE) --no-print-directory bench-saml-login
	-$(MAKE) --no-print-directory bench-ldap
	-$(MAKE) --no-print-directory bench-scim
	-$(MAKE) --no-print-directory bench-overhead
	-$(MAKE) --no-print-directory bench-saml-sign
	-$(MAKE) --no-print-directory bench-propagation
	-$(MAKE) --no-print-directory bench-stale-sweep
	-$(MAKE) --no-print-directory bench-offboarding

bench-quick: system-deps $(STAMP) ## every benchmark in its --quick smoke mode (small data, short loads)
	-$(PY) bench/bench_policy.py --quick
	-$(PY) bench/bench_checkin.py --quick
	-$(PY) bench/bench_decision.py --quick
	-$(PY) bench/bench_oidc_flow.py --quick
	-$(PY) bench/bench_saml_login.py --quick
	-$(PY) bench/bench_saml_sign.py --quick
	-$(PY) bench/bench_propagation.py --quick
	-$(PY) bench/bench_stale_sweep.py --quick
	-$(PY) bench/bench_offboarding.py --quick

bench-checkin: system-deps $(STAMP) ## signed check-ins over HTTP: posture serve on durable PostgreSQL + Redis, 20,000 devices (BENCH_ARGS=--relaxed adds the fsync-off pass)
	$(PY) bench/bench_checkin.py $(BENCH_ARGS)

bench-policy: $(STAMP) ## in-process policy evaluation, 30 and 300 rules, GC on, varied inputs
	$(PY) bench/bench_policy.py $(BENCH_ARGS)

bench-decision: system-deps $(STAMP) ## decision API as a real caller (nonce + proof + decision) vs the bare ES256 endpoint, interleaved; p99 at 500/s open loop
	$(PY) bench/bench_decision.py $(BENCH_ARGS)

bench-oidc-flow: system-deps $(STAMP) ## complete OIDC code flows/s: ours vs npm oidc-provider in paired rounds
	$(PY) bench/bench_oidc_flow.py $(BENCH_ARGS)

bench-saml-login: system-deps $(STAMP) ## complete SP-initiated SAML logins/s end to end (AuthnRequest -> password -> device proof -> signed Response, verified)
	$(PY) bench/bench_saml_login.py $(BENCH_ARGS)

bench-ldap: system-deps $(STAMP) ## LDAP sync of 50,000 users / 5,000 nested groups from a private slapd vs a bare ldap3 read
	$(PY) bench/bench_ldap.py $(BENCH_ARGS)

bench-scim: system-deps $(STAMP) ## SCIM user PATCHes/s over HTTP (posture serve, PostgreSQL); one JSON result line
	$(PY) bench/bench_scim.py $(BENCH_ARGS)

bench-propagation: system-deps $(STAMP) ## 1,000 degrading check-ins on instance A: time until instance B denies and until a loopback push receiver holds the SET (2 posture serve, durable PostgreSQL + Redis)
	$(PY) bench/bench_propagation.py $(BENCH_ARGS)

bench-stale-sweep: system-deps $(STAMP) ## the stale-posture sweep on durable PostgreSQL: idle sweep cost over 20,000 devices, silent devices blocked + revoked per second
	$(PY) bench/bench_stale_sweep.py $(BENCH_ARGS)

bench-offboarding: system-deps $(STAMP) ## signed HR webhook -> sessions/tokens revoked + wipe commands queued (verified in the DB): p99, and 1,000 offboardings end to end (posture serve, durable PostgreSQL + Redis)
	$(PY) bench/bench_offboarding.py $(BENCH_ARGS)

bench-overhead: system-deps $(STAMP) ## the app's per-request cost: server CPU ms/request of /healthz and a bare ES256 verify, real app vs bare Flask under posture serve's argv (wrk)
	$(PY) bench/bench_overhead.py $(BENCH_ARGS)

bench-saml-sign: system-deps $(STAMP) ## signed SAML Responses/s in process (Assertion + Response, RSA-SHA256), signxml vs python-xmlsec vs pysaml2's xmlsec1, where the time goes
	$(PY) bench/bench_saml_sign.py $(BENCH_ARGS)

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
