PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint serve bench migrate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

migrate: $(VENV)/.installed
	$(BIN)/python manage.py migrate --noinput -v 0

## Local server with demo data on http://127.0.0.1:8000 (SQLite unless DATABASE_URL is set).
run: migrate
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py seed_demo --base-url http://$(HOST):$(PORT)
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py runserver $(HOST):$(PORT)

## The test suite (SQLite unless DATABASE_URL is set; CI sets PostgreSQL).
test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

## Production-style serving: gunicorn, DEBUG off, static files through whitenoise.
serve: migrate
	$(BIN)/python manage.py collectstatic --noinput -v 0
	DEBUG=0 $(BIN)/gunicorn engagement_platform.wsgi:application --bind $(HOST):$(PORT) \
		--workers $${WEB_WORKERS:-2} --threads $${WEB_THREADS:-4} --access-logfile - --timeout 30

clean:
	rm -rf $(VENV) db.sqlite3 media staticfiles var

## Benchmarks against floors measured in the same run (own database and gunicorn; needs wrk,
## PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379). See docs/performance.md.
.PHONY: bench-quick
bench: $(VENV)/.installed
	$(BIN)/python bench/run.py

bench-quick: $(VENV)/.installed
	$(BIN)/python bench/run.py --quick
