"""Robustness job: `ray job submit --working-dir . -- python jobs/robustness.py runs/semisup_mnist --target-shards data/shards/digits`."""

import sys

from rayssl.cli import main

if __name__ == "__main__":
    sys.exit(main(["robustness", *sys.argv[1:]]))
