# Demarche: `make run` serves the demo on http://127.0.0.1:5000; `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
PYTEST_ARGS ?=
export FLASK_APP := wsgi

.PHONY: run test bench lint format clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt | $(VENV)/bin/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

## run: install, migrate, load the demo coalition and serve it, with a worker beside it
run: $(VENV)/.installed
	$(BIN)/flask db upgrade
	$(BIN)/flask demo load
	@mkdir -p instance
	$(BIN)/flask worker --pidfile instance/worker.pid & \
	trap 'kill $$(cat instance/worker.pid 2>/dev/null) 2>/dev/null' EXIT INT TERM; \
	$(BIN)/flask run --host $(HOST) --port $(PORT)

## test: lint, format check and the whole test suite (honours DATABASE_URL and REDIS_URL)
test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest $(PYTEST_ARGS)

## bench: speed figures, each against a floor measured in the same run (needs wrk)
bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench.run

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts
