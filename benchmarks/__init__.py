"""Benchmarks of minigrad: run `python -m benchmarks`."""
