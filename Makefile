# The README's two commands are `make run` and `make test`. Both create .venv and install on first use.
#
# torch: the default installs the CPU build torch==2.13.0 (on these machines it lies on disk; an unpinned torch
# would pull a multi-GB CUDA build). GPU users: `make install TORCH=` keeps whatever torch is in .venv, or pass the
# spec you want, e.g. `make install TORCH="torch==2.13.0"` with your CUDA index configured in pip.

PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test test-slow lint bench clean chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(if $(strip $(TORCH)),$(BIN)/python -m pip install --quiet "$(TORCH)")
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/debate-amp train recipes/default.yaml

# Headless Chromium for tests/integration/test_report.py, from Debian's packages (root, or sudo), only if missing.
chromium:
	test -x /usr/bin/chromium || { $$(test "$$(id -u)" -eq 0 || echo sudo) apt-get update -q && DEBIAN_FRONTEND=noninteractive $$(test "$$(id -u)" -eq 0 || echo sudo) apt-get install -y -q chromium; }

test: $(STAMP) chromium
	$(BIN)/python -m pytest -m "not slow" -q --durations=10

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q || test $$? -eq 5  # 5: no slow tests collected

lint: $(STAMP)
	$(BIN)/ruff check debate_amp tests examples
	$(BIN)/ruff format --check debate_amp tests examples
	$(BIN)/mypy debate_amp

bench: $(STAMP)
	$(BIN)/python -m debate_amp.bench --learning --human-efficiency

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
