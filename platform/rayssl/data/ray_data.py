"""Driver-side Ray Data settings shared by every dataset RaySSL builds (training, evaluation, the quality scan).

Kept apart from `pipeline` so that a dataset whose tasks never touch torch (the quality scan)
does not make every Ray Data worker import torch and kornia (~4 s per process on 2 cores).
"""

from __future__ import annotations

import logging

import ray.data

from rayssl import console


def quiet_ray_data() -> None:
    """Ray Data settings for a readable console (the driver's DataContext; set before building a dataset)."""
    # Ray Data logs a progress table every few seconds in non-interactive terminals; rank-0
    # training logs already show progress, so keep the console readable.
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    if not console.verbose():
        # Ray Data then warns once per process that they are off: our own choice, not the user's to act on.
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    ctx.use_datasource_v2 = False
    console.quiet_console_handlers("ray.data")  # planning lines ("Estimated parquet encoding ratio ...") stay in ray-data.log
