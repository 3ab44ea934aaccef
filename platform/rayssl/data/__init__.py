"""Shards, sources, decoding and the Ray Data pipeline."""
