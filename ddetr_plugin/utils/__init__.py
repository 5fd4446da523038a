"""Utilities shared across the package (distributed helpers)."""
