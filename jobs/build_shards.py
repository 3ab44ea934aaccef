"""Shard-building job: `ray job submit --working-dir . -- python jobs/build_shards.py --source mnist --path ... --out s3://...`."""

import sys

from rayssl.cli import main

if __name__ == "__main__":
    sys.exit(main(["shards", "build", *sys.argv[1:]]))
