"""Test doubles used by the test suite and the benchmarks."""
