# promptctl: `make demo` runs the tutorial end to end offline; `make test` runs the suite.
# Both create the virtualenv themselves.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
SERVE ?= 1
PYTEST_ARGS ?=

.PHONY: venv test demo bench emulator worker web clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python -m demo --serve=$(SERVE)

# Speed targets: evals (tutorial loop vs a run; 600 sessions under a create limit), then the triage API.
bench: $(STAMP)
	$(BIN)/python bench/run.py --output var/bench-evals.json
	$(BIN)/python -m bench.api --json var/bench-api.json

emulator: $(STAMP)
	$(BIN)/python manage.py emulator --port 8765

worker: $(STAMP)
	$(BIN)/celery -A config worker --loglevel=INFO

clean:
	rm -rf var
