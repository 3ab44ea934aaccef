"""Ray Train integration: the per-worker loop (loop.py) and the driver side (launch.py)."""
