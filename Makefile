# The portal's commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 5000
PG_TEST_URL ?= postgresql://postgres@127.0.0.1:5432/test
# Branch coverage of the SQLite pass may only rise (measured 94 % on 2026-11-23).
COVERAGE_FLOOR := 93
STRIPE_PORT ?= 8420

.PHONY: help install run test test-sqlite test-postgres test-later test-e2e lint format translations \
        translations-update translations-check bench browser fonts wrk clean

help: ## List the commands
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2}'
	@echo
	@echo "Variables (e.g. make run PORT=8000 STRIPE_PORT=8421):"
	@echo "  HOST=$(HOST)  address make run serves on"
	@echo "  PORT=$(PORT)  port of the portal (make run)"
	@echo "  STRIPE_PORT=$(STRIPE_PORT)  port of localstripe, the fake Stripe that make run starts"
	@echo "  PYTHON=$(PYTHON)  interpreter that creates .venv"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) translations fonts ## Create .venv and install the project with its dev tools

translations: $(STAMP) ## Compile the Babel catalogs (.po -> .mo)
	$(BIN)/pybabel -q compile -d portal/translations

translations-update: $(STAMP) ## Extract messages.pot from the code and merge it into every catalog
	$(BIN)/pybabel -q extract -F babel.cfg -k _l -k lazy_gettext -k lazy_pgettext:1c,2 --no-location --no-wrap --sort-output \
		--project=portal -o portal/translations/messages.pot .
	$(BIN)/pybabel -q update -N --no-wrap -i portal/translations/messages.pot -d portal/translations

# Links printed by `make run` must point at the server it starts.
run: export PORTAL_BASE_URL ?= http://$(HOST):$(PORT)
# Card payments go to localstripe (the fake Stripe) on loopback, started beside the portal.
run: export STRIPE_SECRET_KEY ?= sk_test_localstripe
run: export STRIPE_PUBLISHABLE_KEY ?= pk_test_localstripe
run: export STRIPE_WEBHOOK_SECRET ?= whsec_localstripe
run: export STRIPE_API_BASE ?= http://127.0.0.1:$(STRIPE_PORT)
run: export STRIPE_JS_URL ?= http://127.0.0.1:$(STRIPE_PORT)/js.stripe.com/v3/
run: install ## Migrate the SQLite database, load the demo, print an English and a Spanish link, serve on HOST:PORT
	$(BIN)/portal db upgrade
	$(BIN)/portal demo --no-links
	@mkdir -p instance
	@echo "Queueing the demo's due emails (log: instance/jobs.log; read them at /dev/mailbox)"
	$(BIN)/portal jobs run --once > instance/jobs.log 2>&1
	$(BIN)/portal demo --no-load
	@echo "Mailbox: http://$(HOST):$(PORT)/dev/mailbox/"
	@echo "Card payments: localstripe on $$STRIPE_API_BASE (log: instance/localstripe.log); test card 4242424242424242 (typed without spaces: localstripe takes 16 digits), any future MM/YY, any CVC"
	$(BIN)/python -m portal.payments.devserver --port $(STRIPE_PORT) \
		--webhook-url "$$PORTAL_BASE_URL/stripe/webhook" --webhook-secret "$$STRIPE_WEBHOOK_SECRET" \
		> instance/localstripe.log 2>&1 & stripe=$$!; \
		$(BIN)/portal jobs run --loop >> instance/jobs.log 2>&1 & worker=$$!; \
		trap 'kill $$worker $$stripe 2>/dev/null' EXIT INT TERM; \
		$(BIN)/portal run --host $(HOST) --port $(PORT)

browser: ## Install Debian's Chromium for the browser tests (as root, when missing)
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		echo "Installing chromium with apt-get for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "NOTE: /usr/bin/chromium is missing and we are not root: browser tests will be skipped."; \
	fi

# The PDFs' fallback fonts (CJK, emoji; portal/invoices/fonts.py finds them under PDF_FONT_DIRS,
# default /usr/share/fonts) and poppler's pdftotext/pdftoppm, which the PDF tests read with.
PDF_PACKAGES := fonts-wqy-microhei fonts-symbola poppler-utils
fonts: ## Install Debian's fonts for CJK and emoji in PDFs, and poppler-utils (as root, when missing)
	@missing=$$(for p in $(PDF_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		echo "Installing $$missing with apt-get for the PDFs"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "NOTE: $$missing missing and we are not root: PDFs print CJK and emoji as boxes; some PDF tests are skipped."; \
	fi

wrk: ## Install Debian's wrk, the load generator of the page benchmark (as root, when missing)
	@if command -v wrk >/dev/null; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		echo "Installing wrk with apt-get for the page benchmark"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	else \
		echo "NOTE: wrk is missing and we are not root: the page benchmark cannot run."; \
	fi

test: install browser ## Run the whole suite on SQLite, then on PostgreSQL when TEST_DATABASE_URL is set
	TEST_DATABASE_URL= $(BIN)/pytest --cov=portal --cov-report=term:skip-covered --cov-fail-under=$(COVERAGE_FLOOR)
	@if [ -n "$$TEST_DATABASE_URL" ]; then \
		echo "== again on PostgreSQL ($$TEST_DATABASE_URL)"; \
		$(BIN)/pytest -m "not e2e"; \
	fi

test-later: install ## The suite (without the browser) with the clock 400 days and 12 hours ahead: finds tests that pass only before some date, or at some hours
	TEST_DATABASE_URL= $(BIN)/pytest -q -m "not e2e" --days-ahead 400.5

test-postgres: install ## Run the suite on the local PostgreSQL
	TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/pytest -m "not e2e"

lint: install ## ruff (check and format) and mypy strict on the money rules
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy portal/money.py portal/inputs.py portal/payments/policy.py portal/notifications/policy.py \
		portal/payments/inbox.py portal/payments/ledger.py portal/payments/locks.py portal/payments/deferred.py \
		portal/payments/checkouts.py portal/payments/errors.py portal/jobs/webhook_worker.py \
		portal/imports portal/demo portal/promises/policy.py portal/promises/services.py \
		portal/plans/policy.py portal/plans/schedule.py \
		portal/plans/services.py portal/plans/queries.py portal/plans/notify.py \
		portal/invoices/balances.py portal/disputes/services.py portal/disputes/queries.py \
		portal/disputes/storage_types.py portal/disputes/evidence.py portal/disputes/ages.py \
		portal/disputes/staff_queries.py portal/plans/retries.py portal/plans/autopay.py

format: install ## Format the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install wrk ## Run the benchmarks in bench/ (webhooks, pages, the staff desk and reports on PostgreSQL when BENCH_DATABASE_URL is set; a missed target is reported, the rest still run)
	$(BIN)/python bench/bench_import.py
	-$(BIN)/python bench/bench_webhooks.py $${BENCH_DATABASE_URL:+--reset --database-url $$BENCH_DATABASE_URL}
	$(BIN)/python bench/bench_pay_flow.py
	@# The pages regenerate the shared data set over the webhook benchmark's tables (--replace);
	@# the staff desk and the reports then reuse it (neither destroys a database).
	-$(BIN)/python bench/bench_pages.py $${BENCH_DATABASE_URL:+--replace}
	-$(BIN)/python bench/bench_desk.py
	-$(BIN)/python bench/bench_reports.py

clean: ## Remove the venv, caches and the development database
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache instance
