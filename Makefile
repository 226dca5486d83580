# promptctl: `make demo` runs the tutorial end to end offline; `make test` runs the suite.
# Both create the virtualenv themselves.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
SERVE ?= 1
PYTEST_ARGS ?=
# DEBUG is off unless set (config/settings.py): the development targets run with it on. The demo sets it
# in its own processes too, and the tests in tests/settings.py.
DEV_ENV := DJANGO_DEBUG=true

.PHONY: venv lint test test-fast demo bench redteam emulator worker web clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

# The suite runs in parallel (pytest-xdist): it mostly waits on sessions, servers and child processes.
# Each worker has its own test database, state directory and broker (tests/settings.py); slow tests
# are handed out first and one at a time, so none is left to start at the end (tests/conftest.py).
TEST_WORKERS ?= 3
XDIST := -n $(TEST_WORKERS) --dist load --maxschedchunk 1
# Python writes no bytecode when PYTHONDONTWRITEBYTECODE is set: then every worker and child process
# compiles the project and pytest rewrites every test module again. The tests let it write (__pycache__/ is ignored).
TEST_ENV := PYTHONDONTWRITEBYTECODE=

# Lint, format and types: ruff over the tree, mypy over the gateway and the services.
# (The layer contract, lint-imports, runs inside the suite: tests/test_layers.py.)
TYPED := managed_agents promptctl/services evals/services triage/services
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(DEV_ENV) $(BIN)/mypy $(TYPED)

# The whole suite after the lint (CI runs this, with PostgreSQL and Redis).
test: lint
	$(TEST_ENV) $(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

# The fast lane for the edit-test loop: everything except tests marked slow or browser.
test-fast: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest $(XDIST) -m "not slow and not browser" $(PYTEST_ARGS)

demo: $(STAMP)
	$(DEV_ENV) $(BIN)/python -m demo --serve=$(SERVE)

# Speed targets: evals (tutorial loop vs a run; 600 sessions under a create limit), then the triage API.
# The insider's attacks on the record and the gate (docs/SECURITY.md); REDTEAM_DATABASE=sqlite|postgres|both.
REDTEAM_DATABASE ?= sqlite
redteam: $(STAMP)
	$(DEV_ENV) $(BIN)/python -m redteam --database $(REDTEAM_DATABASE) --json var/redteam.json

bench: $(STAMP)
	$(DEV_ENV) $(BIN)/python bench/run.py --output var/bench-evals.json
	$(DEV_ENV) $(BIN)/python -m bench.api --json var/bench-api.json
	$(DEV_ENV) $(BIN)/python -m bench.cli --json var/bench-cli.json
	$(DEV_ENV) $(BIN)/python -m bench.soak --broker both --json var/bench-soak.json
	$(DEV_ENV) $(BIN)/python -m bench.faults --json var/bench-faults.json
	$(DEV_ENV) $(BIN)/python -m bench.scale --json var/bench-scale.json

emulator: $(STAMP)
	$(DEV_ENV) $(BIN)/python manage.py emulator --port 8765

worker: $(STAMP)
	$(DEV_ENV) $(BIN)/celery -A config worker --loglevel=INFO

clean:
	rm -rf var
