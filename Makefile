# Every target creates and uses the project's own virtualenv in .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: up test lint bench chaos install install-dev sandbox clean

up: install sandbox
	$(BIN)/crawlhub up

# Spiders run in bubblewrap's sandbox, behind nftables rules (docs/guide/security.md). As root
# on Debian or Ubuntu, install what is missing; elsewhere CrawlHub says at start what spiders
# run without.
SANDBOX_PACKAGES := $(if $(shell command -v bwrap),,bubblewrap) $(if $(shell command -v nft || test -x /usr/sbin/nft && echo y),,nftables)

sandbox:
	@if [ -n "$(strip $(SANDBOX_PACKAGES))" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing the spiders' sandbox: apt-get install$(SANDBOX_PACKAGES)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SANDBOX_PACKAGES) >/dev/null; \
	fi

test: install-dev sandbox
	$(BIN)/pytest

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: install-dev
	@set -e; for script in bench/bench_*.py; do \
		[ -e "$$script" ] || { echo "no benchmarks yet"; break; }; \
		echo "== $$script"; $(BIN)/python "$$script"; \
	done

# CrawlHub under faults on a private PostgreSQL and Redis (about 15 minutes; not in CI).
chaos: install-dev
	$(BIN)/python -m tests.chaos

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# PYTHONWARNINGS: setuptools warns on every editable install (its own transition notes).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("CrawlHub needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
