"""Frozen-feature evaluation: kNN and linear probes, reports."""
