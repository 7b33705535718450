# Two entry points, both safe on a fresh clone: `make serve` and `make test`.
# Each creates what it needs (the virtual environment, the Node test clients).
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: serve test lint

$(BIN)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

tests/interop/node_modules/.installed: tests/interop/package-lock.json
	cd tests/interop && npm ci --no-audit --no-fund --loglevel=error
	touch $@

serve: $(BIN)/.installed
	$(BIN)/draftsync serve $(ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint tests/interop/node_modules/.installed
	$(BIN)/pytest
