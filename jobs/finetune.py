"""Finetune job: `ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml -- python jobs/finetune.py --config configs/...`."""

import sys

from rayssl.cli import main

if __name__ == "__main__":
    sys.exit(main(["finetune", *sys.argv[1:]]))
