"""Robustness job: `ray job submit --working-dir . -- python jobs/robustness.py s3://bucket/runs/semisup_mnist --target-shards s3://bucket/shards/digits --set storage.s3_endpoint=...`."""

import sys

from rayssl.cli import main

if __name__ == "__main__":
    sys.exit(main(["robustness", *sys.argv[1:]]))
