# The one interface: every target sets up what it needs (.venv and node_modules) first.
VENV   := .venv
PY     := $(VENV)/bin/python
PYDEPS := $(VENV)/.installed
NODEDEPS := node_modules/.installed
# jsii warns on every call under Node 20 (end of life for jsii); the CDK still works.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: setup test test-fast synth lint deploy demo bench clean

$(PYDEPS): requirements.txt requirements-dev.txt $(wildcard layers/*/requirements.txt) pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --upgrade pip
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(NODEDEPS): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

setup: $(PYDEPS) $(NODEDEPS)

test: setup            ## unit, integration, infrastructure and end-to-end tests
	$(VENV)/bin/pytest

test-fast: setup       ## everything but the end-to-end tests
	$(VENV)/bin/pytest -m "not e2e"

synth: setup           ## synthesize every stack to cdk.out/ (cdk-nag runs on synth), then cfn-lint
	npx cdk synth --all --quiet
	# cfn-lint exit code is a bitmask: 2 = errors (fail), 4 = warnings, 8 = informational.
	$(VENV)/bin/cfn-lint cdk.out/*.template.json; rc=$$?; [ $$(( rc & 2 )) -eq 0 ]

lint: setup            ## ruff (rules and format) over the tree, then mypy over the code that ships, the CLI and the dev tools
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy lambdas layers/common/python stacks selfheal selfheal_dev

deploy: setup          ## npx cdk deploy --all; pass context with CDK_ARGS="-c alertEmail=ops@example.com"
	npx cdk deploy --all $(CDK_ARGS)

demo: setup            ## the whole pipeline on this machine against the embedded AWS emulator
	$(VENV)/bin/selfheal demo

bench: setup           ## benchmarks; results in bench/results/
	$(PY) -m bench.run

clean:
	rm -rf cdk.out .pytest_cache demo-out
