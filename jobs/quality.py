"""Corpus quality job: `ray job submit --working-dir . -- python jobs/quality.py s3://bucket/shards --out s3://bucket/reports/q1 --s3-endpoint ...`."""

import sys

from rayssl.cli import main

if __name__ == "__main__":
    sys.exit(main(["quality", *sys.argv[1:]]))
