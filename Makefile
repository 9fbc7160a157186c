# One way to run each check. `make dev` starts the platform locally; `make test` runs everything CI runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
TOOLS := .venv-tools
PY := $(VENV)/bin/python
export SAM_CLI_TELEMETRY := 0

.PHONY: help install system-deps dashboard dev test lint validate unit integration e2e bench bench-peers bench-capacity build python312 sandbox deploy layer-requirements openapi clean

help:
	@echo "make dev        start the whole platform locally on http://127.0.0.1:$${PORT:-3000}"
	@echo "make test       lint, template checks and every test tier"
	@echo "make unit | integration | e2e | bench | bench-peers | bench-capacity | lint | validate | build | sandbox | openapi | dashboard"
	@echo "make deploy     sam build + sam deploy (guided the first time; see README \"Deploy\")"

# Python 3 with venv (Debian splits ensurepip into python3-venv), Java (DynamoDB Local), Node (its npm package),
# curl (the documented examples) and Debian's chromium (the browser tests) from apt when missing.
system-deps:
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
		echo "installing Python 3 with venv from apt"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq python3 python3-venv >/dev/null; }
	@command -v java >/dev/null && command -v npm >/dev/null && command -v curl >/dev/null || { \
		echo "installing Java 17, Node.js and curl from apt"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq openjdk-17-jre-headless nodejs npm curl >/dev/null; }
	@[ -x /usr/bin/chromium ] || { \
		echo "installing chromium from apt"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev,proxy]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# SAM CLI and cfn-lint pin their own boto3/click: they live in a venv of their own.
$(TOOLS)/.installed:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --upgrade pip
	$(TOOLS)/bin/pip install -q aws-sam-cli cfn-lint cfn-lint-serverless
	touch $@

install: system-deps $(VENV)/.installed node_modules/.installed

# The customer dashboard (dashboard/: Preact + TypeScript), type-checked, then bundled by esbuild into
# functions/dashboard/site/, which DashboardFunction serves at / (built output: never committed).
dashboard: node_modules/.installed
	node_modules/.bin/tsc --noEmit -p dashboard
	node dashboard/build.mjs

dev: install dashboard
	$(PY) -m local_stack

test: install $(TOOLS)/.installed lint validate dashboard sandbox
	$(PY) -m pytest tests

unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit

integration: install dashboard
	$(PY) -m pytest tests/integration

e2e: install dashboard
	$(PY) -m pytest tests/e2e

# Prints figures (DynamoDB calls per request, added latency, CPU per request, the two-transaction floor,
# throughput, cold imports, cost); asserts nothing. BENCH_ARGS="--quick" for a short run (see --help).
bench: install
	$(PY) bench/proxy_bench.py $(BENCH_ARGS)

# The same with LiteLLM's proxy side by side (interleaved, same upstream), from its own venv; not in `make test`.
LITELLM_VENV := .venv-litellm
LITELLM_VERSION := 1.108.0
$(LITELLM_VENV)/.installed:
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install -q --upgrade pip
	$(LITELLM_VENV)/bin/pip install -q 'litellm[proxy]==$(LITELLM_VERSION)'
	touch $@

bench-peers: install $(LITELLM_VENV)/.installed
	$(PY) bench/proxy_bench.py --peers --litellm-venv $(LITELLM_VENV) $(BENCH_ARGS)

# Hot accounts (issue 16): the capacity model (DynamoDB writes per request, partition ceilings) and the
# discrete-event simulation at 500, 2,000 and 10,000 req/s; prints figures, asserts nothing.
bench-capacity: $(VENV)/.installed
	$(PY) bench/capacity_model.py
	$(PY) bench/hot_account_sim.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

validate: $(TOOLS)/.installed layer-requirements
	$(TOOLS)/bin/sam validate --lint
	$(TOOLS)/bin/cfn-lint template.yaml
	$(TOOLS)/bin/cfn-lint --append-rules cfn_lint_serverless.rules -- template.yaml
	git diff --exit-code -- $(GENERATED_REQUIREMENTS) || { echo "$(GENERATED_REQUIREMENTS): stale, commit the regenerated files"; exit 1; }

# The requirements.txt files sam build installs are derived from pyproject.toml, the one dependency source:
# [project.dependencies] -> the shared layer; the optional group "proxy" -> the proxy function only.
GENERATED_REQUIREMENTS := layers/shared/requirements.txt functions/*/requirements.txt
layer-requirements:
	@$(PYTHON) bin/generate-requirements

# sam build needs a local Python matching the Lambda runtime (python3.12), and bin/lambda-sandbox runs the built
# functions on it: pyenv's 3.12 when present, else python3.12 on PATH. No registry this project reaches (PyPI, Debian
# bookworm, npm) ships a CPython 3.12 interpreter, so without one this stops here, saying so.
PYENV_312 := $(shell pyenv versions --bare 2>/dev/null | grep '^3\.12' | head -1)
python312:
	@[ -n "$(PYENV_312)" ] || command -v python3.12 >/dev/null || { \
		echo "make: no python3.12 (the Lambda runtime's Python), which sam build and bin/lambda-sandbox need:"; \
		echo "      install it (e.g. pyenv install 3.12) and run make again"; exit 1; }

build: $(TOOLS)/.installed layer-requirements install dashboard python312
	PYENV_VERSION=$${PYENV_VERSION:-$(PYENV_312)} $(TOOLS)/bin/sam build

# Every built function run as Lambda runs it: artifacts of .aws-sam/build only, read-only /var/task and /opt,
# python3.12 without site-packages, minimal API Gateway events (bin/lambda-sandbox says what it checks).
sandbox: build
	PYENV_VERSION=$${PYENV_VERSION:-$(PYENV_312)} $(PY) bin/lambda-sandbox

# sam build + sam deploy with samconfig.toml. The first run (no parameters saved there yet) is guided: it asks for the
# stack name, region and parameters and saves them to samconfig.toml; commit it. See README "Deploy".
deploy: build
	@if grep -q '^parameter_overrides' samconfig.toml; then \
		$(TOOLS)/bin/sam deploy; \
	else \
		$(TOOLS)/bin/sam deploy --guided; \
	fi

# openapi.json is generated from the handlers; tests/unit/test_openapi.py fails when it is stale.
openapi: $(VENV)/.installed
	$(PY) bin/generate-openapi

clean:
	rm -rf .aws-sam .local .pytest_cache .ruff_cache functions/dashboard/site
