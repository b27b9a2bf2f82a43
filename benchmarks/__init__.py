"""Benchmarks: each prints a table and ratios against the raw limit measured in the same run."""
