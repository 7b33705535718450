# Two entry points, both safe on a fresh clone: `make serve` and `make test`.
# Each creates what it needs (the virtual environment, the Node test clients, the editor bundle;
# `make test` also installs Debian's chromium for the browser tests when it is missing).
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: serve test lint web chromium bench-node services

$(BIN)/.installed: pyproject.toml setup.py
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

tests/interop/node_modules/.installed: tests/interop/package-lock.json
	cd tests/interop && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Test-only: the minimal Tiptap page of tests/web/test_tiptap.py (Tiptap + @hocuspocus/provider,
# pinned in its own lockfile), bundled by esbuild into tests/interop/tiptap/dist/ (not committed,
# never part of web/dist/).
tests/interop/tiptap/node_modules/.installed: tests/interop/tiptap/package-lock.json
	cd tests/interop/tiptap && npm ci --no-audit --no-fund --loglevel=error
	touch $@

tests/interop/tiptap/dist/.built: tests/interop/tiptap/node_modules/.installed \
		tests/interop/tiptap/build.mjs $(wildcard tests/interop/tiptap/src/*)
	cd tests/interop/tiptap && node build.mjs
	touch $@

# The Node side of `draftsync bench relay|durability`: the bench client (WebsocketProviders and
# HocuspocusProviders), the Yjs reference server @y/websocket-server and @hocuspocus/server with
# its SQLite extension (better-sqlite3, a native module), pinned in bench/node/package-lock.json.
bench/node/node_modules/.installed: bench/node/package-lock.json
	cd bench/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

bench-node: bench/node/node_modules/.installed

# The browser editor (served at / and /d/DRAFT_ID): yjs, y-websocket and CodeMirror from npm,
# bundled by esbuild into web/dist/ (not committed: this step builds it).
web/node_modules/.installed: web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

web/dist/.built: web/node_modules/.installed web/build.mjs $(wildcard web/src/*.js web/public/*)
	cd web && node build.mjs
	touch $@

web: web/dist/.built

# The browser tests (tests/web/) drive Debian's chromium through Playwright; no browser build is
# downloaded (`playwright install` is never run). Installing it needs root, as CI runs.
chromium:
	@command -v chromium >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# The PostgreSQL-backend and multi-instance tests start their own throwaway PostgreSQL cluster and
# Redis server on loopback, from Debian's packages (installed here when missing; needs root).
services:
	@(ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v redis-server >/dev/null) || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			postgresql redis-server)

serve: $(BIN)/.installed web/dist/.built
	$(BIN)/draftsync serve $(ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Two workers (pytest-xdist), each test file on one of them (its module-scoped server too): the
# suite waits on real servers, browsers and Node clients, so two cores run it in about half the time.
test: lint tests/interop/node_modules/.installed tests/interop/tiptap/dist/.built \
		bench/node/node_modules/.installed web/dist/.built chromium services
	$(BIN)/pytest -n 2 --dist loadfile
