# The project's commands. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv lint typecheck unit pipeline-tests e2e test bench up try credentials down render-% settings-doc clean

help:
	@echo "make up        bring up the local platform (needs the pulumi CLI and Docker)"
	@echo "make test      lint, type-check, unit tests and the end-to-end run"
	@echo "make unit      the fast tests only (mock runtime; the Docker API proxy's need a Docker Engine)"
	@echo "make lint      ruff, shellcheck, hadolint, yamllint and shebangs (as the pre-commit hooks)"
	@echo "make e2e       the end-to-end run on a real Docker Engine"
	@echo "make bench     benchmarks on the real platform; writes BENCHMARKS.md"
	@echo "make try       the local platform without the Pulumi CLI (the test harness deploys it)"
	@echo "make credentials  its URL and admin user (SHOW_SECRETS=1: the password too)"
	@echo "make down      remove the local platform; its data stays unless DELETE_DATA=1"

$(STAMP): pyproject.toml requirements-dev.txt airflow_image/requirements.txt airflow_image/constraints.txt
	python3.11 -m venv $(VENV) 2>/dev/null || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	@# The image's whole pinned closure constrains the test environment too, so the
	@# Airflow the tests run is exactly the one the image ships.
	$(VENV)/bin/pip install --quiet -e '.[dev]' -c airflow_image/constraints.txt
	touch $@

venv: $(STAMP)

# Every linter of .pre-commit-config.yaml, over every file git tracks or would track (so
# .venv, .venvs and rendered/ never count); any finding fails. Keep the two in step: each
# command here is a hook there, with the same tool and options (all pinned in
# requirements-dev.txt).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@# Shell scripts: *.sh, and any file whose first line is a sh or bash shebang (.ci/run,
	@# tests/e2e/engine.sh). The new-pipeline templates are checked rendered, next.
	set -o pipefail; git ls-files -z --cached --others --exclude-standard \
	  | while IFS= read -r -d '' f; do \
	      if [[ ! -f $$f || $$f == *.tmpl ]]; then continue; fi; \
	      first=; IFS= read -r first <"$$f" || true; re='^#!.*[/ ](ba|da|k)?sh( |$$)'; \
	      if [[ $$f == *.sh || $$first =~ $$re ]]; then printf '%s\0' "$$f"; fi; \
	    done \
	  | xargs -0 --no-run-if-empty $(VENV)/bin/shellcheck
	@# The run_*.sh.tmpl templates as `etlstack new-pipeline` writes them into a new
	@# pipeline ({{package}} is a placeholder, not shell), in a throwaway project.
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT \
	  && mkdir "$$tmp/pipelines" "$$tmp/dags" && touch "$$tmp/Pulumi.yaml" \
	  && (cd "$$tmp" && $(abspath $(VENV))/bin/etlstack new-pipeline lint-check >/dev/null) \
	  && $(VENV)/bin/shellcheck "$$tmp"/pipelines/lint-check/*.sh
	set -o pipefail; git ls-files -z --cached --others --exclude-standard -- '*Dockerfile' \
	  | while IFS= read -r -d '' f; do if [[ -f $$f ]]; then printf '%s\0' "$$f"; fi; done \
	  | xargs -0 --no-run-if-empty $(VENV)/bin/hadolint --no-color
	@# Every YAML file, with the rules and the ignored paths of .yamllint.
	$(VENV)/bin/yamllint --strict .
	set -o pipefail; git ls-files -z --cached --others --exclude-standard \
	  | while IFS= read -r -d '' f; do if [[ -f $$f && -x $$f ]]; then printf '%s\0' "$$f"; fi; done \
	  | xargs -0 --no-run-if-empty $(VENV)/bin/check-executables-have-shebangs

typecheck: $(STAMP)
	$(VENV)/bin/mypy infra dags tests testing
	@# Each pipeline on its own, against its own environment (.venvs/pipelines/<name>).
	$(PY) testing/run_pipeline_tests.py --typecheck

unit: $(STAMP)
	$(PY) -m pytest -m "not e2e and not bench"
	$(PY) testing/run_pipeline_tests.py

# Each pipeline's tests in its own cached environment, with its own pinned dependencies.
pipeline-tests: $(STAMP)
	$(PY) testing/run_pipeline_tests.py

e2e: $(STAMP)
	$(PY) -m pytest -m e2e -s -v

test: lint typecheck
	$(PY) testing/run_pipeline_tests.py
	$(PY) -m pytest -m "not bench"

bench: $(STAMP)
	$(PY) -m pytest -m bench -s -v

# docs/settings.md from the settings' schema (a unit test fails when it is stale).
settings-doc: $(STAMP)
	$(PY) -m etlstack.settings_doc > docs/settings.md

render-%: $(STAMP)
	$(VENV)/bin/etlstack render $* --out rendered/$*

up: $(STAMP)
	@command -v pulumi >/dev/null || { echo "make up needs the Pulumi CLI: install it from https://www.pulumi.com/docs/install/ and run make up again"; exit 1; }
	@command -v docker >/dev/null || { echo "make up needs Docker: install Docker Engine and run make up again"; exit 1; }
	@# Local state and a generated passphrase: no cloud account, and the stack's
	@# secrets are encrypted with a key that never leaves this machine.
	mkdir -p .state && chmod 700 .state
	test -s .state/passphrase || $(PY) -c 'import secrets; print(secrets.token_urlsafe(32))' > .state/passphrase
	export PULUMI_BACKEND_URL=file://$(CURDIR)/.state PULUMI_CONFIG_PASSPHRASE_FILE=$(CURDIR)/.state/passphrase; \
	  pulumi stack select local 2>/dev/null || pulumi stack init local --secrets-provider passphrase; \
	  pulumi up -s local

# Without the Pulumi engine: the end-to-end harness's applier creates the local stack
# from this working tree and leaves it up (docs/pipelines-and-dags.md, "Try it locally").
try: $(STAMP)
	$(PY) tests/e2e/local_platform.py up

credentials: $(STAMP)
	$(PY) tests/e2e/local_platform.py credentials $(if $(SHOW_SECRETS),--show-secrets)

# Removes the local platform however it was made (`pulumi destroy` after `make up`);
# PostgreSQL's data and the registry's images stay unless DELETE_DATA=1.
down: $(STAMP)
	@if [ -d .state ] && command -v pulumi >/dev/null; then \
	  export PULUMI_BACKEND_URL=file://$(CURDIR)/.state PULUMI_CONFIG_PASSPHRASE_FILE=$(CURDIR)/.state/passphrase; \
	  pulumi destroy -s local --yes; \
	fi
	$(PY) tests/e2e/local_platform.py down $(if $(DELETE_DATA),--delete-data)

clean:
	rm -rf rendered .pytest_cache .mypy_cache .ruff_cache
