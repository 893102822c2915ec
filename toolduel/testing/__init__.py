"""Helpers shared by tests and benchmarks (BFCL's official checker, mutated model outputs)."""
