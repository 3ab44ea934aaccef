"""Pretraining job: `ray job submit --working-dir . -- python jobs/pretrain.py --config configs/nat_digits.yaml`."""

import sys

from rayssl.cli import main

if __name__ == "__main__":
    sys.exit(main(["pretrain", *sys.argv[1:]]))
