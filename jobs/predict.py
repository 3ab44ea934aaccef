"""Predict job: `ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml -- python jobs/predict.py RUN INPUT --out URI`."""

import sys

from rayssl.cli import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
