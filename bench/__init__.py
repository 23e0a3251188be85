"""Benchmarks: `python -m bench.benchmark` (see bench/benchmark.py)."""
