"""Benchmarks of the library (speed, trust, scale); run from the repository root."""
