# `make run`: set up .venv and run the demo scenario on the embedded model. `make test`: the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# A native llama.cpp build crashes on these CPUs; NATIVE=OFF still uses AVX2/FMA.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: run test install dev lint browser bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
dev: $(VENV)/.dev

run: install
	$(BIN)/schola run $(ARGS)

# ruff (lint and format) over every Python file, mypy --strict over the engine (schola/) and over the built-in
# roles and scenarios, then the dependency rules. mypy and import-linter read agents/ and scenarios/ from a
# regular install: the editable one maps them into the schola namespace at import time, where neither can see it.
lint: dev
	$(BIN)/ruff check schola agents scenarios tests benchmarks
	$(BIN)/ruff format --check schola agents scenarios tests benchmarks
	$(BIN)/mypy
	rm -rf build
	$(BIN)/pip install -q --no-deps --no-build-isolation --target build/lint . 2>/dev/null; rm -rf *.egg-info
	cd build/lint && ../../$(BIN)/mypy --config-file ../../pyproject.toml -p schola.agents -p schola.scenarios
	cd build/lint && PYTHONPATH=. ../../$(BIN)/lint-imports --config ../../pyproject.toml --no-cache

# The viewer's browser tests drive Debian's Chromium; install it when missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

test: dev lint browser
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Every benchmark prints and saves JSON (and a plot) to benchmarks/results/; benchmarks/README.md tables them.
bench: dev
	$(BIN)/python benchmarks/engine_overhead.py
	$(BIN)/python benchmarks/client_saturation.py
	$(BIN)/python benchmarks/scale.py
	$(BIN)/python benchmarks/cache_replay.py
	$(BIN)/python benchmarks/embedded_throughput.py
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/findings_stopping.py
	$(BIN)/python benchmarks/ray_scaling.py
	bash benchmarks/gpu/run.sh --dry-run

clean:
	rm -rf $(VENV) build *.egg-info
