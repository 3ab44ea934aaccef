"""Evaluation job: `ray job submit --working-dir . -- python jobs/eval.py --config configs/nat_digits.yaml`."""

import sys

from rayssl.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
