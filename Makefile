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

## With DEBUG off the platform refuses to start without SECRET_KEY. Recipes that run it with DEBUG off take the
## environment's SECRET_KEY, else a random one made for that run (production sets its own: sessions and admin
## logins do not survive a restart with a made-up key).
WITH_SECRET_KEY = SECRET_KEY="$${SECRET_KEY:-$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')}"

migrate: $(VENV)/.installed
	$(WITH_SECRET_KEY) $(BIN)/python manage.py migrate --noinput -v 0

## Local server with demo data on http://127.0.0.1:8000 (SQLite unless DATABASE_URL is set), and the background
## worker beside it (webhook deliveries, periodic jobs): both from the Procfile, through honcho, in one command.
## Mail is written as files under var/mail unless EMAIL_BACKEND is set; webhooks may go to local receivers.
RUN_ENV = DEBUG=$${DEBUG:-1} EMAIL_BACKEND=$${EMAIL_BACKEND:-django.core.mail.backends.filebased.EmailBackend} \
	EMAIL_FILE_PATH=$${EMAIL_FILE_PATH:-var/mail} WEBHOOK_ALLOW_PRIVATE_NETWORKS=$${WEBHOOK_ALLOW_PRIVATE_NETWORKS:-1}
run: migrate
	$(RUN_ENV) $(BIN)/python manage.py seed_demo --base-url http://$(HOST):$(PORT)
	$(RUN_ENV) RUN_BIN=$(BIN) RUN_HOST=$(HOST) RUN_PORT=$(PORT) $(BIN)/python -m honcho -f Procfile start

## The test suite (SQLite unless DATABASE_URL is set; CI sets PostgreSQL). The browser tests need Debian's
## chromium, and the pooler tests its pgbouncer: installed first when missing (bin/system-packages).
test: $(VENV)/.installed-dev
	bin/system-packages chromium pgbouncer
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

## Production-style serving: gunicorn, DEBUG off, static files through whitenoise. This serves the web side only:
## a deployment also runs one or more `python manage.py worker` processes (same settings and DATABASE_URL; any
## number may run at once, each delivery is sent by one of them at a time), under its process manager
## (systemd, a container per worker, or `honcho -f Procfile start` as `make run` does).
serve: migrate
	$(WITH_SECRET_KEY) $(BIN)/python manage.py collectstatic --noinput -v 0
	$(WITH_SECRET_KEY) DEBUG=0 $(BIN)/gunicorn engagement_platform.wsgi:application --bind $(HOST):$(PORT) \
		--workers $${WEB_WORKERS:-2} --threads $${WEB_THREADS:-4} --timeout 30

clean:
	rm -rf $(VENV) db.sqlite3 media staticfiles var

## Benchmarks against floors measured in the same run (own database and gunicorn; needs wrk,
## PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379). See docs/performance.md.
.PHONY: bench-quick
bench: $(VENV)/.installed
	$(BIN)/python bench/run.py

bench-quick: $(VENV)/.installed
	$(BIN)/python bench/run.py --quick

## Past one machine (docs/scaling.md): PgBouncer vs direct connections, replica reads, S3 vs local files; each run
## starts its own PostgreSQL pair, PgBouncer, Redis, moto and gunicorns (needs pgbouncer and wrk).
.PHONY: bench-scale bench-scale-quick
bench-scale: $(VENV)/.installed-dev
	$(BIN)/python bench/scale.py

bench-scale-quick: $(VENV)/.installed-dev
	$(BIN)/python bench/scale.py --quick

## The full benchmark with every one of the 10,000,000 report lines loaded by backfill_message_events.
.PHONY: bench-backfill-all
bench-backfill-all: $(VENV)/.installed
	$(BIN)/python bench/run.py --backfill-all

## purge_expired over 10,000,000 message events and 1,000,000 render events on monthly partitions (docs/scaling.md).
.PHONY: bench-purge
bench-purge: $(VENV)/.installed
	$(BIN)/python bench/purge.py

## Reading depth (docs/performance.md): in process, on the PostgreSQL database of DATABASE_URL (migrated).
.PHONY: bench-reading
bench-reading: $(VENV)/.installed
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/engagement_bench_reading} $(BIN)/python bench/reading.py

## Exports (section 9) over 1,000,000 rows each against COPY ... TO STDOUT of the same rows, and the worker's peak RSS.
.PHONY: bench-exports
bench-exports: $(VENV)/.installed
	$(BIN)/python bench/exports.py

## Reliability (docs/reliability.md): each run starts its own throwaway PostgreSQL, Redis and gunicorn.
## loadtest: 60 s of 32 clients with accounting, the same with PostgreSQL stopped for 10 s, Redis down.
.PHONY: loadtest fuzz fuzz-ci
loadtest: $(VENV)/.installed-dev
	mkdir -p var/reliability
	$(BIN)/python -m reliability.loadtest --duration $${LOAD_SECONDS:-60} --clients 32 --output var/reliability/load.json
	$(BIN)/python -m reliability.loadtest --duration $${LOAD_SECONDS:-60} --clients 32 --pg-fault --fault-seconds 10 \
		--output var/reliability/pg-fault.json
	$(BIN)/python -m reliability.loadtest --redis-fault --output var/reliability/redis-fault.json

## fuzz: schemathesis on every operation, 20,000+ cases; fuzz-ci: the bounded 2,000-case run .ci/run calls.
fuzz: $(VENV)/.installed-dev
	mkdir -p var/reliability
	$(BIN)/python -m reliability.fuzz --cases $${FUZZ_CASES:-20000} --seed $${FUZZ_SEED:-7} --output var/reliability/fuzz.json

fuzz-ci: $(VENV)/.installed-dev
	$(BIN)/python -m reliability.fuzz --cases 2000 --seed 1
