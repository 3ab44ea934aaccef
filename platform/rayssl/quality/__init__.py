"""Corpus quality: what is wrong with a shard set (`rayssl quality`)."""
