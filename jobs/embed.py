"""Embed job: `ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml -- python jobs/embed.py RUN INPUT --out URI`."""

import sys

from rayssl.cli import main

if __name__ == "__main__":
    sys.exit(main(["embed", *sys.argv[1:]]))
