# Two entry points on a fresh machine: `make quickstart` (main job) and `make test` (the suite).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
RAYSSL := $(VENV)/bin/rayssl
STAMP := $(VENV)/.installed

.PHONY: quickstart test test-unit test-integration bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade-strategy only-if-needed -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

quickstart: $(STAMP)
	$(RAYSSL) shards build --source digits --out data/shards/digits --rows-per-shard 256
	$(RAYSSL) pretrain --config configs/nat_digits.yaml
	$(RAYSSL) sweep --config configs/sweep_digits.yaml

test: $(STAMP)
	$(PY) -m pytest -q tests

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

test-integration: $(STAMP)
	$(PY) -m pytest -q tests/integration

bench: $(STAMP)
	$(PY) bench/nat_assign.py
	$(PY) bench/ingest.py
	$(PY) bench/mae_sparsity.py
	$(PY) bench/tune_overhead.py

clean:
	rm -rf runs data/shards bench/out
