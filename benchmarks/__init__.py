"""Benchmarks against the official SDK (see the README's benchmark section)."""
