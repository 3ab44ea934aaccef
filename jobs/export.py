"""Export job: `ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml -- python jobs/export.py RUN --out DIR`."""

import sys

from rayssl.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
