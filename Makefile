# The two commands of the README: `make dev` runs the service, `make test` runs the tests.
# Both set up what they need first (a virtualenv in .venv; Chromium for the browser tests; the demo's npm tools).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# npm ci writes this file; it is newer than package-lock.json while node_modules matches the lock.
WEB_TOOLS := web/node_modules/.package-lock.json

.PHONY: dev test lint types lock openapi web web-check

$(BIN)/bankfeeds-bff: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

dev: $(BIN)/bankfeeds-bff
	$(BIN)/bankfeeds-bff dev

# Lint, types, the demo's checks, then the suite: each stops the run on its first finding.
test: lint types web-check
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(BIN)/bankfeeds-bff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

# mypy --strict on app/ (configured in pyproject.toml).
types: $(BIN)/bankfeeds-bff
	$(BIN)/mypy

# The image's dependencies, with hashes: the runtime ones and the build backend (setuptools), nothing else.
lock: $(BIN)/bankfeeds-bff
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --build-deps-for wheel \
	  --no-emit-index-url --no-emit-find-links --output-file requirements.lock pyproject.toml

openapi: $(BIN)/bankfeeds-bff
	$(BIN)/python -m app.openapi

$(WEB_TOOLS): web/package-lock.json
	@command -v npm >/dev/null || { echo "the demo's type checks need Node.js 20+ and npm (Debian: apt-get install nodejs npm)" >&2; exit 1; }
	cd web && npm ci --no-audit --no-fund

# The demo SPA: TypeScript types from openapi/openapi.json, compiled by tsc into app/web/static/js/.
web: $(WEB_TOOLS)
	cd web && npm run generate && npm run build

# CI: the types match openapi/openapi.json, tsc is happy, and the committed JavaScript is what tsc makes of web/src.
web-check: $(WEB_TOOLS)
	cd web && npm run --silent check
	rm -rf web/.built
	cd web && npx tsc --outDir .built
	diff -r web/.built app/web/static/js || { echo "app/web/static/js is stale: run make web" >&2; exit 1; }
	rm -rf web/.built
