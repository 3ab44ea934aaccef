"""Self-supervised methods: pure torch, no Ray, testable in unit tests."""
