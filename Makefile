# airflow-invites: make demo | make test | make docs | make bench
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test test-faults lint docs bench package try clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,docs,sandbox,sql]"
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	bash scripts/demo.sh

# the sandbox and a shell with its connections set (throwaway Airflow home); `exit` stops it
try: $(STAMP)
	bash scripts/try.sh

lint: $(STAMP)
	$(BIN)/ruff check airflow_invites dags tests benchmarks scripts
	$(BIN)/ruff format --check airflow_invites dags tests benchmarks scripts
	$(BIN)/mypy airflow_invites dags

test: lint
	$(BIN)/pytest -q

test-faults: $(STAMP)
	$(BIN)/pytest -q -m faults

docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# the sdist and wheel built, twine-checked, installed into clean venvs with the lowest and the newest
# supported Airflow (provider listed, a test subset against the installed wheel); see scripts/check_package.sh
package: $(STAMP)
	bash scripts/check_package.sh

clean:
	rm -rf $(VENV) site .airflow

# make e2e: a real Airflow 3.3 (PostgreSQL, api-server, scheduler, dag-processor, triggerer, then Celery
# with two workers) driven through the UI (headless Chromium) and REST; see docs/deploy.md and e2e/run.sh
.PHONY: e2e
e2e: $(STAMP)
	bash e2e/run.sh
