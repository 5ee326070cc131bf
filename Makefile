# The two commands of the README: `make dev` runs the service, `make test` runs the tests.
# Both set up what they need first (a virtualenv in .venv; Chromium for the browser tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: dev test openapi lint

$(BIN)/bankfeeds-bff: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

dev: $(BIN)/bankfeeds-bff
	$(BIN)/bankfeeds-bff dev

test: $(BIN)/bankfeeds-bff
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	$(BIN)/pytest $(PYTEST_ARGS)

openapi: $(BIN)/bankfeeds-bff
	$(BIN)/python -m app.openapi
