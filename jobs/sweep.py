"""Sweep job: `ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml -- python jobs/sweep.py --config configs/...`."""

import sys

from rayssl.cli import main

if __name__ == "__main__":
    sys.exit(main(["sweep", *sys.argv[1:]]))
