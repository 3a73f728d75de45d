"""Helpers for the analysis tests: a fake experiment folder in exactly the sweep's format."""
