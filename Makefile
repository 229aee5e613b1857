# storepulse — the commands of the runtime contract (docs: README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
export STOREPULSE_HOME ?= $(CURDIR)/.storepulse
export DAGSTER_HOME ?= $(STOREPULSE_HOME)/dagster
SCALE ?= small
PYTEST_ARGS ?=
# Test processes (pytest-xdist); every test is independent (its own tmp home and ports).
# --dist loadfile: a module's tests share one worker, so a module fixture is built once
# (xdist's loadgroup marks do not work with pytest 9: it no longer reads item._nodeid).
PYTEST_WORKERS ?= auto

.PHONY: install browser redis run test ui bench lint format lock clean

install: $(STAMP)

# Re-installs only when the dependency pins or the project metadata change.
$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || $(PY) -m pip install -q --disable-pip-version-check uv==0.13.8
	$(UV) pip install -q --compile-bytecode -p $(PY) -r requirements.lock
	$(UV) pip install -q --compile-bytecode -p $(PY) --no-deps -e .
	@touch $(STAMP)

run: install
	$(VENV)/bin/storepulse run --sample-data-if-empty $(SCALE)

# The report test renders report.html in Debian's chromium; install it when missing
# (CI runs as root on Debian; elsewhere, say what to install).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian chromium for the report test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: install Debian's chromium package (apt-get install chromium)"; exit 1; fi; }

# The Celery executor test starts its own Redis (the broker) on a free loopback port;
# install Debian's redis-server when missing, the same way (no service is used).
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian redis-server for the Celery executor test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else echo "redis-server is missing: install Debian's redis-server package (apt-get install redis-server)"; exit 1; fi; }

test: install browser redis
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/pytest -q -n $(PYTEST_WORKERS) --dist loadfile --durations=15 $(PYTEST_ARGS)

ui: install
	$(VENV)/bin/storepulse init-home
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p $${DAGSTER_PORT:-3000}

bench: install
	$(PY) -m benchmarks.run --scale $(SCALE)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Regenerate the full pin set after changing pyproject.toml dependencies.
lock:
	@test -x $(UV) || { $(PYTHON) -m venv $(VENV) && $(PY) -m pip install -q uv==0.13.8; }
	$(UV) pip compile pyproject.toml --extra dev --extra bench --extra celery -o requirements.lock -p $(PY) -q --no-header

clean:
	rm -rf $(VENV) .pytest_cache
