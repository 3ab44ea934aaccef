# Two entry points on a fresh machine: `make quickstart` (main job) and `make test` (the suite).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
RAYSSL := $(VENV)/bin/rayssl
STAMP := $(VENV)/.installed

.PHONY: quickstart head stop-head lint test test-unit test-integration bench bench-mnist bench-own-labels bench-gpu bench-gpu-tiny tensorboard docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade-strategy only-if-needed -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Every Ray head this Makefile starts runs with token authentication (Ray 2.60 would also turn it
# on for a local ray.init(), but say so rather than rely on a default that is changing).
quickstart head: export RAY_AUTH_MODE := token

quickstart: $(STAMP)
	$(RAYSSL) shards build --source digits --out data/shards/digits --rows-per-shard 256
	$(RAYSSL) pretrain --config configs/nat_digits.yaml
	$(RAYSSL) sweep --config configs/sweep_digits.yaml

# A local head for `ray job submit`: token in ~/.ray/auth_token (created once), dashboard and job
# API on 127.0.0.1:8265 only; jobs run the virtualenv's python.
head: $(STAMP)
	$(VENV)/bin/ray get-auth-token --generate > /dev/null
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/ray start --head --node-ip-address=127.0.0.1 \
		--dashboard-host=127.0.0.1 --num-cpus=8 --disable-usage-stats

stop-head:
	$(VENV)/bin/ray stop

# Every run's and sweep trial's curves (scalars, MAE reconstruction grids) under runs/, on 127.0.0.1:6006.
tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir runs --host 127.0.0.1 --port 6006

test: $(STAMP)
	$(PY) -m pytest -q --durations=25 tests

# ruff (lint + format check) on every Python file and mypy on the package: what CI runs before the tests.
lint: $(STAMP)
	$(VENV)/bin/ruff check platform tests bench jobs
	$(VENV)/bin/ruff format --check platform tests bench jobs
	$(VENV)/bin/mypy

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

test-integration: $(STAMP)
	$(PY) -m pytest -q tests/integration

bench: $(STAMP)
	$(PY) bench/nat_assign.py
	$(PY) bench/ingest.py
	$(PY) bench/mae_sparsity.py
	$(PY) bench/tune_overhead.py
	$(PY) bench/faults.py

# The few-label headline (MNIST, 5 labels per class, 3 label draws per variant; about 6 hours on 2 cores for
# all eight rows: bench/few_labels.py --variants NAME runs one).
bench-mnist: $(STAMP)
	$(RAYSSL) shards build --source mnist --path ../shared/data/mnist --out data/shards/mnist
	$(PY) bench/few_labels.py

# A user's corpus end to end (CIFAR-10 as a folder of PNGs + a CSV of 10 labels per class -> shards -> every label ->
# export -> predict), with the balanced-draw and imbalance comparisons: about an hour on 2 cores.
bench-own-labels: $(STAMP)
	$(PY) bench/own_labels.py

# Every GPU check in one command (docs/gpu.md): at most 8 minutes on one H100 with 16 cores, each item in its own
# process with its own time limit; writes bench/results/gpu_<device>.{json,md}. Needs no data outside the repo
# (it writes its own synthetic JPEG corpus to the local disk; the few-label item uses ../shared/data/mnist if there).
bench-gpu: $(STAMP)
	$(PY) bench/gpu.py

# The same items on the CPU with tiny models and 80 images, in ~5 minutes on 2 cores, into bench/out/ (never bench/results);
# tests/integration/test_bench_gpu.py runs it too.
bench-gpu-tiny: $(STAMP)
	$(PY) bench/gpu.py --tiny

# The two generated docs pages: every config key (from the classes in rayssl.config) and the benchmark
# results (from bench/results); tests/unit/test_config_reference.py and test_benchmarks_page.py fail when they are stale.
docs: $(STAMP)
	$(PY) -m rayssl.config.reference --out docs/configuration.md
	$(PY) bench/render_docs.py --out docs/benchmarks.md

clean:
	rm -rf runs data/shards bench/out
