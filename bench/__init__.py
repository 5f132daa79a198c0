"""Benchmarks of the framework against hand-written scripts; run with ``python -m bench`` (see bench/README.md)."""
