"""One `rayssl` logger; on Ray Train workers only rank 0 speaks (stdout is forwarded to the driver)."""

from __future__ import annotations

import logging
import sys

from rayssl import console


def get_logger(rank: int = 0) -> logging.Logger:
    logger = logging.getLogger("rayssl")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s rayssl %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False
    # DEBUG lines (per-draw details of a sweep, ...) only with --verbose.
    logger.setLevel((logging.DEBUG if console.verbose() else logging.INFO) if rank == 0 else logging.WARNING)
    return logger
