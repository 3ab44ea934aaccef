"""Ray Train integration: the per-worker loop (loop.py, workers.py) and the driver side (launch.py, placement.py)."""
