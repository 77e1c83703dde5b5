# Touchpoint: `make run` (everything, embedded, demo data) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= 8000
export PORT

.PHONY: run test lint migrations-check install messages bench clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit("Touchpoint needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): requirements/dev.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements/dev.lock
	touch $(STAMP)

install: $(STAMP)

# Web on http://127.0.0.1:$(PORT)/ (PORT=8001 make run to move it), a Celery worker and beat, demo data.
run: $(STAMP)
	DEBUG=1 $(BIN)/python manage.py migrate --noinput
	DEBUG=1 $(BIN)/python manage.py load_demo
	DEBUG=1 $(BIN)/python -m config.runstack

lint: $(STAMP)
	$(BIN)/ruff check .

migrations-check: $(STAMP)
	TOUCHPOINT_TESTING=1 $(BIN)/python manage.py makemigrations --check --dry-run

test: lint migrations-check
	TOUCHPOINT_TESTING=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

# Patient search at 100,000 patients (BENCH_SMOKE=1 for 10,000). Needs PostgreSQL in DATABASE_URL.
bench: $(STAMP)
	$(BIN)/python bench/patients.py

# Regenerate the lock files after changing dependencies in pyproject.toml.
lock: $(BIN)/python
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 -o requirements/base.lock -q
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements/dev.lock -q

# Extract and compile translations (needs GNU gettext); the .mo files are committed.
messages: $(STAMP)
	DEBUG=1 $(BIN)/python manage.py makemessages -l en -l it -l pl --ignore=.venv --ignore=var --ignore=tests --ignore=bench --no-obsolete
	DEBUG=1 $(BIN)/python manage.py compilemessages --ignore=.venv

clean:
	rm -rf $(VENV) var
