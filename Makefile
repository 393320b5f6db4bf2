# Atlas — every target bootstraps .venv itself (idempotent: re-installs only when setup.cfg changes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= var/demo

.PHONY: demo test lint typecheck bench chaos soak mutation clean

$(STAMP): setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ required, found " + sys.version' 
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,report]'
	@touch $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/atlas run --config config/atlas.toml --symbols BTCUSDC,XRPUSDT,ADABTC,LTCBTC --speed max --max-bars 3000 --state-dir $(DEMO_DIR)/state --log-dir $(DEMO_DIR)/logs

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict atlas_actors/domain

test: lint typecheck
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m bench.run

chaos: $(STAMP)
	ATLAS_CHAOS_KILLS=200 $(PY) -m pytest tests/chaos -q

soak: $(STAMP)
	$(PY) -m bench.soak

# Reviewed single-line mutations of the red-line code (tests/mutation/mutations.toml), each
# run against the tests that must catch it; exits 1 on a survivor. Not part of `make test`.
mutation: $(STAMP)
	$(PY) -m tests.mutation.run

clean:
	rm -rf $(VENV) var build *.egg-info
